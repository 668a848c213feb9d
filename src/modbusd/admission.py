"""Connection admission and limits: the open TCP connections, the limits on them, and the time-outs that end them.

- The connection limit follows the Messaging on TCP/IP Implementation Guide §4.2.1: at the limit a new connection is
  taken and an unused one closed. "Unused" is judged by completed requests, so a client that opens connections and
  sends nothing cannot push out a poller: connections that never completed a request go first, then the one whose
  last request is the oldest.
- The open-files limit (RLIMIT_NOFILE) is a limit too: its soft value is raised to the hard one at start, and a
  margin of descriptors is kept for the listeners, serial ports, files and the control API. At that ceiling the
  server stops accepting (clients wait in the backlog) until a connection ends, rather than failing accept() in a
  loop. `--max-connections` above the ceiling is lowered to it.
- A per-client limit (`max_per_client`) closes a client's connection at accept when it already has that many.
- Time-outs, all measured here (the connections and sessions only keep times and states): the idle time-out
  (no complete request for that long), the frame time-out (a request begun and not finished), the write time-out
  (the peer takes none of its responses), and the close grace (a closing connection that cannot send what it owes
  is dropped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final

from modbusd.ratelimit import RateLimitedLog
from modbusd.transport.tcp import CLOSE_GRACE, TcpConnection

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own

OPEN_FILES_MARGIN: Final = 64  # descriptors kept for listeners, serial ports, the events log, the control API …
FRAME_TIMEOUT: Final = 10.0  # seconds a begun request may take to arrive whole (a few TCP retransmissions)
WRITE_TIMEOUT: Final = 30.0  # seconds a peer may leave its responses untaken before the connection is dropped
STARVED_PAUSE: Final = 1.0  # seconds without accepting after accept() ran out of descriptors, unless one frees


def open_files_limit() -> tuple[int | None, tuple[int, int] | None]:
    """Raise the soft open-files limit to the hard one (once, for the process): (the limit, None when unknown;
    (old, new) when it was raised).

    Distributions start services with a soft limit of 1024 and a far higher hard one: the difference is free to take.
    """
    try:
        import resource
    except ImportError:  # not on POSIX: the platform's own limits apply
        return None, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None, None
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS caps the soft limit below an infinite hard one
            log.debug("open-files limit stays at %d: %s", soft, exc)
        else:
            return target, (soft, target)
    return soft, None


class Admission:
    """The open connections of every TCP listener (Modbus/TCP and RTU over TCP) of one server, and their limits.

    It is also the listeners' gate (`transport.listen.Gate`): `accepting`, `refuses`, `starved`.
    """

    def __init__(
        self,
        max_connections: int | None,
        idle_timeout: float | None,
        *,
        max_per_client: int | None = None,
        frame_timeout: float | None = FRAME_TIMEOUT,
        write_timeout: float | None = WRITE_TIMEOUT,
    ) -> None:
        for name, value in (("max_connections", max_connections), ("max_connections_per_client", max_per_client)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")
        for name, value in (("idle_timeout", idle_timeout), ("frame_timeout", frame_timeout),
                            ("write_timeout", write_timeout)):  # fmt: skip
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be greater than 0")
        self.max_connections = max_connections  # as asked; lowered to the ceiling at start if above it
        self.max_per_client = max_per_client
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.write_timeout = write_timeout
        self.ceiling: int | None = None  # the most connections the open-files limit allows; known once started
        self._open_files: int | None = None
        self._raised: tuple[int, int] | None = None  # (from, to) when start raised the open-files limit
        self._asked: int | None = None  # a max_connections above the ceiling, lowered to it
        self.connections: set[TcpConnection] = set()  # every connection holding a descriptor, closing ones too
        self._per_host: dict[str, int] = {}
        self.peer_warnings = RateLimitedLog()  # the server's: repeated warnings about peers, one line a minute each
        self.accepting = asyncio.Event()  # made again by each start: an Event belongs to one loop
        self.accepting.set()
        self._full = False  # not accepting: at the ceiling
        self._starved = False  # not accepting for a while: accept() found no descriptor
        self._watcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------ limits

    def set_ceiling(self, open_files: int | None) -> None:
        """The ceiling from the open-files limit, and --max-connections kept under it."""
        if open_files is None:
            return
        self.ceiling = ceiling = max(1, open_files - min(OPEN_FILES_MARGIN, open_files // 4))
        if self.max_connections is not None and self.max_connections > ceiling:
            self._asked = self.max_connections
            self.max_connections = ceiling

    def announce(self) -> None:
        """Say what the limits are, once the server has started (a server that fails to start says only why)."""
        if self._raised is not None:
            log.info("raised the open-files limit from %d to %d (the hard limit)", *self._raised)
        ceiling, open_files = self.ceiling, self._open_files
        if ceiling is None:
            return
        asked = self._asked
        if asked is not None:
            log.warning("--max-connections %d is more than the open-files limit %d allows: at most %d connections "
                        "(raise the hard limit: ulimit -Hn, or LimitNOFILE= in a systemd unit)", asked, open_files,
                        ceiling)  # fmt: skip
        elif self.max_connections is None:
            log.info("at most %d connections at a time (the open-files limit, %d, less a margin); then new clients "
                     "wait until one ends", ceiling, open_files)  # fmt: skip

    def refuses(self, host: str) -> bool:
        """Over the per-client limit: the listener closes the new connection at once."""
        limit = self.max_per_client
        if limit is None or self._per_host.get(host, 0) < limit:
            return False
        self.peer_warnings.log(log, logging.WARNING, "per-client limit", host,
                               "%s already has %d connections, the most one client may have: new ones are closed",
                               host, limit)  # fmt: skip
        return True

    def admit(self, connection: TcpConnection) -> None:
        if self.max_connections is not None:
            self._make_room(self.max_connections)
        self.connections.add(connection)
        self._per_host[connection.host] = self._per_host.get(connection.host, 0) + 1
        if self._starved:
            self._starved = False
            log.info("accepting connections again")
        if self.ceiling is not None and len(self.connections) >= self.ceiling and not self._full:
            self._full = True
            self.accepting.clear()
            self.peer_warnings.log(log, logging.WARNING, "ceiling", "*", "%d connections, the most the open-files "
                                   "limit allows: new clients wait until one ends", len(self.connections))  # fmt: skip

    def _make_room(self, limit: int) -> None:
        """TCP guide §4.2.1: close an unused connection. Connections that never completed a request go first, then
        the one whose last request is the oldest: a poller keeps its connection against a flood of new ones."""
        candidates = [c for c in self.connections if not c.closing]
        if len(candidates) < limit:
            return
        victim = min(candidates, key=lambda c: (c.requests > 0, c.last_active))
        unused = "has completed no request" if not victim.requests else \
            f"completed no request for {time.monotonic() - victim.last_active:.1f} s"  # fmt: skip
        self.peer_warnings.log(log, logging.WARNING, "connection limit", "*", "connection limit %d reached: closing "
                               "the connection from %s, which %s", limit, victim.peer, unused)  # fmt: skip
        victim.close(f"closed at the connection limit ({limit}): it {unused}")

    def starved(self, exc: OSError) -> None:
        """accept() found no descriptor (other files count too): wait for a connection to end, or a second."""
        self.accepting.clear()
        if not self._starved:
            self._starved = True
            log.warning("out of file descriptors (%s) with %d connections open: accepting again once one ends",
                        exc.strerror or exc, len(self.connections))  # fmt: skip
        asyncio.get_running_loop().call_later(STARVED_PAUSE, self._reopen)

    def _reopen(self) -> None:
        if not self._full:
            self.accepting.set()

    def closed(self, connection: TcpConnection) -> None:
        self.connections.discard(connection)
        left = self._per_host.get(connection.host, 0) - 1
        if left > 0:
            self._per_host[connection.host] = left
        else:
            self._per_host.pop(connection.host, None)
        if self._full and (self.ceiling is None or len(self.connections) < self.ceiling):
            self._full = False
            self.peer_warnings.log(log, logging.INFO, "below ceiling", "*", "accepting connections again")
        if not self._full:
            self.accepting.set()

    def describe(self, now: float) -> list[dict[str, object]]:
        """The open connections for a person watching (the console's ``GET /connections``), oldest first."""
        return [{"peer": c.peer, "requests": c.requests, "open_s": round(now - c.opened, 1),
                 "idle_s": round(now - c.last_active, 1), "closing": c.closing}
                for c in sorted(self.connections, key=lambda c: c.opened)]  # fmt: skip

    # ---------------------------------------------------------------------------------- time-outs

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take the open-files limit, and start watching the time-outs."""
        self.accepting = asyncio.Event()
        self.accepting.set()
        self._full = self._starved = False
        self._open_files, self._raised = open_files_limit()
        self.set_ceiling(self._open_files)
        timeouts = [t for t in (self.idle_timeout, self.frame_timeout, self.write_timeout, CLOSE_GRACE) if t]
        self._watcher = loop.create_task(self._watch(min(min(timeouts) / 2, 1.0)))

    async def _watch(self, tick: float) -> None:
        while True:
            await asyncio.sleep(tick)
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        """End the connections whose time is up; each says why in the one line it logs when it ends."""
        for connection in list(self.connections):
            self._time_up(connection, now)

    def _time_up(self, c: TcpConnection, now: float) -> None:
        if c.closing_at is not None:
            if now - c.closing_at > CLOSE_GRACE:
                c.abort(f"dropped: its responses were not taken in {CLOSE_GRACE:g} s")
            return
        if c.paused_at is not None:  # not read while its peer takes no responses: no request of it can complete
            c.frame_seen = None
            if self.write_timeout and now - c.paused_at > self.write_timeout:
                c.abort(f"dropped: it took none of its responses for {self.write_timeout:g} s (write time-out)")
                return
        elif self.frame_timeout and self._frame_overdue(c, now, self.frame_timeout):
            c.close(f"a request begun more than {self.frame_timeout:g} s ago is still incomplete (frame time-out)")
            return
        if self.idle_timeout and now - c.last_active > self.idle_timeout:
            c.close(f"no complete request for more than {self.idle_timeout:g} s (idle time-out)")

    @staticmethod
    def _frame_overdue(c: TcpConnection, now: float, timeout: float) -> bool:
        """Whether `c` has held the same unfinished request for `timeout`. The request is timed from the first check
        that saw it (so never less than `timeout`); a request completed since starts the timing again."""
        if not c.partial:
            c.frame_seen = None
            return False
        if c.frame_seen is None or c.last_active > c.frame_seen:
            c.frame_seen = now
            return False
        return now - c.frame_seen > timeout

    def stop_reaping(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def close_all(self) -> None:
        """Close every connection once it has sent what it owes."""
        for connection in list(self.connections):
            connection.close("the server is stopping")

    def abort_rest(self, grace: float) -> None:
        """A peer that never reads its responses cannot hold the server up: drop what is left after `grace`."""
        if self.connections:
            log.warning("%d connections did not take their last responses in %g s; dropping them",
                        len(self.connections), grace)  # fmt: skip
        for connection in list(self.connections):
            connection.abort(f"dropped: its last responses were not taken in {grace:g} s")
