"""Connection admission and limits: the open TCP connections, the connection limit, the idle time-out.

The limit follows the Messaging on TCP/IP Implementation Guide §4.2.1: at the limit a new connection is taken and
the longest unused one closed. Idle time-outs need the clock, so they live here and not in the sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time

from modbusd.transport.tcp import TcpConnection

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own


class Admission:
    """The open connections of every TCP listener (Modbus/TCP and RTU over TCP) of one server."""

    def __init__(self, max_connections: int | None, idle_timeout: float | None) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connections: set[TcpConnection] = set()
        self._reaper: asyncio.Task[None] | None = None

    def admit(self, connection: TcpConnection) -> None:
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            oldest = min(self.connections, key=lambda c: c.last_active)
            log.warning(
                "connection limit %d reached: closing the longest unused connection, from %s",
                self.max_connections, oldest.peer,
            )  # fmt: skip
            self.connections.discard(oldest)  # TCP guide §4.2.1: close the oldest unused connection
            oldest.close()
        self.connections.add(connection)

    def closed(self, connection: TcpConnection) -> None:
        self.connections.discard(connection)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start closing idle connections, when there is an idle time-out."""
        if self.idle_timeout:
            self._reaper = loop.create_task(self._reap_idle(self.idle_timeout))

    async def _reap_idle(self, timeout: float) -> None:
        while True:
            await asyncio.sleep(min(timeout / 2, 1.0))
            now = time.monotonic()
            for connection in [c for c in self.connections if now - c.last_active > timeout]:
                log.info("closing %s: idle for more than %g s", connection.peer, timeout)
                connection.close()

    def stop_reaping(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None

    def close_all(self) -> None:
        """Close every connection once it has sent what it owes."""
        for connection in list(self.connections):
            connection.close()

    def abort_rest(self, grace: float) -> None:
        """A peer that never reads its responses cannot hold the server up: drop what is left after `grace`."""
        for connection in list(self.connections):
            log.warning("%s did not take its last responses in %g s; dropping the connection", connection.peer,
                        grace)  # fmt: skip
            connection.abort()
