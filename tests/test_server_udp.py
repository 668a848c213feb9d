"""Modbus over UDP: one datagram is one request, so a response is never much larger than the datagram that asked.

A datagram's first request is answered; what follows it is dropped and counted (`server.counters()["udp"]`, and
FC08's bus communication error count on the device). Without that, one datagram of 250 FC03 requests (3,000 bytes,
from any spoofed address) drew 64,750 bytes of responses: 21.6 times its size, aimed at whoever it claimed to be.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusUdpClient

from modbusd import Device, Server, handler
from modbusd.protocol.adu import Adu
from modbusd.protocol.mbap import DatagramFramer, MbapFramer
from modbusd.session import FrameError, Session
from tests.conftest import HOST, MBAP, TIMEOUT, mbap_frame
from tests.strategies import adus, encode_adus

if TYPE_CHECKING:
    StartServer = Callable[..., Server]

MAX_TCP_ADU = 260  # TCP guide §3.1.3: MBAP header 7 + PDU 253
READ_125 = "03 0000 007D"  # FC03, 125 registers from address 0: 12 bytes in, 259 out, the protocol's own ratio
QUIET = 0.5  # seconds without a datagram that show no more responses come


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(TIMEOUT)
    return sock


def responses_to(sock: socket.socket, port: int, datagram: bytes) -> list[bytes]:
    """Every datagram that comes back for `datagram`: the first within TIMEOUT, the rest until QUIET passes."""
    sock.sendto(datagram, (HOST, port))
    received = [sock.recv(65535)]
    sock.settimeout(QUIET)
    try:
        while len(received) < 1000:  # bounded: 250 would be the old behaviour
            received.append(sock.recv(65535))
    except TimeoutError:
        pass
    finally:
        sock.settimeout(TIMEOUT)
    return received


def test_a_datagram_of_250_requests_gets_one_response_for_the_first(start_server: StartServer) -> None:
    device = Device()
    server = start_server(device, port=None, udp=0)
    datagram = b"".join(mbap_frame(tid, 1, READ_125) for tid in range(1, 251))
    assert len(datagram) == 3000
    with udp_socket() as sock:
        received = responses_to(sock, server.udp_port, datagram)
    assert len(received) == 1
    (response,) = received
    tid, proto, length, unit = MBAP.unpack_from(response)
    assert length == len(response) - 6
    assert (tid, proto, unit, response[7:9]) == (1, 0, 1, bytes.fromhex("03 FA"))
    assert len(response) == 259  # one ADU: the amplification is the protocol's own FC03 ratio, 259 / 12
    assert server.counters()["udp"] == {"datagrams_trimmed": 1, "requests_dropped": 249, "bytes_dropped": 2988}
    assert device.diagnostics.bus_communication_error == 249  # FC08/0C shows it to Modbus clients too
    assert device.diagnostics.server_message == 1


def test_bytes_after_the_first_request_are_dropped_and_counted_even_when_no_request(
    start_server: StartServer,
) -> None:
    server = start_server(port=None, udp=0)
    with udp_socket() as sock:
        received = responses_to(sock, server.udp_port, mbap_frame(7, 1, "03 0000 0001") + b"\x00\x01junk")
    assert [r[:2] for r in received] == [b"\x00\x07"]
    assert server.counters()["udp"] == {"datagrams_trimmed": 1, "requests_dropped": 0, "bytes_dropped": 6}


def test_a_datagram_with_one_request_still_works_with_pymodbus(start_server: StartServer) -> None:
    server = start_server(port=None, udp=0)
    client = ModbusUdpClient(HOST, port=server.udp_port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        assert not client.write_registers(10, [1, 2, 3], device_id=1).isError()
        reply = client.read_holding_registers(10, count=3, device_id=1)
        assert not reply.isError() and reply.registers == [1, 2, 3]
    finally:
        client.close()
    assert server.counters()["udp"] == {"datagrams_trimmed": 0, "requests_dropped": 0, "bytes_dropped": 0}


# ------------------------------------------------------------------------------ the limit, as a property


def udp_session(device: Device, dropped: list[tuple[list[Adu], int]]) -> Session:
    framer = DatagramFramer(lambda requests, extra: dropped.append((requests, extra)))
    return Session(lambda _unit, pdu: handler.respond(device, pdu), framer=framer)


@given(frames=st.lists(adus(), min_size=1, max_size=30), tail=st.binary(max_size=20))
def test_any_datagram_gets_at_most_one_response_of_one_adu(frames: list[Adu], tail: bytes) -> None:
    """Whatever a datagram holds, its response is at most one ADU (≤ 260 bytes), for its first request."""
    datagram = encode_adus(frames) + tail
    dropped: list[tuple[list[Adu], int]] = []
    try:
        out = udp_session(Device(), dropped).receive(datagram)
    except FrameError as exc:
        out = exc.reply
    assert len(out) <= MAX_TCP_ADU
    if out:
        assert MbapFramer().feed(out)[0].transaction_id == frames[0].transaction_id
        assert len(MbapFramer().feed(out)) == 1
    if len(frames) > 1 or tail:
        assert len(dropped) == 1
        requests, extra = dropped[0]
        assert requests == frames[1 : len(requests) + 1]  # whole requests, in order (a bad tail may end them)
        assert extra == len(datagram) - len(encode_adus(frames[:1]))
    else:
        assert dropped == []
