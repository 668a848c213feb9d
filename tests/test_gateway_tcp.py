"""The gateway to a Modbus/TCP server: several requests in flight at once, paired by transaction id (TCP guide §4.2).

The downstream is a `ScriptedServer` on 127.0.0.1 that the test answers by hand: it queues every request it
receives, so a test sees how many reached it before any was answered, and answers them when and in the order it
chooses (or never, or with a transaction id nobody sent). Clients are pymodbus where only the answers matter and
raw sockets where timing and transaction ids do; one test has a second modbusd as the downstream. Every wait is
bounded.
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Device, Server
from modbusd.server import SerialLine, TcpTarget

if TYPE_CHECKING:
    from tests.conftest import RawClient

    OpenRaw = Callable[..., RawClient]
    StartServer = Callable[..., Server]
    Connect = Callable[..., ModbusTcpClient]

HOST = "127.0.0.1"
TIMEOUT = 3.0
MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
UNIT = 7


class Request(NamedTuple):
    connection: socket.socket
    transaction_id: int
    unit_id: int
    pdu: bytes

    @property
    def address(self) -> int:
        return int.from_bytes(self.pdu[1:3], "big")


def frame(transaction_id: int, unit_id: int, pdu: bytes | str) -> bytes:
    body = bytes.fromhex(pdu) if isinstance(pdu, str) else pdu
    return MBAP.pack(transaction_id, 0, len(body) + 1, unit_id) + body


def register(value: int) -> bytes:
    """An FC03 response holding one register."""
    return bytes((3, 2)) + value.to_bytes(2, "big")


def read(address: int) -> str:
    return f"03 {address:04X} 0001"


def exception_code(pdu: bytes, function: int = 3) -> int:
    assert pdu[0] == function | 0x80, f"expected an exception response, got {pdu.hex(' ')}"
    return pdu[1]


class ScriptedServer:
    """A Modbus/TCP server that answers only what, when and how the test says: every request it receives waits in
    `requests` with its connection, until the test calls `answer` (or `send`, or `drop`)."""

    def __init__(self) -> None:
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.requests: queue.Queue[Request] = queue.Queue()
        self.connections: list[socket.socket] = []
        self.ended: list[socket.socket] = []  # connections the gateway closed
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name="scripted accept")]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(0.05)
            self.connections.append(connection)
            thread = threading.Thread(target=self._read, args=(connection,), name="scripted read")
            self._threads.append(thread)
            thread.start()

    def _read(self, connection: socket.socket) -> None:
        buffer = b""
        while not self._stop.is_set():
            try:
                data = connection.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                self.ended.append(connection)
                break
            buffer += data
            while len(buffer) >= MBAP.size:
                transaction_id, _, length, unit_id = MBAP.unpack_from(buffer)
                if len(buffer) < 6 + length:
                    break
                self.requests.put(Request(connection, transaction_id, unit_id, buffer[7 : 6 + length]))
                buffer = buffer[6 + length :]

    def take(self, count: int, timeout: float = TIMEOUT) -> list[Request]:
        """The next `count` requests received; AssertionError if they do not all come within `timeout`."""
        deadline = time.monotonic() + timeout
        taken = []
        for _ in range(count):
            try:
                taken.append(self.requests.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{len(taken)} of {count} requests reached the downstream") from None
        return taken

    def nothing_more(self, seconds: float) -> bool:
        """True when no further request arrives within `seconds`."""
        try:
            extra = self.requests.get(timeout=seconds)
        except queue.Empty:
            return True
        self.requests.put(extra)
        return False

    def answer(self, request: Request, pdu: bytes | str) -> None:
        self.send(request.connection, frame(request.transaction_id, request.unit_id, pdu))

    def send(self, connection: socket.socket, data: bytes) -> None:
        connection.sendall(data)

    def drop(self, connection: socket.socket) -> None:
        connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT)
        self._listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


def gateway_to(start_server: StartServer, scripted: ScriptedServer, **options: Any) -> tuple[Server, Any]:
    """A modbusd forwarding unit 7 to the scripted server; with its downstream (for its counters)."""
    target = TcpTarget(HOST, scripted.port)
    options.setdefault("forward_timeout", TIMEOUT)
    gateway = start_server(Device(), forward={UNIT: target}, **options)
    return gateway, gateway.downstreams[target]


# ----------------------------------------------------------------------------------------- several in flight


def test_tcp_gateway_sends_several_requests_before_the_first_answer_and_pairs_answers_out_of_order(
    start_server: StartServer, connect_client: Connect, scripted: ScriptedServer
) -> None:
    gateway, downstream = gateway_to(start_server, scripted)
    results: dict[int, Any] = {}

    def client_reads(address: int) -> None:  # eight pymodbus clients, one register each
        results[address] = connect_client(gateway).read_holding_registers(address, count=1, device_id=UNIT)

    threads = [threading.Thread(target=client_reads, args=(address,)) for address in range(8)]
    for thread in threads:
        thread.start()
    requests = scripted.take(8)  # all eight reach the downstream while none is answered
    assert downstream.in_flight == 8
    assert len({request.transaction_id for request in requests}) == 8  # one transaction id each
    assert {request.connection for request in requests} == {requests[0].connection}  # on one connection
    for request in reversed(requests):  # answered last first, a little apart
        scripted.answer(request, register(1000 + request.address))
        time.sleep(0.01)
    for thread in threads:
        thread.join(TIMEOUT)
    assert {address: reply.registers for address, reply in results.items()} == {a: [1000 + a] for a in range(8)}
    assert downstream.in_flight == 0


def test_tcp_gateway_through_a_second_modbusd_answers_every_concurrent_client(
    start_server: StartServer, connect_client: Connect
) -> None:
    downstream = start_server(Device())
    gateway = start_server(Device(), forward={UNIT: TcpTarget(HOST, downstream.port)}, forward_timeout=TIMEOUT)
    errors: list[str] = []

    def client_writes_and_reads(number: int) -> None:
        client = connect_client(gateway)
        for round_ in range(20):
            value = number * 100 + round_
            if client.write_register(number, value, device_id=UNIT).isError():
                errors.append(f"client {number} write {round_}")
            reply = client.read_holding_registers(number, count=1, device_id=UNIT)
            if reply.isError() or reply.registers != [value]:
                errors.append(f"client {number} read {round_}: {reply}")

    threads = [threading.Thread(target=client_writes_and_reads, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 5)
    assert not errors
    assert downstream.device.holding_registers.values(1, 8) == [n * 100 + 19 for n in range(1, 9)]


def test_tcp_gateway_keeps_at_most_its_in_flight_bound_on_the_wire_and_queues_the_rest(
    start_server: StartServer, open_raw: OpenRaw, scripted: ScriptedServer
) -> None:
    gateway, downstream = gateway_to(start_server, scripted, forward_in_flight=3, forward_queue=2)
    raws = [open_raw(gateway) for _ in range(7)]
    for number, raw in enumerate(raws):
        raw.send(raw.frame(number, UNIT, read(number)))
    on_the_wire = scripted.take(3)
    assert scripted.nothing_more(0.3)  # the others wait for a free place
    assert (downstream.in_flight, downstream.queued, downstream.busy_refusals) == (3, 2, 2)
    refused = [raw for raw in raws if not raw.is_silent(0.05)]  # 3 on the wire, 2 waiting: 2 refused at once
    assert [exception_code(raw.read_adu()[3]) for raw in refused] == [0x06, 0x06]
    scripted.answer(on_the_wire[1], register(1000 + on_the_wire[1].address))  # one answered: one more goes out
    on_the_wire.append(scripted.take(1)[0])
    assert scripted.nothing_more(0.2)
    for request in [on_the_wire[0], *on_the_wire[2:]]:
        scripted.answer(request, register(1000 + request.address))
    on_the_wire.append(scripted.take(1)[0])  # the last one waiting
    scripted.answer(on_the_wire[-1], register(1000 + on_the_wire[-1].address))
    for number, raw in enumerate(raws):
        if raw not in refused:
            assert raw.read_adu() == (number, 0, UNIT, register(1000 + number))  # each its own answer
    assert len(on_the_wire) == 5


# ------------------------------------------------------------------------------------- what goes wrong, and how


def test_tcp_gateway_times_out_each_request_on_its_own_and_drops_the_late_answer(
    start_server: StartServer, open_raw: OpenRaw, scripted: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="modbusd.forward")
    gateway, downstream = gateway_to(start_server, scripted, forward_timeout=1.0)
    first, second = open_raw(gateway), open_raw(gateway)
    started = time.monotonic()
    first.send(first.frame(1, UNIT, read(1)))
    (early,) = scripted.take(1)
    time.sleep(0.5)
    second.send(second.frame(2, UNIT, read(2)))
    (late,) = scripted.take(1, timeout=0.3)  # goes out at once, beside the first
    tid, _, unit, pdu = first.read_adu()
    assert (tid, unit, exception_code(pdu)) == (1, UNIT, 0x0B)  # its own time-out, not the second's
    assert time.monotonic() - started >= 0.8
    assert second.is_silent(0.05)  # still in flight: its time-out runs from when it went out
    scripted.answer(early, register(1001))  # too late: dropped
    scripted.answer(late, register(1002))
    assert second.read_adu() == (2, 0, UNIT, register(1002))
    assert first.is_silent(0.1)
    dropped = [r for r in caplog.records if "dropped a frame that answers no request" in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.DEBUG]  # the late answer, once, at DEBUG as for a serial line
    assert downstream.timeouts == 1
    assert len(scripted.connections) == 1  # a time-out leaves the connection (and the others on it) alone


def test_tcp_gateway_drops_a_response_whose_transaction_id_awaits_nothing(
    start_server: StartServer, open_raw: OpenRaw, scripted: ScriptedServer
) -> None:
    gateway, downstream = gateway_to(start_server, scripted, forward_timeout=0.5)
    raw = open_raw(gateway)
    raw.send(raw.frame(5, UNIT, read(3)))
    (request,) = scripted.take(1)
    stray = frame(request.transaction_id ^ 0x8000, UNIT, register(666))  # an id never sent
    wrong_unit = frame(request.transaction_id, UNIT + 1, register(667))  # the right id from another unit
    scripted.send(request.connection, stray + wrong_unit)
    assert raw.is_silent(0.2)  # neither answers it
    scripted.answer(request, register(1003))
    assert raw.read_adu() == (5, 0, UNIT, register(1003))
    raw.send(raw.frame(6, UNIT, read(4)))  # answered only with a stray id: 0x0B at its time-out, as today
    (unanswered,) = scripted.take(1)
    scripted.send(unanswered.connection, frame(unanswered.transaction_id ^ 0x8000, UNIT, register(668)))
    assert exception_code(raw.read_adu()[3]) == 0x0B
    assert downstream.timeouts == 1
    assert len(scripted.connections) == 1  # the connection stays


@pytest.mark.parametrize("how", ["closes", "sends bytes that cannot be framed"])
def test_tcp_gateway_answers_0x0a_to_everything_in_flight_when_the_downstream_connection_goes(
    start_server: StartServer, open_raw: OpenRaw, scripted: ScriptedServer, how: str
) -> None:
    gateway, downstream = gateway_to(start_server, scripted)
    raws = [open_raw(gateway) for _ in range(4)]
    for number, raw in enumerate(raws):
        raw.send(raw.frame(number, UNIT, read(number)))
    requests = scripted.take(4)
    connection = requests[0].connection
    if how == "closes":
        scripted.drop(connection)
    else:
        scripted.send(connection, bytes.fromhex("0001 0000 0000 07"))  # MBAP length 0: no frame boundaries left
    for number, raw in enumerate(raws):
        tid, _, unit, pdu = raw.read_adu()
        assert (tid, unit, exception_code(pdu)) == (number, UNIT, 0x0A)
    assert downstream.unavailable == 4
    if how != "closes":
        assert connection in scripted.ended or raws[0].is_silent(0.2)  # the gateway gave that stream up
    raws[0].send(raws[0].frame(9, UNIT, read(5)))  # the next request opens a new connection
    (again,) = scripted.take(1)
    assert again.connection is not connection
    scripted.answer(again, register(1005))
    assert raws[0].read_adu() == (9, 0, UNIT, register(1005))


def test_tcp_gateway_keeps_a_gone_clients_request_in_flight_until_its_answer(
    start_server: StartServer, open_raw: OpenRaw, scripted: ScriptedServer
) -> None:
    gateway, downstream = gateway_to(start_server, scripted, forward_in_flight=1)
    leaving, staying = open_raw(gateway), open_raw(gateway)
    leaving.send(leaving.frame(1, UNIT, read(1)))
    (orphan,) = scripted.take(1)
    leaving.close()
    staying.send(staying.frame(2, UNIT, read(2)))
    assert scripted.nothing_more(0.3)  # the bound holds: the orphan is still on the wire
    assert (downstream.in_flight, downstream.queued) == (1, 1)
    scripted.answer(orphan, register(1001))  # its answer goes nowhere, and frees the place
    (request,) = scripted.take(1)
    scripted.answer(request, register(1002))
    assert staying.read_adu() == (2, 0, UNIT, register(1002))


def test_stopping_a_tcp_gateway_does_not_wait_for_what_is_in_flight(
    start_server: StartServer, open_raw: OpenRaw, scripted: ScriptedServer
) -> None:
    gateway, downstream = gateway_to(start_server, scripted, forward_timeout=30.0, forward_in_flight=2)
    raws = [open_raw(gateway) for _ in range(3)]
    for number, raw in enumerate(raws):
        raw.send(raw.frame(number, UNIT, read(number)))
    scripted.take(2)
    started = time.monotonic()
    gateway.stop_thread(timeout=2 * TIMEOUT)
    assert time.monotonic() - started < TIMEOUT  # not the 30 s time-out
    assert all(raw.closed_by_peer() for raw in raws)
    assert (downstream.in_flight, downstream.queued) == (0, 0)


# ------------------------------------------------------------------------------------------------ the API


@pytest.mark.parametrize("in_flight", [0, 257])
def test_gateway_refuses_an_in_flight_bound_outside_1_to_256(in_flight: int) -> None:
    with pytest.raises(ValueError, match=r"in-flight bound .* outside 1\.\.256"):
        Server(Device(), forward={UNIT: TcpTarget(HOST)}, forward_in_flight=in_flight)


def test_a_serial_downstream_keeps_one_request_in_flight_whatever_the_bound() -> None:
    line, tcp = SerialLine("/dev/ttyUSB0", "rtu"), TcpTarget(HOST)
    server = Server(Device(), forward={1: line, 2: tcp}, forward_in_flight=8)
    assert (server.downstreams[line].in_flight_limit, server.downstreams[tcp].in_flight_limit) == (1, 8)
