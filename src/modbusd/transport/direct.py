"""A stream transport driven by the loop's readiness callbacks: `loop.add_reader` + `recv_into`/`send`.

asyncio's own socket transport costs each connection about 1.7 KiB of Python objects (a __dict__, the peer and
socket names resolved at once, a socket wrapper, a weak reference, bound methods), uvloop's about 0.8 KiB more than
this one; with ten thousand connections that is most of the server's memory. This one keeps what a `TcpConnection`
uses (`transport.tcp`: BufferedProtocol callbacks, write with a high-water mark, pause and resume, close after the
queued bytes, abort) in slots, and resolves nothing it is not asked for. It follows asyncio's
`_SelectorSocketTransport` step for step, so the protocol sees the same calls in the same order: connection_lost
soon after the close, never from inside a call of the protocol's own. Plain TCP only: TLS has asyncio's transport.
Measured in docs/performance.md (memory per connection, CPU per request on both loops).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

log = logging.getLogger(__name__)


class SocketTransport(asyncio.Transport):
    """One accepted, non-blocking stream socket, for an `asyncio.BufferedProtocol`."""

    __slots__ = ("_closing", "_fd", "_high", "_loop", "_lost", "_out", "_paused", "_protocol", "_reading", "_sock")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.BufferedProtocol
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._out: bytearray | None = None  # what the kernel did not take yet; made when it first refuses some
        self._high = 65536
        self._paused = False  # the protocol was told to stop writing
        self._reading = True
        self._closing = False
        self._lost = False  # connection_lost is on its way
        loop.add_reader(self._fd, self._read)
        protocol.connection_made(self)

    # ------------------------------------------------------------------------------------------- reading

    def _read(self) -> None:
        if self._lost:
            return
        try:
            count = self._sock.recv_into(self._protocol.get_buffer(-1))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not count:  # the peer's FIN: a protocol that does not keep the connection half open has it closed
            if not self._protocol.eof_received():
                self.close()
            return
        try:
            self._protocol.buffer_updated(count)
        except Exception as exc:  # asyncio's transport reports the protocol's bug and drops the connection too
            self._loop.call_exception_handler(
                {"message": "buffer_updated failed", "exception": exc, "transport": self, "protocol": self._protocol}
            )
            self._fail(exc)

    def pause_reading(self) -> None:
        if self._closing or not self._reading:
            return
        self._reading = False
        self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        self._loop.add_reader(self._fd, self._read)

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # ------------------------------------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        if not data or self._lost:
            return
        if not self._out:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
            if self._out is None:
                self._out = bytearray()
        self._out += data  # type: ignore[operator]  # made above, or not empty
        if not self._paused and len(self._out) > self._high:  # type: ignore[arg-type]  # as above
            self._paused = True
            self._protocol.pause_writing()

    def _write_ready(self) -> None:
        out = self._out
        if self._lost or not out:
            return
        try:
            sent = self._sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._loop.remove_writer(self._fd)
            out.clear()
            self._fail(exc)
            return
        del out[:sent]
        if self._paused and len(out) <= self._high // 4:  # asyncio's low-water mark: a quarter of the high one
            self._paused = False
            self._protocol.resume_writing()
        if not out:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._lost = True
                self._connection_lost(None)

    def get_write_buffer_size(self) -> int:
        return len(self._out) if self._out else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = 65536 if high is None else high  # low: always a quarter of it, as TcpConnection leaves it

    def can_write_eof(self) -> bool:
        return False

    # ------------------------------------------------------------------------------------------- ending

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; send what is queued, then close (`connection_lost` soon after, never from here)."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._out:
            self._lost = True
            self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fail(self, exc: BaseException) -> None:
        log.debug("connection lost: %s", exc)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        if self._out:
            self._out.clear()
            self._loop.remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._loop.remove_reader(self._fd)
        self._lost = True
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]  # an OSError or None
        finally:
            self._sock.close()

    # ------------------------------------------------------------------------------------------- extras

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """'socket', 'peername' and 'sockname', asked for when wanted rather than kept for every connection."""
        try:
            if name == "socket":
                return self._sock
            if name == "peername":
                return self._sock.getpeername()
            if name == "sockname":
                return self._sock.getsockname()
        except OSError:
            return default
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]  # a BufferedProtocol, as every one here
