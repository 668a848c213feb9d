"""The documentation's Python examples print what their comments promise, wherever they live.

tests/test_docs.py runs every python block of README.md and docs/*.md; here each example that promises output is
found by its page and a line of its own, and what it prints is compared with the promise (the run is shared).
"""

import pytest

from tests.test_docs import blocks, run_python

HOOKS = ["[42]", "plant.1.100.hr 21.5 0.0", "plant.1.0.co True False", "plant.1.1.co False False"]
EVENTS_LOG = ["modbusd.1.5.hr.1 True", "modbusd.1.5.hr.10 True", "6 5 258 ok", "6 20 1 exception"]


@pytest.mark.parametrize(
    ("page", "marker", "expected"),
    [("README.md", "client.write_registers(0, [215, 4])", ["[215, 4, 0, 0]"]),
     ("docs/data-model.md", "write_value(", ["[0, 16812]", "21.5"]),
     ("docs/python-api.md", "await server.start()", ["[215]", "1234"]),
     ("docs/python-api.md", "server.start_thread()", ["[1, 2, 3]", "[True, False, True]"]),
     ("docs/hooks-and-events.md", "hook=hook", [*HOOKS, ""]),
     ("docs/hooks-and-events.md", "events_log=log_file", [*EVENTS_LOG, ""]),
     ("docs/gateway.md", "TcpTarget(", ["[42]", ""])],
    ids=["quick start", "values", "asyncio", "thread", "hooks", "events log", "gateway"],
)  # fmt: skip
def test_example_prints_what_it_promises(page: str, marker: str, expected: list[str]) -> None:
    (block,) = [block for block in blocks("python", page) if marker in block.code]
    result = run_python(block.code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[: len(expected)] == expected


def test_the_hooks_examples_print_what_the_page_shows() -> None:
    page = "docs/hooks-and-events.md"
    shown = [block.code.splitlines() for block in blocks("text", page)][:2]
    assert shown == [HOOKS, EVENTS_LOG]
