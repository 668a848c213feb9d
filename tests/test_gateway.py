"""The gateway: Modbus/TCP (and UDP) requests for forwarded unit ids go to a serial line or another server.

A TCP client (pymodbus, or raw bytes where transaction ids and timing matter) talks to one modbusd, the
gateway; a socat pty pair carries its requests to a second modbusd serving the serial line, or a third
modbusd listens on 127.0.0.1. Serial lines run 8N2 (see test_server_serial.py: this kernel refuses even
parity on ptys). Time-outs are short so that the silent and slow cases stay quick, and every wait is bounded.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import serial
from pymodbus.client import ModbusTcpClient, ModbusUdpClient

from modbusd import Device, Server
from modbusd.server import SerialLine, TcpTarget
from tests.strategies import rtu_frame

if TYPE_CHECKING:
    from tests.conftest import PtyPair, RawClient

    OpenRaw = Callable[..., RawClient]
    StartServer = Callable[..., Server]
    MakePty = Callable[[], PtyPair]
    Connect = Callable[..., ModbusTcpClient]

HOST = "127.0.0.1"
TIMEOUT = 3.0
SHORT = 0.3  # the gateway's forward time-out where a downstream stays silent
READ_5 = "03 0000 0002"  # FC03, two registers from 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def line(path: str, framing: str = "rtu") -> SerialLine:
    return SerialLine(path, framing, parity="N")


def downstream_on_line(start_server: StartServer, pair: PtyPair, framing: str = "rtu", unit_id: int = 5) -> Server:
    """A second modbusd serving the far end of the pty pair: one device at slave id `unit_id`, no TCP."""
    device = Device()
    device.holding_registers.set_values(0, [0x1234, 0x5678])
    return start_server(device, port=None, serial=line(pair.server_end, framing), unit_id=unit_id)


def exception_code(pdu: bytes, function: int = 3) -> int:
    assert pdu[0] == function | 0x80, f"expected an exception response, got {pdu.hex(' ')}"
    return pdu[1]


# ------------------------------------------------------------------------------------------- passing through


@pytest.mark.parametrize("framing", ["rtu", "ascii"])
def test_gateway_forwards_reads_and_writes_to_a_serial_line_with_the_original_transaction_ids(
    pty_pair: MakePty, start_server: StartServer, connect_client: Connect, open_raw: OpenRaw, framing: str
) -> None:
    pair = pty_pair()
    downstream = downstream_on_line(start_server, pair, framing)
    gateway = start_server(Device(), forward={5: line(pair.client_end, framing)}, forward_timeout=TIMEOUT)
    client = connect_client(gateway)
    assert client.read_holding_registers(0, count=2, device_id=5).registers == [0x1234, 0x5678]
    assert not client.write_registers(10, [1, 2, 3], device_id=5).isError()
    assert not client.write_coil(7, True, device_id=5).isError()
    assert downstream.device.holding_registers.values(10, 3) == [1, 2, 3]
    assert downstream.device.coils.read(7, 1) == [True]
    assert gateway.device.holding_registers.values(10, 3) == [0, 0, 0]  # it went out, not into the gateway
    assert client.read_holding_registers(0, count=2, device_id=1).registers == [0, 0]  # unit 1: the local device
    raw = open_raw(gateway)
    for transaction_id in (0xBEEF, 0, 0xFFFF):  # RawClient.request checks the echoed transaction and unit ids
        assert raw.request(READ_5, transaction_id=transaction_id, unit_id=5) == bytes.fromhex("03 04 1234 5678")
    assert exception_code(raw.request("03 FFFF 0002", unit_id=5)) == 0x02  # the downstream's own exception


def test_gateway_forwards_to_another_modbus_tcp_server(
    start_server: StartServer, connect_client: Connect, open_raw: OpenRaw
) -> None:
    downstream = start_server(Device())
    gateway = start_server(Device(), forward={7: TcpTarget(HOST, downstream.port), 8: TcpTarget(HOST, downstream.port)})
    assert len(gateway.downstreams) == 1  # equal targets are one downstream
    client = connect_client(gateway)
    assert not client.write_registers(3, [11, 12], device_id=7).isError()
    assert downstream.device.holding_registers.values(3, 2) == [11, 12]
    assert client.read_holding_registers(3, count=2, device_id=8).registers == [11, 12]
    raw = open_raw(gateway)
    assert raw.request("03 0003 0001", transaction_id=0x4242, unit_id=7) == bytes.fromhex("03 02 000B")


def test_gateway_forwards_over_udp_too(start_server: StartServer) -> None:
    downstream = start_server(Device())
    downstream.device.holding_registers.set_values(0, [99])
    gateway = start_server(Device(), port=None, udp=0, forward={7: TcpTarget(HOST, downstream.port)})
    client = ModbusUdpClient(HOST, port=gateway.udp_port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(0, count=1, device_id=7).registers == [99]
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [0]
    finally:
        client.close()


def test_gateway_broadcasts_unit_0_on_a_serial_line_and_answers_nothing(
    pty_pair: MakePty, start_server: StartServer, open_raw: OpenRaw, eventually: Callable[..., bool]
) -> None:
    pair = pty_pair()
    downstream = downstream_on_line(start_server, pair)
    target = line(pair.client_end)
    gateway = start_server(Device(), forward={0: target, 5: target}, forward_timeout=TIMEOUT)
    raw = open_raw(gateway)
    raw.send(raw.frame(1, 0, "06 0003 002A"))
    assert raw.is_silent(SHORT)  # Serial Line §2.1: a broadcast is never answered
    assert eventually(lambda: downstream.device.holding_registers.values(3, 1) == [0x2A])
    assert raw.request("03 0003 0001", transaction_id=2, unit_id=5) == bytes.fromhex("03 02 002A")


# ------------------------------------------------------------------------------------- what goes wrong, and how


def test_gateway_answers_0x0b_when_the_line_stays_silent(pty_pair: MakePty, start_server: StartServer,
                                                          open_raw: OpenRaw) -> None:  # fmt: skip
    pair = pty_pair()  # nothing on the other end
    gateway = start_server(Device(), forward={5: line(pair.client_end)}, forward_timeout=SHORT)
    raw = open_raw(gateway)
    started = time.monotonic()
    assert exception_code(raw.request(READ_5, transaction_id=9, unit_id=5)) == 0x0B  # within the client's 3 s
    assert time.monotonic() - started >= SHORT * 0.8  # after the time-out, not at once (timers may round down)


def test_gateway_answers_0x0b_for_a_unit_id_nobody_on_the_line_answers(
    pty_pair: MakePty, start_server: StartServer, open_raw: OpenRaw
) -> None:
    pair = pty_pair()
    downstream_on_line(start_server, pair, unit_id=5)
    target = line(pair.client_end)
    gateway = start_server(Device(), forward={5: target, 6: target}, forward_timeout=SHORT)
    raw = open_raw(gateway)
    assert exception_code(raw.request(READ_5, unit_id=6)) == 0x0B
    assert raw.request(READ_5, unit_id=5) == bytes.fromhex("03 04 1234 5678")  # the line still works


def test_gateway_answers_0x0a_when_the_serial_port_does_not_exist(start_server: StartServer,
                                                                  open_raw: OpenRaw) -> None:  # fmt: skip
    gateway = start_server(Device(), forward={5: line("/dev/modbusd-test-no-such-port")}, forward_timeout=60.0)
    raw = open_raw(gateway)
    # known at once: both answers come within the raw client's 3 s, where a time-out would take 60 s each
    assert exception_code(raw.request(READ_5, unit_id=5)) == 0x0A
    assert exception_code(raw.request("06 0001 0002", unit_id=5), function=6) == 0x0A
    assert raw.request(READ_5, unit_id=1) == bytes.fromhex("03 04 0000 0000")  # the gateway itself lives on


def test_gateway_answers_0x0a_when_the_tcp_server_refuses_the_connection(start_server: StartServer,
                                                                          open_raw: OpenRaw) -> None:  # fmt: skip
    gateway = start_server(Device(), forward={7: TcpTarget(HOST, free_port())}, forward_timeout=SHORT)
    raw = open_raw(gateway)
    assert exception_code(raw.request(READ_5, unit_id=7)) == 0x0A


def test_gateway_picks_up_a_tcp_server_that_comes_back(start_server: StartServer, open_raw: OpenRaw) -> None:
    downstream = start_server(Device())
    gateway = start_server(Device(), forward={7: TcpTarget(HOST, downstream.port)}, forward_timeout=SHORT)
    raw = open_raw(gateway)
    assert raw.request(READ_5, unit_id=7) == bytes.fromhex("03 04 0000 0000")
    port = downstream.port
    downstream.stop_thread(timeout=TIMEOUT)
    assert exception_code(raw.request(READ_5, unit_id=7)) == 0x0A
    start_server(Device(), port=port)
    assert raw.request(READ_5, unit_id=7) == bytes.fromhex("03 04 0000 0000")


def test_gateway_answers_06_beyond_the_queue_bound(pty_pair: MakePty, start_server: StartServer,
                                                    open_raw: OpenRaw) -> None:  # fmt: skip
    pair = pty_pair()  # silent: every forwarded request takes the whole time-out
    gateway = start_server(Device(), forward={5: line(pair.client_end)}, forward_timeout=SHORT, forward_queue=1)
    raws = [open_raw(gateway) for _ in range(5)]
    for number, raw in enumerate(raws):
        raw.send(raw.frame(number, 5, READ_5))
    arrivals: list[tuple[int, int]] = []  # (code, how many select() rounds it took), in the order they came
    with selectors.DefaultSelector() as selector:
        for raw in raws:
            selector.register(raw.sock, selectors.EVENT_READ, raw)
        deadline = time.monotonic() + TIMEOUT + 2 * SHORT
        for round_ in range(20):
            if len(arrivals) == len(raws) or (left := deadline - time.monotonic()) <= 0:
                break
            for key, _ in selector.select(left):
                selector.unregister(key.fileobj)
                arrivals.append((exception_code(key.data.read_adu()[3]), round_))
    codes = [code for code, _ in arrivals]
    assert sorted(codes) == [0x06, 0x06, 0x06, 0x0B, 0x0B]  # one on the line, one waiting, the rest refused
    refused = max(round_ for code, round_ in arrivals if code == 0x06)
    assert refused < min(round_ for code, round_ in arrivals if code == 0x0B)  # refused at once, not after waiting
    assert gateway.downstreams[line(pair.client_end)].busy_refusals == 3


def test_gateway_answers_every_client_in_turn(
    pty_pair: MakePty, start_server: StartServer, connect_client: Connect
) -> None:
    pair = pty_pair()
    downstream = downstream_on_line(start_server, pair)
    gateway = start_server(Device(), forward={5: line(pair.client_end)}, forward_timeout=TIMEOUT)
    errors: list[str] = []

    def client_writes_and_reads(number: int) -> None:
        client = connect_client(gateway)
        for round_ in range(5):
            value = number * 100 + round_
            if client.write_register(number, value, device_id=5).isError():
                errors.append(f"client {number} write {round_}")
            reply = client.read_holding_registers(number, count=1, device_id=5)
            if reply.isError() or reply.registers != [value]:
                errors.append(f"client {number} read {round_}: {reply}")

    threads = [threading.Thread(target=client_writes_and_reads, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 5)
    assert not errors
    assert downstream.device.holding_registers.values(1, 6) == [n * 100 + 4 for n in range(1, 7)]


# ---------------------------------------------------------------------------------------------- concurrency


def test_a_slow_downstream_delays_only_the_connection_waiting_for_it(
    pty_pair: MakePty, start_server: StartServer, open_raw: OpenRaw
) -> None:
    pair = pty_pair()  # silent
    gateway = start_server(Device(), forward={5: line(pair.client_end)}, forward_timeout=60.0)
    waiting, other = open_raw(gateway), open_raw(gateway)
    waiting.send(waiting.frame(1, 5, READ_5))
    assert waiting.is_silent(0.05)  # on the line, where nobody answers
    for transaction_id in range(20):  # the local device answers the other connection meanwhile
        assert other.request(READ_5, transaction_id=transaction_id, unit_id=1) == bytes.fromhex("03 04 0000 0000")
    assert waiting.is_silent(0.05)  # still waiting for the line (the time-out and its 0x0B: tests above)


def test_gateway_answers_pipelined_requests_in_order_behind_a_slow_one(
    pty_pair: MakePty, start_server: StartServer, open_raw: OpenRaw
) -> None:
    silent, live = pty_pair(), pty_pair()
    downstream_on_line(start_server, live)
    gateway = start_server(Device(), forward={5: line(live.client_end), 6: line(silent.client_end)},
                           forward_timeout=SHORT)  # fmt: skip
    gateway.device.holding_registers.set_values(0, [7, 8])
    raw = open_raw(gateway)
    raw.send(raw.frame(1, 6, READ_5) + raw.frame(2, 1, READ_5) + raw.frame(3, 5, READ_5) + raw.frame(4, 1, READ_5))
    replies = [raw.read_adu() for _ in range(4)]
    assert [(tid, unit) for tid, _, unit, _ in replies] == [(1, 6), (2, 1), (3, 5), (4, 1)]
    assert exception_code(replies[0][3]) == 0x0B  # the slow one first, though the others were ready before it
    assert [pdu for _, _, _, pdu in replies[1:]] == [bytes.fromhex(h) for h in ("03 04 0007 0008",
                                                                                "03 04 1234 5678",
                                                                                "03 04 0007 0008")]  # fmt: skip


def test_closing_a_connection_drops_its_queued_forwards(pty_pair: MakePty, start_server: StartServer,
                                                         open_raw: OpenRaw, eventually: Any) -> None:  # fmt: skip
    pair = pty_pair()  # nobody answers; the far end only records what the gateway sends down the line
    far_end = serial.Serial(pair.server_end, timeout=0.05)
    try:
        target = line(pair.client_end)
        gateway = start_server(Device(), forward={5: target}, forward_timeout=1.0)
        leaving = open_raw(gateway)
        leaving.send(b"".join(leaving.frame(n, 5, READ_5) for n in range(4)))
        assert eventually(lambda: gateway.downstreams[target].queued == 3)
        leaving.close()
        assert eventually(lambda: gateway.downstreams[target].queued == 0)
        assert exception_code(open_raw(gateway).request(READ_5, unit_id=5, transaction_id=7)) == 0x0B
        sent = far_end.read(64)  # the time-out has passed: everything the gateway sent is there
        assert sent == rtu_frame(5, bytes.fromhex(READ_5)) * 2  # the one on the line, then ours: not 3 more
    finally:
        far_end.close()


# ------------------------------------------------------------------------------------------------ the API


def test_gateway_refuses_a_unit_id_both_local_and_forwarded() -> None:
    with pytest.raises(ValueError, match="both a local device and forwarded"):
        Server({1: Device(), 2: Device()}, forward={2: TcpTarget(HOST)})


def test_gateway_refuses_a_serial_unit_id_above_247() -> None:
    with pytest.raises(ValueError, match=r"slave ids are 0\.\.247"):
        Server(Device(), forward={250: line("/dev/ttyUSB0")})


def test_gateway_lists_its_routes_in_the_banner() -> None:
    target = line("/dev/ttyUSB0")
    server = Server(Device(), port=5020, forward={**dict.fromkeys((1, 2, 3, 7), target), 9: TcpTarget("10.0.0.5")})
    assert server.listening() == [
        "0.0.0.0 port 5020",
        "gateway for units 1-3, 7 to RTU /dev/ttyUSB0 (19200 8N2)",
        "gateway for unit 9 to TCP 10.0.0.5:502",
    ]


def test_stopping_the_gateway_does_not_wait_for_a_silent_line(pty_pair: MakePty, start_server: StartServer,
                                                               open_raw: OpenRaw) -> None:  # fmt: skip
    pair = pty_pair()
    target = line(pair.client_end)
    gateway = start_server(Device(), forward={5: target}, forward_timeout=30.0)
    raw = open_raw(gateway)
    raw.send(raw.frame(1, 5, READ_5) + raw.frame(2, 5, READ_5))
    assert raw.is_silent(0.1)
    started = time.monotonic()
    gateway.stop_thread(timeout=2 * TIMEOUT)
    assert time.monotonic() - started < TIMEOUT  # not the 30 s time-out, nor the 6 s the join would allow
    assert raw.closed_by_peer()
    assert gateway.downstreams[target].queued == 0
