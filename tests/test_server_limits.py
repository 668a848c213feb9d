"""Connection limits and time-outs against misbehaving clients, on 127.0.0.1 (docs/limits.md).

Clients that never read their responses, a connection flood against `max_connections`, too many connections from
one address, slow senders, and the log volume they cause. Every wait is bounded; every socket is closed here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Server
from modbusd.transport.tcp import READ_BUFFER_SIZE, SEND_QUEUE, TcpConnection
from tests.conftest import HOST, RawClient, mbap_frame, wait_until

StartServer = Callable[..., Server]
READ = "03 0000 0001"
OTHER_HOST = "127.0.0.2"  # another client address: Linux answers all of 127.0.0.0/8 on the loopback


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Plain sockets a test makes; closed at its end."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def ended(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The one line each TCP connection logs when it ends."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "modbusd.transport.tcp" and " ended after " in r.getMessage()
    ]


def fill_without_reading(port: int, sockets: list[socket.socket], count: int) -> None:
    """`count` clients that pipeline reads of 125 registers and never read the answers, until the server has
    stopped taking their requests for half a second: by then its kernel buffers and its send queue are full."""
    burst = mbap_frame(1, 1, "03 0000 007D") * 200
    taken: dict[socket.socket, float] = {}
    for _ in range(count):
        sock = socket.socket()
        sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, port))
        sock.setblocking(False)
        taken[sock] = time.monotonic()
    deadline = time.monotonic() + 20
    while taken and time.monotonic() < deadline:
        for sock, last in list(taken.items()):
            try:
                sock.send(burst)
                taken[sock] = time.monotonic()
            except BlockingIOError:
                if time.monotonic() - last > 0.5:
                    del taken[sock]
            except (BrokenPipeError, ConnectionResetError):  # a time-out ended it already
                del taken[sock]
        time.sleep(0.01)
    assert not taken, "the server went on reading from clients that take no responses"


@pytest.mark.parametrize(
    ("options", "why"),
    [
        pytest.param({"write_timeout": 1.0}, "write time-out", id="write time-out"),
        pytest.param({"idle_timeout": 0.5, "write_timeout": None}, "idle time-out", id="idle time-out, then grace"),
    ],
)
def test_clients_that_never_read_are_dropped_each_logged_once(
    start_server: StartServer, sockets: list[socket.socket], caplog: pytest.LogCaptureFixture,
    options: dict[str, float | None], why: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="modbusd")
    server = start_server(**options)
    fill_without_reading(server.port, sockets, 20)
    assert wait_until(lambda: server.connection_count == 0, timeout=15)
    lines = ended(caplog)
    assert len(lines) == 20, lines
    assert all(why in line for line in lines), lines
    by_server = [r for r in caplog.records if r.name == "modbusd.server" and "127.0.0.1:" in r.getMessage()]
    assert by_server == []  # nothing said about them every second while they were closing
    assert RawClient(server.port).request(READ) == bytes.fromhex("03 02 0000")


def test_a_client_that_never_reads_gets_little_queued_and_no_frame_time_out_while_unread(
    monkeypatch: pytest.MonkeyPatch, start_server: StartServer, sockets: list[socket.socket]
) -> None:
    transports: list[asyncio.Transport] = []
    connection_made = TcpConnection.connection_made

    def keep(self: TcpConnection, transport: asyncio.BaseTransport) -> None:
        connection_made(self, transport)
        transports.append(transport)  # type: ignore[arg-type]  # a stream transport

    monkeypatch.setattr(TcpConnection, "connection_made", keep)
    server = start_server(write_timeout=None, frame_timeout=0.5)
    burst = mbap_frame(1, 1, "03 0000 007D") * 200
    for _ in range(3):
        sock = socket.socket()
        sockets.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, server.port))
        sock.setblocking(False)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # far more requests than the server will take from them
        for sock in sockets:
            with contextlib.suppress(BlockingIOError):
                sock.send(burst)
        time.sleep(0.01)
    queued = [transport.get_write_buffer_size() for transport in transports]
    one_read = READ_BUFFER_SIZE // 12 * 259  # the responses to one read of FC03 x 125 requests
    assert len(queued) == 3 and all(SEND_QUEUE < size <= SEND_QUEUE + one_read for size in queued), queued
    assert max(queued) < 2 * SEND_QUEUE, queued  # reads of 64 KiB queued 160 to 210 KiB here
    time.sleep(1.5)  # a request cut in two by a paused read is the server's doing: no frame time-out for it
    assert server.connection_count == 3


def test_a_poller_keeps_its_connection_while_another_client_floods_the_connection_limit(
    start_server: StartServer,
) -> None:
    server = start_server(max_connections=10)
    stop = threading.Event()
    opened = [0]

    def flood() -> None:  # connections that never send anything, as fast as they come
        held: collections.deque[socket.socket] = collections.deque()
        try:
            while not stop.is_set():
                sock = socket.socket()
                sock.settimeout(3)
                sock.bind((OTHER_HOST, 0))
                sock.connect((HOST, server.port))
                held.append(sock)
                opened[0] += 1
                if len(held) > 30:
                    held.popleft().close()
        finally:
            for sock in held:
                sock.close()

    flooder = threading.Thread(target=flood, daemon=True)
    poller = ModbusTcpClient(HOST, port=server.port, timeout=3, retries=0)
    try:
        assert poller.connect()
        assert not poller.read_holding_registers(0, count=1, device_id=1).isError()  # a poller that has polled
        flooder.start()
        for _ in range(15):
            reply = poller.read_holding_registers(0, count=1, device_id=1)
            assert not reply.isError() and reply.registers == [0], reply
            time.sleep(0.2)
    finally:
        stop.set()
        flooder.join(10)
        poller.close()
    assert opened[0] > 30, opened  # the flood did push against the limit the whole time


def test_connections_over_the_per_client_limit_are_closed_at_accept_and_logged_once(
    start_server: StartServer, open_raw: Callable[..., RawClient], sockets: list[socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.WARNING, logger="modbusd")
    server = start_server(max_connections_per_client=3)
    first = [open_raw(server) for _ in range(3)]
    for raw in first:
        assert raw.request(READ) == bytes.fromhex("03 02 0000")
    for _ in range(5):
        over = open_raw(server)
        assert over.closed_by_peer()
    other = socket.socket()
    sockets.append(other)
    other.settimeout(3)
    other.bind((OTHER_HOST, 0))
    other.connect((HOST, server.port))
    other.sendall(mbap_frame(1, 1, READ))
    assert other.recv(64)[7:] == bytes.fromhex("03 02 0000")  # another address has connections of its own
    assert first[0].request(READ) == bytes.fromhex("03 02 0000")
    warnings = [r.getMessage() for r in caplog.records if "one client may have" in r.getMessage()]
    assert len(warnings) == 1, warnings


def send_slowly(raw: RawClient, data: bytes, pause: float) -> None:
    for i in range(len(data)):
        raw.send(data[i : i + 1])
        time.sleep(pause)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"frame_timeout": 1.0, "idle_timeout": 60.0}, id="frame time-out"),
        pytest.param({"frame_timeout": None, "idle_timeout": 1.0}, id="idle time-out: bytes are no activity"),
    ],
)
def test_a_client_sending_a_frame_that_never_ends_is_closed_one_sending_slow_whole_requests_is_not(
    start_server: StartServer, open_raw: Callable[..., RawClient], caplog: pytest.LogCaptureFixture,
    options: dict[str, float | None],
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="modbusd")
    server = start_server(**options)
    steady = open_raw(server)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # each request takes ~0.3 s to arrive whole: never idle, never timed out
        send_slowly(steady, mbap_frame(1, 1, READ), 0.025)
        assert steady.read_adu()[3] == bytes.fromhex("03 02 0000")
    loris = open_raw(server)
    loris_port = loris.sock.getsockname()[1]
    never_ends = mbap_frame(2, 1, "10 0000 0040 80" + "00" * 128)[:-1] + b"\x00" * 50  # 254 bytes promised
    started = time.monotonic()
    closed = False
    for i in range(len(never_ends)):
        try:
            loris.send(never_ends[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if loris.closed_by_peer(timeout=0.3):
            closed = True
            break
        if time.monotonic() - started > 8:
            break
    assert closed, "the slow sender was never closed"
    assert 0.9 < time.monotonic() - started < 8
    lines = [line for line in ended(caplog) if f":{loris_port} " in line]
    assert len(lines) == 1 and "time-out" in lines[0], lines


def test_bad_udp_datagrams_from_one_peer_make_at_most_two_warnings(
    start_server: StartServer, sockets: list[socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="modbusd")
    server = start_server(port=None, udp=0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(peer)
    peer.settimeout(3)
    for i in range(500):
        peer.sendto(mbap_frame(i, 1, READ, protocol_id=1), (HOST, server.udp_port))  # not Modbus: discarded
        peer.sendto(bytes.fromhex("0001 0000 0001 01"), (HOST, server.udp_port))  # MBAP length 1: dropped
        if i % 50 == 49:  # a good request now and then: the bad ones before it have been taken, none lost
            peer.sendto(mbap_frame(i, 1, READ), (HOST, server.udp_port))
            assert peer.recv(64) == mbap_frame(i, 1, "03 02 0000")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) <= 2, warnings[:5]
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG and "127.0.0.1" in r.getMessage()]) >= 998


def test_a_hundred_connections_log_a_hundred_info_lines_and_bad_frames_one_warning(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, eventually: Callable[..., bool]
) -> None:
    caplog.set_level(logging.INFO, logger="modbusd")
    server = start_server()
    for _ in range(70):
        raw = RawClient(server.port)
        assert raw.request(READ) == bytes.fromhex("03 02 0000")
        raw.close()
    for _ in range(30):
        raw = RawClient(server.port)
        raw.send(bytes.fromhex("0001 0000 0001 01"))  # MBAP length 1: the stream cannot be framed
        assert raw.closed_by_peer()
        raw.close()
    assert eventually(lambda: server.connection_count == 0)
    assert eventually(lambda: len(ended(caplog)) == 100)
    info = [r for r in caplog.records if r.name.startswith("modbusd.transport") and r.levelno == logging.INFO]
    assert len(info) <= 100
    assert sum(", 1 request: closed by the peer" in line for line in ended(caplog)) == 70
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
