"""Modbus over UDP: one MBAP request per datagram, the response sent back to the sender.

Each datagram is framed on its own by a fresh session (a request never continues in the next datagram,
which may come from anyone). Bad input drops that datagram only.
"""

import asyncio
import logging
from collections.abc import Callable

from modbusd.session import FrameError, Session  # the transport knows the session, not the protocol

log = logging.getLogger(__name__)

NewSession = Callable[[str], Session]
"""peer ("host:port") → a session with a fresh framer, for one datagram."""


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, new_session: NewSession) -> None:
        self._new_session = new_session
        self._transport: asyncio.DatagramTransport | None = None
        self._bad = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        try:
            out = self._new_session(peer).receive(data)
        except FrameError as exc:
            self._bad += 1
            level = logging.WARNING if self._bad == 1 else logging.DEBUG
            log.log(level, "%s: %s; datagram dropped (any more: debug level)", peer, exc)
            out = exc.reply  # responses owed to good requests before the bad frame
        if out and self._transport is not None:
            self._transport.sendto(out, addr)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def error_received(self, exc: Exception) -> None:
        log.info("UDP: %s", exc)  # e.g. ICMP port unreachable for a response to a client that left
