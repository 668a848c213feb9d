"""Repeated warnings, rate-limited: one line per kind and peer, then a count once a minute.

A client (or a spoofed UDP source) that sends the same bad thing a thousand times a second must not write a thousand
log lines a second: each datagram, connection or frame is a fresh occasion, so "once per session" is not enough.
What is held back is still logged at DEBUG (`-v`), so nothing is lost for whoever asks for detail.

Imports nothing from modbusd, so every room may use it (the transports, the session, the serial bus). The clock is
injected for tests; the default is `time.monotonic`.
"""

import logging
import time
from collections.abc import Callable
from typing import Final

WINDOW: Final = 60.0  # seconds: one line per kind and peer in this time, then the count of those held back
MAX_PEERS: Final = 1024  # distinct (kind, peer) keys remembered; past that, peers share one key per kind
MANY_PEERS: Final = "many peers"


def host_of(peer: str) -> str:
    """`192.0.2.1:5020` → `192.0.2.1`: a client reconnects from a new port, it is still the same client."""
    host, colon, port = peer.rpartition(":")
    return host if colon and port.isdigit() else peer


class RateLimitedLog:
    """Logs the first of each (kind, peer) at once, then holds back its repeats for `window` seconds and says how
    many there were on the next line logged for it. Memory stays bounded however many peers there are."""

    __slots__ = ("_clock", "_entries", "_max_peers", "window")

    def __init__(
        self, window: float = WINDOW, *, max_peers: int = MAX_PEERS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._max_peers = max_peers
        self._clock = clock
        self._entries: dict[tuple[str, str], list[float]] = {}  # key → [time of the last line logged, held back]

    def log(self, logger: logging.Logger, level: int, kind: str, peer: str, msg: str, *args: object) -> bool:
        """Log `msg % args` at `level` unless a line of this `kind` for this `peer` was logged less than `window`
        seconds ago; True when it was logged."""
        now = self._clock()
        key = (kind, peer)
        entry = self._entries.get(key)
        if entry is None and len(self._entries) >= self._max_peers:
            self._forget(now)
            if len(self._entries) >= self._max_peers:
                key = (kind, MANY_PEERS)
                entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(msg, *args)
            return False
        held = int(entry[1]) if entry is not None else 0
        self._entries[key] = [now, 0]
        if key[1] is MANY_PEERS:
            msg = f"{msg} (and the like from many peers)"
        if held:
            logger.log(level, f"{msg} ({held} more like this since the last such line)", *args)
        else:
            logger.log(level, msg, *args)
        return True

    def _forget(self, now: float) -> None:
        """Drop the keys whose window has passed (their count of held-back lines goes with them)."""
        stale = [key for key, (logged, _) in self._entries.items() if now - logged >= self.window]
        for key in stale:
            del self._entries[key]
