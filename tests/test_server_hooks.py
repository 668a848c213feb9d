"""Request hooks, write subscriptions and the events log over real sockets: pymodbus clients and raw frames.

Every server runs in a background thread (the `start_server` fixture); events are collected by listeners and
waited for with bounded polls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import serial
from pymodbus.client import ModbusTcpClient, ModbusUdpClient

from modbusd import Device, IllegalDataAddress, Server
from modbusd.config import ConfigError, load, summary
from modbusd.hooks import WriteEvent
from modbusd.model.values import ValueType, encode
from modbusd.protocol.rtu import with_crc
from modbusd.server import SerialLine
from tests.test_cli import Modbusd, free_port

if TYPE_CHECKING:
    from tests.conftest import PtyPair, RawClient

    StartServer = Callable[..., Server]
    Connect = Callable[..., ModbusTcpClient]
    OpenRaw = Callable[..., RawClient]

TIMEOUT = 3.0
READ = "03 0000 0001"


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Collector:
    """A listener that keeps every event (called from the server's loop thread)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.before = self.published()  # events published before this listener was there
        self.events: list[WriteEvent] = []

    def __call__(self, event: WriteEvent) -> None:
        self.events.append(event)

    def published(self) -> int:
        return self.server.counters()["events"]["published"]  # type: ignore[index,no-any-return]  # an int

    def wait(self, count: int) -> list[WriteEvent]:
        """The events so far, once every event the server has published has arrived; there must be `count`.

        Call it after the writes were answered: the server publishes a write's events before it answers, so
        the server's own count, not a sleep, says when nothing more is coming."""
        published = self.published() - self.before
        wait_for(lambda: len(self.events) >= published)
        assert published == count == len(self.events), (published, self.events)
        return list(self.events)


def listen(server: Server, **options: Any) -> Collector:
    collector = Collector(server)
    server.add_listener(collector, **options)
    return collector


# ------------------------------------------------------------------------------------------------- hooks


def test_hook_overrides_the_response_and_none_lets_the_tables_answer(
    start_server: StartServer, connect_client: Connect
) -> None:
    seen: list[tuple[str, str, int, bytes]] = []

    def hook(name: str, client: str, unit_id: int, pdu: bytes) -> bytes | None:
        seen.append((name, client, unit_id, pdu))
        if pdu[0] == 3 and unit_id == 7:
            return bytes.fromhex("03 04 00 2A 00 2B")
        return None

    device = Device()
    device.holding_registers[0] = 5
    server = start_server(device, hook=hook, name="plant")
    client = connect_client(server)
    assert client.read_holding_registers(0, count=2, device_id=7).registers == [42, 43]
    assert client.read_holding_registers(0, count=1, device_id=1).registers == [5]
    name, peer, unit_id, pdu = seen[0]
    assert (name, unit_id, pdu) == ("plant", 7, bytes.fromhex("03 0000 0002"))
    assert peer.startswith("127.0.0.1:")


def raising(*_: object) -> bytes:
    raise RuntimeError("hook bug")


@pytest.mark.parametrize(
    ("hook", "reason"),
    [
        pytest.param(raising, "raised RuntimeError: hook bug", id="raises"),
        pytest.param(lambda *_: "03 02 0001", "returned str", id="str"),
        pytest.param(lambda *_: b"", "empty", id="empty"),
        pytest.param(lambda *_: b"\x03\xfc" + bytes(252), "at most 253", id="254 bytes"),
        pytest.param(lambda *_: b"\x04\x02\x00\x01", "function code 0x04", id="other function"),
    ],
)
def test_hook_that_fails_gets_exception_04_one_log_line_and_the_server_goes_on(
    start_server: StartServer, open_raw: OpenRaw, caplog: pytest.LogCaptureFixture, hook: Any, reason: str
) -> None:
    server = start_server(hook=hook)
    raw = open_raw(server)
    with caplog.at_level(logging.ERROR, logger="modbusd.server"):
        assert raw.request(READ) == b"\x83\x04"
        assert raw.request(READ, transaction_id=2) == b"\x83\x04"
    lines = [r.getMessage() for r in caplog.records if r.name == "modbusd.server"]
    assert len(lines) == 2 and reason in lines[0] and "exception 04" in lines[0]


def test_hook_raising_a_modbus_error_answers_with_its_code(start_server: StartServer, open_raw: OpenRaw) -> None:
    def hook(*_: object) -> bytes:
        raise IllegalDataAddress("not here")

    assert open_raw(start_server(hook=hook)).request(READ) == b"\x83\x02"


def test_coroutine_hook_answers_overrides_and_passes_through(start_server: StartServer, open_raw: OpenRaw) -> None:
    async def hook(_name: str, _client: str, unit_id: int, pdu: bytes) -> bytes | None:
        await asyncio.sleep(0.01)
        return bytes.fromhex("03 02 0063") if unit_id == 9 else None

    device = Device()
    device.holding_registers[0] = 17
    raw = open_raw(start_server(device, hook=hook))
    assert raw.request(READ, unit_id=9) == bytes.fromhex("03 02 0063")
    assert raw.request(READ, unit_id=1) == bytes.fromhex("03 02 0011")
    assert raw.request("06 0001 0005", unit_id=1) == bytes.fromhex("06 0001 0005")  # written after the hook
    assert device.holding_registers[1] == 5


def test_coroutine_hook_past_its_time_out_gets_exception_04(
    start_server: StartServer, open_raw: OpenRaw, caplog: pytest.LogCaptureFixture
) -> None:
    async def hook(*_: object) -> bytes:
        await asyncio.sleep(60)  # far beyond the time-out and beyond the raw client's own 3 s
        return b"\x03\x00"

    raw = open_raw(start_server(hook=hook, hook_timeout=0.2))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="modbusd.server"):
        assert raw.request(READ) == b"\x83\x04"
    assert 0.2 <= time.monotonic() - started < TIMEOUT  # after the time-out, long before the hook would answer
    assert any("took longer than 0.2 s" in r.getMessage() for r in caplog.records)


def test_slow_coroutine_hook_delays_only_its_own_connection(start_server: StartServer, open_raw: OpenRaw) -> None:
    release = threading.Event()

    async def hook(_name: str, _client: str, unit_id: int, pdu: bytes) -> bytes | None:
        if unit_id == 5:
            while not release.is_set():  # until the test has had its other answers
                await asyncio.sleep(0.01)
            return bytes.fromhex("03 02 0005")
        return None

    server = start_server(hook=hook, hook_timeout=60)
    slow, fast = open_raw(server), open_raw(server)
    slow.send(slow.frame(1, 5, READ) + slow.frame(2, 1, READ))  # the second waits behind the first: in order
    for tid in range(20):  # answered while the hook still holds the other connection
        assert fast.request(READ, transaction_id=tid) == bytes.fromhex("03 02 0000")
    assert slow.is_silent(0.05)
    release.set()
    assert slow.read_adu() == (1, 0, 5, bytes.fromhex("03 02 0005"))
    assert slow.read_adu() == (2, 0, 1, bytes.fromhex("03 02 0000"))


def test_hook_over_udp_and_rtu_over_tcp(start_server: StartServer, open_raw: OpenRaw) -> None:
    async def hook(_name: str, _client: str, unit_id: int, pdu: bytes) -> bytes | None:
        return bytes.fromhex("03 02 1234") if pdu[0] == 3 else None

    server = start_server(port=None, udp=0, rtu_over_tcp=0, unit_id=3, hook=hook)
    udp = ModbusUdpClient("127.0.0.1", port=server.udp_port, timeout=TIMEOUT, retries=0)
    try:
        assert udp.connect()
        assert udp.read_holding_registers(0, count=1, device_id=1).registers == [0x1234]
    finally:
        udp.close()
    raw = open_raw(server.rtu_over_tcp_port)
    raw.send(with_crc(bytes.fromhex("03 03 0000 0001")) + with_crc(bytes.fromhex("03 06 0000 0007")))
    assert raw.recv_exact(7) == with_crc(bytes.fromhex("03 03 02 1234"))
    assert raw.recv_exact(8) == with_crc(bytes.fromhex("03 06 0000 0007"))
    raw.send(with_crc(bytes.fromhex("04 03 0000 0001")))  # another slave's request: neither hook nor answer
    assert raw.is_silent(0.3)


def test_coroutine_hook_on_a_serial_line(start_server: StartServer, pty_pair: Callable[[], PtyPair]) -> None:
    async def hook(_name: str, client: str, unit_id: int, pdu: bytes) -> bytes | None:
        await asyncio.sleep(0.05)
        return bytes.fromhex("03 02 0042") if pdu[0] == 3 else None

    pair = pty_pair()
    start_server(port=None, serial=SerialLine(pair.server_end, "rtu", parity="N"), hook=hook)
    line = serial.Serial(pair.client_end, baudrate=19200, parity="N", stopbits=2, timeout=TIMEOUT)
    try:
        line.write(with_crc(bytes.fromhex("01 03 0000 0001")))
        assert line.read(7) == with_crc(bytes.fromhex("01 03 02 0042"))
        line.write(with_crc(bytes.fromhex("01 06 0000 0009")))  # passed through to the tables, after the hook
        assert line.read(8) == with_crc(bytes.fromhex("01 06 0000 0009"))
    finally:
        line.close()


# ------------------------------------------------------------------------------------------ subscriptions

TYPED = [
    ("ushort", 65000), ("short", -2), ("uint", 4_000_000_000), ("int", -70000), ("ulong", 2**63 + 5),
    ("long", -(2**40)), ("float", 21.5), ("double", -1.25e100), ("hex", b"\xbe\xef"),
]  # fmt: skip


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
@pytest.mark.parametrize(("vtype", "value"), TYPED, ids=[t for t, _ in TYPED])
def test_typed_subscription_decodes_what_a_client_writes(
    start_server: StartServer, connect_client: Connect, vtype: str, value: object, order: str
) -> None:
    server = start_server(name="plant")
    server.subscribe("1.10.hr", vtype, order=order)
    events = listen(server)
    data = encode(ValueType.parse(vtype), value, order if vtype != "hex" else "ABCD")  # type: ignore[arg-type]
    registers = list(struct.unpack(f">{len(data) // 2}H", data))
    assert not connect_client(server).write_registers(10, registers, device_id=1).isError()
    (event,) = events.wait(1)
    assert (event.name, event.value, event.type.kind) == ("plant.1.10.hr", value, vtype)
    assert event.previous == (b"\x00\x00" if vtype == "hex" else 0)
    assert event.client.startswith("127.0.0.1:") and abs(event.time - time.time()) < 5


def test_bits_subscription_gives_an_event_per_bit_even_unchanged(
    start_server: StartServer, connect_client: Connect
) -> None:
    server = start_server()
    server.subscribe("4.hr", "bits")
    events = listen(server)
    client = connect_client(server)
    client.write_register(4, 0x0102, device_id=2)
    client.write_register(4, 0x0102, device_id=2)
    first, second = events.wait(32)[:16], events.wait(32)[16:]
    assert [e.name for e in first] == [f"modbusd.2.4.hr.{n}" for n in range(1, 17)]
    assert [e.bit for e in first if e.value] == [1, 10]  # n=1: LSB of the first byte (0x01); n=10: 0x02 in the second
    assert all(e.value == e.previous for e in second)  # written again, unchanged: events all the same
    assert len({e.request_id for e in first}) == 1 and first[0].request_id != second[0].request_id


def test_unchanged_value_still_makes_an_event(start_server: StartServer, connect_client: Connect) -> None:
    device = Device()
    device.holding_registers[3] = 7
    server = start_server(device)
    server.subscribe("3.hr")
    events = listen(server)
    connect_client(server).write_register(3, 7)
    (event,) = events.wait(1)
    assert (event.value, event.previous) == (7, 7)


def test_coils_multi_point_writes_share_a_request_id(start_server: StartServer, connect_client: Connect) -> None:
    server = start_server()
    server.subscribe("10.co", count=4)
    server.subscribe("0.hr", "ushort")
    server.subscribe("2.hr", "float")
    events = listen(server)
    client = connect_client(server)
    client.write_coils(9, [True, True, False, True, True, True], device_id=1)  # coils 9..14: 10..13 subscribed
    client.write_coil(12, False, device_id=1)
    client.write_registers(0, [1, 2, 0x41AC, 0], device_id=1)  # 0, and the float at 2-3; 1 is not subscribed
    got = events.wait(4 + 1 + 2)
    assert [(e.name, e.value, e.previous) for e in got[:4]] == [
        ("modbusd.1.10.co", True, False), ("modbusd.1.11.co", False, False), ("modbusd.1.12.co", True, False),
        ("modbusd.1.13.co", True, False)]  # fmt: skip
    assert (got[4].name, got[4].value, got[4].previous) == ("modbusd.1.12.co", False, True)
    assert [(e.name, e.value) for e in got[5:]] == [("modbusd.1.0.hr", 1), ("modbusd.1.2.hr", 21.5)]
    ids = [e.request_id for e in got]
    assert len(set(ids[:4])) == 1 and len(set(ids[5:])) == 1 and len(set(ids)) == 3


def test_mask_write_and_read_write_make_events_and_exceptions_make_none(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    server = start_server(Device(holding_registers=100))
    server.subscribe("4.hr", "hex")
    events = listen(server)
    raw = open_raw(server)
    assert raw.request("06 0004 0012") == bytes.fromhex("06 0004 0012")
    assert raw.request("16 0004 00F2 0025") == bytes.fromhex("16 0004 00F2 0025")  # (0x12 & F2) | (25 & ~F2) = 0x17
    assert raw.request("17 0000 0001 0003 0002 04 0001 0002")[:2] == b"\x17\x02"  # writes 3-4
    assert raw.request("10 0004 0064 C8" + "0000" * 100) == b"\x90\x02"  # runs past the table: no write, no event
    got = events.wait(3)
    assert [(e.value, e.previous, e.function) for e in got] == [
        (b"\x00\x12", b"\x00\x00", 6), (b"\x00\x17", b"\x00\x12", 0x16), (b"\x00\x02", b"\x00\x17", 0x17)]  # fmt: skip


def test_events_come_in_write_order_to_callbacks_and_async_iterators(
    start_server: StartServer, connect_client: Connect
) -> None:
    server = start_server()
    server.subscribe("0.hr")
    events = listen(server)
    taken: list[int] = []

    async def iterate() -> None:
        async for event in server.events():
            taken.append(event.value)  # type: ignore[arg-type]  # ushort

    assert server._loop is not None
    asyncio.run_coroutine_threadsafe(iterate(), server._loop)
    time.sleep(0.05)
    client = connect_client(server)
    for value in range(50):
        client.write_register(0, value)
    assert [e.value for e in events.wait(50)] == list(range(50))
    wait_for(lambda: len(taken) == 50)
    assert taken == list(range(50))


def test_subscriber_that_raises_is_logged_and_the_others_get_every_event(
    start_server: StartServer, connect_client: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()
    server.subscribe("0.hr")

    def broken(event: WriteEvent) -> None:
        raise ValueError("subscriber bug")

    failing = server.add_listener(broken, name="broken")
    events = listen(server)
    client = connect_client(server)
    with caplog.at_level(logging.ERROR, logger="modbusd.server"):
        for value in range(3):
            client.write_register(0, value)
        assert [e.value for e in events.wait(3)] == [0, 1, 2]
        wait_for(lambda: failing.failures == 3)
    lines = [r for r in caplog.records if "listener broken failed" in r.getMessage()]
    assert len(lines) == 3 and lines[0].exc_info and not lines[1].exc_info
    assert "ValueError: subscriber bug" in lines[2].getMessage()


def test_slow_subscriber_has_its_events_dropped_and_counted_never_the_responses(
    start_server: StartServer, connect_client: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()
    server.subscribe("0.hr")
    release = threading.Event()

    async def slow(event: WriteEvent) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)

    listener = server.add_listener(slow, queue=5, name="slow")
    events = listen(server)
    client = connect_client(server)
    with caplog.at_level(logging.WARNING, logger="modbusd.server"):
        for value in range(30):  # answered while the slow listener is still held: responses never wait for it
            assert not client.write_register(0, value).isError()
        assert not release.is_set() and listener.delivered <= 1
        assert len(events.wait(30)) == 30  # a quick listener loses nothing
        assert listener.dropped == 30 - 1 - 5  # one being delivered, five queued
        counters = server.counters()["events"]
        assert counters["dropped"] == 24 and counters["published"] == 30  # type: ignore[index]
        release.set()
        wait_for(lambda: listener.delivered == 6)
    behind = [r for r in caplog.records if "listener slow is 5 events behind" in r.getMessage()]
    assert len(behind) == 1  # once per burst


def test_broadcast_on_rtu_over_tcp_makes_events(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server(port=None, rtu_over_tcp=0, unit_id=3)
    server.subscribe("8.hr")
    events = listen(server)
    raw = open_raw(server.rtu_over_tcp_port)
    raw.send(with_crc(bytes.fromhex("00 06 0008 0063")))
    assert raw.is_silent(0.2)
    (event,) = events.wait(1)
    assert (event.name, event.value) == ("modbusd.0.8.hr", 99)


def test_multi_device_subscription_by_unit_id(start_server: StartServer, connect_client: Connect) -> None:
    server = start_server({1: Device(), 2: Device()})
    server.subscribe("2.0.hr")
    events = listen(server)
    client = connect_client(server)
    client.write_register(0, 11, device_id=1)
    client.write_register(0, 22, device_id=2)
    (event,) = events.wait(1)
    assert (event.name, event.value, event.unit_id) == ("modbusd.2.0.hr", 22, 2)


# ---------------------------------------------------------------------------------------------- events log


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_log_has_every_write_function_an_exception_and_the_events(
    start_server: StartServer, open_raw: OpenRaw, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    server = start_server(Device(holding_registers=100), events_log=path)
    server.subscribe("1.hr")
    raw = open_raw(server)
    requests = ["05 0003 FF00", "06 0001 0007", "0F 0000 0003 01 05", "10 0001 0002 04 0009 000A",
                "16 0001 00F0 0001", "17 0000 0001 0004 0001 02 0005", "06 0200 0001"]  # fmt: skip
    for tid, pdu in enumerate(requests):
        raw.request(pdu, transaction_id=tid, unit_id=4)
    raw.request(READ)  # a read: not logged
    wait_for(lambda: path.exists() and len(path.read_text().splitlines()) == 7 + 3)
    server.stop_thread()
    records = read_log(path)
    writes = [r for r in records if r["kind"] == "write"]
    assert [(r["function"], r["address"], r["quantity"], r["outcome"]) for r in writes] == [
        (5, 3, 1, "ok"), (6, 1, 1, "ok"), (15, 0, 3, "ok"), (16, 1, 2, "ok"), (22, 1, 1, "ok"), (23, 4, 1, "ok"),
        (6, 512, 1, "exception")]  # fmt: skip
    assert [w["values"] for w in writes[:4]] == [True, 7, [True, False, True], [9, 10]]
    assert writes[4]["values"] == {"and_mask": 0xF0, "or_mask": 1}
    assert (writes[6]["exception"], writes[6]["exception_name"]) == (2, "ILLEGAL_DATA_ADDRESS")
    assert all(w["unit"] == 4 and w["client"].startswith("127.0.0.1:") and "T" in w["time"] for w in writes)
    events = [r for r in records if r["kind"] == "event"]
    assert [(e["name"], e["value"], e["previous"]) for e in events] == [
        ("modbusd.4.1.hr", 7, 0), ("modbusd.4.1.hr", 9, 7), ("modbusd.4.1.hr", 1, 9)]  # fmt: skip
    assert events[1]["request_id"] == writes[3]["request_id"]
    assert records.index(events[0]) == records.index(writes[1]) + 1  # each event right after its write


def test_events_log_records_a_write_to_a_unit_id_without_a_device(
    start_server: StartServer, open_raw: OpenRaw, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    server = start_server({1: Device()}, events_log=path)
    assert open_raw(server).request("06 0001 0007", unit_id=2) == b"\x86\x0b"
    server.stop_thread()
    (record,) = read_log(path)
    assert (record["unit"], record["outcome"], record["exception"]) == (2, "exception", 0x0B)


def test_events_log_records_a_write_the_hook_answered(
    start_server: StartServer, open_raw: OpenRaw, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    server = start_server(hook=lambda _n, _c, _u, pdu: b"\x86\x01" if pdu[0] == 6 else None, events_log=path)
    assert open_raw(server).request("06 0001 0007") == b"\x86\x01"
    server.stop_thread()
    (record,) = read_log(path)
    assert (record["by"], record["outcome"], record["exception"]) == ("hook", "exception", 1)


def test_events_log_is_rotated_by_size(start_server: StartServer, open_raw: OpenRaw, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    server = start_server(events_log=path, events_log_max_bytes=2000, events_log_files=3)
    raw = open_raw(server)
    for tid in range(100):
        raw.request(f"06 0000 {tid:04X}", transaction_id=tid)
    server.stop_thread()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all((tmp_path / name).stat().st_size <= 2000 for name in files)
    newest = read_log(path)
    assert newest[-1]["values"] == 99
    older = read_log(tmp_path / "events.jsonl.1")
    assert older[-1]["values"] + 1 == newest[0]["values"]  # nothing lost between the files


def test_unwritable_events_log_is_reported_once_and_the_server_goes_on(
    start_server: StartServer, connect_client: Connect, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-dir" / "events.jsonl"
    with caplog.at_level(logging.ERROR, logger="modbusd.server"):
        server = start_server(events_log=path)
        client = connect_client(server)
        for value in range(5):
            assert not client.write_register(0, value).isError()
        wait_for(lambda: server.counters()["events"]["log"]["lost"] == 5)  # type: ignore[index]
    lines = [r.getMessage() for r in caplog.records if "events log" in r.getMessage()]
    assert len(lines) == 1 and "cannot open" in lines[0]
    assert server.counters()["events"]["log"]["error"].startswith("cannot open")  # type: ignore[index]
    (tmp_path / "missing-dir").mkdir()  # writable again: logging resumes
    client.write_register(0, 9)
    wait_for(lambda: path.exists() and '"values":9' in path.read_text())


# ------------------------------------------------------------------------------- device file and command line

HOOK_MODULE = """
def on_request(name, client, unit_id, pdu):
    return bytes.fromhex("03 02 00 2A") if pdu[0] == 3 else None
"""


def test_device_file_hook_and_eventslog_keys_build_a_server_that_uses_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_raw: OpenRaw
) -> None:
    (tmp_path / "plant_hooks.py").write_text(HOOK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "plant.toml"
    path.write_text('[server]\nhost = "127.0.0.1"\nport = 0\nname = "plant"\nhook = "plant_hooks:on_request"\n'
                    'hook_timeout = 0.5\neventslog = "log/events.jsonl"\neventslog_max_bytes = 4096\n'
                    "eventslog_files = 2\n")  # fmt: skip
    (tmp_path / "log").mkdir()
    config = load(path)
    assert config.server.eventslog == str(tmp_path / "log" / "events.jsonl")
    assert any("request hook plant_hooks:on_request" in line for line in summary(config))
    server = Server.from_config(config)
    assert (server.name, server.hook_timeout, server.events_log.max_bytes, server.events_log.files) == (
        "plant", 0.5, 4096, 2)  # type: ignore[union-attr]  # fmt: skip
    server.start_thread()
    try:
        raw = open_raw(server)
        assert raw.request(READ) == bytes.fromhex("03 02 002A")
        assert raw.request("06 0000 0001") == bytes.fromhex("06 0000 0001")
    finally:
        server.stop_thread()
    assert read_log(tmp_path / "log" / "events.jsonl")[0]["values"] == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param('hook = "no_such_module_here:f"', "server.hook: cannot import no_such_module_here", id="module"),
        pytest.param('hook = "mistake_hooks:missing"', "server.hook: mistake_hooks has no missing", id="function"),
        pytest.param('hook = "mistake_hooks"', "is not package.module:function", id="no colon"),
        pytest.param('hook = "mistake_hooks:NUMBER"', "is a int, not a function", id="not callable"),
        pytest.param("hook = 3", "expected a function to import", id="not text"),
        pytest.param('hook = "broken_hooks:f"', "importing broken_hooks failed: ZeroDivisionError", id="import fails"),
        pytest.param("hook_timeout = 0", "greater than 0", id="time-out"),
        pytest.param("eventslog = true", "give the file to write", id="eventslog true"),
        pytest.param("eventslog = 5", "a file such as", id="eventslog number"),
        pytest.param("eventslog_files = 0", "outside 1..1000", id="files"),
        pytest.param('name = "a.b"', "no dots", id="name"),
    ],
)
def test_device_file_hook_and_eventslog_mistakes_name_file_line_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, message: str
) -> None:
    (tmp_path / "mistake_hooks.py").write_text(HOOK_MODULE + "NUMBER = 3\n")
    (tmp_path / "broken_hooks.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "plant.toml"
    path.write_text(f"[server]\nport = 5020\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}:3: server.") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_modbusd_events_log_option_writes_the_log(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "events.jsonl"
    child = Modbusd(["-p", str(port), "--host", "127.0.0.1", "--events-log", str(path)])
    try:
        child.running()
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=TIMEOUT, retries=0)
        try:
            assert client.connect()
            assert not client.write_register(3, 77, device_id=1).isError()
        finally:
            client.close()
        assert child.stop(signal.SIGINT) == 0
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    (record,) = read_log(path)
    assert (record["function"], record["address"], record["values"], record["outcome"]) == (6, 3, 77, "ok")


def test_pipelined_requests_each_reach_the_hook_and_make_their_event(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    """Many requests in one read are answered at once only where nothing else wants them: a hook still sees every
    one, and a subscribed write still makes one event per request."""
    seen: list[bytes] = []
    hooked = start_server(hook=lambda _name, _client, _unit, pdu: seen.append(pdu))
    raw = open_raw(hooked)
    raw.send(b"".join(raw.frame(tid, 1, READ) for tid in range(16)))
    assert raw.recv_exact(16 * 11)[-11:] == raw.frame(15, 1, "03 02 0000")
    assert seen == [bytes.fromhex(READ)] * 16
    subscribed = start_server()
    subscribed.subscribe("3.hr")
    events = listen(subscribed)
    raw = open_raw(subscribed)
    raw.send(b"".join(raw.frame(tid, 1, f"06 0003 {tid:04X}") for tid in range(16)))
    assert raw.recv_exact(16 * 12)[-12:] == raw.frame(15, 1, "06 0003 000F")
    assert [event.value for event in events.wait(16)] == list(range(16))
