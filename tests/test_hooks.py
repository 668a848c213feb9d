"""hooks.py, bytes in and values out: the hook response check, written ranges, subscriptions' events, the bounded
queue policy and the events log's records. No sockets."""

import pytest

from modbusd import Device, IllegalDataAddress
from modbusd.hooks import (
    EventQueue,
    HookFailure,
    Subscriptions,
    WriteEvent,
    check_response,
    event_record,
    make_subscription,
    write_record,
    written_range,
)
from modbusd.model.names import Location, Table, parse_address
from modbusd.model.values import ValueType


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        pytest.param("not bytes", "not bytes", id="str"),
        pytest.param(b"", "empty", id="empty"),
        pytest.param(bytes((3, 250)) + bytes(252), "at most 253", id="254 bytes"),
        pytest.param(b"\x04\x02\x00\x01", "function code 0x04", id="other function"),
    ],
)
def test_hook_response_that_cannot_be_sent_says_why(response: object, reason: str) -> None:
    with pytest.raises(HookFailure, match=reason):
        check_response(bytes.fromhex("03 0000 0001"), response)


def test_hook_response_may_be_the_function_or_its_exception_and_253_bytes() -> None:
    request = bytes.fromhex("03 0000 0001")
    assert check_response(request, bytearray(b"\x03\x02\x00\x07")) == b"\x03\x02\x00\x07"
    assert check_response(request, b"\x83\x02") == b"\x83\x02"
    assert len(check_response(request, b"\x03" + bytes(252))) == 253


@pytest.mark.parametrize(
    ("pdu", "expected"),
    [
        ("05 0010 FF00", (Table.COILS, 16, 1)),
        ("0F 0010 0003 01 05", (Table.COILS, 16, 3)),
        ("06 0020 1234", (Table.HOLDING_REGISTERS, 32, 1)),
        ("10 0020 0002 04 0001 0002", (Table.HOLDING_REGISTERS, 32, 2)),
        ("16 0004 00F2 0025", (Table.HOLDING_REGISTERS, 4, 1)),
        ("17 0000 0001 0030 0002 04 0001 0002", (Table.HOLDING_REGISTERS, 48, 2)),
        ("03 0000 0001", None),
        ("10 00", None),
    ],
)
def test_written_range_reads_table_address_and_quantity_from_the_request(pdu: str, expected: object) -> None:
    assert written_range(bytes.fromhex(pdu)) == expected


def events_of(device: Device, where: str, vtype: str | None, data: bytes, written: tuple[int, int], **kw: object):
    subscription = make_subscription(device, parse_address(where), vtype, **kw)  # type: ignore[arg-type]
    before = subscription.capture()
    table = device.coils if subscription.table is Table.COILS else device.holding_registers
    if subscription.table is Table.COILS:
        table.write(written[0], [bool(b) for b in data])  # type: ignore[arg-type]
    else:
        table.write(written[0], data)  # type: ignore[arg-type]
    return subscription.events(before, subscription.capture(), written, server="plant", unit_id=3, client="c",
                               time=1.5, request_id=9, function=16)  # fmt: skip


def test_float_subscription_in_cdab_gives_one_event_with_value_and_previous() -> None:
    device = Device()
    (event,) = events_of(device, "100.hr", "float", bytes.fromhex("0000 41AC"), (100, 2), order="CDAB")
    assert (event.name, event.value, event.previous, event.request_id) == ("plant.3.100.hr", 21.5, 0.0, 9)


def test_bits_subscription_numbers_bits_from_the_lsb_of_the_first_byte() -> None:
    events = events_of(Device(), "7.hr", "bits", bytes.fromhex("0102"), (7, 1))
    assert [e.name for e in events] == [f"plant.3.7.hr.{n}" for n in range(1, 17)]
    assert {e.bit for e in events if e.value} == {1, 10}  # 0x01 in the first byte, 0x02 in the second


def test_coil_subscription_gives_one_event_per_written_coil_it_covers() -> None:
    events = events_of(Device(), "10.co", None, bytes([1, 1, 0, 1, 1]), (8, 5), count=4)
    assert [(e.name, e.value) for e in events] == [("plant.3.10.co", False), ("plant.3.11.co", True),
                                                   ("plant.3.12.co", True)]  # fmt: skip


def test_subscription_with_a_unit_id_names_it_and_sees_only_its_writes() -> None:
    device = Device()
    registry = Subscriptions()
    registry.add(make_subscription(device, Location(Table.HOLDING_REGISTERS, 5, 2), "ushort"))
    assert registry.touched(device, 2, Table.HOLDING_REGISTERS, 0, 10)
    assert not registry.touched(device, 3, Table.HOLDING_REGISTERS, 0, 10)
    assert registry.touched(device, 0, Table.HOLDING_REGISTERS, 0, 10, broadcast=True)
    assert not registry.touched(Device(), 2, Table.HOLDING_REGISTERS, 0, 10)
    assert not registry.touched(device, 2, Table.HOLDING_REGISTERS, 6, 10)


@pytest.mark.parametrize(
    ("where", "vtype", "kwargs", "error"),
    [
        ("5.ir", "ushort", {}, ValueError),
        ("5.hr", "string:2", {}, ValueError),
        ("5.hr.3", None, {}, ValueError),
        ("5.co", "float", {}, ValueError),
        ("5.hr", "ushort", {"count": 2}, ValueError),
        ("9.hr", "double", {}, IllegalDataAddress),
    ],
)
def test_subscription_that_cannot_work_is_refused_at_once(
    where: str, vtype: str | None, kwargs: dict[str, int], error: type[Exception]
) -> None:
    device = Device(holding_registers=10)
    with pytest.raises(error):
        make_subscription(device, parse_address(where), vtype, **kwargs)  # type: ignore[arg-type]


def event(n: int) -> WriteEvent:
    ushort = ValueType.parse("ushort")
    return WriteEvent(f"m.1.{n}.hr", n, 0, "c", 0.0, n, 1, Table.HOLDING_REGISTERS, n, None, ushort, 6)


def test_event_queue_drops_beyond_its_bound_counts_and_says_when_a_burst_starts_and_ends() -> None:
    queue = EventQueue(2)
    assert [queue.put(event(n)) for n in range(5)] == [0, 0, 1, 2, 3]
    assert queue.dropped == 3
    assert queue.take() == event(0)
    assert queue.put(event(5)) == -3  # queued; a burst of 3 drops ended
    assert [queue.take(), queue.take(), queue.take()] == [event(1), event(5), None]
    assert (queue.dropped, queue.delivered) == (3, 3)


def test_log_records_show_the_write_its_outcome_and_the_event() -> None:
    record = write_record(bytes.fromhex("0F 0010 0003 01 05"), bytes.fromhex("0F 0010 0003"), time=1.0, client="c",
                          unit_id=1, request_id=4)  # fmt: skip
    assert record["values"] == [True, False, True] and record["outcome"] == "ok" and record["quantity"] == 3
    record = write_record(bytes.fromhex("06 FFFF 0001"), b"\x86\x02", time=1.0, client="c", unit_id=1, request_id=5)
    assert (record["outcome"], record["exception"], record["exception_name"]) == ("exception", 2,
                                                                                  "ILLEGAL_DATA_ADDRESS")  # fmt: skip
    nan = WriteEvent("m.1.0.hr", float("nan"), b"\x00\x01", "c", 2.0, 1, 1, Table.HOLDING_REGISTERS, 0, None,
                     ValueType.parse("float"), 16)  # fmt: skip
    assert event_record(nan)["value"] == "nan" and event_record(nan)["previous"] == "0001"
