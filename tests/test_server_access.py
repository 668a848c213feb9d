"""Access rules without TLS, over real sockets on 127.0.0.1: read-only ranges answered with the exception chosen
(pymodbus), client allow-lists per endpoint (TCP closed at accept, UDP datagrams dropped) and per unit id."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import pytest
from pymodbus.client import ModbusTcpClient, ModbusUdpClient

from modbusd import Device, Server
from modbusd.authorize import ReadOnly, parse_spans
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.rtu import with_crc
from tests.conftest import HOST, TIMEOUT, RawClient, mbap_frame, wait_until

ELSEWHERE = "192.0.2.0/24"  # TEST-NET-1: never 127.0.0.1


def read_only_device(code: ExceptionCode = ExceptionCode.ILLEGAL_DATA_ADDRESS) -> Device:
    device = Device()
    device.guard = ReadOnly(parse_spans(["100-199.hr", "0-7.co"]), code)
    return device


@pytest.mark.parametrize("code", [ExceptionCode.ILLEGAL_DATA_ADDRESS, ExceptionCode.ILLEGAL_FUNCTION,
                                  ExceptionCode.SERVER_DEVICE_FAILURE])  # fmt: skip
def test_read_only_ranges_answer_client_writes_with_the_chosen_exception(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient], code: ExceptionCode
) -> None:
    server = start_server(read_only_device(code))
    client = connect_client(server)
    for refused in (client.write_register(150, 1), client.write_registers(198, [1, 2, 3]), client.write_coil(7, True),
                    client.mask_write_register(address=100, and_mask=0, or_mask=1)):  # fmt: skip
        assert refused.isError() and refused.exception_code == code
    assert not client.write_register(200, 5).isError()
    assert not client.write_coil(8, True).isError()
    server.write("150.hr", 42)  # the owner's own write goes through
    assert client.read_holding_registers(150, count=1).registers == [42]


def test_read_only_ranges_hold_over_udp_too(start_server: Callable[..., Server]) -> None:
    server = start_server(read_only_device(), udp=0)
    client = ModbusUdpClient(HOST, port=server.udp_port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        assert client.write_register(150, 1).exception_code == ExceptionCode.ILLEGAL_DATA_ADDRESS
    finally:
        client.close()
    assert server.read("150.hr") == 0


def test_a_tcp_client_off_the_allow_list_is_closed_at_accept_and_logged_once_a_minute(
    start_server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "modbusd")
    server = start_server(allow=[ELSEWHERE])
    for _ in range(3):
        client = RawClient(server.port, TIMEOUT)
        try:
            client.send(mbap_frame(1, 1, "03 0000 0001"))
            assert client.closed_by_peer()
        finally:
            client.close()
    assert wait_until(lambda: server.counters()["security"]["refused_clients"] == 3)  # type: ignore[index]
    lines = [r.getMessage() for r in caplog.records if "allow-list" in r.getMessage()]
    assert lines == [f"{HOST} is not on the tcp allow-list: refused"]
    assert server.connection_count == 0


def test_a_tcp_client_on_the_allow_list_is_served(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient]
) -> None:
    server = start_server(allow=[ELSEWHERE, "127.0.0.0/8"])
    assert connect_client(server).read_holding_registers(0, count=1).registers == [0]


def test_udp_datagrams_from_a_client_off_the_allow_list_are_dropped(start_server: Callable[..., Server]) -> None:
    server = start_server(port=None, udp=0, allow={"udp": [ELSEWHERE]})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(mbap_frame(1, 1, "03 0000 0001"), (HOST, server.udp_port))
        with pytest.raises(TimeoutError):
            sock.recv(300)
    assert server.counters()["security"]["refused_clients"] == 1  # type: ignore[index]


def test_an_endpoint_allow_list_leaves_the_other_endpoints_alone(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient]
) -> None:
    server = start_server(udp=0, allow={"udp": [ELSEWHERE]})
    assert connect_client(server).read_holding_registers(0, count=1).registers == [0]


@pytest.mark.parametrize("unknown_unit", ["exception", "ignore"])
def test_a_unit_id_whose_allow_list_lacks_the_client_answers_as_a_unit_without_a_device(
    start_server: Callable[..., Server], open_raw: Callable[..., RawClient], unknown_unit: str
) -> None:
    server = start_server({1: Device(), 2: Device()}, allow_units={2: [ELSEWHERE]}, unknown_unit=unknown_unit)
    client = open_raw(server)
    assert client.request("03 0000 0001", unit_id=1) == bytes.fromhex("03 02 0000")
    if unknown_unit == "exception":
        assert client.request("03 0000 0001", unit_id=2) == bytes.fromhex("83 0B")
    else:
        client.send(mbap_frame(2, 2, "03 0000 0001"))
        assert client.is_silent()
    assert server.counters()["security"]["refused_units"] == 1  # type: ignore[index]


def test_no_rules_no_security_counters(server: Server) -> None:
    assert "security" not in server.counters()


def test_read_only_ranges_hold_on_a_serial_bus_for_fc15_and_both_halves_of_fc23(
    start_server: Callable[..., Server], open_raw: Callable[..., RawClient]
) -> None:
    """RTU over TCP: the serial bus's answer path (slave ids, as on a serial line) checks the ranges too; FC15 into
    the read-only coils and FC23's write half are refused, while FC23 may read a read-only register."""
    server = start_server(read_only_device(), rtu_over_tcp=0)
    assert server.rtu_over_tcp_port is not None
    line = open_raw(server.rtu_over_tcp_port)
    for request, refused in (("01 0F 0000 000A 02 FF03", "01 8F 02"),  # coils 0..9: 0..7 are read-only
                             ("01 17 0000 0001 0096 0001 02 0005", "01 97 02")):  # writes 150  # fmt: skip
        line.send(with_crc(bytes.fromhex(request)))
        assert line.recv_exact(5) == with_crc(bytes.fromhex(refused))
    line.send(with_crc(bytes.fromhex("01 17 0096 0001 012C 0001 02 0005")))  # reads 150, writes 300
    assert line.recv_exact(7) == with_crc(bytes.fromhex("01 17 02 0000"))
    assert (server.read("150.hr"), server.read("300.hr"), server.read("0.co")) == (0, 5, False)
