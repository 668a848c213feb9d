"""Modbus/TCP connections as an asyncio.BufferedProtocol: the lightest asyncio path from socket to session.

Buffered, because a plain Protocol makes the selector loop allocate a 256 KiB buffer for every recv(),
which costs the first seconds of a busy server three quarters of their throughput. All the connections of
one server read into one shared buffer: the loop fills it and hands it over synchronously, one connection
at a time, and the bytes are copied out before the next read.

Socket options follow the TCP guide §4.3.1: TCP_NODELAY (one response per request, no Nagle delay) and
SO_KEEPALIVE (a client that vanishes without closing frees its connection).

An answer that takes time (the session lists it in `awaiting`) becomes a task of this connection; when it
completes, the session says what can be sent, in request order. Closing the connection cancels its tasks.
A fault's `Schedule` (fault injection: pieces sent later, then perhaps a close or a reset) runs in a task too.

A connection keeps the times its owner's time-outs need (`last_active`: the last complete request; `paused_at`:
since when its peer has not taken its responses; `closing_at`: since when it has been closing), and nothing else:
the clock that acts on them is the owner's (`admission.py`). It logs one line, when it ends, saying why.
"""

import asyncio
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Final, Protocol, cast

from modbusd.ratelimit import RateLimitedLog, host_of
from modbusd.session import FrameError, Pending, Schedule, Session  # the transport knows the session, not the protocol

log = logging.getLogger(__name__)

CLOSE_GRACE: Final = 2.0  # seconds a closing connection gets to send what it owes before it is dropped
SEND_QUEUE: Final = 65536  # bytes queued for a peer above which its requests are no longer read


class ConnectionOwner(Protocol):
    """What a connection needs from the server that accepted it."""

    def open_session(self, connection: "TcpConnection") -> Session: ...

    def connection_closed(self, connection: "TcpConnection") -> None: ...

    @property
    def peer_warnings(self) -> RateLimitedLog:
        """Where repeated warnings about peers go: one line per peer and kind a minute."""
        ...


OpenSession = Callable[["TcpConnection"], Session]
"""Makes the session for a new connection: MBAP framing by default, RTU framing for RTU over TCP."""


READ_BUFFER_SIZE: Final = 4096
"""The most one read hands a session, and so the most work one connection gets per turn of the event loop: a
connection reads once per turn (`TcpConnection._yield_turn`), and every framer is linear in what it is fed. Small,
because one read's requests are answered at once and FC03 responses are up to 21.6 times their requests: 4 KiB of
requests (341 of them) can queue 88 KiB of responses for a peer that is not reading, 64 KiB could queue 1.4 MB."""


def read_buffer() -> memoryview:
    """A buffer for all the connections of one event loop (never share one between threads)."""
    return memoryview(bytearray(READ_BUFFER_SIZE))


End = Callable[[str], None]
"""Told "close" or "reset" when a fault's Schedule ends the connection (None where there is none: UDP, serial)."""


def start_awaiting(
    session: Session, tasks: set[asyncio.Future[bytes | None]], send: Callable[[bytes], None], end: End | None = None
) -> None:  # fmt: skip
    """Await each of `session`'s new pending answers in a task kept in `tasks`; `send` what each releases. Run each
    new Schedule in a task too: its pieces sent after their gaps, then `end` told what it asks for."""
    for item in session.take_awaiting():
        if item.__class__ is Schedule:
            run = asyncio.ensure_future(_run(item, send, end))  # type: ignore[arg-type]  # a Schedule, as checked
            tasks.add(run)  # type: ignore[arg-type]  # a task like the others, to be cancelled with them
            run.add_done_callback(tasks.discard)  # type: ignore[arg-type]  # as above
            continue
        pending: Pending = item  # type: ignore[assignment]  # not a Schedule: a Pending
        task = asyncio.ensure_future(pending.awaitable)
        tasks.add(task)
        task.add_done_callback(lambda done, pending=pending: _settled(session, pending, done, tasks, send, end))


async def _run(schedule: Schedule, send: Callable[[bytes], None], end: End | None) -> None:
    for gap, piece in schedule.pieces:
        if gap > 0:
            await sleep_at_least(gap)
        send(piece)
    if schedule.end is not None and end is not None:
        end(schedule.end)


async def sleep_at_least(seconds: float) -> None:
    """`asyncio.sleep`, never shorter by the clock: a fault's delay:500ms is at least 500 ms to the client. A loop's
    timer may end early: uvloop counts from the time libuv cached at the start of the loop's turn, and asyncio's
    loop runs timers due within its clock resolution."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        await asyncio.sleep(left)


def _settled(  # noqa: PLR0917  (the context of one awaited answer, bound by start_awaiting's lambda)
    session: Session, pending: Pending, done: asyncio.Future[bytes | None], tasks: set[asyncio.Future[bytes | None]],
    send: Callable[[bytes], None], end: End | None,
) -> None:  # fmt: skip
    tasks.discard(done)
    if done.cancelled():  # the connection closed: nobody to answer
        return
    exc = done.exception()
    out = session.settle(pending, done.result()) if exc is None else session.fail(pending, exc)
    if out:
        send(out)
    if session.awaiting:  # a fault on the settled answer: its Schedule
        start_awaiting(session, tasks, send, end)


def cancel_all(tasks: set[asyncio.Future[bytes | None]]) -> None:
    for task in tasks:
        task.cancel()
    tasks.clear()


class TcpConnection(asyncio.BufferedProtocol):
    __slots__ = (
        "_buffer", "_open_session", "_owner", "_reason", "_session", "_tasks", "_transport", "closing_at",
        "frame_seen", "host", "last_active", "opened", "paused_at", "peer",
    )  # fmt: skip

    def __init__(self, owner: ConnectionOwner, buffer: memoryview, open_session: OpenSession | None = None) -> None:
        """`open_session`: who makes this connection's session; the owner's `open_session` unless given."""
        self._owner = owner
        self._open_session = owner.open_session if open_session is None else open_session
        self._buffer = buffer
        self._transport: asyncio.Transport | None = None
        self._session: Session | None = None
        self._tasks: set[asyncio.Future[bytes | None]] | None = None  # answers being awaited; made when needed
        self._reason: str | None = None  # why the server closed it, for the line logged when it ends
        self.peer = self.host = "?"
        self.opened = self.last_active = time.monotonic()  # last_active: the last complete request (or the opening)
        self.paused_at: float | None = None  # since when the peer has not been taking its responses
        self.closing_at: float | None = None  # since when the server has been closing it
        self.frame_seen: float | None = None  # the owner's: when it first saw the partial frame it is timing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though uvloop's does not inherit from asyncio.Transport.
        self._transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        transport.set_write_buffer_limits(SEND_QUEUE)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.host = sys.intern(host_of(self.peer))  # one string for all of a client's connections
        log.debug("connection from %s", self.peer)
        self._session = session = self._open_session(self)
        session.warnings = self._owner.peer_warnings

    def peer_certificate(self) -> bytes | None:
        """The TLS client's certificate (DER), once its handshake is done; None over plain TCP."""
        transport = self._transport
        ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
        return None if ssl_object is None else ssl_object.getpeercert(binary_form=True)

    @property
    def requests(self) -> int:
        """Complete requests received so far."""
        return 0 if self._session is None else self._session.requests

    @property
    def partial(self) -> bool:
        """A request has begun to arrive and has not ended."""
        return self._session is not None and self._session.partial

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        session = self._session
        done = session.requests  # type: ignore[union-attr]  # set in connection_made, which runs first
        try:
            out = session.receive(self._buffer[:nbytes].tobytes())  # type: ignore[union-attr]  # as above
        except FrameError as exc:
            self._owner.peer_warnings.log(log, logging.WARNING, "bad frame", self.host,
                                          "%s: %s; closing this connection", self.peer, exc)  # fmt: skip
            if exc.reply:  # responses owed to the requests before the bad frame
                self._transport.write(exc.reply)  # type: ignore[union-attr]  # as above
            self.close(f"bad frame: {exc}")
            out = b""
        if session.requests != done:  # type: ignore[union-attr]  # as above
            self.last_active = time.monotonic()  # bytes alone are no activity: a slow sender must finish its frames
        if out:
            self._transport.write(out)  # type: ignore[union-attr]  # as above
        if session.awaiting:  # type: ignore[union-attr]  # as above
            if self._tasks is None:  # most connections never await anything: no set for them
                self._tasks = set()
            start_awaiting(session, self._tasks, self._send, self._end)  # type: ignore[arg-type]  # as above
        if nbytes == len(self._buffer):
            self._yield_turn()

    def _yield_turn(self) -> None:
        """The read filled the buffer, so more is waiting: read it on the loop's next turn, after the others.

        asyncio's selector loop reads once per turn anyway; uvloop (libuv) reads on while reads come back
        full, up to 32 times, which would let one client's flood run for 32 reads' work in one turn.
        """
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing() and self.paused_at is None:
            transport.resume_reading()

    def _send(self, out: bytes) -> None:
        """A late response (its answer was awaited), unless the connection is going away."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self.last_active = time.monotonic()
            transport.write(out)

    def _end(self, how: str) -> None:
        """A fault's end of the connection: "close" (FIN, after what is queued) or "reset" (RST)."""
        if how == "reset":
            self.reset("fault injection: reset")
        else:
            self.close("fault injection: close")

    def reset(self, reason: str | None = None) -> None:
        """Reset the connection: SO_LINGER with a time of 0 makes the close send RST, and drops what is queued."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.abort(reason)

    def pause_writing(self) -> None:
        """The peer is not reading its responses: stop reading its requests until it does (or the owner's write
        time-out drops it)."""
        self.paused_at = time.monotonic()
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_at = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    @property
    def closing(self) -> bool:
        return self.closing_at is not None

    def close(self, reason: str | None = None) -> None:
        """Close after what is already queued for the peer has been sent. The owner drops the connection if the
        peer has not taken it after CLOSE_GRACE (`abort`). `reason`: why, for the line logged at the end."""
        if self._transport is None or self.closing_at is not None:
            return
        self._reason = reason
        self.closing_at = time.monotonic()
        self._transport.close()

    def abort(self, reason: str | None = None) -> None:
        """Close now, dropping whatever the peer has not taken yet."""
        if self._transport is not None:
            if reason:
                self._reason = f"{self._reason}; {reason}" if self._reason else reason
            self.closing_at = self.closing_at or time.monotonic()
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """One line per connection, at its end: how long it lived, what it asked, and why it ended."""
        reason = self._reason or (f"lost: {exc}" if exc is not None else "closed by the peer")
        count = self.requests
        log.info("connection from %s ended after %.1f s, %d request%s: %s", self.peer, time.monotonic() - self.opened,
                 count, "" if count == 1 else "s", reason)  # fmt: skip
        if self._tasks:
            log.debug("%s: %d answers still awaited are cancelled", self.peer, len(self._tasks))
            cancel_all(self._tasks)
        self._owner.connection_closed(self)
