"""The README's Python examples run as written and print what their comments promise."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_a_values_an_asyncio_and_a_thread_example() -> None:
    assert len(EXAMPLES) == 3
    assert "write_value" in EXAMPLES[0]
    assert "await server.start()" in EXAMPLES[1]
    assert "server.start_thread()" in EXAMPLES[2]


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, ["[0, 16812]", "21.5"]), (1, ["[215]", "1234"]), (2, ["[1, 2, 3]", "[True, False, True]"])],
    ids=["values", "asyncio", "thread"],
)
def test_readme_example_runs_and_prints_what_it_promises(index: int, expected: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXAMPLES[index]], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[: len(expected)] == expected
