"""Hostile or mistaken device files: each one line naming the file (and the line), exit code 2, no traceback, and
quickly, through `modbusd check FILE` and `modbusd --config FILE` as subprocesses.

The general rules behind the cases: a device file and each CSV point file is read only if it is a regular file
(checked on the opened descriptor, opened without blocking) of at most 16 MiB; arrays and inline tables nest at
most 32 deep; CSV is read strictly; a file with no tables is an error. And, as a property: whatever the text,
`loads` gives a Config or a ConfigError, never another exception.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modbusd.config import ConfigError, load, loads
from modbusd.config.reader import MAX_FILE_BYTES
from tests.test_cli import SRC

RUN_TIMEOUT = 20.0  # seconds a child may take at all (a hang is a failure, not a stuck test run)
QUICK = 10.0  # seconds a refusal may take, interpreter start included, on a loaded machine

Case = Callable[[Path], tuple[str, str]]  # tmp_path → (FILE to give modbusd, the one stderr line expected)

SERVER = '[server]\nhost = "127.0.0.1"\nport = 0\n'


def with_csv(tmp_path: Path, csv_text: str) -> tuple[str, Path]:
    csv_path = tmp_path / "points.csv"
    csv_path.write_text(csv_text)
    toml = tmp_path / "dev.toml"
    toml.write_text(SERVER + '[[device]]\npoints_csv = "points.csv"\n')
    return str(toml), csv_path


def deep_nesting(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "deep.toml"
    path.write_text(SERVER + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    return str(path), f"{path}:4: arrays or inline tables nested more than 32 deep"


def huge_csv_cell(tmp_path: Path) -> tuple[str, str]:
    toml, csv_path = with_csv(tmp_path, "name,address,comment\nflow,30001," + "x" * (129 * 1024) + "\n")
    return toml, f"{csv_path}:2: not valid CSV: a cell longer than 131072 characters"


def unterminated_quote(tmp_path: Path) -> tuple[str, str]:
    toml, csv_path = with_csv(tmp_path, 'name,address,comment\nflow,30001,"main flow\nlevel,30003,tank\n')
    return toml, f"{csv_path}:2: not valid CSV: a quote opened here is never closed"


def dev_zero(_tmp_path: Path) -> tuple[str, str]:
    return "/dev/zero", "/dev/zero: cannot read the file: not a regular file but a character device"


def fifo(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "fifo.toml"
    os.mkfifo(path)  # nobody ever writes to it: an open for reading that waited for a writer would hang
    return str(path), f"{path}: cannot read the file: not a regular file but a FIFO"


def fifo_csv(tmp_path: Path) -> tuple[str, str]:
    toml = tmp_path / "dev.toml"
    toml.write_text(SERVER + '[[device]]\npoints_csv = "points.csv"\n')
    os.mkfifo(tmp_path / "points.csv")
    return str(toml), (f"{toml}:5: device[0].points_csv: cannot read {tmp_path / 'points.csv'}: not a regular "
                       "file but a FIFO")  # fmt: skip


def too_large(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "large.toml"
    with path.open("w") as file:
        file.write(SERVER)
        file.write(("#" * 1023 + "\n") * (MAX_FILE_BYTES // 1024))  # comments only past [server]: valid TOML
    return str(path), f"{path}: cannot read the file: larger than 16 MiB, the most a device or CSV file may hold"


EMPTY = ("{path}: the device file is empty: it has no [server] or [[device]] table (modbusd init writes a "
         "commented example to start from)")  # fmt: skip


def empty(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return str(path), EMPTY.format(path=path)


def only_comments(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "comments.toml"
    path.write_text("# modbusd device file\n\n# [server]\n# port = 502\n")
    return str(path), EMPTY.format(path=path)


CASES = [deep_nesting, huge_csv_cell, unterminated_quote, dev_zero, fifo, fifo_csv, too_large, empty, only_comments]


def run(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "modbusd", *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
        cwd="/", env={**os.environ, "PYTHONPATH": path}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return result, time.monotonic() - began


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
@pytest.mark.parametrize("command", ["check", "--config"])
def test_a_bad_device_file_is_one_line_exit_2_and_quick(tmp_path: Path, case: Case, command: str) -> None:
    file, expected = case(tmp_path)
    result, took = run(command, file)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"modbusd: {expected}"]
    assert took < QUICK


# --------------------------------------------------------------------------------- the rules, as properties

TOML_PIECES = st.sampled_from([
    "[server]\n", "[[device]]\n", "[[device.point]]\n", "[device.size]\n", "port = 5020\n", 'name = "a"\n',
    'address = "1.hr"\n', "value = [1, [2, {a = 3}]]\n", 'points_csv = "p.csv"\n', "x = [", "]", "{", "}", '"',
    "'''", '"""', "#", "\n", "=", "unit_ids = [1, 2]\n", "layout = \"packed\"\n", "sparse = true\n", "[", "[[",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(TOML_PIECES, max_size=40).map("".join)))
def test_any_text_gives_a_config_or_one_config_error(text: str) -> None:
    try:
        loads(text, "dev.toml")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("dev.toml")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(["name", "address", ",", '"', "\n", "30001", "x",
                                                                    "float", "#", " ", "\r"]),
                                                  max_size=40).map("".join)))  # fmt: skip
@example('"name\nname"')  # a header cell holding a line break is quoted in the error, escaped
def test_any_csv_text_gives_a_config_or_one_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "p.csv").write_text(text, encoding="utf-8", newline="")
        (Path(folder) / "dev.toml").write_text('[[device]]\npoints_csv = "p.csv"\n')
        try:
            load(Path(folder) / "dev.toml")
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(folder)


@pytest.mark.parametrize("depth", [31, 32])
def test_nesting_up_to_the_limit_is_read(depth: int) -> None:
    text = '[[device]]\n[[device.point]]\nname = "p"\naddress = "1.hr"\nvalue = ' + "[" * depth + "]" * depth
    with pytest.raises(ConfigError, match=r"dev.toml:5: device\[0\].point\[0\].value: \[") as caught:
        loads(text, "dev.toml")  # past the nesting check: the value itself is wrong, and says so at its line
    assert "nested" not in str(caught.value)
