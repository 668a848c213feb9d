"""The request log names the endpoint a request came to (docs/endpoints.md, docs/control-api.md): a record of a
request to one of the server's `[[endpoint]]`s has ``"endpoint": NAME``, one to the default endpoint has no such key,
and `modbusd log` shows ``endpoint=NAME`` after the transport. In-process over every kind of endpoint listener
(Modbus/TCP, UDP, RTU over TCP: the serial bus's answers), then through the real command line with two endpoints.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient, ModbusUdpClient

from modbusd import Device, Server
from modbusd.endpoints import Endpoint
from tests.conftest import HOST, TIMEOUT, free_port
from tests.test_cli import Modbusd

pytest.importorskip("aiohttp")

WAIT = 10.0  # seconds a request may take to reach `modbusd log` on a loaded machine


def in_loop(server: Server, call: Callable[[], Any]) -> Any:
    async def run() -> Any:
        return call()

    return asyncio.run_coroutine_threadsafe(run(), server._loop).result(TIMEOUT)


def test_records_name_the_endpoint_and_the_default_endpoints_have_none(start_server: Callable[..., Server]) -> None:
    server = start_server(
        Device(),
        endpoints=[
            Endpoint("meter", {1: Device()}, host=HOST, port=0),
            Endpoint("plc", Device(), host=HOST, port=0, transport="udp"),
            Endpoint("line", Device(), host=HOST, port=0, transport="rtu-over-tcp"),
        ],
    )
    follower = in_loop(server, lambda: server.requests.follow(lambda: None))
    tcp = ModbusTcpClient(HOST, port=server.port, timeout=TIMEOUT, retries=0)
    meter = ModbusTcpClient(HOST, port=server.endpoints["meter"].port, timeout=TIMEOUT, retries=0)
    plc = ModbusUdpClient(HOST, port=server.endpoints["plc"].port, timeout=TIMEOUT, retries=0)
    line = ModbusTcpClient(HOST, port=server.endpoints["line"].port, framer=FramerType.RTU, timeout=TIMEOUT,
                           retries=0)  # fmt: skip
    try:
        assert tcp.connect() and meter.connect() and plc.connect() and line.connect()
        assert not tcp.read_holding_registers(1, count=1).isError()
        assert not meter.write_register(2, 7, device_id=1).isError()
        assert meter.read_holding_registers(3, count=1, device_id=5).exception_code == 0x0B  # no unit 5 there
        assert not plc.read_coils(4, count=1).isError()
        assert not line.write_coil(5, True, device_id=1).isError()
    finally:
        for client in (tcp, meter, plc, line):
            client.close()
    records, dropped = in_loop(server, follower.take)
    in_loop(server, lambda: server.requests.unfollow(follower))
    assert dropped == 0
    assert [(r.get("endpoint", "-"), r["transport"], r["unit_id"], r["address"], r["outcome"]) for r in records] == [
        ("-", "tcp", 1, 1, "ok"),
        ("meter", "tcp", 1, 2, "ok"),
        ("meter", "tcp", 5, 3, "exception"),
        ("plc", "udp", 1, 4, "ok"),
        ("line", "rtu-over-tcp", 1, 5, "ok"),
    ]
    assert "endpoint" not in records[0]  # absent, not null: a server without endpoints logs as it always did
    assert server.requests.records() == records  # the ring (GET /log) too


DEVICE_FILE = """
[server]
host = "127.0.0.1"
port = {port}

[http]
port = {http}

[[device]]

[[endpoint]]
name = "meter"
host = "127.0.0.1"
port = {meter}
[[endpoint.device]]

[[endpoint]]
name = "pump"
host = "127.0.0.1"
port = {pump}
[[endpoint.device]]
"""


def test_modbusd_log_shows_the_endpoint_of_each_request(tmp_path: Path, launch: Callable[..., Modbusd]) -> None:
    port, http, meter, pump = free_port(), free_port(), free_port(), free_port()
    (tmp_path / "plant.toml").write_text(DEVICE_FILE.format(port=port, http=http, meter=meter, pump=pump))
    launch("--config", str(tmp_path / "plant.toml")).running()
    follow = launch("log", "--follow", "--http", str(http))
    clients = {name: ModbusTcpClient(HOST, port=p, timeout=TIMEOUT, retries=0)
               for name, p in (("default", port), ("meter", meter), ("pump", pump))}  # fmt: skip
    try:
        assert all(client.connect() for client in clients.values())
        deadline = time.monotonic() + WAIT  # the follower is registered once the stream's headers came: poll
        while not follow.stdout and time.monotonic() < deadline:
            assert not clients["default"].read_holding_registers(10, count=1).isError()
            time.sleep(0.1)
        assert not clients["meter"].read_holding_registers(20, count=1).isError()
        assert not clients["pump"].write_register(30, 5).isError()
        assert not clients["default"].read_holding_registers(40, count=1).isError()
        meter_line = follow.wait_for("addr=20", timeout=WAIT)
        pump_line = follow.wait_for("addr=30", timeout=WAIT)
        default_line = follow.wait_for("addr=40", timeout=WAIT)
    finally:
        for client in clients.values():
            client.close()
    assert follow.stop(signal.SIGINT) == 0
    assert " tcp endpoint=meter unit=1 fc=3 addr=20 qty=1 -> ok (" in meter_line, meter_line
    assert " tcp endpoint=pump unit=1 fc=6 addr=30 qty=1 values=[5] -> ok (" in pump_line, pump_line
    assert " tcp unit=1 fc=3 addr=40 qty=1 -> ok (" in default_line and "endpoint" not in default_line, default_line
    assert not any("Traceback" in line for line in follow.stderr), follow.stderr
