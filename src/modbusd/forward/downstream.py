"""What every downstream shares: the first-come queue with its bound, the counters, the path's up/down log lines.

How requests go out is the subclass's business (`serial.py`: one at a time on the line; `tcp.py`: several in
flight, paired by transaction id): it says how many are under way (`in_flight`) and is told when one waits
(`_wake`). The queue's bound counts only the requests waiting, so that exception 06 means the same thing for
both: `queue_limit` requests already wait for a free place on the wire.
"""

import asyncio
import contextlib
import logging
from collections import deque

from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.errors import GatewayPathUnavailable, ModbusError, ServerDeviceBusy

log = logging.getLogger(__name__)

Waiting = tuple[int, bytes, "asyncio.Future[bytes | None]"]  # unit id, request PDU, the response PDU to come


class Downstream:
    """One forwarding target: up to `in_flight_limit` requests under way, `queue_limit` more waiting their turn."""

    def __init__(self, name: str, *, timeout: float, queue_limit: int, in_flight_limit: int = 1) -> None:
        if timeout <= 0:
            raise ValueError(f"forward time-out {timeout} must be positive")
        if queue_limit < 0:
            raise ValueError(f"forward queue bound {queue_limit} must not be negative")
        if in_flight_limit < 1:
            raise ValueError(f"forward in-flight bound {in_flight_limit} must be at least 1")
        self.name = name
        self.timeout = timeout
        self.queue_limit = queue_limit
        self.in_flight_limit = in_flight_limit
        self._waiting: deque[Waiting] = deque()
        self._started = False
        self._down: str | None = None  # why the path is down, while it is; for logging changes only
        # For monitoring (GET /metrics): requests handed to forward(), those refused with exception 06 (the queue was
        # full), those answered with 0x0B (no response in time) and with 0x0A (the path is down).
        self.requests = 0
        self.busy_refusals = 0
        self.timeouts = 0
        self.unavailable = 0

    def __str__(self) -> str:
        return self.name

    @property
    def queued(self) -> int:
        """Requests waiting for the wire (not counting those under way)."""
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """Requests under way: sent (or being sent) and not yet answered, timed out or failed."""
        raise NotImplementedError

    def forward(self, unit_id: int, pdu: bytes) -> "asyncio.Future[bytes | None]":
        """Queue the request; the future gives the response PDU (None for a broadcast) or raises a ModbusError.

        Raises ServerDeviceBusy at once when `queue_limit` requests already wait besides a full wire.
        """
        self.requests += 1
        if not self._started:
            raise GatewayPathUnavailable(f"{self.name}: gateway not started")
        if len(self._waiting) + self.in_flight >= self.queue_limit + self.in_flight_limit:
            self.busy_refusals += 1
            log.debug("%s: %d requests waiting; exception 06 for unit %d", self.name, len(self._waiting), unit_id)
            raise ServerDeviceBusy(f"{self.name}: queue full")
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        if self._waiting or not self._send_now(unit_id, pdu, future):
            entry = (unit_id, pdu, future)
            self._waiting.append(entry)
            future.add_done_callback(lambda done: self._forget(entry) if done.cancelled() else None)
            self._wake()
        return future

    def _send_now(self, unit_id: int, pdu: bytes, future: "asyncio.Future[bytes | None]") -> bool:
        """Nobody waits: send the request at once if there is room on the wire (False: it queues).

        The common case on a TCP downstream, and the cheap one: no queue, no callback to take it off the queue."""
        return False

    def _forget(self, entry: Waiting) -> None:
        """A client went away: its request leaves the queue (if it still waits there)."""
        with contextlib.suppress(ValueError):
            self._waiting.remove(entry)

    def _wake(self) -> None:
        """A request joined the queue."""
        raise NotImplementedError

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        """Nothing more goes out; every request still waiting or under way is cancelled (its client is gone)."""
        self._started = False
        await self._halt()
        while self._waiting:
            self._waiting.popleft()[2].cancel()

    async def _halt(self) -> None:
        """Stop sending, cancel what is under way and close the port or connection."""
        raise NotImplementedError

    def _fail(self, future: "asyncio.Future[bytes | None]", exc: ModbusError) -> None:
        """`exc` answers one request (counted even when its client has gone: the downstream failed all the same)."""
        if exc.code == ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND:
            self.timeouts += 1
        elif exc.code == ExceptionCode.GATEWAY_PATH_UNAVAILABLE:
            self.unavailable += 1
        if not future.done():
            future.set_exception(exc)

    def _path_down(self, why: str) -> GatewayPathUnavailable:
        if self._down != why:
            log.warning("%s: gateway path unavailable (%s): exception 0x0A until it is back", self.name, why)
        self._down = why
        return GatewayPathUnavailable(f"{self.name}: {why}")

    def _path_up(self) -> None:
        if self._down is not None:
            log.info("%s: gateway path available again", self.name)
        self._down = None
