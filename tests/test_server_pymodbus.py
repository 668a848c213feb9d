"""modbusd over real loopback sockets, driven by pymodbus's client (an independent implementation) and raw bytes.

pymodbus checks quantities before it sends, so the exception-3 cases go out as raw bytes; everything pymodbus can
send goes through pymodbus. Each test starts its own server (fixtures in conftest.py) and stops it at the end.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException
from pymodbus.pdu import ModbusPDU

from modbusd import Device, Layout, Server
from modbusd.model.tables import BitTable
from modbusd.transport.tcp import TcpConnection

if TYPE_CHECKING:
    from tests.conftest import RawClient

    OpenRaw = Callable[..., RawClient]
    StartServer = Callable[..., Server]
    ConnectClient = Callable[..., ModbusTcpClient]
    Eventually = Callable[..., bool]

ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03
SERVER_DEVICE_FAILURE = 0x04
GATEWAY_TARGET_FAILED = 0x0B


def check_ok(response: ModbusPDU) -> Any:  # Any: each function's response class has its own fields
    assert not response.isError(), f"unexpected error response {response}"
    return response


def check_exception(response: ModbusPDU, code: int) -> None:
    assert response.isError(), f"expected exception {code}, got {response}"
    assert response.exception_code == code


# ------------------------------------------------------------------------------------ every function code


def test_pymodbus_reads_coils_and_discrete_inputs_the_device_holds(server: Server, client: ModbusTcpClient) -> None:
    server.device.coils.write(19, [True, False, True, True, False, False, True])
    server.device.discrete_inputs.write(0, [False, True])
    coils = check_ok(client.read_coils(19, count=7))
    inputs = check_ok(client.read_discrete_inputs(0, count=2))
    assert coils.bits[:7] == [True, False, True, True, False, False, True]
    assert inputs.bits[:2] == [False, True]


def test_pymodbus_reads_holding_and_input_registers_the_device_holds(server: Server, client: ModbusTcpClient) -> None:
    server.device.holding_registers.set_values(107, [0x022B, 0x0000, 0x0064])
    server.device.input_registers.set_values(8, [0x000A])
    assert check_ok(client.read_holding_registers(107, count=3)).registers == [0x022B, 0x0000, 0x0064]
    assert check_ok(client.read_input_registers(8, count=1)).registers == [0x000A]


def test_pymodbus_reads_the_largest_quantities_the_spec_allows(server: Server, client: ModbusTcpClient) -> None:
    server.device.coils.write(0, [i % 3 == 0 for i in range(2000)])
    server.device.holding_registers.set_values(65536 - 125, range(1000, 1125))
    assert check_ok(client.read_coils(0, count=2000)).bits[:2000] == [i % 3 == 0 for i in range(2000)]
    assert check_ok(client.read_holding_registers(65536 - 125, count=125)).registers == list(range(1000, 1125))


def test_pymodbus_writes_single_coil_and_register_into_the_device(server: Server, client: ModbusTcpClient) -> None:
    coil = check_ok(client.write_coil(172, True))
    register = check_ok(client.write_register(1, 0x0003))
    assert (coil.address, coil.bits[0]) == (172, True)  # FC05/FC06 answer with an echo of the request
    assert (register.address, register.registers) == (1, [0x0003])
    assert server.device.coils[172] is True
    assert server.device.holding_registers[1] == 0x0003
    check_ok(client.write_coil(172, False))
    assert server.device.coils[172] is False


def test_pymodbus_writes_multiple_coils_and_registers_into_the_device(server: Server, client: ModbusTcpClient) -> None:
    bits = [i % 5 == 1 for i in range(1968)]
    coils = check_ok(client.write_coils(19, bits))
    registers = check_ok(client.write_registers(1, list(range(500, 623))))
    assert (coils.address, coils.count) == (19, 1968)
    assert (registers.address, registers.count) == (1, 123)
    assert server.device.coils.read(19, 1968) == bits
    assert server.device.holding_registers.values(1, 123) == list(range(500, 623))


def test_pymodbus_mask_write_changes_only_the_masked_bits(server: Server, client: ModbusTcpClient) -> None:
    server.device.holding_registers[4] = 0x12
    reply = check_ok(client.mask_write_register(address=4, and_mask=0xF2, or_mask=0x25))
    assert (reply.and_mask, reply.or_mask) == (0xF2, 0x25)
    assert server.device.holding_registers[4] == 0x17  # §6.16's own example


def test_pymodbus_read_write_multiple_registers_writes_before_it_reads(server: Server, client: ModbusTcpClient) -> None:
    server.device.holding_registers.set_values(0, [1, 2, 3, 4])
    reply = check_ok(client.readwrite_registers(read_address=0, read_count=4, write_address=1, values=[20, 30]))
    assert reply.registers == [1, 20, 30, 4]
    assert server.device.holding_registers.values(0, 4) == [1, 20, 30, 4]


def test_pymodbus_reads_the_exception_status_the_device_sets(server: Server, client: ModbusTcpClient) -> None:
    server.device.exception_status = 0x5A
    assert check_ok(client.read_exception_status()).status == 0x5A


def test_pymodbus_diagnostics_return_query_data_echoes_the_data(client: ModbusTcpClient) -> None:
    assert check_ok(client.diag_query_data(b"\xa5\x37\x00\xff")).message == b"\xa5\x37\x00\xff"


def test_pymodbus_reads_diagnostic_counters_that_count_messages_exceptions_and_discards(
    server: Server, client: ModbusTcpClient, open_raw: OpenRaw
) -> None:
    check_ok(client.diag_clear_counters())
    check_ok(client.read_holding_registers(0, count=1))
    check_exception(client.read_holding_registers(65535, count=2), ILLEGAL_DATA_ADDRESS)
    raw = open_raw(server)
    raw.send(raw.frame(7, 1, "03 0000 0001", protocol_id=1))  # not Modbus: discarded, counted as an error
    assert raw.request("03 0000 0001", transaction_id=8) == bytes.fromhex("03 02 0000")
    # Each counter read is itself the next message: 4 before it, so the bus message count reads 5.
    assert check_ok(client.diag_read_bus_message_count()).message == 5
    assert check_ok(client.diag_read_bus_comm_error_count()).message == 1
    assert check_ok(client.diag_read_bus_exception_error_count()).message == 1
    assert check_ok(client.diag_read_device_message_count()).message == 7  # the discarded frame is not one
    assert check_ok(client.diag_read_device_no_response_count()).message == 0
    assert check_ok(client.diag_read_device_nak_count()).message == 0
    assert check_ok(client.diag_read_device_busy_count()).message == 0
    assert check_ok(client.diag_read_bus_char_overrun_count()).message == 0
    assert check_ok(client.diag_read_diagnostic_register()).message == 0
    check_ok(client.diag_clear_overrun_counter())
    check_ok(client.diag_clear_counters())
    assert check_ok(client.diag_read_bus_message_count()).message == 1


def test_pymodbus_restart_communications_clears_counters_and_the_event_log(
    server: Server, client: ModbusTcpClient
) -> None:
    check_ok(client.write_register(0, 1))
    check_exception(client.read_holding_registers(65535, count=2), ILLEGAL_DATA_ADDRESS)
    reply = check_ok(client.diag_restart_communication(True))  # data FF00: clear the event log as well
    assert reply.message == 0xFF00  # echoed
    assert check_ok(client.diag_read_bus_message_count()).message == 1  # only this read since the restart
    assert check_ok(client.diag_read_bus_exception_error_count()).message == 0
    log = check_ok(client.diag_get_comm_event_log())
    assert log.events[-1] == 0x00  # the oldest event left is the communication restart
    assert 0x41 not in log.events  # the exception sent before the restart went with the cleared log


def test_pymodbus_sees_zero_events_right_after_restart_communications(client: ModbusTcpClient) -> None:
    check_ok(client.write_register(0, 1))
    check_ok(client.diag_restart_communication(True))
    # §6.8.1 sub-function 01: "a normal response is returned. This occurs before the restart is executed",
    # and the restart clears "all of its communications event counters" (and, with FF00, the log).
    log = check_ok(client.diag_get_comm_event_log())
    assert log.event_count == 0
    assert log.events == [0x80, 0x00]  # this poll's receive event, then the restart: nothing from before it


def test_pymodbus_reserved_diagnostic_sub_functions_get_illegal_function(client: ModbusTcpClient) -> None:
    check_exception(client.diag_read_iop_overrun_count(), ILLEGAL_FUNCTION)  # 08/13: Modbus Plus, reserved
    check_exception(client.diag_getclear_modbus_response(), ILLEGAL_FUNCTION)  # 08/15: as above


def test_pymodbus_default_ascii_delimiter_request_is_rejected_as_the_spec_wants_char_then_zero(
    server: Server, client: ModbusTcpClient
) -> None:
    # §6.8.1 sub-function 03 carries "CHAR 00"; pymodbus's default sends 00 0A, the bytes the wrong way round.
    check_exception(client.diag_change_ascii_input_delimeter(), ILLEGAL_DATA_VALUE)
    check_ok(client.diag_change_ascii_input_delimeter(delimiter=0x0D00))
    assert server.device.diagnostics.ascii_delimiter == 0x0D


def test_pymodbus_comm_event_counter_counts_successful_requests_only(client: ModbusTcpClient) -> None:
    before = check_ok(client.diag_get_comm_event_counter())
    check_ok(client.write_register(0, 1))
    check_ok(client.write_coil(0, True))
    check_exception(client.read_holding_registers(65535, count=2), ILLEGAL_DATA_ADDRESS)
    after = check_ok(client.diag_get_comm_event_counter())
    assert after.status is True  # status word 0x0000: no program command in progress
    assert after.count == before.count + 2
    assert check_ok(client.diag_get_comm_event_counter()).count == after.count  # polls do not count


def test_pymodbus_comm_event_log_lists_receive_and_send_events_newest_first(client: ModbusTcpClient) -> None:
    check_ok(client.read_holding_registers(0, count=1))
    check_exception(client.read_holding_registers(65535, count=2), ILLEGAL_DATA_ADDRESS)
    log = check_ok(client.diag_get_comm_event_log())
    assert (log.event_count, log.message_count) == (1, 3)
    # receive (this poll), send with exception 1-3, receive, send, receive
    assert log.events == [0x80, 0x41, 0x80, 0x40, 0x80]


def test_pymodbus_report_server_id_gives_each_unit_its_own_id_and_run_indicator(
    start_server: StartServer, connect_client: ConnectClient
) -> None:
    pump, valve = Device(server_id=b"\x2apump"), Device(server_id=b"valve-7")
    valve.running = False
    client = connect_client(start_server({1: pump, 2: valve}))
    first = check_ok(client.report_device_id(device_id=1))
    second = check_ok(client.report_device_id(device_id=2))
    assert (first.identifier, first.status) == (b"\x2apump", True)
    assert (second.identifier, second.status) == (b"valve-7", False)


IDENTIFICATION = {
    0x00: "ACME", 0x01: "X-100", 0x02: "2.5", 0x03: "https://acme.example", 0x04: "Pump controller",
    0x05: "X-100/B", 0x06: "line 3", 0x80: "private",
}  # fmt: skip


@pytest.mark.parametrize(
    ("read_code", "object_ids"),
    [
        pytest.param(1, [0x00, 0x01, 0x02], id="basic"),
        pytest.param(2, [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06], id="regular"),
        pytest.param(3, [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x80], id="extended"),
    ],
)
def test_pymodbus_reads_device_identification_by_category(
    start_server: StartServer, connect_client: ConnectClient, read_code: int, object_ids: list[int]
) -> None:
    client = connect_client(start_server(Device(identification=IDENTIFICATION)))
    reply = check_ok(client.read_device_information(read_code=read_code, object_id=0))
    assert reply.information == {i: IDENTIFICATION[i].encode() for i in object_ids}
    assert reply.conformity == 0x83  # extended objects present, individual access supported
    assert (reply.more_follows, reply.next_object_id) == (0, 0)


def test_pymodbus_reads_one_identification_object_and_sees_changes_made_through_the_api(
    server: Server, client: ModbusTcpClient
) -> None:
    server.device.identification[0x81] = "serial 0042"
    reply = check_ok(client.read_device_information(read_code=4, object_id=0x81))
    assert reply.information == {0x81: b"serial 0042"}
    check_exception(client.read_device_information(read_code=4, object_id=0x90), ILLEGAL_DATA_ADDRESS)
    check_exception(client.read_device_information(read_code=5, object_id=0), ILLEGAL_DATA_VALUE)


def test_pymodbus_stream_access_from_an_unknown_object_restarts_at_the_first(
    start_server: StartServer, connect_client: ConnectClient
) -> None:
    client = connect_client(start_server(Device(identification=IDENTIFICATION)))
    reply = check_ok(client.read_device_information(read_code=2, object_id=0x90))
    assert sorted(reply.information) == [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]


def test_pymodbus_follows_more_follows_through_objects_that_do_not_fit_one_response(
    start_server: StartServer, connect_client: ConnectClient
) -> None:
    objects = {0x00: "ACME", 0x01: "X", 0x02: "1.0", **{0x80 + i: bytes([65 + i]) * 200 for i in range(4)}}
    client = connect_client(start_server(Device(identification=objects)))
    seen: dict[int, bytes] = {}
    next_object, responses = 0, 0
    while responses < 10:
        reply = check_ok(client.read_device_information(read_code=3, object_id=next_object))
        responses += 1
        seen.update(reply.information)
        if reply.more_follows == 0:
            break
        assert reply.more_follows == 0xFF
        next_object = reply.next_object_id
    assert responses == 4  # 200-byte objects fit one per response after the basic three
    assert seen == {k: v.encode() if isinstance(v, str) else v for k, v in objects.items()}


# ------------------------------------------------------------------------------------------ exceptions


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.read_coils(65535, count=2), id="FC01"),
        pytest.param(lambda c: c.read_discrete_inputs(65000, count=1000), id="FC02"),
        pytest.param(lambda c: c.read_holding_registers(65535, count=2), id="FC03"),
        pytest.param(lambda c: c.read_input_registers(65500, count=100), id="FC04"),
        pytest.param(lambda c: c.write_coils(65530, [True] * 7), id="FC15"),
        pytest.param(lambda c: c.write_registers(65535, [1, 2]), id="FC16"),
        pytest.param(
            lambda c: c.readwrite_registers(read_address=65535, read_count=2, write_address=0, values=[1]),
            id="FC23 read range",
        ),
        pytest.param(
            lambda c: c.readwrite_registers(read_address=0, read_count=1, write_address=65535, values=[1, 2]),
            id="FC23 write range",
        ),
    ],
)
def test_pymodbus_request_past_the_table_end_gets_illegal_data_address(
    server: Server, client: ModbusTcpClient, call: Callable[[ModbusTcpClient], object]
) -> None:
    check_exception(call(client), ILLEGAL_DATA_ADDRESS)
    assert server.device.holding_registers[0] == 0  # nothing was written, not even FC23's valid write range


def test_pymodbus_sees_the_smaller_tables_a_device_is_configured_with(
    start_server: StartServer, connect_client: ConnectClient
) -> None:
    device = Device(coils=100, discrete_inputs=50, holding_registers=10, input_registers=20)
    client = connect_client(start_server(device))
    check_ok(client.read_coils(99, count=1))
    check_exception(client.read_coils(99, count=2), ILLEGAL_DATA_ADDRESS)
    check_ok(client.read_discrete_inputs(49, count=1))
    check_exception(client.read_discrete_inputs(50, count=1), ILLEGAL_DATA_ADDRESS)
    check_ok(client.read_holding_registers(0, count=10))
    check_exception(client.read_holding_registers(10, count=1), ILLEGAL_DATA_ADDRESS)
    check_ok(client.read_input_registers(19, count=1))
    check_exception(client.read_input_registers(15, count=6), ILLEGAL_DATA_ADDRESS)
    check_exception(client.write_coil(100, True), ILLEGAL_DATA_ADDRESS)
    check_exception(client.write_register(10, 1), ILLEGAL_DATA_ADDRESS)
    check_exception(client.mask_write_register(address=10, and_mask=0, or_mask=1), ILLEGAL_DATA_ADDRESS)
    check_exception(client.write_registers(8, [1, 2, 3]), ILLEGAL_DATA_ADDRESS)
    assert device.holding_registers.values(8, 2) == [0, 0]


def test_unknown_function_0x42_gets_exception_c2_01_with_the_request_transaction_id(
    server: Server, open_raw: OpenRaw
) -> None:
    raw = open_raw(server)
    raw.send(raw.frame(0x1234, 0x11, "42 0001"))
    assert raw.read_adu() == (0x1234, 0, 0x11, bytes.fromhex("C2 01"))


RAW_EXCEPTIONS = [  # requests pymodbus refuses to build; Application Protocol §6 limits, §7 codes
    pytest.param("01 0000 0000", "81 03", id="FC01 quantity 0"),
    pytest.param("01 0000 07D1", "81 03", id="FC01 quantity 2001"),
    pytest.param("02 0000 07D1", "82 03", id="FC02 quantity 2001"),
    pytest.param("03 0000 007E", "83 03", id="FC03 quantity 126"),
    pytest.param("04 0000 0000", "84 03", id="FC04 quantity 0"),
    pytest.param("05 0000 1234", "85 03", id="FC05 value neither 0000 nor FF00"),
    pytest.param("0F 0000 07B1 F7" + "00" * 247, "8F 03", id="FC15 quantity 1969"),
    pytest.param("0F 0000 0008 02 FFFF", "8F 03", id="FC15 byte count disagrees with quantity"),
    pytest.param("0F 0000 0009 01 FF", "8F 03", id="FC15 byte count 1 for 9 coils"),
    pytest.param("0F 0000 0010 02 FF", "8F 03", id="FC15 PDU shorter than its byte count"),
    pytest.param("0F 0000 0008 01 FF 00", "8F 03", id="FC15 PDU longer than its byte count"),
    pytest.param("10 0000 007C 02 0001", "90 03", id="FC16 quantity 124"),
    pytest.param("10 0000 0002 04 0001", "90 03", id="FC16 PDU shorter than its byte count"),
    pytest.param("10 0000 0002 02 0001", "90 03", id="FC16 byte count disagrees with quantity"),
    pytest.param("10 0000 0001 02 0001 0002", "90 03", id="FC16 PDU longer than its byte count"),
    pytest.param("16 0000 00F2", "96 03", id="FC22 PDU too short"),
    pytest.param("17 0000 007E 0000 0001 02 0000", "97 03", id="FC23 read quantity 126"),
    pytest.param("17 0000 0001 0000 007A 02 0000", "97 03", id="FC23 write quantity 122"),
    pytest.param("17 0000 0001 0000 0002 02 0000", "97 03", id="FC23 byte count disagrees with write quantity"),
    pytest.param("17 0000 0001 0000 0002 04 0000", "97 03", id="FC23 PDU shorter than its byte count"),
    pytest.param("17 0000 0001 0000 0001 02 0000 0000", "97 03", id="FC23 PDU longer than its byte count"),
    pytest.param("03 FFFF 007E", "83 03", id="bad quantity and bad address: quantity checked first"),
    pytest.param("03 FFFF 0002", "83 02", id="good quantity, bad address"),
    pytest.param("08 0005 0000", "88 01", id="FC08 reserved sub-function 05"),
    pytest.param("2B 0E 05 00", "AB 03", id="FC43/14 read code 5"),
    pytest.param("00", "80 01", id="function code 0"),
    pytest.param("09", "89 01", id="reserved function code 9"),
]


@pytest.mark.parametrize(("request_hex", "response_hex"), RAW_EXCEPTIONS)
def test_server_answers_raw_bad_request_with_exception_and_keeps_the_connection(
    server: Server, open_raw: OpenRaw, request_hex: str, response_hex: str
) -> None:
    raw = open_raw(server)
    assert raw.request(request_hex, transaction_id=0xBEEF, unit_id=9) == bytes.fromhex(response_hex)
    assert raw.request("03 0000 0001", transaction_id=2, unit_id=9) == bytes.fromhex("03 02 0000")
    assert server.device.holding_registers[0] == 0 and not server.device.coils[0]


def test_pymodbus_oversized_write_closes_only_its_own_connection(
    server: Server, client: ModbusTcpClient, connect_client: ConnectClient, open_raw: OpenRaw
) -> None:
    # pymodbus does not check FC16's 123-register limit and sends a 261-byte ADU (MBAP length 255 > 254).
    bystander = open_raw(server)
    with pytest.raises(ConnectionException):
        client.write_registers(0, list(range(124)))
    assert bystander.request("03 0000 0001") == bytes.fromhex("03 02 0000")
    assert check_ok(connect_client(server).read_holding_registers(0, count=1)).registers == [0]


# --------------------------------------------------------------------------------------------- unit ids


def test_pymodbus_sees_separate_tables_for_each_unit_id(
    start_server: StartServer, connect_client: ConnectClient
) -> None:
    units = {1: Device(), 2: Device()}
    server = start_server(units)
    client = connect_client(server)
    check_ok(client.write_register(0, 111, device_id=1))
    check_ok(client.write_register(0, 222, device_id=2))
    check_ok(client.write_coil(5, True, device_id=2))
    assert check_ok(client.read_holding_registers(0, count=1, device_id=1)).registers == [111]
    assert check_ok(client.read_holding_registers(0, count=1, device_id=2)).registers == [222]
    assert check_ok(client.read_coils(5, count=1, device_id=1)).bits[0] is False
    assert (units[1].holding_registers[0], units[2].holding_registers[0]) == (111, 222)
    assert (units[1].coils[5], units[2].coils[5]) == (False, True)
    assert server.devices == units


def test_pymodbus_gets_gateway_target_failed_for_a_unit_without_device(
    start_server: StartServer, connect_client: ConnectClient
) -> None:
    client = connect_client(start_server({1: Device(), 2: Device()}))
    check_exception(client.read_holding_registers(0, count=1, device_id=3), GATEWAY_TARGET_FAILED)
    check_exception(client.read_holding_registers(0, count=1, device_id=255), GATEWAY_TARGET_FAILED)
    check_ok(client.read_holding_registers(0, count=1, device_id=2))


def test_server_stays_silent_for_a_unit_without_device_when_told_to_ignore_it(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    raw = open_raw(start_server({1: Device(), 2: Device()}, unknown_unit="ignore"))
    raw.send(raw.frame(10, 3, "03 0000 0001"))
    assert raw.is_silent(0.5)
    raw.send(raw.frame(11, 2, "03 0000 0001"))
    assert raw.read_adu() == (11, 0, 2, bytes.fromhex("03 02 0000"))  # the first bytes back answer unit 2


@pytest.mark.parametrize("unit_id", [0, 1, 247, 255])
def test_single_device_server_answers_every_unit_id_alike(
    server: Server, client: ModbusTcpClient, unit_id: int
) -> None:
    server.device.holding_registers[3] = 1234
    reply = check_ok(client.read_holding_registers(3, count=1, device_id=unit_id))
    assert (reply.registers, reply.dev_id) == ([1234], unit_id)  # the unit id is echoed
    check_ok(client.write_register(4, unit_id + 1, device_id=unit_id))
    assert server.device.holding_registers[4] == unit_id + 1


# ---------------------------------------------------------------------------------------------- layouts


def test_separate_layout_keeps_the_four_tables_apart(start_server: StartServer, connect_client: ConnectClient) -> None:
    client = connect_client(start_server(Device(Layout.SEPARATE)))
    check_ok(client.write_register(10, 0xABCD))
    check_ok(client.write_coil(10, True))
    assert check_ok(client.read_input_registers(10, count=1)).registers == [0]
    assert check_ok(client.read_discrete_inputs(10, count=1)).bits[0] is False
    assert check_ok(client.read_holding_registers(0, count=1)).registers == [0]


def test_overlaid_layout_shows_holding_writes_as_input_registers_and_coils_as_inputs(
    start_server: StartServer, connect_client: ConnectClient
) -> None:
    device = Device(Layout.OVERLAID)
    client = connect_client(start_server(device))
    check_ok(client.write_register(10, 0xABCD))
    check_ok(client.write_coil(10, True))
    assert check_ok(client.read_input_registers(10, count=1)).registers == [0xABCD]
    assert check_ok(client.read_discrete_inputs(10, count=1)).bits[0] is True
    assert device.input_registers[10] == 0xABCD and device.discrete_inputs[10] is True
    assert check_ok(client.read_holding_registers(0, count=1)).registers == [0]  # coils are not in registers


def test_packed_layout_keeps_coils_inside_the_first_registers_lsb_first(
    start_server: StartServer, connect_client: ConnectClient
) -> None:
    device = Device(Layout.PACKED)
    client = connect_client(start_server(device))
    check_ok(client.write_coil(17, True))
    assert check_ok(client.read_holding_registers(1, count=1)).registers == [0b10]  # coil 17 = register 1, bit 1
    assert check_ok(client.read_input_registers(1, count=1)).registers == [0b10]
    check_ok(client.write_register(2, 0x8001))  # and the other way round: bits 0 and 15 of register 2
    bits = check_ok(client.read_coils(32, count=16)).bits
    assert bits[:16] == [True] + [False] * 14 + [True]
    assert check_ok(client.read_discrete_inputs(47, count=1)).bits[0] is True
    assert device.holding_registers.values(0, 3) == [0, 0b10, 0x8001]


# ------------------------------------------------------------------------------------------ connections


def test_server_answers_200_concurrent_pymodbus_clients(server: Server, eventually: Eventually) -> None:
    count = 200

    async def main() -> list[list[int]]:
        clients = [AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=5, retries=0) for _ in range(count)]
        try:
            connected = await asyncio.gather(*(c.connect() for c in clients))
            assert all(connected)
            assert await asyncio.to_thread(eventually, lambda: server.connection_count == count)

            async def work(i: int, client: AsyncModbusTcpClient) -> list[int]:
                values = []
                for round_ in range(5):
                    check_ok(await client.write_register(i, i * 10 + round_))
                    values.append(check_ok(await client.read_holding_registers(i, count=1)).registers[0])
                return values

            return await asyncio.wait_for(asyncio.gather(*(work(i, c) for i, c in enumerate(clients))), 30)
        finally:
            for client in clients:
                client.close()

    results = asyncio.run(main())
    assert results == [[i * 10 + r for r in range(5)] for i in range(count)]
    assert server.device.holding_registers.values(0, count) == [i * 10 + 4 for i in range(count)]


def test_server_answers_16_pipelined_requests_in_order(server: Server, open_raw: OpenRaw) -> None:
    server.device.holding_registers.set_values(0, range(100, 116))
    raw = open_raw(server)
    requests = [raw.frame(0x100 + i, 1, struct.pack(">BHH", 3, i, 1)) for i in range(14)]
    requests.append(raw.frame(0x10E, 1, "06 01F4 0007"))  # write register 500 ...
    requests.append(raw.frame(0x10F, 1, "03 01F4 0001"))  # ... then read it back, in the same send
    raw.send(b"".join(requests))
    answers = [raw.read_adu() for _ in range(16)]
    assert [a[0] for a in answers] == list(range(0x100, 0x110))
    assert [a[3] for a in answers[:14]] == [struct.pack(">BBH", 3, 2, 100 + i) for i in range(14)]
    assert answers[14][3] == bytes.fromhex("06 01F4 0007")
    assert answers[15][3] == bytes.fromhex("03 02 0007")


def test_server_reassembles_a_request_sent_one_byte_at_a_time(server: Server, open_raw: OpenRaw) -> None:
    server.device.holding_registers[0x6B] = 0x022B
    raw = open_raw(server)
    request = raw.frame(0x4242, 1, "03 006B 0001")
    for byte in request[:-1]:
        raw.send(bytes([byte]))
        time.sleep(0.005)  # TCP_NODELAY on our side: each byte leaves as its own segment
    assert raw.is_silent(0.2)
    raw.send(request[-1:])
    assert raw.read_adu() == (0x4242, 0, 1, bytes.fromhex("03 02 022B"))


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_client_disconnecting_mid_request_does_not_disturb_others(
    server: Server, client: ModbusTcpClient, open_raw: OpenRaw, eventually: Eventually, reset: bool
) -> None:
    check_ok(client.write_register(0, 5))
    quitters = [open_raw(server) for _ in range(3)]
    quitters[0].send(quitters[0].frame(1, 1, "10 0000 0002 04 0001 0002")[:9])  # a write cut short
    quitters[1].send(quitters[1].frame(1, 1, "03 0000 0001"))  # a whole request whose answer nobody reads
    assert eventually(lambda: server.connection_count == 4)
    for quitter in quitters:
        if reset:
            quitter.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        quitter.close()
    assert eventually(lambda: server.connection_count == 1)
    assert check_ok(client.read_holding_registers(0, count=2)).registers == [5, 0]  # the half write did nothing


@pytest.mark.parametrize("length", [0, 1, 255, 0xFFFF])
def test_bad_mbap_length_closes_only_that_connection(
    server: Server, client: ModbusTcpClient, connect_client: ConnectClient, open_raw: OpenRaw, length: int
) -> None:
    garbage = open_raw(server)
    garbage.send(struct.pack(">HHHB", 1, 0, length, 1) + b"\x03\x00\x00\x00\x01")
    assert garbage.closed_by_peer()
    check_ok(client.write_register(0, 9))  # a connection that was already open goes on
    assert check_ok(connect_client(server).read_holding_registers(0, count=1)).registers == [9]  # so does a new one


def test_requests_pipelined_before_a_bad_frame_are_answered_before_the_close(server: Server, open_raw: OpenRaw) -> None:
    raw = open_raw(server)
    good = raw.frame(1, 1, "06 0000 002A") + raw.frame(2, 1, "03 0000 0001")
    raw.send(good + struct.pack(">HHHB", 3, 0, 0x0FFF, 1) + b"\x03\x00\x00\x00\x01")
    assert raw.read_adu() == (1, 0, 1, bytes.fromhex("06 0000 002A"))
    assert raw.read_adu() == (2, 0, 1, bytes.fromhex("03 02 002A"))
    assert raw.closed_by_peer()


def test_frame_with_protocol_id_1_is_discarded_and_the_connection_goes_on(server: Server, open_raw: OpenRaw) -> None:
    raw = open_raw(server)
    raw.send(raw.frame(5, 1, "06 0000 0063", protocol_id=1))
    raw.send(raw.frame(6, 1, "03 0000 0001"))
    assert raw.read_adu() == (6, 0, 1, bytes.fromhex("03 02 0000"))  # no answer to 5, and 5 wrote nothing
    assert raw.is_silent(0.2)


def test_listen_only_mode_stops_answers_until_restart_communications(
    start_server: StartServer, connect_client: ConnectClient, open_raw: OpenRaw, eventually: Eventually
) -> None:
    units = {1: Device(), 2: Device()}
    server = start_server(units)
    client = connect_client(server)
    client.diag_force_listen_only(device_id=1)  # 08/04: no response, by definition
    assert eventually(lambda: units[1].diagnostics.listen_only)
    raw = open_raw(server)
    raw.send(raw.frame(1, 1, "06 0000 0063"))
    raw.send(raw.frame(2, 1, "03 0000 0001"))
    assert raw.is_silent(0.5)
    assert units[1].holding_registers[0] == 0  # monitored, not acted on
    assert raw.request("03 0000 0001", transaction_id=3, unit_id=2) == bytes.fromhex("03 02 0000")  # unit 2 is fine
    raw.send(raw.frame(4, 1, "08 0001 0000"))  # restart communications: still no response ...
    assert raw.is_silent(0.5)
    assert raw.request("03 0000 0001", transaction_id=5, unit_id=1) == bytes.fromhex("03 02 0000")  # ... but answers
    log = check_ok(client.diag_get_comm_event_log(device_id=1))
    assert 0x04 in log.events and 0x00 in log.events  # entered listen-only, then restarted
    assert log.events.index(0x00) < log.events.index(0x04)


def test_server_sets_nodelay_and_keepalive_on_every_connection(
    monkeypatch: pytest.MonkeyPatch, server: Server, open_raw: OpenRaw, eventually: Eventually
) -> None:
    options: list[tuple[int, int]] = []
    connection_made = TcpConnection.connection_made

    def spy(self: TcpConnection, transport: asyncio.BaseTransport) -> None:
        connection_made(self, transport)
        sock = transport.get_extra_info("socket")
        options.append(
            (
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            )
        )

    monkeypatch.setattr(TcpConnection, "connection_made", spy)
    for _ in range(2):
        open_raw(server).request("03 0000 0001")
    assert eventually(lambda: len(options) == 2)
    assert all(nodelay and keepalive for nodelay, keepalive in options), options


def test_server_listens_again_on_its_port_right_after_stopping(start_server: StartServer, open_raw: OpenRaw) -> None:
    first = start_server()
    raw = open_raw(first)
    assert raw.request("03 0000 0001") == bytes.fromhex("03 02 0000")
    first.stop_thread()
    assert raw.closed_by_peer()  # the server closed first: its side of the connection is now in TIME_WAIT
    raw.close()
    second = start_server(Device(), port=first.port)  # SO_REUSEADDR: binding the port again is allowed
    assert open_raw(second).request("03 0000 0001") == bytes.fromhex("03 02 0000")


def test_connection_limit_closes_the_longest_unused_connection(
    start_server: StartServer, open_raw: OpenRaw, eventually: Eventually
) -> None:
    server = start_server(max_connections=2)
    first, second = open_raw(server), open_raw(server)
    second.request("03 0000 0001")
    time.sleep(0.05)
    first.request("03 0000 0001")  # first is now the more recently used
    third = open_raw(server)
    assert third.request("03 0000 0001") == bytes.fromhex("03 02 0000")
    assert second.closed_by_peer()
    assert first.request("03 0000 0001") == bytes.fromhex("03 02 0000")
    assert eventually(lambda: server.connection_count == 2)


def test_idle_timeout_closes_an_idle_connection_but_not_an_active_one(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    server = start_server(idle_timeout=1.0)
    idle, active = open_raw(server), open_raw(server)
    idle.request("03 0000 0001")
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert active.request("03 0000 0001") == bytes.fromhex("03 02 0000")  # never idle for more than ~0.1 s
        time.sleep(0.1)
    assert idle.closed_by_peer(timeout=0.5)  # idle for 2.5 s already: closed by now
    assert active.request("03 0000 0001") == bytes.fromhex("03 02 0000")


def test_failure_inside_handling_gives_exception_4_and_everything_goes_on(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    server: Server,
    client: ModbusTcpClient,
    connect_client: ConnectClient,
) -> None:
    def broken(self: BitTable, address: int, quantity: int) -> bytes:
        raise RuntimeError("simulated bug in the data model")

    with monkeypatch.context() as patch:
        patch.setattr(BitTable, "read_packed", broken)
        with caplog.at_level(logging.ERROR, logger="modbusd"):
            check_exception(client.read_coils(0, count=1), SERVER_DEVICE_FAILURE)
        check_ok(client.write_coil(0, True))  # the same connection goes on
        check_exception(connect_client(server).read_discrete_inputs(0, count=1), SERVER_DEVICE_FAILURE)
    assert check_ok(client.read_coils(0, count=1)).bits[0] is True
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("modbusd")]
    assert len(tracebacks) == 2  # one per failed request, no more
    assert all("simulated bug" in str(record.exc_info[1]) for record in tracebacks)  # type: ignore[index]  # exc_info checked above
