"""The documentation (README.md and docs/*.md) builds, and its examples do what they say, wherever they live.

- `mkdocs build --strict` (the `docs` extra): every page is in the navigation, every link and anchor resolves,
  README's included (it is the site's home page).
- Every ```python block runs as pasted, in a fresh interpreter with a time-out; one that needs a server starts its
  own on 127.0.0.1 with a free port. A block that is deliberately not runnable is not marked python (`text` or
  `pycon`) and is listed in NOT_RUNNABLE with the reason; today there is none. Every fenced block names its
  language, and a non-python block that reads like Python code must be in NOT_RUNNABLE, so that no Python fragment
  hides unmarked and untested (the gateway's once did).
- Every ```toml block is a device file modbusd loads.
- The options table of docs/command-line.md lists exactly the options of `modbusd --help`, and the clone options
  table those of `modbusd clone --help`.
- The README's shell examples (start a server, read and write it with mbpoll, a device file with typed points) and
  the serial page's socat trial do what their comments say, on free ports of 127.0.0.1 and a pty pair.
- The README's development command installs what .ci/run installs; headings have the same anchor on GitHub as on
  the site.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify  # Python-Markdown: MkDocs brings it, and makes the site's anchors with it

from modbusd.config import loads
from tests.conftest import PtyPair, free_port
from tests.test_cli import SRC, Modbusd

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
RUN_TIMEOUT = 60.0  # seconds an example may take, the interpreter's start included, on a loaded machine
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}

NOT_RUNNABLE: dict[tuple[str, str], str] = {}
"""(page, a line of the block) → why that block, which reads like Python, is deliberately not runnable. Empty."""


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository: README.md, docs/gateway.md
    line: int  # of the opening fence
    language: str
    code: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(language: str | None = None, page: str | None = None, after: str | None = None) -> list[Block]:
    """The fenced blocks of the documentation; of one language, page, or section (those after a heading)."""
    found = []
    for path in PAGES:
        name = path.relative_to(ROOT).as_posix()
        if page not in (None, name):
            continue
        text = path.read_text(encoding="utf-8")
        start, end = 0, len(text)
        if after is not None:
            start = text.index(f"\n{after}\n")
            end = section_end(text, start, level=len(after.split(" ", 1)[0]))
        for match in FENCE.finditer(text, start, end):
            if language in (None, match[1]):
                found.append(Block(name, text.count("\n", 0, match.start()) + 1, match[1], match[2]))
    return found


def section_end(text: str, start: int, level: int) -> int:
    """Where the section at `start` ends: at the next heading of its level or a higher one, outside code blocks."""
    fenced = [range(*match.span()) for match in FENCE.finditer(text)]
    headings = (match.start() for match in re.finditer(rf"^#{{1,{level}}} ", text, re.MULTILINE))
    return next((at for at in headings if at > start + 1 and not any(at in span for span in fenced)), len(text))


@functools.cache
def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run a block as `python -c` in an empty folder, once per test session (test_readme_example.py reuses it)."""
    with tempfile.TemporaryDirectory() as folder:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              cwd=folder, env=ENV, check=False)  # fmt: skip


def test_the_site_builds_strictly_with_the_readme_as_home_page(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Start a server" in home and 'href="command-line/#port-502"' in home


@pytest.mark.parametrize("block", blocks("python"), ids=str)
def test_python_block_runs_as_pasted(block: Block) -> None:
    result = run_python(block.code)
    assert result.returncode == 0, f"{block}: {result.stderr}"


def test_every_block_names_its_language_and_no_python_hides_unmarked() -> None:
    code_like = re.compile(r"^(from [\w.]+ import |import \w|async def |def \w+\(|\w+ = [A-Z]\w*\(|[A-Z]\w*\()", re.M)
    for block in blocks():
        assert block.language, f"{block}: a fenced block without a language (python, sh, toml, text …)"
        if block.language != "python" and code_like.search(block.code):
            assert any(block.page == page and line in block.code for page, line in NOT_RUNNABLE), (
                f"{block}: reads like Python but is marked {block.language}: mark it python and make it run"
            )
    assert blocks("python"), "no python block found: the pattern or the pages moved"


@pytest.fixture(scope="session")
def readme_certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the certificates and keys the README's "Secure deployment" commands make, run as written."""
    folder = tmp_path_factory.mktemp("certificates")
    make = blocks("sh", "README.md", "## Secure deployment")[0].code
    done = subprocess.run(["sh", "-ec", make], cwd=folder, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


@pytest.mark.parametrize("block", blocks("toml"), ids=str)
def test_toml_block_is_a_device_file_modbusd_loads(block: Block, request: pytest.FixtureRequest) -> None:
    # a file with [server.tls] names certificates, which must exist: beside the README's, as its commands make them
    base = request.getfixturevalue("readme_certificates") if "[server.tls]" in block.code else None
    loads(block.code, str(block), base=base)  # a ConfigError fails the test with FILE:LINE: key: what is wrong


def modbusd_command(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modbusd", *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, cwd=cwd, env=ENV, check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("command", "header", "fewest"),
    [
        pytest.param((), "| option | default | what it does |", 20, id="modbusd"),
        pytest.param(("clone",), "| clone option | default | what it does |", 8, id="clone"),
    ],
)
def test_the_options_table_lists_exactly_the_options_of_help(command: tuple[str, ...], header: str,
                                                             fewest: int) -> None:  # fmt: skip
    """Each command's options table in docs/command-line.md (a subcommand's table names it in its header)."""
    result = modbusd_command(*command, "--help")
    assert result.returncode == 0, result.stderr
    heads = [re.split(r"\s{2,}", line.strip())[0] for line in result.stdout.splitlines() if line.startswith("  -")]
    in_help = {option for head in heads for option in re.findall(r"(?:^|, )(--?[\w-]+)", head)} - {"-h", "--help"}
    page = (ROOT / "docs" / "command-line.md").read_text(encoding="utf-8")
    table = page[page.index(header) :].split("\n\n", 1)[0].splitlines()[2:]
    in_table = {option for row in table for option in re.findall(r"(?<![\w-])--?[a-z][\w-]*", row.split(" | ")[0])}
    assert len(in_help) >= fewest, result.stdout  # the pattern still finds the options
    assert in_help - in_table == set(), "options of --help missing from docs/command-line.md's table"
    assert in_table - in_help == set(), "options in docs/command-line.md's table that --help does not know"


def commands(block: Block) -> list[list[str]]:
    """A shell block's commands as argument lists, comments dropped."""
    return [shlex.split(line, comments=True) for line in block.code.splitlines() if line.strip()]


def only(found: list[Block]) -> Block:
    assert len(found) == 1, found
    return found[0]


def mbpoll(args: list[str], replace: Callable[[str], str]) -> str:
    """Run a documented mbpoll command with its ports or devices replaced; its output, after checking it worked."""
    binary = shutil.which("mbpoll")
    assert binary is not None, "mbpoll is not installed (apt-get install mbpoll; .ci/run does)"
    assert args[0] == "mbpoll", args
    result = subprocess.run([binary, *map(replace, args[1:])], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def polled(output: str) -> list[str]:
    return re.findall(r"^\[\d+\]:\s+(\S+)", output, re.MULTILINE)


def test_readme_start_then_read_and_write_with_mbpoll(launch: Callable[..., Modbusd]) -> None:
    (start,) = commands(only(blocks("sh", "README.md", "## Start a server")))
    write, read = commands(only(blocks("sh", "README.md", "## Read and write it")))
    port = str(free_port())
    assert start == ["modbusd", "-p", "5020"]
    launch("-p", port, "--host", "127.0.0.1").running()  # loopback only: a test serves nobody else
    on_port: Callable[[str], str] = lambda arg: port if arg == "5020" else arg  # noqa: E731
    assert "Written 2 references" in mbpoll(write, on_port)
    assert polled(mbpoll(read, on_port)) == ["215", "4", "0", "0"]  # as its comment says


def test_readme_device_file_with_typed_points(launch: Callable[..., Modbusd], tmp_path: Path) -> None:
    section = "## A device file with typed points"
    toml = only(blocks("toml", "README.md", section)).code
    pip, check, serve, read, write, get, set_ = commands(only(blocks("sh", "README.md", section)))
    assert pip[:3] == ["python3", "-m", "pip"]  # installs the http extra, which the test run has
    port, http = str(free_port()), str(free_port())
    assert "port = 5020" in toml and "port = 8020" in toml
    (tmp_path / "plant.toml").write_text(toml.replace("port = 5020", f"port = {port}").replace("8020", http))
    checked = modbusd_command(*check[1:], cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.startswith("plant.toml: OK"), checked.stderr
    assert serve == ["modbusd", "--config", "plant.toml"]
    launch("--config", str(tmp_path / "plant.toml")).running()
    on_port: Callable[[str], str] = lambda arg: port if arg == "5020" else arg  # noqa: E731
    assert polled(mbpoll(read, on_port)) == ["21.5"]
    mbpoll(write, on_port)
    for command, printed in ((get, "19.5\n"), (set_, "22.25\n")):  # as the comments say
        result = modbusd_command(command[1], "--http", http, *command[2:], cwd=tmp_path)
        assert (result.returncode, result.stdout) == (0, printed), result.stderr
    assert polled(mbpoll(read, on_port)) == ["22.25"]


def test_serial_page_pty_trial(launch: Callable[..., Modbusd], pty_pair: Callable[[], PtyPair]) -> None:
    socat, serve, poll = commands(only([b for b in blocks("sh", "docs/transports.md") if "socat" in b.code]))
    assert socat == ["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"]  # what the pty_pair fixture runs
    pair = pty_pair()
    ends = {"/dev/pts/3": pair.server_end, "/dev/pts/4": pair.client_end}
    launch(*[ends.get(arg, arg) for arg in serve[1:]]).running()
    assert polled(mbpoll([*poll, "-1"], lambda arg: ends.get(arg, arg))) == ["0"] * 10  # -1: poll once


def test_readme_development_command_installs_what_ci_installs() -> None:
    readme = blocks("sh", "README.md")[0]  # the set-up commands open the README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

    def installs(text: str) -> tuple[set[str], set[str]]:
        apt = re.search(r"apt-get install -y (?:-qq )?([\w\s-]+?)(?: >|&&|\n)", text)
        pip = re.search(r'pip install [^"]*-e "\.\[([\w,]+)\]"', text)
        assert apt and pip, text
        return set(apt[1].split()), set(pip[1].split(","))

    assert installs(readme.code) == installs(ci)
    assert "docs" in installs(ci)[1]


def test_headings_have_the_same_anchor_on_github_as_on_the_site() -> None:
    for path in PAGES:
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        for title in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
            github = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
            assert github == slugify(title, "-"), f"{path.name}: {title!r}: GitHub {github}, site {slugify(title, '-')}"
