"""The asyncio floor for bench_tcp.py: the cheapest server an asyncio Protocol can be.

Why it exists: a target such as "5x pymodbus at 100 connections on the default loop" is only
meaningful if some asyncio server can reach it at all.  This one does no Modbus work: it takes
every 12-byte request in what it reads as an FC03 read of 10 registers and answers with the
same canned registers 0..9 = 0..9, echoing only the transaction id and the unit id.  No
validation, no data model, no counters, no logging.  What it costs per request is what the
event loop, the transport and the syscalls cost, the part no Protocol-based server can avoid.

Its transport is modbusd's: an asyncio.BufferedProtocol reading into one buffer shared by
every connection, with TCP_NODELAY and SO_KEEPALIVE, so the difference between the two rows
is modbusd's own work.  It must never be used as a server: it answers anything with the same
registers.

Prints "ready port=N" on stdout once listening; SIGTERM/SIGINT stop it (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import socket
import struct
from collections.abc import Coroutine
from typing import Any

HOST = "127.0.0.1"
READ_BUFFER_SIZE = 65536  # as modbusd's transport
REQUEST_SIZE = 12  # MBAP (7) + FC03 PDU (5)
# After the echoed transaction id: protocol 0, length 23 (unit + function + byte count + 20 bytes).
MBAP_MIDDLE = struct.pack(">HH", 0, 23)
# After the echoed unit id: FC03, 20 bytes, registers 0..9 = 0..9 (the benchmark's data check).
FC03_TAIL = bytes((3, 20)) + struct.pack(">10H", *range(10))


def raise_fd_limit() -> None:
    """Allow many connections, whatever `ulimit -n` says, as the other benchmark servers do."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def canned_replies(data: bytes) -> tuple[bytes, bytes]:
    """Replies to every whole 12-byte request in `data`, and the bytes of a partial one left over.

    Several requests per read (pipelining) get one joined write, as modbusd does.
    """
    whole = len(data) - len(data) % REQUEST_SIZE
    replies = b"".join(
        data[i : i + 2] + MBAP_MIDDLE + data[i + 6 : i + 7] + FC03_TAIL for i in range(0, whole, REQUEST_SIZE)
    )
    return replies, data[whole:]


class FloorProtocol(asyncio.BufferedProtocol):
    """One connection: copy out what was read, answer it, keep a partial request for later."""

    __slots__ = ("_buffer", "_pending", "_transport")

    def __init__(self, buffer: memoryview) -> None:
        self._buffer = buffer
        self._pending = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Same socket options as modbusd: no Nagle delay on one-response-per-request traffic."""
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        """The shared buffer: the loop fills it and calls buffer_updated before the next read."""
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        """Copy out before the next connection's read reuses the buffer, then answer."""
        data = bytes(self._buffer[:nbytes])
        if self._pending:
            data = self._pending + data
        replies, self._pending = canned_replies(data)
        if replies and self._transport is not None:
            self._transport.write(replies)


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:port until SIGTERM/SIGINT, then close the listener."""
    loop = asyncio.get_running_loop()
    buffer = memoryview(bytearray(READ_BUFFER_SIZE))
    server = await loop.create_server(lambda: FloorProtocol(buffer), HOST, port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready port={server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def run(main: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    """Run on asyncio's default loop, or on uvloop when asked (Python 3.11 has no loop_factory)."""
    if not use_uvloop:
        asyncio.run(main)
        return
    import uvloop  # optional: only the +uvloop row needs it

    uvloop.run(main)


def main() -> None:
    """Parse the same options as run_modbusd.py, raise the fd limit, serve."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop")
    args = parser.parse_args()
    raise_fd_limit()
    run(serve(args.port), args.uvloop)


if __name__ == "__main__":
    main()
