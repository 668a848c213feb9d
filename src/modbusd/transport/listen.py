"""Accepting TCP connections, one at a time, only while the server's admission lets it.

Not `loop.create_server`: its accept loop cannot be paused, and when the process runs out of file descriptors it
logs a traceback for every failed accept() of a 1024-long loop and re-arms once per failure (hundreds of thousands
of lines a minute, and clients left hanging after descriptors free up). Here each listening socket has a task that
awaits `loop.sock_accept` while the gate is open and gives what it accepts the lean transport of `transport.direct`
(less memory per connection than asyncio's or uvloop's), on either loop. At the limit the gate closes and new
clients wait in the kernel's backlog, unrefused, until a connection ends. Out of descriptors anyway (files, serial
ports, the control API count too): the gate says so once and closes for a while.

Modbus/TCP Security's listener is the same, made with an `ssl.SSLContext`: each accepted connection's TLS handshake
runs in a task of its own (at most MAX_HANDSHAKES at a time, each bounded by HANDSHAKE_TIMEOUT), so that a client
that stalls its handshake holds up nobody else, and one that fails it is reported (`handshake_failed`) and closed.
A listener may also refuse clients by address (`refuse`, the allow-lists), before any byte is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Final, Protocol

from modbusd.transport.direct import SocketTransport

log = logging.getLogger(__name__)

BACKLOG: Final = 1024  # clients waiting to be accepted, e.g. while the server is at its connection limit
KERNEL_BUFFER: Final = 65536  # bytes each way per connection (the kernel doubles it); unset, it grows to megabytes
OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds a TLS client has to complete its handshake (asyncio's default is 60)
MAX_HANDSHAKES: Final = 256  # TLS handshakes under way at once per listening socket; more wait to be accepted


class Gate(Protocol):
    """Whether to accept: the server's admission (connection limits, descriptors)."""

    @property
    def accepting(self) -> asyncio.Event: ...

    def refuses(self, host: str) -> bool:
        """A connection from `host` is to be closed at once (over its per-client limit)."""
        ...

    def starved(self, exc: OSError) -> None:
        """accept() failed for want of descriptors or memory: close the gate for a while."""
        ...


async def bind(host: str | None, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Listening sockets for `host` (None or "": every address, IPv4 and IPv6) on `port`; port 0 picks one free
    port, the same for every address."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, found in dict.fromkeys(infos):  # getaddrinfo may repeat an address
            address = found
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):  # the accepted connections inherit them
                sock.setsockopt(socket.SOL_SOCKET, option, KERNEL_BUFFER)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # 0.0.0.0 has its own socket
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class TcpListener:
    """The listening sockets of one TCP port and the tasks accepting on them."""

    def __init__(
        self, sockets: list[socket.socket], factory: Callable[[], asyncio.BaseProtocol], gate: Gate, *,
        tls: ssl.SSLContext | None = None, refuse: Callable[[str], bool] | None = None,
        handshake_failed: Callable[[str, BaseException], None] | None = None,
    ) -> None:  # fmt: skip
        """`tls`: serve TLS with this context; `handshake_failed(peer, exc)` hears of each failed handshake.
        `refuse(host)`: True closes the connection at once (an allow-list, which logs it)."""
        self.sockets = sockets
        self._factory = factory
        self._gate = gate
        self._tls = tls
        self._refuse = refuse
        self._handshake_failed = handshake_failed
        self._tasks: list[asyncio.Task[None]] = []
        self._handshakes: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._accept(loop, sock)) for sock in self.sockets]

    async def _accept(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        while True:
            accepting = self._gate.accepting
            if not accepting.is_set():
                await accepting.wait()
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno in OUT_OF_RESOURCES:
                    self._gate.starved(exc)  # closes the gate: the loop waits above
                else:  # e.g. ECONNABORTED: that client gave up before it was accepted
                    log.debug("accept() on port %d: %s", self.port, exc)
                continue
            host = address[0] if isinstance(address, tuple) else str(address)
            if (self._refuse is not None and self._refuse(host)) or self._gate.refuses(host):
                conn.close()
                continue
            conn.setblocking(False)
            if self._tls is not None:
                await self._start_handshake(loop, conn, address)
                continue
            try:
                SocketTransport(loop, conn, self._factory())  # type: ignore[arg-type]  # a TcpConnection
            except OSError as exc:  # the client left already
                log.debug("connection from %s not started: %s", host, exc)
                conn.close()
            # One turn of the loop per connection, as connect_accepted_socket took: sock_accept does not yield
            # while the backlog has clients, and a flood of them would hold up everyone's requests.
            await asyncio.sleep(0)

    async def _start_handshake(self, loop: asyncio.AbstractEventLoop, conn: socket.socket, address: object) -> None:
        handshakes = self._handshakes
        if len(handshakes) >= MAX_HANDSHAKES:  # bounded: the rest wait in the backlog
            await asyncio.wait(handshakes, return_when=asyncio.FIRST_COMPLETED)
        task = loop.create_task(self._handshake(loop, conn, address))
        handshakes.add(task)
        task.add_done_callback(handshakes.discard)

    async def _handshake(self, loop: asyncio.AbstractEventLoop, conn: socket.socket, address: object) -> None:
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        try:
            await loop.connect_accepted_socket(self._factory, conn, ssl=self._tls,
                                               ssl_handshake_timeout=HANDSHAKE_TIMEOUT)  # fmt: skip
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError; the transport closed the socket
            if self._handshake_failed is not None:
                self._handshake_failed(peer, exc)
            else:
                log.debug("TLS handshake with %s failed: %s", peer, exc)
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        """Stop accepting; `wait_closed` then closes the listening sockets (the clients in the backlog are refused)."""
        for task in (*self._tasks, *self._handshakes):
            task.cancel()

    async def wait_closed(self) -> None:
        """Once no task waits on them any more, close the sockets: the loop has let go of their descriptors."""
        for task in (*self._tasks, *self._handshakes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._handshakes.clear()
        for sock in self.sockets:
            sock.close()
