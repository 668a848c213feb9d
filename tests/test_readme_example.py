"""The README's Python examples run as written and print what their comments promise."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_a_values_an_asyncio_a_thread_and_two_hooks_examples() -> None:
    assert len(EXAMPLES) == 5
    assert "write_value" in EXAMPLES[0]
    assert "await server.start()" in EXAMPLES[1]
    assert "server.start_thread()" in EXAMPLES[2]
    assert "hook=hook" in EXAMPLES[3] and "server.subscribe(" in EXAMPLES[3]
    assert "server.events()" in EXAMPLES[4] and "events_log=log_file" in EXAMPLES[4]


HOOKS = ["[42]", "plant.1.100.hr 21.5 0.0", "plant.1.0.co True False", "plant.1.1.co False False"]
EVENTS_LOG = ["modbusd.1.5.hr.1 True", "modbusd.1.5.hr.10 True", "6 5 258 ok", "6 20 1 exception"]


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, ["[0, 16812]", "21.5"]), (1, ["[215]", "1234"]), (2, ["[1, 2, 3]", "[True, False, True]"]),
     (3, [*HOOKS, ""]), (4, [*EVENTS_LOG, ""])],
    ids=["values", "asyncio", "thread", "hooks", "events log"],
)  # fmt: skip
def test_readme_example_runs_and_prints_what_it_promises(index: int, expected: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXAMPLES[index]], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[: len(expected)] == expected
