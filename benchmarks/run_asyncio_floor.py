"""The asyncio floor for bench_tcp.py and bench_connections.py: the cheapest Python server an asyncio loop can run.

Why it exists: a target such as "5x pymodbus at 100 connections on the default loop" is only
meaningful if some asyncio server can reach it at all.  This one does no Modbus work: it takes
every 12-byte request in what it reads as an FC03 read of 10 registers and answers with the
same canned registers 0..9 = 0..9, echoing only the transaction id and the unit id.  No
validation, no data model, no counters, no logging.  What it costs per request is what the
event loop, the syscalls and the least Python a read can take cost, the part no Python server on
that loop can avoid.

It reads the way modbusd's transport (transport/direct.py) does, without its transport object:
`loop.add_reader` callbacks, `recv_into` one buffer shared by every connection, one `send`, with
TCP_NODELAY and SO_KEEPALIVE, so the difference between the two rows is modbusd's own work
(transport, session, request counts, the fast path).  It must never be used as a server: it
answers anything with the same registers.

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


class Floor:
    """Every connection driven by the loop's readiness callbacks with as little Python as a read can take: one
    callback, `recv_into` a buffer shared by every connection, the canned replies, one `send`. No transport object,
    no protocol, no buffering of what the kernel does not take (the load generator reads everything it is sent)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        self._loop, self._listener = loop, listener
        self._buffer = memoryview(bytearray(READ_BUFFER_SIZE))
        self._pending: dict[int, bytes] = {}  # a partial request, by file descriptor
        self._sockets: dict[int, socket.socket] = {}
        loop.add_reader(listener.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as modbusd: no Nagle delay
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        fd = conn.fileno()
        self._sockets[fd] = conn
        self._loop.add_reader(fd, self._read, conn, fd)

    def _read(self, conn: socket.socket, fd: int) -> None:
        try:
            count = conn.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            count = 0
        if not count:
            self._loop.remove_reader(fd)
            del self._sockets[fd]
            self._pending.pop(fd, None)
            conn.close()
            return
        data = self._buffer[:count].tobytes()
        if fd in self._pending:
            data = self._pending.pop(fd) + data
        replies, rest = canned_replies(data)
        if rest:
            self._pending[fd] = rest
        if replies:
            try:  # noqa: SIM105  (contextlib.suppress costs a context manager per read)
                conn.send(replies)
            except OSError:
                pass  # a peer gone: its read ends it

    def close(self) -> None:
        self._loop.remove_reader(self._listener.fileno())
        for fd, conn in self._sockets.items():
            self._loop.remove_reader(fd)
            conn.close()
        self._listener.close()


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:port until SIGTERM/SIGINT, then close everything."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server((HOST, port), reuse_port=False, backlog=1024)
    listener.setblocking(False)
    floor = Floor(loop, listener)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready port={listener.getsockname()[1]}", flush=True)
    await stop.wait()
    floor.close()


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
