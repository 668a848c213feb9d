"""The codec against the specification: its own examples, every exception case, then round trips.

Requests go through `handler.respond(device, pdu)`, the path a real request takes, so the table pins the
bytes on the wire rather than the dataclasses in between. Section numbers are Application Protocol V1.1b3.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modbusd import handler
from modbusd.model.device import Device
from modbusd.protocol.errors import IllegalDataValue, IllegalFunction, ModbusError
from modbusd.protocol.pdu import (
    ReportServerIdResponse,
    Request,
    Response,
    decode_report_server_id,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from tests.strategies import REQUESTS, RESPONSES, fuzz_pdus, report_server_id_responses, requests

SPEC_IDENTIFICATION = {0x00: "Company identification", 0x01: "Product code XX", 0x02: "V2.11"}  # §6.21 example


def hexb(text: str) -> bytes:
    return bytes.fromhex(text)


def make_spec_device(**sizes: int) -> Device:
    """A device holding every value the §6 examples assume."""
    device = Device(identification=SPEC_IDENTIFICATION, **sizes)
    for i in range(19):  # §6.1: coils 20..38 read as CD 6B 05
        device.coils[0x13 + i] = bool((0x056BCD >> i) & 1)
    for i in range(22):  # §6.2: inputs 197..218 read as AC DB 35
        device.discrete_inputs[0xC4 + i] = bool((0x35DBAC >> i) & 1)
    device.holding_registers.set_values(0x6B, [0x022B, 0x0000, 0x0064])  # §6.3: registers 108..110
    device.input_registers[8] = 0x000A  # §6.4: input register 9
    device.holding_registers.set_values(3, [0x00FE, 0x0ACD, 0x0001, 0x0003, 0x000D, 0x00FF])  # §6.17: 4..9
    device.exception_status = 0x6D  # §6.7
    device.diagnostics.event_count = 0x0108  # §6.9, §6.10
    device.diagnostics.bus_message = 0x0120  # §6.10 reports 0x121: the FC12 request itself is a message too
    device.diagnostics.log_event(0x00)
    device.diagnostics.log_event(0x20)
    return device


@pytest.fixture
def spec_device() -> Device:
    return make_spec_device()


@pytest.fixture
def small_device() -> Device:
    """A device that implements addresses 0..99 only, as many serial devices do."""
    return Device(coils=100, discrete_inputs=100, holding_registers=100, input_registers=100)


# request, response, registers to preset (for the one example whose values clash with another's)
SPEC_EXAMPLES = [
    pytest.param("01 0013 0013", "01 03 CD6B05", {}, id="§6.1 FC01 addr 0x13 qty 19"),
    pytest.param("02 00C4 0016", "02 03 ACDB35", {}, id="§6.2 FC02 addr 0xC4 qty 22"),
    pytest.param("03 006B 0003", "03 06 022B 0000 0064", {}, id="§6.3 FC03 addr 0x6B qty 3"),
    pytest.param("04 0008 0001", "04 02 000A", {}, id="§6.4 FC04 addr 8 qty 1"),
    pytest.param("05 00AC FF00", "05 00AC FF00", {}, id="§6.5 FC05 addr 0xAC on"),
    pytest.param("05 00AC 0000", "05 00AC 0000", {}, id="§6.5 FC05 addr 0xAC off"),
    pytest.param("06 0001 0003", "06 0001 0003", {}, id="§6.6 FC06 addr 1 value 3"),
    pytest.param("07", "07 6D", {}, id="§6.7 FC07"),
    pytest.param("08 0000 A537", "08 0000 A537", {}, id="§6.8.1 FC08/00 echo"),
    # §6.9 shows status FFFF (a program command in progress); modbusd never runs one, so its status is 0000
    pytest.param("0B", "0B 0000 0108", {}, id="§6.9 FC11"),
    # §6.10: status, event count 0x108, message count 0x121, newest event first; this request's own receive
    # event (0x80) is logged before it is processed, so it leads the log
    pytest.param("0C", "0C 09 0000 0108 0121 80 20 00", {}, id="§6.10 FC12"),
    pytest.param("0F 0013 000A 02 CD01", "0F 0013 000A", {}, id="§6.11 FC15 addr 0x13 qty 10"),
    pytest.param("10 0001 0002 04 000A 0102", "10 0001 0002", {}, id="§6.12 FC16 addr 1 qty 2"),
    pytest.param("11", "11 02 01 FF", {}, id="§6.13 FC17 server id 01, running"),
    pytest.param("16 0004 00F2 0025", "16 0004 00F2 0025", {4: 0x12}, id="§6.16 FC22 echo"),
    pytest.param(
        "17 0003 0006 000E 0003 06 00FF 00FF 00FF", "17 0C 00FE 0ACD 0001 0003 000D 00FF", {},
        id="§6.17 FC23 read 3 qty 6 write 14 qty 3",
    ),
    # §6.21: the spec shows conformity 01 and object 01's length as 0D; "Product code XX" is 0x0F bytes,
    # and modbusd supports individual access, so its level is 0x81
    pytest.param(
        "2B 0E 01 00",
        "2B 0E 01 81 00 00 03" "00 16" + b"Company identification".hex() + "01 0F" + b"Product code XX".hex()
        + "02 05" + b"V2.11".hex(),
        {}, id="§6.21 FC43/14 basic stream",
    ),
    pytest.param("2B 0E 04 02", "2B 0E 04 81 00 00 01 02 05" + b"V2.11".hex(), {}, id="§6.21 FC43/14 individual"),
]  # fmt: skip


@pytest.mark.parametrize(("request_hex", "response_hex", "registers"), SPEC_EXAMPLES)
def test_handler_answers_the_spec_example(
    spec_device: Device, request_hex: str, response_hex: str, registers: dict[int, int]
) -> None:
    for address, value in registers.items():
        spec_device.holding_registers[address] = value
    assert handler.respond(spec_device, hexb(request_hex)) == hexb(response_hex)


# a spec example write, then a read that shows what it changed
SPEC_WRITES = [
    pytest.param("05 00AC FF00", "01 00AC 0001", "01 01 01", id="§6.5 FC05 turns coil 173 on"),
    pytest.param("06 0001 0003", "03 0001 0001", "03 02 0003", id="§6.6 FC06 sets register 2"),
    pytest.param("0F 0013 000A 02 CD01", "01 0013 000A", "01 02 CD01", id="§6.11 FC15 sets coils 20..29"),
    pytest.param("10 0001 0002 04 000A 0102", "03 0001 0002", "03 04 000A 0102", id="§6.12 FC16 sets registers"),
    pytest.param("17 0003 0006 000E 0003 06 00FF 00FF 00FF", "03 000E 0003", "03 06 00FF 00FF 00FF",
                 id="§6.17 FC23 sets registers 15..17"),
]  # fmt: skip


@pytest.mark.parametrize(("write_hex", "read_hex", "response_hex"), SPEC_WRITES)
def test_handler_stores_what_the_spec_example_writes(
    spec_device: Device, write_hex: str, read_hex: str, response_hex: str
) -> None:
    handler.respond(spec_device, hexb(write_hex))
    assert handler.respond(spec_device, hexb(read_hex)) == hexb(response_hex)


def test_handler_mask_writes_the_spec_example_value(spec_device: Device) -> None:
    spec_device.holding_registers[4] = 0x12
    handler.respond(spec_device, hexb("16 0004 00F2 0025"))
    assert spec_device.holding_registers[4] == 0x17  # §6.16: (0x12 AND 0xF2) OR (0x25 AND NOT 0xF2)


# ------------------------------------------------------------------------------------------- exceptions

EXCEPTIONS = [
    # 01: function not supported (§7; Annex A reserves these codes or leaves them to users)
    pytest.param("42", "C2 01", id="FC 0x42 -> 01"),
    pytest.param("42 0000 0001", "C2 01", id="FC 0x42 with data -> 01"),
    pytest.param("00 0000 0001", "80 01", id="FC 0 -> 01"),
    pytest.param("80 0000 0001", "80 01", id="FC 0x80 -> 01"),
    pytest.param("81 0000 0001", "81 01", id="FC 0x81 -> 01"),
    pytest.param("FF", "FF 01", id="FC 0xFF -> 01"),
    pytest.param("09", "89 01", id="FC 9 reserved -> 01"),
    pytest.param("14 00", "94 01", id="FC20 unsupported -> 01"),
    pytest.param("18 0000", "98 01", id="FC24 unsupported -> 01"),
    pytest.param("2B 0D 01 00", "AB 01", id="FC43 MEI 0x0D (CANopen) -> 01"),
    pytest.param("08 0005 0000", "88 01", id="FC08 reserved sub-function 05 -> 01"),
    # 03: quantity out of range
    pytest.param("01 0000 0000", "81 03", id="FC01 qty 0 -> 03"),
    pytest.param("01 0000 07D1", "81 03", id="FC01 qty 2001 -> 03"),
    pytest.param("02 0000 0000", "82 03", id="FC02 qty 0 -> 03"),
    pytest.param("02 0000 07D1", "82 03", id="FC02 qty 2001 -> 03"),
    pytest.param("03 0000 0000", "83 03", id="FC03 qty 0 -> 03"),
    pytest.param("03 0000 007E", "83 03", id="FC03 qty 126 -> 03"),
    pytest.param("04 0000 0000", "84 03", id="FC04 qty 0 -> 03"),
    pytest.param("04 0000 007E", "84 03", id="FC04 qty 126 -> 03"),
    pytest.param("0F 0000 0000 00", "8F 03", id="FC15 qty 0 -> 03"),
    pytest.param("0F 0000 07B1 F7" + "00" * 247, "8F 03", id="FC15 qty 1969 -> 03"),
    pytest.param("10 0000 0000 00", "90 03", id="FC16 qty 0 -> 03"),
    pytest.param("10 0000 007C F8" + "00" * 248, "90 03", id="FC16 qty 124 -> 03"),
    pytest.param("17 0000 0000 0000 0001 02 0000", "97 03", id="FC23 read qty 0 -> 03"),
    pytest.param("17 0000 007E 0000 0001 02 0000", "97 03", id="FC23 read qty 126 -> 03"),
    pytest.param("17 0000 0001 0000 0000 00", "97 03", id="FC23 write qty 0 -> 03"),
    pytest.param("17 0000 0001 0000 007A F4" + "00" * 244, "97 03", id="FC23 write qty 122 -> 03"),
    # 03: FC05 value
    pytest.param("05 0000 1234", "85 03", id="FC05 value 0x1234 -> 03"),
    pytest.param("05 0000 00FF", "85 03", id="FC05 value 0x00FF -> 03"),
    pytest.param("05 0000 FFFF", "85 03", id="FC05 value 0xFFFF -> 03"),
    pytest.param("05 0000 0001", "85 03", id="FC05 value 0x0001 -> 03"),
    # 03: byte count disagrees with the quantity or with the PDU length
    pytest.param("0F 0000 000A 01 CD", "8F 03", id="FC15 byte count 1 for 10 coils -> 03"),
    pytest.param("0F 0000 000A 03 CD0100", "8F 03", id="FC15 byte count 3 for 10 coils -> 03"),
    pytest.param("0F 0000 000A 02 CD", "8F 03", id="FC15 byte count 2, one data byte -> 03"),
    pytest.param("0F 0000 000A 02 CD0100", "8F 03", id="FC15 byte count 2, three data bytes -> 03"),
    pytest.param("10 0000 0002 03 000A01", "90 03", id="FC16 byte count 3 for 2 registers -> 03"),
    pytest.param("10 0000 0002 04 000A", "90 03", id="FC16 byte count 4, two data bytes -> 03"),
    pytest.param("10 0000 0002 04 000A 0102 00", "90 03", id="FC16 byte count 4, five data bytes -> 03"),
    pytest.param("17 0000 0001 0000 0002 02 0000", "97 03", id="FC23 byte count 2 for 2 registers -> 03"),
    pytest.param("17 0000 0001 0000 0001 02 00", "97 03", id="FC23 byte count 2, one data byte -> 03"),
    # 03: a PDU whose length disagrees with its function's fixed layout
    pytest.param("01 0000 00", "81 03", id="FC01 PDU too short -> 03"),
    pytest.param("01 0000 0001 00", "81 03", id="FC01 PDU too long -> 03"),
    pytest.param("02", "82 03", id="FC02 PDU without data -> 03"),
    pytest.param("03 0000 0001 0000", "83 03", id="FC03 PDU too long -> 03"),
    pytest.param("04 00", "84 03", id="FC04 PDU too short -> 03"),
    pytest.param("05 0000 FF", "85 03", id="FC05 PDU too short -> 03"),
    pytest.param("06 0000 0003 00", "86 03", id="FC06 PDU too long -> 03"),
    pytest.param("07 00", "87 03", id="FC07 PDU with data -> 03"),
    pytest.param("08 00", "88 03", id="FC08 PDU without a sub-function -> 03"),
    pytest.param("08 000B 000000", "88 03", id="FC08/0B with three data bytes -> 03"),
    pytest.param("08 000B", "88 03", id="FC08/0B without data -> 03"),
    pytest.param("0B 00", "8B 03", id="FC11 PDU with data -> 03"),
    pytest.param("0C 00", "8C 03", id="FC12 PDU with data -> 03"),
    pytest.param("0F 0000 0001", "8F 03", id="FC15 PDU shorter than its header -> 03"),
    pytest.param("10 0000 0001", "90 03", id="FC16 PDU shorter than its header -> 03"),
    pytest.param("11 00", "91 03", id="FC17 PDU with data -> 03"),
    pytest.param("16 0000 FFFF", "96 03", id="FC22 PDU too short -> 03"),
    pytest.param("16 0000 FFFF 0000 00", "96 03", id="FC22 PDU too long -> 03"),
    pytest.param("17 0000 0001 0000 0001", "97 03", id="FC23 PDU shorter than its header -> 03"),
    pytest.param("2B 0E 01", "AB 03", id="FC43/14 PDU too short -> 03"),
    pytest.param("2B 0E 01 00 00", "AB 03", id="FC43/14 PDU too long -> 03"),
    # 03: FC43/14 read device id code outside 1..4 (§6.21)
    pytest.param("2B 0E 00 00", "AB 03", id="FC43/14 code 0 -> 03"),
    pytest.param("2B 0E 05 00", "AB 03", id="FC43/14 code 5 -> 03"),
    # 02: address range past 65535
    pytest.param("01 FFFF 0002", "81 02", id="FC01 addr 0xFFFF qty 2 -> 02"),
    pytest.param("01 F831 07D0", "81 02", id="FC01 addr 0xF831 qty 2000 -> 02"),
    pytest.param("02 FFFF 0002", "82 02", id="FC02 addr 0xFFFF qty 2 -> 02"),
    pytest.param("03 FFFF 0002", "83 02", id="FC03 addr 0xFFFF qty 2 -> 02"),
    pytest.param("03 FF84 007D", "83 02", id="FC03 addr 0xFF84 qty 125 -> 02"),
    pytest.param("04 FFFF 0002", "84 02", id="FC04 addr 0xFFFF qty 2 -> 02"),
    pytest.param("0F FFFF 0002 01 03", "8F 02", id="FC15 addr 0xFFFF qty 2 -> 02"),
    pytest.param("10 FFFF 0002 04 0001 0002", "90 02", id="FC16 addr 0xFFFF qty 2 -> 02"),
    pytest.param("17 FFFF 0002 0000 0001 02 0001", "97 02", id="FC23 read range past 65535 -> 02"),
    pytest.param("17 0000 0001 FFFF 0002 04 0001 0002", "97 02", id="FC23 write range past 65535 -> 02"),
    # 02: FC43/14 individual access to an object the device does not have
    pytest.param("2B 0E 04 03", "AB 02", id="FC43/14 individual unknown object 3 -> 02"),
    pytest.param("2B 0E 04 80", "AB 02", id="FC43/14 individual unknown object 0x80 -> 02"),
    # the order of checks: quantity and value (03) come before the address (02)
    pytest.param("03 FFFF 0000", "83 03", id="order: FC03 qty 0 at 0xFFFF -> 03"),
    pytest.param("03 FFFF 007E", "83 03", id="order: FC03 qty 126 at 0xFFFF -> 03"),
    pytest.param("01 FFFF 07D1", "81 03", id="order: FC01 qty 2001 at 0xFFFF -> 03"),
    pytest.param("0F FFFF 0002 02 0300", "8F 03", id="order: FC15 bad byte count at 0xFFFF -> 03"),
    pytest.param("10 FFFF 007C F8" + "00" * 248, "90 03", id="order: FC16 qty 124 at 0xFFFF -> 03"),
    pytest.param("17 FFFF 0002 0000 007A F4" + "00" * 244, "97 03", id="order: FC23 bad write qty, bad read -> 03"),
    pytest.param("2B 0E 05 80", "AB 03", id="order: FC43/14 bad code and unknown object -> 03"),
]  # fmt: skip

# these do not raise: the limits themselves are legal
LIMITS = [
    pytest.param("01 F830 07D0", "01 FA" + "00" * 250, id="FC01 qty 2000 ending at 0xFFFF"),
    pytest.param("02 0000 07D0", "02 FA" + "00" * 250, id="FC02 qty 2000"),
    pytest.param("03 FF83 007D", "03 FA" + "00" * 250, id="FC03 qty 125 ending at 0xFFFF"),
    pytest.param("04 0000 007D", "04 FA" + "00" * 250, id="FC04 qty 125"),
    pytest.param("05 FFFF FF00", "05 FFFF FF00", id="FC05 addr 0xFFFF"),
    pytest.param("06 FFFF 1234", "06 FFFF 1234", id="FC06 addr 0xFFFF"),
    pytest.param("0F 0000 07B0 F6" + "00" * 246, "0F 0000 07B0", id="FC15 qty 1968"),
    pytest.param("10 0000 007B F6" + "00" * 246, "10 0000 007B", id="FC16 qty 123"),
    pytest.param("17 0000 007D 0000 0079 F2" + "00" * 242, "17 FA" + "00" * 250, id="FC23 read 125 write 121"),
    pytest.param("16 FFFF 0000 0000", "16 FFFF 0000 0000", id="FC22 addr 0xFFFF"),
]  # fmt: skip


@pytest.mark.parametrize(("request_hex", "response_hex"), EXCEPTIONS)
def test_handler_answers_the_exception_case(spec_device: Device, request_hex: str, response_hex: str) -> None:
    assert handler.respond(spec_device, hexb(request_hex)) == hexb(response_hex)


@pytest.mark.parametrize(("request_hex", "response_hex"), LIMITS)
def test_handler_accepts_the_spec_limit(request_hex: str, response_hex: str) -> None:
    assert handler.respond(Device(), hexb(request_hex)) == hexb(response_hex)


# a device that implements 0..99 only (`Device(coils=100, ...)`): its end is exception 2 (issue: data tables)
SMALL_TABLE = [
    pytest.param("01 0063 0001", "01 01 00", id="FC01 last coil 99 is fine"),
    pytest.param("01 0063 0002", "81 02", id="FC01 coils 99..100 -> 02"),
    pytest.param("01 0064 0001", "81 02", id="FC01 coil 100 -> 02"),
    pytest.param("02 005A 000B", "82 02", id="FC02 inputs 90..100 -> 02"),
    pytest.param("03 0063 0001", "03 02 0000", id="FC03 last register 99 is fine"),
    pytest.param("03 0060 0005", "83 02", id="FC03 registers 96..100 -> 02"),
    pytest.param("04 0064 0001", "84 02", id="FC04 input register 100 -> 02"),
    pytest.param("05 0064 FF00", "85 02", id="FC05 coil 100 -> 02"),
    pytest.param("06 0064 0001", "86 02", id="FC06 register 100 -> 02"),
    pytest.param("0F 0060 0005 01 1F", "8F 02", id="FC15 coils 96..100 -> 02"),
    pytest.param("10 0063 0002 04 0001 0002", "90 02", id="FC16 registers 99..100 -> 02"),
    pytest.param("16 0064 FFFF 0000", "96 02", id="FC22 register 100 -> 02"),
    pytest.param("17 0064 0001 0000 0001 02 0001", "97 02", id="FC23 read register 100 -> 02"),
    pytest.param("17 0000 0001 0063 0002 04 0001 0002", "97 02", id="FC23 write registers 99..100 -> 02"),
    pytest.param("05 0064 1234", "85 03", id="order: FC05 bad value past the end -> 03"),
    pytest.param("03 0064 0000", "83 03", id="order: FC03 qty 0 past the end -> 03"),
]  # fmt: skip


@pytest.mark.parametrize(("request_hex", "response_hex"), SMALL_TABLE)
def test_handler_answers_exception_2_at_the_end_of_a_smaller_table(
    small_device: Device, request_hex: str, response_hex: str
) -> None:
    assert handler.respond(small_device, hexb(request_hex)) == hexb(response_hex)


@pytest.mark.parametrize(
    "request_hex",
    ["05 0064 FF00", "06 0064 0001", "0F 0060 0005 01 1F", "10 0063 0002 04 FFFF FFFF", "16 0064 0000 FFFF",
     "17 0000 0001 0063 0002 04 FFFF FFFF", "17 0064 0001 0000 0001 02 FFFF", "05 0000 1234"],
)  # fmt: skip
def test_handler_writes_nothing_when_it_answers_an_exception(small_device: Device, request_hex: str) -> None:
    handler.respond(small_device, hexb(request_hex))
    assert small_device.coils.read(0, 100) == [False] * 100
    assert small_device.holding_registers.values(0, 100) == [0] * 100


# ------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("name", sorted(REQUESTS))
@settings(max_examples=40)
@given(data=st.data())
def test_decode_request_inverts_encode_request(name: str, data: st.DataObject) -> None:
    request = data.draw(REQUESTS[name])
    assert decode_request(encode_request(request)) == request


@pytest.mark.parametrize("name", sorted(RESPONSES))
@settings(max_examples=40)
@given(data=st.data())
def test_decode_response_inverts_encode_response(name: str, data: st.DataObject) -> None:
    response: Response = data.draw(RESPONSES[name])
    assert decode_response(encode_response(response)) == response


@given(report_server_id_responses)
def test_decode_report_server_id_inverts_encode_response(response: ReportServerIdResponse) -> None:
    assert decode_report_server_id(encode_response(response), len(response.server_id)) == response


@given(requests())
def test_encode_request_fits_one_pdu(request: Request) -> None:
    assert 1 <= len(encode_request(request)) <= 253


@settings(max_examples=300)
@given(fuzz_pdus())
def test_decode_request_raises_only_illegal_function_or_illegal_data_value(pdu: bytes) -> None:
    try:
        request = decode_request(pdu)
    except (IllegalFunction, IllegalDataValue):
        return
    assert encode_request(request) == pdu  # whatever it accepts, it re-encodes to the same bytes


def test_decode_request_rejects_an_empty_pdu() -> None:
    with pytest.raises(ModbusError):
        decode_request(b"")


@settings(max_examples=300)
@given(fuzz_pdus())
def test_handler_answers_any_pdu_without_failing(pdu: bytes) -> None:
    device = Device(coils=1000, discrete_inputs=1000, holding_registers=1000, input_registers=1000)
    response = handler.respond(device, pdu)
    if response is None:  # FC08/04 is the one request answered with silence
        assert pdu[:3] == hexb("08 0004")
        return
    assert 2 <= len(response) <= 253
    if response[0] & 0x80:
        assert response[0] == (pdu[0] | 0x80)
        assert response[1] in (1, 2, 3)  # never 4: nothing a client sends is our bug
    else:
        assert response[0] == pdu[0]
