"""Modbus semantics, request PDU in, response PDU out: what each function does to a device and its counters.

Section numbers are Application Protocol V1.1b3. The counters and the event log are those of §6.8-§6.10.
"""

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modbusd import handler
from modbusd.model.device import Device, Layout
from modbusd.model.tables import BitTable, WordTable
from modbusd.protocol.codes import FunctionCode
from modbusd.protocol.pdu import (
    DeviceIdentificationResponse,
    ReadBits,
    ReadRegisters,
    WriteMultipleCoils,
    WriteMultipleRegisters,
    decode_response,
    encode_request,
)
from tests.strategies import REQUESTS


def hexb(text: str) -> bytes:
    return bytes.fromhex(text)


def ask(device: Device, request_hex: str) -> bytes | None:
    return handler.respond(device, hexb(request_hex))


def counter(device: Device, sub_function: int) -> int:
    """An FC08 counter as a client reads it (the reading request counts as a message too)."""
    response = ask(device, f"08 {sub_function:04X} 0000")
    assert response is not None
    assert response[:3] == bytes((0x08, 0x00, sub_function))
    return int.from_bytes(response[3:5], "big")


def event_log(device: Device) -> bytes:
    """The FC12 events, newest first (the FC12 request's own receive event leads)."""
    response = ask(device, "0C")
    assert response is not None
    assert response[1] == len(response) - 2
    return response[8:]


def identification(device: Device, request_hex: str) -> DeviceIdentificationResponse:
    response = ask(device, request_hex)
    assert response is not None
    assert len(response) <= 253
    decoded = decode_response(response)
    assert isinstance(decoded, DeviceIdentificationResponse)
    return decoded


@pytest.fixture
def device() -> Device:
    return Device()


# --------------------------------------------------------------------------------------- data functions


def test_handler_reads_coils_and_discrete_inputs_from_their_own_tables(device: Device) -> None:
    device.coils[0] = True
    device.discrete_inputs[1] = True
    assert ask(device, "01 0000 0002") == hexb("01 01 01")
    assert ask(device, "02 0000 0002") == hexb("02 01 02")


def test_handler_reads_holding_and_input_registers_from_their_own_tables(device: Device) -> None:
    device.holding_registers[0] = 0x1111
    device.input_registers[0] = 0x2222
    assert ask(device, "03 0000 0001") == hexb("03 02 1111")
    assert ask(device, "04 0000 0001") == hexb("04 02 2222")


@settings(max_examples=50)
@given(layout=st.sampled_from(list(Layout)), request=REQUESTS["WriteMultipleRegisters"])
def test_handler_reads_back_what_fc16_wrote(layout: Layout, request: WriteMultipleRegisters) -> None:
    device = Device(layout)
    response = handler.respond(device, encode_request(request))
    if request.address + request.quantity > 0x10000:
        assert response == hexb("90 02")
        return
    assert response == encode_request(request)[:5]
    read = ReadRegisters(FunctionCode.READ_HOLDING_REGISTERS, request.address, request.quantity)
    assert handler.respond(device, encode_request(read)) == bytes((0x03, 2 * request.quantity)) + request.values


@settings(max_examples=50)
@given(layout=st.sampled_from(list(Layout)), request=REQUESTS["WriteMultipleCoils"])
def test_handler_reads_back_what_fc15_wrote(layout: Layout, request: WriteMultipleCoils) -> None:
    device = Device(layout)
    response = handler.respond(device, encode_request(request))
    if request.address + request.quantity > 0x10000:
        assert response == hexb("8F 02")
        return
    assert response == encode_request(request)[:5]
    read = ReadBits(FunctionCode.READ_COILS, request.address, request.quantity)
    bits = int.from_bytes(request.values, "little") & ((1 << request.quantity) - 1)  # padding reads back as 0
    expected = bytes((0x01, len(request.values))) + bits.to_bytes(len(request.values), "little")
    assert handler.respond(device, encode_request(read)) == expected


def test_handler_fc05_turns_a_coil_off(device: Device) -> None:
    device.coils[7] = True
    assert ask(device, "05 0007 0000") == hexb("05 0007 0000")
    assert device.coils[7] is False


def test_handler_fc15_ignores_padding_bits_and_leaves_other_coils(device: Device) -> None:
    device.coils.write(0, [True] * 24)
    assert ask(device, "0F 0003 000A 02 00FC") == hexb("0F 0003 000A")  # 10 coils off; 6 padding bits set
    assert device.coils.read(0, 24) == [True] * 3 + [False] * 10 + [True] * 11


def test_handler_fc16_writes_holding_registers_only(device: Device) -> None:
    assert ask(device, "10 0005 0002 04 ABCD 1234") == hexb("10 0005 0002")
    assert device.holding_registers.values(5, 2) == [0xABCD, 0x1234]
    assert device.input_registers.values(5, 2) == [0, 0]


def test_handler_fc22_gives_the_spec_example_result(device: Device) -> None:
    device.holding_registers[4] = 0x12
    assert ask(device, "16 0004 00F2 0025") == hexb("16 0004 00F2 0025")
    assert device.holding_registers[4] == 0x17


# FC22 (§6.16): where and_mask has a 1 the current bit stays, where it has a 0 or_mask's bit is taken. Each result
# below is worked out by hand from that sentence, not from a formula shared with the code.
FC22_CASES = [  # (current, and_mask, or_mask, result)
    pytest.param(0x0012, 0x00F2, 0x0025, 0x0017, id="the spec's example"),
    pytest.param(0x1234, 0xF0F0, 0x0000, 0x1030, id="or_mask 0: current AND and_mask"),
    pytest.param(0x1234, 0x0000, 0xBEEF, 0xBEEF, id="and_mask 0: or_mask"),
    pytest.param(0x1234, 0xFFFF, 0xBEEF, 0x1234, id="and_mask FFFF: unchanged, or_mask ignored"),
    pytest.param(0xFFFF, 0x0000, 0x0000, 0x0000, id="everything cleared"),
    pytest.param(0xA5A5, 0xFF00, 0x1234, 0xA534, id="high byte kept, low byte from or_mask"),
    pytest.param(0xA5A5, 0x00FF, 0x1234, 0x12A5, id="low byte kept, high byte from or_mask"),
    pytest.param(0x0F0E, 0xFFFE, 0x0001, 0x0F0F, id="set bit 0"),
    pytest.param(0x0F0F, 0xFFFE, 0x0000, 0x0F0E, id="clear bit 0"),
    pytest.param(0x0000, 0x7FFF, 0x8000, 0x8000, id="set bit 15"),
    pytest.param(0xFFFF, 0x7FFF, 0x0000, 0x7FFF, id="clear bit 15"),
    pytest.param(0x0000, 0xFF00, 0xFFFF, 0x00FF, id="or_mask bits under and_mask 1s are ignored"),
    pytest.param(0x5555, 0x0F0F, 0xAAAA, 0xA5A5, id="interleaved nibbles"),
]


@pytest.mark.parametrize(("current", "and_mask", "or_mask", "result"), FC22_CASES)
def test_handler_fc22_keeps_and_mask_bits_and_takes_or_mask_bits_elsewhere(
    current: int, and_mask: int, or_mask: int, result: int
) -> None:
    device = Device(holding_registers=2)
    device.holding_registers.set_values(0, [current, 0x7777])
    request = f"16 0000 {and_mask:04X} {or_mask:04X}"
    assert ask(device, request) == hexb(request)  # the response echoes the request
    assert device.holding_registers.values(0, 2) == [result, 0x7777]


def test_handler_answers_fc23_write_before_read(device: Device) -> None:
    device.holding_registers.set_values(0, range(10))
    # read 2..5 while writing 3..4: the response already shows the new values (§6.17)
    response = ask(device, "17 0002 0004 0003 0002 04 AAAA BBBB")
    assert response == hexb("17 08 0002 AAAA BBBB 0005")
    assert device.holding_registers.values(0, 7) == [0, 1, 2, 0xAAAA, 0xBBBB, 5, 6]


def test_handler_answers_fc23_reading_exactly_what_it_wrote(device: Device) -> None:
    assert ask(device, "17 0010 0002 0010 0002 04 0102 0304") == hexb("17 04 0102 0304")


def test_handler_fc23_checks_the_read_range_before_writing() -> None:
    device = Device(holding_registers=10)
    assert ask(device, "17 0009 0002 0000 0001 02 FFFF") == hexb("97 02")
    assert device.holding_registers[0] == 0


def test_handler_fc07_returns_the_exception_status_byte(device: Device) -> None:
    assert ask(device, "07") == hexb("07 00")
    device.exception_status = 0x6D
    assert ask(device, "07") == hexb("07 6D")


@pytest.mark.parametrize(
    ("layout", "write_hex", "read_hex", "response_hex"),
    [
        pytest.param("separate", "05 000A FF00", "02 000A 0001", "02 01 00", id="separate: coil is not input"),
        pytest.param("separate", "06 000A 1234", "04 000A 0001", "04 02 0000", id="separate: HR is not IR"),
        pytest.param("overlaid", "05 000A FF00", "02 000A 0001", "02 01 01", id="overlaid: coil 10 is input 10"),
        pytest.param("overlaid", "06 000A 1234", "04 000A 0001", "04 02 1234", id="overlaid: HR 10 is IR 10"),
        pytest.param("overlaid", "05 0000 FF00", "03 0000 0001", "03 02 0000", id="overlaid: bits not in HR"),
        pytest.param("packed", "05 0011 FF00", "03 0001 0001", "03 02 0002", id="packed: coil 17 is HR 1 bit 1"),
        pytest.param("packed", "06 0000 8001", "01 0000 0010", "01 02 0180", id="packed: HR 0 is coils 0..15"),
        pytest.param("packed", "06 0000 8001", "02 000F 0001", "02 01 01", id="packed: HR 0 bit 15 is input 15"),
        pytest.param("packed", "0F 0010 0010 02 FFFF", "04 0001 0001", "04 02 FFFF", id="packed: FC15 fills IR 1"),
    ],
)  # fmt: skip
def test_handler_follows_the_device_layout(layout: str, write_hex: str, read_hex: str, response_hex: str) -> None:
    device = Device(layout)
    assert ask(device, write_hex) is not None
    assert ask(device, read_hex) == hexb(response_hex)


def test_handler_packed_layout_answers_exception_2_past_the_last_bit() -> None:
    device = Device(Layout.PACKED, holding_registers=10)
    assert ask(device, "01 009F 0001") == hexb("01 01 00")  # bit 159 is bit 15 of register 9
    assert ask(device, "01 00A0 0001") == hexb("81 02")


# ------------------------------------------------------------------------------------ FC08 diagnostics


def test_handler_fc08_00_echoes_the_whole_request(device: Device) -> None:
    assert ask(device, "08 0000 A537") == hexb("08 0000 A537")
    assert ask(device, "08 0000 0102 0304 0506") == hexb("08 0000 0102 0304 0506")


def test_handler_fc08_01_answers_and_clears_the_counters(device: Device) -> None:
    for request in ("03 0000 0001", "03 0000 0001", "42"):
        ask(device, request)
    assert ask(device, "08 0001 0000") == hexb("08 0001 0000")  # §6.8.1: answered before the restart
    assert device.diagnostics.event_count == 0  # the restart's own completion was counted before the clear
    assert counter(device, 0x0B) == 1  # only the request that reads it
    assert counter(device, 0x0D) == 0


@pytest.mark.parametrize(
    ("option", "older_events"),
    [
        pytest.param("0000", "40 80 40 80", id="0000 keeps the log"),
        pytest.param("FF00", "", id="FF00 clears the log"),
    ],
)
def test_handler_fc08_01_clears_the_event_log_only_with_ff00(device: Device, option: str, older_events: str) -> None:
    ask(device, "03 0000 0001")  # receive 80, send 40
    ask(device, f"08 0001 {option}")  # receive 80, send 40, then the restart: [log cleared], restart event 00
    # newest first: FC12's own receive event, the restart event, then what was kept (the restart's own events too)
    assert event_log(device) == hexb("80 00" + older_events)


def test_handler_fc08_01_with_other_data_is_exception_3(device: Device) -> None:
    assert ask(device, "08 0001 0001") == hexb("88 03")


def test_handler_fc08_02_returns_the_diagnostic_register(device: Device) -> None:
    assert ask(device, "08 0002 0000") == hexb("08 0002 0000")


def test_handler_fc08_03_changes_the_ascii_delimiter(device: Device) -> None:
    assert ask(device, "08 0003 3A00") == hexb("08 0003 3A00")
    assert device.diagnostics.ascii_delimiter == 0x3A


def test_handler_fc08_04_goes_silent_until_fc08_01(device: Device) -> None:
    assert ask(device, "08 0004 0000") is None  # §6.8.1: no response to Force Listen Only Mode
    assert device.diagnostics.listen_only
    for request in ("03 0000 0001", "06 0000 1234", "08 0000 A537", "08 000A 0000", "42", "08 0001 1234"):
        assert ask(device, request) is None
    assert device.diagnostics.listen_only  # a restart with a bad option is not acted on either
    assert device.holding_registers[0] == 0  # messages are monitored, not acted on
    assert device.diagnostics.server_no_response == 7
    assert device.diagnostics.bus_message == 7
    assert ask(device, "08 0001 0000") is None  # the restart that leaves listen-only is not answered
    assert not device.diagnostics.listen_only
    assert ask(device, "03 0000 0001") == hexb("03 02 0000")
    assert ask(device, "08 0000 A537") == hexb("08 0000 A537")


def test_handler_fc08_04_broadcasts_are_not_acted_on_either(device: Device) -> None:
    ask(device, "08 0004 0000")
    assert handler.respond(device, hexb("06 0000 1234"), broadcast=True) is None
    assert device.holding_registers[0] == 0


def test_handler_fc08_0a_clears_every_counter(device: Device) -> None:
    for request in ("03 0000 0001", "42", "03 FFFF 0002"):
        ask(device, request)
    handler.discarded(device)
    assert ask(device, "08 000A 0000") == hexb("08 000A 0000")
    d = device.diagnostics
    assert (d.bus_message, d.bus_communication_error, d.bus_exception_error, d.server_message) == (0, 0, 0, 0)
    assert counter(device, 0x0B) == 1


def test_handler_fc08_14_clears_the_overrun_counter(device: Device) -> None:
    device.diagnostics.bus_character_overrun = 5
    assert counter(device, 0x12) == 5
    assert ask(device, "08 0014 0000") == hexb("08 0014 0000")
    assert counter(device, 0x12) == 0


def busy_device() -> Device:
    """3 successes, 2 exceptions, 1 discarded frame, 1 broadcast write."""
    device = Device()
    for request in ("03 0000 0001", "01 0000 0001", "06 0000 0001", "42", "03 FFFF 0002"):
        ask(device, request)
    handler.discarded(device)
    handler.respond(device, hexb("06 0001 0001"), broadcast=True)
    return device


@pytest.mark.parametrize(
    ("sub_function", "expected"),
    [
        pytest.param(0x0B, 8, id="0B bus messages: all 7 and this one"),
        pytest.param(0x0C, 1, id="0C communication errors: the discarded frame"),
        pytest.param(0x0D, 2, id="0D exceptions"),
        pytest.param(0x0E, 7, id="0E server messages: all but the discarded frame"),
        pytest.param(0x0F, 1, id="0F no response: the broadcast"),
        pytest.param(0x10, 0, id="10 NAK"),
        pytest.param(0x11, 0, id="11 busy"),
        pytest.param(0x12, 0, id="12 character overrun"),
    ],
)
def test_handler_fc08_counters_move_per_request_exception_and_discard(sub_function: int, expected: int) -> None:
    assert counter(busy_device(), sub_function) == expected


@pytest.mark.parametrize("sub_function", [0x05, 0x06, 0x07, 0x08, 0x09, 0x13, 0x15, 0x16, 0x100, 0xFFFF])
def test_handler_fc08_unsupported_sub_function_is_exception_1(device: Device, sub_function: int) -> None:
    assert ask(device, f"08 {sub_function:04X} 0000") == hexb("88 01")


@pytest.mark.parametrize(
    "request_hex",
    ["08 0002 0001", "08 0003 3A01", "08 0004 0001", "08 000A FF00", "08 000B 0001", "08 0012 8000", "08 0014 0001"],
)
def test_handler_fc08_bad_data_is_exception_3(device: Device, request_hex: str) -> None:
    assert ask(device, request_hex) == hexb("88 03")
    assert not device.diagnostics.listen_only


@pytest.mark.parametrize(
    ("code", "event"),
    [(1, 0x41), (2, 0x41), (3, 0x41), (4, 0x42), (5, 0x44), (6, 0x44), (7, 0x48), (0x0B, 0x40)],
)
def test_handler_record_exception_logs_the_send_event_bits(device: Device, code: int, event: int) -> None:
    handler.record_exception(device, code)
    assert device.diagnostics.events[0] == event
    assert device.diagnostics.bus_exception_error == 1


def test_handler_record_exception_counts_busy_and_nak(device: Device) -> None:
    handler.record_exception(device, 6)
    handler.record_exception(device, 7)
    assert counter(device, 0x11) == 1
    assert counter(device, 0x10) == 1


# ---------------------------------------------------------------------------------------- FC11 and FC12


def test_handler_fc11_counts_successful_completions_only(device: Device) -> None:
    for request in ("03 0000 0001", "06 0000 0001", "08 0000 0000", "42", "03 FFFF 0002", "0B", "0C"):
        ask(device, request)
    assert ask(device, "0B") == hexb("0B 0000 0003")  # not exceptions, not FC11/FC12 themselves (§6.9)


def test_handler_fc11_does_not_count_messages_in_listen_only(device: Device) -> None:
    ask(device, "08 0004 0000")
    ask(device, "03 0000 0001")
    device.diagnostics.listen_only = False
    assert ask(device, "0B") == hexb("0B 0000 0000")


def test_handler_fc12_reports_status_event_count_and_message_count(device: Device) -> None:
    ask(device, "03 0000 0001")
    ask(device, "42")
    response = ask(device, "0C")
    assert response is not None
    assert response[:8] == hexb("0C") + bytes((len(response) - 2,)) + hexb("0000 0001 0003")


def test_handler_fc12_logs_events_newest_first(device: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    ask(device, "03 0000 0001")  # 80, 40
    ask(device, "03 FFFF 0002")  # 80, 41: exception 1..3
    with monkeypatch.context() as patch:
        patch.setattr(BitTable, "read_packed", _broken)
        assert ask(device, "01 0000 0001") == hexb("81 04")  # 80, 42: exception 4
    handler.respond(device, hexb("06 0000 0001"), broadcast=True)  # C0: broadcast received, 40
    ask(device, "08 0004 0000")  # 80, 04: entered listen-only
    ask(device, "03 0000 0001")  # A0: received in listen-only
    ask(device, "08 0001 0000")  # A0, 00: communication restart
    assert event_log(device) == hexb("80 00 A0 A0 04 80 40 C0 42 80 41 80 40 80")


def test_handler_fc12_keeps_the_newest_64_events(device: Device) -> None:
    for _ in range(40):
        ask(device, "03 0000 0001")
    ask(device, "42")
    events = event_log(device)
    assert len(events) == 64
    assert events[:3] == hexb("80 41 80")


# ----------------------------------------------------------------------------------------------- FC17


def test_handler_fc17_reports_the_server_id_and_run_indicator() -> None:
    device = Device(server_id=b"\x2a\x01")
    assert ask(device, "11") == hexb("11 03 2A01 FF")
    device.running = False
    assert ask(device, "11") == hexb("11 03 2A01 00")


# ------------------------------------------------------------------------------------------- FC43 / 14


def id_device(**extra: str) -> Device:
    objects = {0x00: "vendor", 0x01: "code", 0x02: "1.0"}
    return Device(identification={**objects, **{int(k, 16): v for k, v in extra.items()}})


@pytest.mark.parametrize(
    ("request_hex", "object_ids"),
    [
        pytest.param("2B 0E 01 00", [0, 1, 2], id="basic"),
        pytest.param("2B 0E 02 00", [0, 1, 2, 3, 6], id="regular"),
        pytest.param("2B 0E 03 00", [0, 1, 2, 3, 6, 0x80, 0xFF], id="extended"),
        pytest.param("2B 0E 01 01", [1, 2], id="basic from object 1"),
        pytest.param("2B 0E 02 03", [3, 6], id="regular from object 3"),
        pytest.param("2B 0E 03 80", [0x80, 0xFF], id="extended from object 0x80"),
        pytest.param("2B 0E 02 04", [0, 1, 2, 3, 6], id="unknown start object 4 restarts at 0"),
        pytest.param("2B 0E 03 90", [0, 1, 2, 3, 6, 0x80, 0xFF], id="unknown start object 0x90 restarts at 0"),
        pytest.param("2B 0E 01 06", [0, 1, 2], id="object 6 is not basic: restart at 0"),
    ],
)
def test_handler_fc43_stream_access_returns_the_category_from_the_start_object(
    request_hex: str, object_ids: list[int]
) -> None:
    device = id_device(**{"03": "https://example.org", "06": "app", "80": "private", "FF": "last"})
    response = identification(device, request_hex)
    assert [object_id for object_id, _ in response.objects] == object_ids
    assert response.code == hexb(request_hex)[2]
    assert (response.more_follows, response.next_object_id) == (False, 0)
    assert all(value == device.identification[object_id] for object_id, value in response.objects)


def test_handler_fc43_above_the_conformity_level_answers_at_its_own_level() -> None:
    response = identification(id_device(), "2B 0E 03 00")
    assert response.conformity_level == 0x81
    assert [object_id for object_id, _ in response.objects] == [0, 1, 2]


@pytest.mark.parametrize(
    ("extra", "level"),
    [({}, 0x81), ({"05": "model"}, 0x82), ({"05": "model", "80": "private"}, 0x83)],
)
def test_handler_fc43_reports_the_conformity_level(extra: dict[str, str], level: int) -> None:
    for code in ("01", "02", "03"):
        assert identification(id_device(**extra), f"2B 0E {code} 00").conformity_level == level
    assert identification(id_device(**extra), "2B 0E 04 00").conformity_level == level


def test_handler_fc43_individual_access_returns_one_object() -> None:
    device = id_device(**{"05": "model", "80": "private"})
    for object_id, value in ((0x05, b"model"), (0x80, b"private"), (0x00, b"vendor")):
        response = identification(device, f"2B 0E 04 {object_id:02X}")
        assert response.objects == ((object_id, value),)
        assert (response.more_follows, response.next_object_id) == (False, 0)


def test_handler_fc43_individual_access_to_an_unknown_object_is_exception_2() -> None:
    assert ask(id_device(), "2B 0E 04 05") == hexb("AB 02")


def test_handler_fc43_other_mei_type_is_exception_1(device: Device) -> None:
    assert ask(device, "2B 0D 01 00") == hexb("AB 01")


@pytest.mark.parametrize("code", [0x00, 0x05, 0xFF])
def test_handler_fc43_bad_read_device_id_code_is_exception_3(device: Device, code: int) -> None:
    assert ask(device, f"2B 0E {code:02X} 00") == hexb("AB 03")


def test_handler_fc43_says_more_follows_when_objects_do_not_fit_one_response() -> None:
    device = Device()
    for object_id in (0x80, 0x81, 0x82):
        device.identification[object_id] = bytes((object_id,)) * 200
    collected: dict[int, bytes] = {}
    next_object, answers = 0, 0
    while True:
        response = identification(device, f"2B 0E 03 {next_object:02X}")
        answers += 1
        assert response.objects, "every response carries at least one object"
        collected.update(response.objects)
        if not response.more_follows:
            assert response.next_object_id == 0
            break
        assert response.next_object_id not in dict(response.objects)
        assert response.next_object_id > max(dict(response.objects))
        next_object = response.next_object_id
    assert collected == dict(device.identification)  # every object exactly once, none cut in two
    assert answers == 4  # the standard objects + 0x80, then 0x81, then 0x82


def test_handler_fc43_fills_one_response_to_the_last_byte() -> None:
    device = id_device()
    device.identification[0x80] = "x" * 244  # 7 header + 2 + 244 = 253 bytes
    response = ask(device, "2B 0E 03 80")
    assert response is not None
    assert len(response) == 253
    assert response[4:7] == hexb("00 00 01")


# ------------------------------------------------------------------------------- failures and broadcasts


def _broken(self: object, *args: object) -> bytes:
    raise RuntimeError("simulated bug in the data model")


BUGS = [  # a data-model method that fails, a request that reaches it, and its normal answer once fixed
    pytest.param((BitTable, "read_packed"), "01 0000 0001", "01 01 00", id="FC01 read"),
    pytest.param((WordTable, "read"), "17 0000 0001 0000 0001 02 0000", "17 02 0000", id="FC23 read"),
    pytest.param((BitTable, "write_packed"), "05 0000 FF00", "05 0000 FF00", id="FC05 write"),
    pytest.param((WordTable, "mask_write"), "16 0000 FFFF 0000", "16 0000 FFFF 0000", id="FC22 mask write"),
]


@pytest.mark.parametrize(("target", "request_hex", "normal_hex"), BUGS)
def test_handler_answers_exception_4_for_its_own_bug_logs_it_once_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    target: tuple[type, str], request_hex: str, normal_hex: str,
) -> None:  # fmt: skip
    device = Device()
    monkeypatch.setattr(*target, _broken)
    with caplog.at_level(logging.ERROR, logger="modbusd.handler"):
        response = ask(device, request_hex)
    assert response == bytes((hexb(request_hex)[0] | 0x80, 0x04))
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is RuntimeError
    assert device.diagnostics.bus_exception_error == 1
    monkeypatch.undo()
    assert ask(device, request_hex) == hexb(normal_hex)
    assert ask(device, "06 0001 0042") == hexb("06 0001 0042")


def test_handler_broadcast_executes_writes_and_answers_nothing(device: Device) -> None:
    assert handler.respond(device, hexb("06 0000 1234"), broadcast=True) is None
    assert handler.respond(device, hexb("0F 0000 0003 01 05"), broadcast=True) is None
    assert device.holding_registers[0] == 0x1234
    assert device.coils.read(0, 3) == [True, False, True]


@pytest.mark.parametrize("request_hex", ["03 0000 0001", "42", "03 FFFF 0002", "08 0000 A537"])
def test_handler_broadcast_answers_nothing_even_to_reads_and_errors(device: Device, request_hex: str) -> None:
    assert handler.respond(device, hexb(request_hex), broadcast=True) is None
    assert device.diagnostics.server_no_response == 1


def test_handler_discarded_counts_a_communication_error(device: Device) -> None:
    handler.discarded(device)
    assert device.diagnostics.bus_communication_error == 1
    assert device.diagnostics.events[0] == 0x82  # receive event with the communication error bit
    assert device.diagnostics.event_count == 0


def test_handler_gives_no_answer_to_an_empty_pdu() -> None:
    assert handler.respond(Device(), b"") is None


# ------------------------------------------------------------------------ the address register


@pytest.mark.parametrize(
    ("pdu_hex", "value"),
    [
        pytest.param("06 07D0 0002", 2, id="FC06 on the register"),
        pytest.param("06 07D1 0002", None, id="FC06 elsewhere"),
        pytest.param("10 07CF 0002 04 0000 0009", 9, id="FC16 covering it"),
        pytest.param("10 07D1 0001 02 0009", None, id="FC16 past it"),
        pytest.param("10 07CF 0002 04 00", None, id="FC16 cut short"),
        pytest.param("03 07D0 0001", None, id="a read"),
    ],
)
def test_handler_address_written_finds_the_value_a_write_leaves_in_the_register(
    pdu_hex: str, value: int | None
) -> None:
    assert handler.address_written(bytes.fromhex(pdu_hex), 0x07D0) == value


@pytest.mark.parametrize("value", [0, 248, 0xFFFF])
def test_handler_refuses_a_unit_id_outside_1_to_247_in_the_address_register(value: int) -> None:
    device = Device(address_register=0x07D0)
    device.holding_registers[0x07D0] = 1
    assert handler.respond(device, bytes.fromhex(f"06 07D0 {value:04X}")) == bytes.fromhex("86 03")
    assert handler.respond(device, bytes.fromhex(f"10 07D0 0001 02 {value:04X}")) == bytes.fromhex("90 03")
    assert device.holding_registers[0x07D0] == 1
    assert handler.respond(device, bytes.fromhex("06 07D1 0000")) == bytes.fromhex("06 07D1 0000")  # not the register


def test_handler_refuse_counts_like_an_exception_response() -> None:
    device = Device()
    assert handler.refuse(device, bytes.fromhex("06 07D0 0002"), handler.ExceptionCode.ILLEGAL_DATA_VALUE) == (
        bytes.fromhex("86 03")
    )
    d = device.diagnostics
    assert (d.bus_message, d.server_message, d.bus_exception_error) == (1, 1, 1)


def test_device_address_register_must_be_a_holding_register() -> None:
    with pytest.raises(ValueError, match="address register"):
        Device(holding_registers=10, address_register=10)
