"""transport.direct's SocketTransport over real TCP sockets on 127.0.0.1: what a BufferedProtocol is told, when."""

from __future__ import annotations

import asyncio
import socket

from modbusd.transport.direct import SocketTransport

TIMEOUT = 5.0


class Recorder(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buffer = bytearray(4096)
        self.calls: list[str] = []
        self.received = bytearray()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("made")

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        self.received += self.buffer[:nbytes]

    def pause_writing(self) -> None:
        self.calls.append("pause")

    def resume_writing(self) -> None:
        self.calls.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append("lost")
        self.lost.set_result(exc)


async def pair() -> tuple[socket.socket, socket.socket]:
    """(the accepted end, non-blocking; the client end, blocking with a time-out)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
        accepted, _ = listener.accept()
    accepted.setblocking(False)
    for sock in (accepted, client):  # small kernel buffers, so that the queue fills with little data
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return accepted, client


async def until(condition: object, what: str) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def recv_all(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def test_reads_reach_the_protocol_and_the_peers_close_ends_it() -> None:
    asyncio.run(asyncio.wait_for(_reads_reach_the_protocol_and_the_peers_close_ends_it(), 30))


async def _reads_reach_the_protocol_and_the_peers_close_ends_it() -> None:
    accepted, client = await pair()
    protocol = Recorder()
    transport = SocketTransport(asyncio.get_running_loop(), accepted, protocol)
    client.sendall(b"\x00\x01" * 3000)
    await until(lambda: len(protocol.received) == 6000, "the bytes")
    assert protocol.received == b"\x00\x01" * 3000
    transport.write(b"answer")
    assert client.recv(6) == b"answer"
    client.close()
    assert await asyncio.wait_for(protocol.lost, TIMEOUT) is None
    assert protocol.calls == ["made", "lost"]
    assert accepted.fileno() == -1  # closed by the transport


def test_a_peer_that_does_not_read_pauses_the_protocol_then_gets_everything_in_order() -> None:
    asyncio.run(asyncio.wait_for(_a_peer_that_does_not_read_pauses_the_protocol_then_gets_everything_in_order(), 30))


async def _a_peer_that_does_not_read_pauses_the_protocol_then_gets_everything_in_order() -> None:
    accepted, client = await pair()
    protocol = Recorder()
    transport = SocketTransport(asyncio.get_running_loop(), accepted, protocol)
    transport.set_write_buffer_limits(high=8192)
    data = bytes(range(256)) * 400  # 100 KiB: far more than the kernel's buffers hold
    for start in range(0, len(data), 1000):
        transport.write(data[start : start + 1000])
    assert protocol.calls == ["made", "pause"]
    assert transport.get_write_buffer_size() > 8192
    transport.close()  # after the queued bytes
    received = await asyncio.get_running_loop().run_in_executor(None, recv_all, client, len(data))
    assert received == data
    assert await asyncio.wait_for(protocol.lost, TIMEOUT) is None
    assert protocol.calls == ["made", "pause", "resume", "lost"]
    client.close()


def test_abort_drops_what_is_queued_and_pause_reading_stops_reads() -> None:
    asyncio.run(asyncio.wait_for(_abort_drops_what_is_queued_and_pause_reading_stops_reads(), 30))


async def _abort_drops_what_is_queued_and_pause_reading_stops_reads() -> None:
    accepted, client = await pair()
    protocol = Recorder()
    transport = SocketTransport(asyncio.get_running_loop(), accepted, protocol)
    transport.pause_reading()
    client.sendall(b"held")
    await asyncio.sleep(0.1)
    assert protocol.received == b""
    transport.resume_reading()
    await until(lambda: protocol.received == b"held", "the bytes held back")
    transport.write(bytes(1 << 20))
    transport.abort()
    assert transport.is_closing() and transport.get_write_buffer_size() == 0
    assert await asyncio.wait_for(protocol.lost, TIMEOUT) is None
    client.close()
