"""Modbus over UDP: one MBAP request per datagram, the response sent back to the sender.

Each datagram is framed on its own by a fresh session (a request never continues in the next datagram,
which may come from anyone). Bad input drops that datagram only. An answer that takes time is awaited in a
task, and its response sent to the datagram's sender when it comes; closing the endpoint cancels them.
"""

import asyncio
import logging
from collections.abc import Callable

from modbusd.ratelimit import RateLimitedLog, host_of
from modbusd.session import FrameError, Session  # the transport knows the session, not the protocol
from modbusd.transport.tcp import cancel_all, start_awaiting

log = logging.getLogger(__name__)

NewSession = Callable[[str], Session]
"""peer ("host:port") → a session with a fresh framer, for one datagram."""


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, new_session: NewSession, warnings: RateLimitedLog | None = None, *,
                 refuse: Callable[[str], bool] | None = None) -> None:  # fmt: skip
        """`warnings`: where repeated warnings go, one line per peer and kind a minute (each datagram is a new
        session, so a session's own once-only warnings would say it for every datagram). `refuse(host)`: True
        drops the datagram unanswered (an allow-list, which logs it)."""
        self._new_session = new_session
        self._refuse = refuse
        self._transport: asyncio.DatagramTransport | None = None
        self._warnings = RateLimitedLog() if warnings is None else warnings
        self._tasks: set[asyncio.Future[bytes | None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if self._refuse is not None and self._refuse(str(addr[0])):
            return
        peer = f"{addr[0]}:{addr[1]}"
        session = self._new_session(peer)
        session.warnings = self._warnings
        try:
            out = session.receive(data)
        except FrameError as exc:
            self._warnings.log(log, logging.WARNING, "bad frame", host_of(peer), "%s: %s; datagram dropped", peer, exc)
            out = exc.reply  # responses owed to good requests before the bad frame
        if out and self._transport is not None:
            self._transport.sendto(out, addr)
        if session.awaiting:
            start_awaiting(session, self._tasks, lambda late: self._send(late, addr))

    def _send(self, out: bytes, addr: tuple[str | object, ...]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(out, addr)

    def close(self) -> None:
        cancel_all(self._tasks)
        if self._transport is not None:
            self._transport.close()

    def error_received(self, exc: Exception) -> None:
        log.info("UDP: %s", exc)  # e.g. ICMP port unreachable for a response to a client that left
