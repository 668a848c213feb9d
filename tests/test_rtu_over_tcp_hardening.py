"""RTU over TCP against hostile or unlucky byte streams, on a real Server over 127.0.0.1 sockets.

A request split across TCP segments is executed once and nothing inside it is; framing by length never
depends on a CRC byte's value; and a client flooding RTU over TCP with the input that is costliest to
resynchronise does not hold up a Modbus/TCP client of the same server. Under that: the TCP transport
gives a connection at most one read per turn of the event loop, on asyncio's loop and on uvloop, without
resuming a connection paused because it does not read its responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from modbusd import Server
from modbusd.protocol.rtu import RtuFramer, with_crc
from modbusd.ratelimit import RateLimitedLog
from modbusd.session import Session
from modbusd.transport.tcp import READ_BUFFER_SIZE, TcpConnection, read_buffer
from tests.conftest import HOST, TIMEOUT

if TYPE_CHECKING:
    from tests.conftest import RawClient

    OpenRaw = Callable[..., RawClient]
    StartServer = Callable[..., Server]

QUIET = 0.3  # seconds of silence that show nothing more is answered
ANSWER_BOUND = 1.0  # seconds a Modbus/TCP request may wait while another client floods RTU over TCP

# Issue 8's split FC16: holding registers 100..109, whose data happens to hold a whole FC06 frame
# (write 99 to register 10, `01 06 000A 0063 E9E1`) and which arrives in two segments 0.2 s apart.
SPLIT_FC16 = with_crc(bytes.fromhex("01 10 0064 000A 14 0106 000A 0063 E9E1") + bytes(12))


def test_a_request_split_across_segments_is_executed_once_and_nothing_inside_it_is(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    server = start_server(port=None, rtu_over_tcp=0)
    raw = open_raw(server.rtu_over_tcp_port)
    assert SPLIT_FC16[:15].hex(" ") == "01 10 00 64 00 0a 14 01 06 00 0a 00 63 e9 e1"  # the first segment
    raw.send(SPLIT_FC16[:15])
    time.sleep(0.2)
    raw.send(SPLIT_FC16[15:])
    assert raw.recv_exact(8) == with_crc(bytes.fromhex("01 10 0064 000A"))  # the FC16 response, and only it
    assert raw.is_silent(QUIET)
    registers = server.device.holding_registers
    assert registers[10] == 0
    assert [registers[a] for a in range(100, 110)] == [0x0106, 0x000A, 0x0063, 0xE9E1, 0, 0, 0, 0, 0, 0]


def test_fc08_whose_crc_ends_in_00_gets_its_whole_echo(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server(port=None, rtu_over_tcp=0)
    raw = open_raw(server.rtu_over_tcp_port)
    request = bytes.fromhex("01 08 0000 001B A000")  # Return Query Data; the CRC's high byte is 0x00
    assert with_crc(request[:-2]) == request
    raw.send(request)
    assert raw.recv_exact(8) == request
    assert raw.is_silent(QUIET)


def _repeat(pattern: str, size: int = 65536) -> bytes:
    unit = bytes.fromhex(pattern)
    return (unit * (size // len(unit) + 1))[:size]


FLOODS = [
    # Issue 8's: unit 0 with unknown function 9, then a good FC03 frame for unit 9 (not served here).
    pytest.param(_repeat("00 09 03 00 00 00 01 85 42"), id="issue-8-pattern"),
    # Every byte a known function whose byte count promises a long frame with a bad CRC.
    pytest.param(_repeat("17 F0"), id="long-frame-claims"),
    # Every byte an unknown function code.
    pytest.param(_repeat("41"), id="unknown-functions"),
]


class Flooder:
    """Sends `data` to `port` again and again from a thread until stopped; never reads."""

    def __init__(self, port: int, data: bytes) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.settimeout(0.2)
        self.data = data
        self.sent = 0
        self.started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtu-flooder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        view = memoryview(self.data)
        while not self._stop.is_set():
            try:
                self.sent += self.sock.send(view[self.sent % len(view) :])
            except TimeoutError:
                continue
            except OSError:
                return
            if self.sent >= len(view):
                self.started.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.sock.close()


@pytest.fixture
def flooder() -> Iterator[Callable[[int, bytes], Flooder]]:
    made: list[Flooder] = []

    def make(port: int, data: bytes) -> Flooder:
        made.append(Flooder(port, data))
        return made[-1]

    yield make
    for flood in made:
        flood.stop()


FLOODERS = 3  # a turn of the loop then holds three flooding reads: more work per read shows three times over


@pytest.mark.parametrize("flood", FLOODS)
def test_an_rtu_over_tcp_flood_does_not_hold_up_a_modbus_tcp_client(
    start_server: StartServer, open_raw: OpenRaw, flooder: Callable[[int, bytes], Flooder], flood: bytes
) -> None:
    server = start_server(port=0, rtu_over_tcp=0)
    server.device.holding_registers[0] = 1234
    tcp = open_raw(server, timeout=ANSWER_BOUND)  # connected before the flood, so accepting it is not the test
    floods = [flooder(server.rtu_over_tcp_port, flood) for _ in range(FLOODERS)]
    assert all(f.started.wait(TIMEOUT) for f in floods), "the flood never got going"
    sent_before = sum(f.sent for f in floods)
    for transaction_id in range(1, 6):  # each answered within the bound, all while the flood goes on
        began = time.monotonic()
        assert tcp.request("03 0000 0001", transaction_id=transaction_id) == bytes.fromhex("03 02 04D2")
        assert time.monotonic() - began < ANSWER_BOUND
    assert sum(f.sent for f in floods) > sent_before, "the flood did not go on while the requests were answered"


# ------------------------------------------------- the transport: one read per connection per turn of the loop


class CountingOwner:
    """Stands in for the server: RTU-over-TCP sessions that answer unit 1 and note each read's turn and size."""

    def __init__(self, reply: bytes = bytes.fromhex("03 02 04D2")) -> None:
        self.reply = reply  # the response PDU to every request for unit 1
        self.turn = 0  # how many turns the loop has made (see `count_turns`)
        self.reads: list[tuple[int, int]] = []  # (turn, bytes)
        self.connections: list[TcpConnection] = []
        self.peer_warnings = RateLimitedLog()  # what a connection's session logs its repeated warnings through

    def open_session(self, connection: TcpConnection) -> Session:
        self.connections.append(connection)
        owner = self

        class Counting(Session):
            def receive(self, data: bytes) -> bytes:
                owner.reads.append((owner.turn, len(data)))
                return super().receive(data)

        def answer(unit_id: int, pdu: bytes) -> tuple[int, bytes] | None:
            return (unit_id, owner.reply) if unit_id == 1 else None

        return Counting(answer, framer=RtuFramer(resync=True), addressed=True, peer=connection.peer)

    def connection_closed(self, connection: TcpConnection) -> None:
        pass

    def count_turns(self) -> None:
        """Called once a turn: a callback scheduled by a callback runs on the loop's next turn."""
        self.turn += 1
        asyncio.get_running_loop().call_soon(self.count_turns)


def _send_and_hold(port: int, data: bytes, done: threading.Event) -> None:
    """Send `data`, never read, and hold the connection open until `done`: a small receive buffer, so that
    responses back up into the server (closing with unread data would reset the connection instead)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(TIMEOUT)
        sock.connect((HOST, port))
        with contextlib.suppress(OSError):  # a server that stops reading makes sendall time out
            sock.sendall(data)
        done.wait(TIMEOUT)


async def _flooded(owner: CountingOwner, data: bytes, until: Callable[[], bool]) -> None:
    """Serve one connection that sends `data` from a thread, until `until()` holds (bounded by TIMEOUT)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: TcpConnection(owner, read_buffer()), HOST, 0)
    port = server.sockets[0].getsockname()[1]
    owner.count_turns()
    done = threading.Event()
    thread = threading.Thread(target=_send_and_hold, args=(port, data, done), daemon=True)
    thread.start()
    try:
        deadline = loop.time() + TIMEOUT
        while not until() and loop.time() < deadline:
            await asyncio.sleep(0.01)
    finally:
        done.set()
        for connection in owner.connections:
            connection.abort()
        server.close()
        await server.wait_closed()
        await asyncio.to_thread(thread.join, TIMEOUT)


def _run_on(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop_name == "uvloop":
        import uvloop  # the "fast" extra, which CI installs

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 2 * TIMEOUT))
    finally:
        loop.close()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_connection_reads_at_most_once_per_turn_of_the_loop(loop_name: str) -> None:
    owner = CountingOwner()
    flood = bytes(4 << 20)  # address 0, function 0: no frame anywhere, every byte dropped
    enough = 1 << 20  # 16 full reads and more
    _run_on(loop_name, lambda: _flooded(owner, flood, lambda: sum(n for _, n in owner.reads) >= enough))
    assert sum(n for _, n in owner.reads) >= enough
    assert max(n for _, n in owner.reads) <= READ_BUFFER_SIZE
    turns = Counter(turn for turn, _ in owner.reads)
    assert max(turns.values()) == 1, f"{max(turns.values())} reads in one turn"


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_a_client_that_never_reads_its_responses_is_not_read_on_turn_after_turn(loop_name: str) -> None:
    # Each full read yields the turn and resumes reading on the next; that must not undo the pause that
    # a full write buffer asks for (pause_writing), or the responses of a client that never reads pile up.
    owner = CountingOwner(reply=bytes.fromhex("03 FA") + bytes(250))  # 255-byte responses to 8-byte requests
    requests = with_crc(bytes.fromhex("01 03 0000 007D")) * (2 << 20 >> 3)  # 2 MiB of them: ~64 MiB of responses
    queued: list[int] = []
    read_so_far: list[int] = []

    def reading_stopped() -> bool:
        for connection in owner.connections:
            transport = connection._transport  # its write buffer is what must stay bounded
            if transport is not None and not transport.is_closing():
                queued.append(transport.get_write_buffer_size())
        read_so_far.append(sum(n for _, n in owner.reads))
        return len(read_so_far) > 30 and read_so_far[-1] == read_so_far[-30] > 0

    _run_on(loop_name, lambda: _flooded(owner, requests, reading_stopped))
    assert read_so_far[-1] < len(requests)  # the server stopped reading the client that does not read
    one_read = READ_BUFFER_SIZE // 8 * (1 + 255 + 2)  # the responses to one read's requests
    assert max(queued) < 2 * one_read, f"{max(queued)} bytes of responses queued"
