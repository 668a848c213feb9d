"""--state: a write the state file cannot store is undone, and its subscribers are told the value went back.

A real server in-process (its loop in a thread of its own), written over 127.0.0.1 with pymodbus and raw frames;
the state file made read-only with SQLite's `query_only` (SQLITE_READONLY at the next commit, as a file gone
read-only). Each subscriber gets the client's write event, then one event carrying the value put back; the MQTT
bridge (a real mosquitto) publishes that value on the point's topic.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Device, Server
from modbusd.endpoints import Endpoint
from modbusd.hooks import WriteEvent
from modbusd.mqtt import MqttBridge
from modbusd.protocol.errors import ServerDeviceFailure
from tests.conftest import Mosquitto, RawClient, free_port, mbap_frame, wait_until
from tests.test_mqtt import HOST, Watcher, modbus, until

StartServer = Callable[..., Server]
Connect = Callable[..., ModbusTcpClient]


def read_only(server: Server, on: bool = True) -> None:
    """The state file's next commits fail (SQLITE_READONLY), or work again."""
    assert server.state is not None
    server.state.store.connection.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


def listen(server: Server) -> list[WriteEvent]:
    events: list[WriteEvent] = []
    server.add_listener(events.append, name="test")
    return events


def seen(events: list[WriteEvent]) -> list[tuple[str, object, object, str, str]]:
    return [(e.name, e.value, e.previous, e.client.partition(":")[0], e.by) for e in events]


def test_a_refused_write_is_followed_by_an_event_with_the_value_put_back(
    start_server: StartServer, connect_client: Connect, tmp_path: Path
) -> None:
    log_path = tmp_path / "events.jsonl"
    server = start_server(Device(), name="plant", state=tmp_path / "s.state", events_log=log_path)
    server.subscribe("10.hr")
    server.subscribe("20.hr", "float")
    server.subscribe("30.hr")  # never written: never told
    events = listen(server)
    client = connect_client(server)
    assert not client.write_register(10, 5, device_id=1).isError()
    assert wait_until(lambda: len(events) == 1)
    read_only(server)
    refused = client.write_register(10, 7, device_id=1)
    assert refused.isError() and refused.exception_code == 4
    refused = client.write_registers(20, [0x41AC, 0x0000], device_id=1)  # 21.5
    assert refused.isError() and refused.exception_code == 4
    assert wait_until(lambda: len(events) == 5)
    assert seen(events) == [
        ("plant.1.10.hr", 5, 0, "127.0.0.1", "tables"),
        ("plant.1.10.hr", 7, 5, "127.0.0.1", "tables"),  # the write event, before the commit
        ("plant.1.10.hr", 5, 7, "state", "state"),  # the value put back; the undone one as its previous
        ("plant.1.20.hr", 21.5, 0.0, "127.0.0.1", "tables"),
        ("plant.1.20.hr", 0.0, 21.5, "state", "state"),
    ]
    undo = events[2]
    assert (undo.unit_id, undo.function, undo.address) == (1, 0, 10)  # named by the unit id the client wrote to
    assert undo.request_id not in (events[1].request_id, events[4].request_id)
    assert server.read("10.hr") == 5 and server.read("20.hr", "float") == 0.0
    read_only(server, False)
    assert not client.write_register(10, 8, device_id=1).isError()  # stored: its write event, and nothing more
    assert wait_until(lambda: len(events) == 6)
    assert not wait_until(lambda: len(events) > 6, timeout=0.3)
    assert seen(events)[5] == ("plant.1.10.hr", 8, 5, "127.0.0.1", "tables")

    def logged() -> list[dict[str, object]]:
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        return [r for r in map(json.loads, lines) if r["kind"] == "event" and r.get("by") == "state"]

    assert wait_until(lambda: len(logged()) == 2)  # the events log has them, marked as its refusals are
    assert [(r["name"], r["value"], r["previous"], r["client"]) for r in logged()] == [
        ("plant.1.10.hr", 5, 7, "state"), ("plant.1.20.hr", 0.0, 21.5, "state")]  # fmt: skip


def test_only_the_points_that_went_back_are_told_once_with_the_value_now_in_the_table(
    start_server: StartServer, open_raw: Callable[..., RawClient], tmp_path: Path
) -> None:
    """Writes of one turn are one commit: a register written twice gets one event, its value before both; a point
    written with the value it held, and the coils and bits of a range that did not change, get none."""
    server = start_server(Device(), name="plant", state=tmp_path / "s.state")
    server.subscribe("10.hr")
    server.subscribe("11.hr")
    server.subscribe("0.co", count=4)
    server.subscribe("12.hr", "bits")
    server.write("10.hr", 5)
    server.write("12.hr", 0x0001)  # HSYCO's bit 9 (the LSB of the second byte)
    server.write("1.co", True)
    events = listen(server)
    read_only(server)
    raw = open_raw(server)
    requests = ["06 000A 0007", "06 000A 0009", "06 000B 0000", "0F 0000 0004 01 0B", "06 000C 0003"]
    raw.send(b"".join(mbap_frame(i, 1, bytes.fromhex(pdu)) for i, pdu in enumerate(requests, 1)))  # one turn
    assert [raw.read_adu()[3].hex() for _ in requests] == ["8604", "8604", "8604", "8f04", "8604"]
    undone = lambda: [e for e in events if e.by == "state"]  # noqa: E731
    assert wait_until(lambda: len(undone()) == 4)
    assert not wait_until(lambda: len(undone()) > 4, timeout=0.3)
    assert [(e.name, e.value, e.previous) for e in undone()] == [
        ("plant.1.0.co", False, True),  # coil 1 held True already, coil 2 stayed False: not told
        ("plant.1.3.co", False, True),
        ("plant.1.10.hr", 5, 9),  # written twice: one event, the value before both
        ("plant.1.12.hr.10", False, True),  # bit 9 was set already: only bit 10 went back
    ]  # 11.hr was written with the 0 it held: it did not go back
    assert [e.by for e in events].count("tables") == 2 + 1 + 4 + 16  # the writes' own events came first
    assert events.index(undone()[0]) == len(events) - 4
    assert server.read("10.hr") == 5 and server.read("12.hr") == 1


def test_the_devices_of_an_endpoint_are_told_by_their_own_names(
    start_server: StartServer, open_raw: Callable[..., RawClient], tmp_path: Path
) -> None:
    """Each endpoint's devices are in the state file under its name: a device of one unit id is that unit in its
    events, even when the subscription names no unit id; the default endpoint's devices are not disturbed."""
    plc = Endpoint("plc", {3: Device()}, host="127.0.0.1", port=0)
    meter = Endpoint("meter7", Device(), host="127.0.0.1", port=0)
    server = start_server(Device(), name="plant", state=tmp_path / "s.state", endpoints=[plc, meter])
    server.subscribe("plc/10.hr")
    server.subscribe("meter7/10.hr")
    server.subscribe("10.hr")
    events = listen(server)
    read_only(server)
    for name, unit in (("plc", 3), ("meter7", 1)):
        port = server.endpoints[name].port
        assert port is not None
        assert open_raw(port).request("06 000A 0004", unit_id=unit) == bytes.fromhex("86 04")
    assert wait_until(lambda: len(events) == 4)
    assert [(e.name, e.value, e.previous, e.endpoint, e.by) for e in events] == [
        ("plant.plc/3.10.hr", 4, 0, "plc", "tables"),
        ("plant.plc/3.10.hr", 0, 4, "plc", "state"),
        ("plant.meter7/1.10.hr", 4, 0, "meter7", "tables"),
        ("plant.meter7/1.10.hr", 0, 4, "meter7", "state"),
    ]
    assert not wait_until(lambda: len(events) > 4, timeout=0.3)  # the default endpoint's 10.hr was not written


def test_an_owners_write_undone_from_its_own_thread_is_told_in_the_servers_loop(
    start_server: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Server.write` commits from the owner's thread: the rollback runs there, its events are delivered by the
    server's loop. The owner's write made no event of its own (only clients' writes do); its undoing does, for the
    subscriber that may have read the value meanwhile."""
    server = start_server(Device(), name="plant", state=tmp_path / "s.state")
    server.subscribe("10.hr")
    delivered: list[tuple[WriteEvent, int]] = []
    server.add_listener(lambda event: delivered.append((event, threading.get_ident())))
    assert server.state is not None
    monkeypatch.setattr(server.state.journal, "wake", lambda: None)  # the loop does not commit: the owner does
    assert server._loop is not None
    server._loop.set_debug(True)  # asyncio then refuses what only the loop's thread may do (`call_soon`)
    read_only(server)
    with pytest.raises(ServerDeviceFailure):
        server.write("10.hr", 9)
    assert wait_until(lambda: len(delivered) == 1)  # the loop was woken for it: nothing else happens meanwhile
    event, thread = delivered[0]
    assert (event.name, event.value, event.previous, event.by) == ("plant.0.10.hr", 0, 9, "state")
    assert thread != threading.get_ident()


def test_the_mqtt_bridge_publishes_the_value_put_back(broker: Mosquitto, tmp_path: Path) -> None:
    """The retained message of a point ends with the value the table holds, not with the write that was refused."""

    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port(), name="plant", state=tmp_path / "s.state")
        await server.start()
        bridge = await MqttBridge.start(server, HOST, broker.port, points=["10.hr"], min_backoff=0.1)
        client = await modbus(server.port)
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            async with Watcher(broker.port, "modbusd/#") as watcher:
                assert not (await client.write_register(10, 5, device_id=1)).isError()
                read_only(server)
                refused = await client.write_register(10, 7, device_id=1)
                assert refused.isError() and refused.exception_code == 4
                await until(lambda: len(watcher.written("modbusd/all/hr/10")) == 3, what="the value put back")
                published = [(m["value"], m["previous"], m["client"].partition(":")[0], m["function"])
                             for m in watcher.written("modbusd/all/hr/10")]  # fmt: skip
                assert published == [(5, 0, "127.0.0.1", 6), (7, 5, "127.0.0.1", 6), (5, 7, "state", 0)]
                read_only(server, False)
                assert not (await client.write_register(10, 8, device_id=1)).isError()  # stored: one message
                await until(lambda: len(watcher.written("modbusd/all/hr/10")) == 4, what="the stored write")
                await asyncio.sleep(0.3)
                assert [m["value"] for m in watcher.written("modbusd/all/hr/10")] == [5, 7, 5, 8]
        finally:
            client.close()
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 40))
