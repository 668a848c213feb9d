"""`modbusd log --follow --per-second N`: the control API's cap on the request log, from the command line.

A real server (conftest's `start_server`, with its control API) under a load of pipelined requests, followed by a
`python -m modbusd log` child: it shows about N requests a second and says how many it did not show, and what it
showed and what it says it did not add up to every request sent. Bad values are one line and exit code 2.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable

import pytest

from modbusd import Server
from modbusd.cli.options import MAX_PER_SECOND
from tests.conftest import RawClient, free_port, mbap_frame, wait_until
from tests.test_cli import Modbusd
from tests.test_cli_config import modbusd_cli
from tests.test_request_log import start_api

pytest.importorskip("aiohttp")
from modbusd.web import HttpApi  # after the skip: aiohttp is an optional extra
from modbusd.web.app import MAX_PER_SECOND as API_MAX_PER_SECOND

PER_SECOND = 20  # two records in each tenth of a second (`modbusd.traffic.WINDOW`)
BATCHES, BATCH = 20, 100  # pipelined FC03 requests: 100 in one segment, a segment every 50 ms
WAIT = 10.0  # seconds the last "not shown" line may take (the API says so within a second; the machine is shared)
NOT_SHOWN = re.compile(r"^… (\d+) requests not shown: more than --per-second allows$")


def stop_api(server: Server, api: HttpApi) -> None:
    asyncio.run_coroutine_threadsafe(api.stop(), server._loop).result(WAIT)


def accounted(follow: Modbusd) -> tuple[int, int]:
    """(requests shown, requests said not shown) in what `modbusd log` printed so far."""
    lines = list(follow.stdout)
    return sum(" fc=3 " in line for line in lines), sum(int(m[1]) for line in lines if (m := NOT_SHOWN.match(line)))


def test_log_follow_per_second_shows_about_that_many_and_counts_the_rest(
    start_server: Callable[..., Server], launch: Callable[..., Modbusd]
) -> None:
    server = start_server()
    api = start_api(server)
    try:
        follow = launch("log", "--follow", "--http", str(api.port), "--per-second", str(PER_SECOND))
        assert wait_until(lambda: server.requests.followers, timeout=WAIT), follow.stderr  # its stream has begun
        raw = RawClient(server.port)
        began = time.monotonic()
        try:
            for batch in range(BATCHES):
                first = batch * BATCH
                raw.send(b"".join(mbap_frame(t, 1, f"03 {t:04X} 0001") for t in range(first, first + BATCH)))
                raw.recv_exact(BATCH * 11)
                time.sleep(0.05)
        finally:
            raw.sock.close()
        load = time.monotonic() - began
        sent = BATCHES * BATCH
        assert wait_until(lambda: sum(accounted(follow)) >= sent, timeout=WAIT), (follow.stdout[-5:], follow.stderr)
        shown, not_shown = accounted(follow)
        assert follow.stop(signal.SIGINT) == 0
    finally:
        stop_api(server, api)
    assert shown + not_shown == sent, (shown, not_shown)  # every request: shown, or counted as not shown
    assert 1 <= shown <= PER_SECOND * (load + 0.2) + 2, (shown, load)  # the cap, counted per tenth of a second
    records = [line for line in follow.stdout if " fc=3 " in line]
    assert all(" tcp unit=1 fc=3 addr=" in line and line.endswith(" ms)") for line in records), records[:3]
    assert not any("Traceback" in line for line in follow.stderr), follow.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--follow", "--per-second", "0"], "number of records a second 0 outside 1..1000000"),
        (["--follow", "--per-second", "1000001"], "number of records a second 1000001 outside 1..1000000"),
        (["--follow", "--per-second", "lots"], "'lots' is not a number of records a second such as 100"),
        (["--per-second", "100"], "--per-second caps what --follow shows: add --follow"),
    ],
)
def test_log_per_second_that_cannot_be_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = modbusd_cli("log", "--http", str(free_port()), *args)  # no server: the value is refused before asking
    assert done.returncode == 2 and done.stdout == "", done
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr


def test_log_per_second_takes_the_control_apis_range() -> None:
    assert MAX_PER_SECOND == API_MAX_PER_SECOND
