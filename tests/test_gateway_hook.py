"""The request hook on a gateway: local unit ids only by default, forwarded ones too with hook_forwarded.

A TCP→TCP gateway (a modbusd forwarding unit 7 to a second modbusd on 127.0.0.1), a pymodbus client, and a hook
that records what it sees and answers FC03 itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modbusd import Device, Server
from modbusd.config import loads
from modbusd.server import TcpTarget

if TYPE_CHECKING:
    from pymodbus.client import ModbusTcpClient

    StartServer = Callable[..., Server]
    Connect = Callable[..., ModbusTcpClient]

HOST = "127.0.0.1"
FORWARDED = 7


class Inspector:
    """A hook: records (unit id, function) of each request; answers FC03 for unit 7 (forwarded) and unit 1 with
    1000 + the unit id, and lets everything else through (None)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def __call__(self, name: str, client: str, unit_id: int, pdu: bytes) -> bytes | None:
        self.seen.append((unit_id, pdu[0]))
        if pdu[0] == 3 and pdu[1:3] == b"\x00\x00":
            return bytes([3, 2]) + (1000 + unit_id).to_bytes(2, "big")
        return None


def downstream(start_server: StartServer) -> Server:
    plc = Device()
    plc.holding_registers.set_values(0, [42, 43])
    return start_server(plc)


def test_hook_sees_only_local_unit_ids_by_default(start_server: StartServer, connect_client: Connect) -> None:
    plc = downstream(start_server)
    hook = Inspector()
    gateway = start_server(Device(), hook=hook, forward={FORWARDED: TcpTarget(HOST, plc.port)})
    client = connect_client(gateway)
    assert client.read_holding_registers(0, count=1, device_id=1).registers == [1001]  # local: the hook answers
    assert client.read_holding_registers(0, count=1, device_id=FORWARDED).registers == [42]  # the downstream's
    assert not client.write_register(5, 9, device_id=FORWARDED).isError()
    assert plc.device.holding_registers[5] == 9
    assert hook.seen == [(1, 3)]  # never a forwarded request


def test_hook_forwarded_sees_forwarded_requests_answers_or_lets_them_through(
    start_server: StartServer, connect_client: Connect
) -> None:
    plc = downstream(start_server)
    hook = Inspector()
    gateway = start_server(Device(), hook=hook, hook_forwarded=True, forward={FORWARDED: TcpTarget(HOST, plc.port)})
    client = connect_client(gateway)
    assert client.read_holding_registers(0, count=1, device_id=FORWARDED).registers == [1007]  # the hook answers
    assert client.read_holding_registers(1, count=1, device_id=FORWARDED).registers == [43]  # None: forwarded
    assert not client.write_register(5, 9, device_id=FORWARDED).isError()  # None: forwarded
    assert plc.device.holding_registers[5] == 9
    assert client.read_holding_registers(0, count=1, device_id=1).registers == [1001]
    assert hook.seen == [(FORWARDED, 3), (FORWARDED, 3), (FORWARDED, 6), (1, 3)]


def test_coroutine_hook_forwarded_lets_a_request_through_to_the_downstream(
    start_server: StartServer, connect_client: Connect
) -> None:
    plc = downstream(start_server)
    seen: list[int] = []

    async def hook(name: str, client: str, unit_id: int, pdu: bytes) -> bytes | None:
        seen.append(unit_id)
        return None

    gateway = start_server(Device(), hook=hook, hook_forwarded=True, forward={FORWARDED: TcpTarget(HOST, plc.port)})
    client = connect_client(gateway)
    assert client.read_holding_registers(0, count=2, device_id=FORWARDED).registers == [42, 43]
    assert seen == [FORWARDED]


HOOK_MODULE = """
def on_request(name, client, unit_id, pdu):
    return bytes([3, 2, 0, unit_id]) if pdu[0] == 3 else None
"""


@pytest.fixture
def hooks_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of hooks in a temporary folder on sys.path, as a device file names it."""
    (tmp_path / "gateway_hooks.py").write_text(HOOK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "gateway_hooks:on_request"


@pytest.mark.parametrize(("key", "expected"), [("", 42), ("hook_forwarded = false\n", 42),
                                               ("hook_forwarded = true\n", FORWARDED)])  # fmt: skip
def test_device_file_hook_forwarded_key(
    start_server: StartServer, connect_client: Connect, hooks_module: str, key: str, expected: int
) -> None:
    plc = downstream(start_server)
    config = loads(f'[server]\nhost = "{HOST}"\nport = 0\nhook = "{hooks_module}"\n{key}', "gw.toml")
    gateway = Server.from_config(config, forward={FORWARDED: TcpTarget(HOST, plc.port)})
    gateway.start_thread()
    try:
        client = connect_client(gateway)
        assert client.read_holding_registers(0, count=1, device_id=FORWARDED).registers == [expected]
        assert client.read_holding_registers(0, count=1, device_id=2).registers == [2]
    finally:
        gateway.stop_thread()
