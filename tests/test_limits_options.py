"""The connection limits as options: the device file's [server] max_connections_per_client, the command line's
--max-connections-per-client, --frame-timeout and --write-timeout, and RTU over TCP's rate-limited warnings."""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modbusd import Server
from modbusd.config import ConfigError, load
from tests.conftest import HOST, RawClient, free_port

READ_RTU = bytes.fromhex("01 03 0000 0001 840A")  # unit 1, FC03, 1 register at 0, with its CRC
ANSWER_RTU = bytes.fromhex("01 03 02 0000 B844")


def test_device_file_sets_the_per_client_limit(tmp_path: Path) -> None:
    (tmp_path / "d.toml").write_text("[server]\nport = 5020\nmax_connections_per_client = 4\n")
    server = Server.from_config(load(tmp_path / "d.toml"))
    assert server.max_connections_per_client == 4
    (tmp_path / "bad.toml").write_text("[server]\nmax_connections_per_client = 0\n")
    with pytest.raises(ConfigError, match=r"bad.toml:2: server.max_connections_per_client: .*outside 1"):
        load(tmp_path / "bad.toml")


def test_command_line_limits_reach_the_server(launch: Callable[..., Any]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "--max-connections-per-client", "1", "--frame-timeout", "0.5",
                   "--write-timeout", "5")  # fmt: skip
    child.running()
    first = RawClient(port)
    try:
        assert first.request("03 0000 0001") == bytes.fromhex("03 02 0000")
        second = RawClient(port)
        assert second.closed_by_peer()  # one connection per client address
        second.close()
        first.send(bytes.fromhex("0001 0000 0006 01"))  # a request begun and never finished
        started = time.monotonic()
        assert first.closed_by_peer(timeout=5)
        assert time.monotonic() - started > 0.4
    finally:
        first.close()
    assert child.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("option", ["--frame-timeout", "--write-timeout", "--max-connections-per-client"])
def test_a_limit_that_is_not_positive_is_one_line_and_exit_2(launch: Callable[..., Any], option: str) -> None:
    child = launch(option, "0")
    assert child.finish() == 2
    assert len(child.stderr) == 1 and "must be greater than 0" in child.stderr[0], child.stderr


def test_rtu_over_tcp_clients_sending_bad_frames_make_one_warning(
    start_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modbusd")
    server = start_server(port=None, rtu_over_tcp=0)
    assert server.rtu_over_tcp_port is not None
    for _ in range(20):
        with socket.create_connection((HOST, server.rtu_over_tcp_port), timeout=3) as sock:
            sock.sendall(bytes.fromhex("01 03 0000 0001 0000") + READ_RTU)  # a bad CRC, then a good request
            assert sock.recv(64) == ANSWER_RTU
    discarded = [r.getMessage() for r in caplog.records if "frame discarded" in r.getMessage()]
    assert len(discarded) == 1, discarded


def test_two_servers_in_one_process_each_warn_once_about_their_own_clients_bad_frames(
    start_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    """The limiter of repeated warnings is each server's: one server having warned about a client does not silence
    another server (a test before it, or a second server an embedding program runs) about the same client."""
    caplog.set_level(logging.WARNING, logger="modbusd")
    servers = [start_server(port=None, rtu_over_tcp=0) for _ in range(2)]
    for server in servers:
        assert server.rtu_over_tcp_port is not None
        for _ in range(3):
            with socket.create_connection((HOST, server.rtu_over_tcp_port), timeout=3) as sock:
                sock.sendall(bytes.fromhex("01 03 0000 0001 0000") + READ_RTU)  # a bad CRC, then a good request
                assert sock.recv(64) == ANSWER_RTU
    discarded = [r.getMessage() for r in caplog.records if "frame discarded" in r.getMessage()]
    assert len(discarded) == 2, discarded  # one per server
    assert servers[0].peer_warnings is not servers[1].peer_warnings
