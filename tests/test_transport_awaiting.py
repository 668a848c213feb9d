"""The TCP transport with an answer function that is a coroutine: what the gateway uses, and later hooks will.

A real asyncio server on 127.0.0.1 and a plain socket client; the answer takes longer for some unit ids.
"""

import asyncio
import socket

from modbusd.protocol.mbap import frame
from modbusd.ratelimit import RateLimitedLog
from modbusd.session import Session
from modbusd.transport.tcp import TcpConnection, read_buffer

READ = bytes.fromhex("03 0000 0001")
TIMEOUT = 3.0


class Owner:
    """Stands in for the server: sessions whose answer sleeps `unit_id` × 50 ms for units above 1."""

    def __init__(self) -> None:
        self.cancelled: list[int] = []
        self.closed = asyncio.Event()
        self.peer_warnings = RateLimitedLog()

    def answer(self, unit_id: int, pdu: bytes) -> object:
        if unit_id == 1:
            return bytes((pdu[0], 0))

        async def slowly() -> bytes:
            try:
                await asyncio.sleep(0.05 * unit_id)
            except asyncio.CancelledError:
                self.cancelled.append(unit_id)
                raise
            return bytes((pdu[0], unit_id))

        return slowly()

    def open_session(self, connection: TcpConnection) -> Session:
        return Session(self.answer, peer=connection.peer)  # type: ignore[arg-type]  # returns bytes or a coroutine

    def connection_closed(self, connection: TcpConnection) -> None:
        self.closed.set()


async def serve(owner: Owner) -> tuple[asyncio.Server, int]:
    buffer = read_buffer()
    server = await asyncio.get_running_loop().create_server(lambda: TcpConnection(owner, buffer), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_exactly(reader: asyncio.StreamReader, count: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(count), TIMEOUT)


def test_tcp_connection_sends_coroutine_answers_in_request_order() -> None:
    async def main() -> bytes:
        owner = Owner()
        server, port = await serve(owner)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(1, 4, READ) + frame(2, 1, READ) + frame(3, 2, READ) + frame(4, 1, READ))
        replies = await read_exactly(reader, 4 * 9)
        writer.close()
        server.close()
        await server.wait_closed()
        return replies

    expected = frame(1, 4, b"\x03\x04") + frame(2, 1, b"\x03\x00") + frame(3, 2, b"\x03\x02") + frame(4, 1, b"\x03\x00")
    assert asyncio.run(main()) == expected


def test_tcp_connection_cancels_the_answers_still_awaited_when_it_closes() -> None:
    async def main() -> list[int]:
        owner = Owner()
        server, port = await serve(owner)
        client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        client.sendall(frame(1, 20, READ) + frame(2, 30, READ))  # a second and a second and a half
        await asyncio.sleep(0.1)
        client.close()
        await asyncio.wait_for(owner.closed.wait(), TIMEOUT)
        await asyncio.sleep(0)  # let the cancellations run
        server.close()
        await server.wait_closed()
        return sorted(owner.cancelled)

    assert asyncio.run(main()) == [20, 30]
