"""The events log on a disk that fills up and frees again: one report, retries with back-off, one line on return."""

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Server
from tests.conftest import wait_until

StartServer = Callable[..., Server]
Connect = Callable[..., ModbusTcpClient]

WRITES = 1000


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and "events log" in r.getMessage()]


def test_events_log_on_a_full_disk_reports_once_and_says_once_when_it_writes_again(
    start_server: StartServer, connect_client: Connect, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    path.symlink_to("/dev/full")  # opens, and every write fails: a full disk
    with caplog.at_level(logging.INFO, logger="modbusd.server"):
        server = start_server(events_log=path)
        assert server.events_log is not None
        server.events_log.retry = (0.05, 0.4)  # the defaults' shape (doubling, capped), in test time
        client = connect_client(server)
        for value in range(WRITES):
            assert not client.write_register(0, value).isError()  # the Modbus service goes on
        counters = server.events_log.counters
        assert wait_until(lambda: counters()["lost"] == WRITES, timeout=10), counters()
        assert counters()["written"] == 0 and str(counters()["error"]).startswith("cannot write")
        full = log_lines(caplog)
        assert 1 <= len(full) <= 3, full  # not one line per batch, as before the back-off
        assert "No space left on device" in full[0]

        real = tmp_path / "events-real.jsonl"
        swap = tmp_path / "swap"
        swap.symlink_to(real)
        os.replace(swap, path)  # the disk has room again
        client.write_register(0, 4242)
        assert wait_until(lambda: real.exists() and "4242" in real.read_text(), timeout=10)
        client.write_register(1, 7)
        assert wait_until(lambda: '"address":1' in real.read_text(), timeout=10)
    again = [line for line in log_lines(caplog)[len(full) :] if "writable again" in line]
    assert len(again) == 1 and f"{WRITES} records lost" in again[0]
    records = [json.loads(line) for line in real.read_text().splitlines()]
    assert [(r["address"], r["values"]) for r in records] == [(0, 4242), (1, 7)]
    assert server.counters()["events"]["log"]["error"] is None  # type: ignore[index]
