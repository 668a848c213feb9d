"""The live request log: one record per request a device answered, kept only while someone follows it.

`modbusd log --follow` (the control API's ``GET /log?follow=1``) shows what clients ask, as it happens. Recording
costs time on every request, so nothing is recorded while nobody follows: the events hub then leaves its
`observed` set as it was, and the answer functions never reach `RequestLog.record` (`hub.py`, `answers.py`).
While someone follows, the hub observes every function code and records each request here, in the server's loop.

What the request path stores is a tuple of what it has at hand (`Raw`: times, client, PDU, response); decoding
the PDU into a record (`describe`) is left to whoever reads it (`Follower.take`, `RequestLog.records`, in the
control API's writer), so that records nobody reads (lost by a follower that fell behind) cost nothing more. A
follower may also ask for at most N records a second (the web console asks for a few hundred, all a person can
read): while every follower has such a cap, requests past the largest cap are not recorded at all, only counted,
and each follower is told how many it did not see (`Follower.not_shown`). The cap is counted per tenth of a second
(`WINDOW`), so that a busy second shows requests from all of it, not its first moments only. Once a window's records
are spent, the hub stops observing requests until the window ends (`pause`): they then take the path they take
with nobody following, and the hub counts them from the server's own request counts (`stats.py`).

The ring keeps the last `size` records (what ``GET /log`` shows, including what earlier followers saw); each
follower has a queue of its own, bounded, so that a follower that cannot keep up loses records (and is told how
many) instead of making the server hold an unbounded backlog or wait for it. Knows the PDU format only.
"""

import time
from collections import deque
from collections.abc import Callable
from typing import Final

from modbusd.protocol.bits import unpack_bits
from modbusd.protocol.codes import ExceptionCode, FunctionCode
from modbusd.protocol.errors import FrameError, ModbusError
from modbusd.protocol.pdu import decode_request

RING_SIZE: Final = 1000  # records GET /log shows: a few minutes of a busy poll loop's requests
FOLLOWER_QUEUE: Final = 1000  # records a follower may fall behind before it loses the oldest ones
MAX_VALUES: Final = 16  # values shown per written request; more are counted in "more_values"

WINDOW: Final = 0.1  # seconds over which a records-per-second cap is counted (a tenth of it per window)

Record = dict[str, object]
"""time, client, transport, endpoint (only for a request to one of the server's named endpoints), unit_id, function
(and its name), address, quantity, values written (at most MAX_VALUES, the rest counted), outcome ("ok", "exception"
with its code and name, "silent"), latency_ms."""

Raw = tuple[float, str, str, int, bytes, bytes | None, float | None, str | None]
"""What `RequestLog.record` keeps: (time.time(), client, transport, unit_id, pdu, response or None, seconds from
the request's arrival to its response or None, the endpoint's name or None for the server's default one)."""


class Follower:
    """One reader of the live log: its own bounded queue, the records it lost, and how to wake it up. `per_second`:
    the most records a second it wants (None: every one)."""

    def __init__(self, log: "RequestLog", wake: Callable[[], object], limit: int,
                 per_second: int | None = None) -> None:  # fmt: skip
        self.wake = wake
        self.limit = limit
        self.per_second = per_second
        self.queue: deque[Raw] = deque()
        self.dropped = 0
        self._log = log
        self._skipped = log.skipped  # the log's count of requests not recorded, when this follower last looked

    def push(self, raw: Raw) -> None:
        queue = self.queue
        if len(queue) >= self.limit:
            queue.popleft()  # the oldest goes: a follower wants to see what happens now
            self.dropped += 1
        queue.append(raw)
        if len(queue) == 1:
            self.wake()

    def take(self) -> tuple[list[Record], int]:
        """The records queued since the last call, and how many were lost since then."""
        raws, dropped = list(self.queue), self.dropped
        self.queue.clear()
        self.dropped = 0
        return [describe(raw) for raw in raws], dropped

    def not_shown(self) -> int:
        """Requests not recorded (over every follower's cap) since the last call."""
        skipped, self._skipped = self._log.skipped - self._skipped, self._log.skipped
        return skipped


class RequestLog:
    """The ring of the last `size` records and the followers; `on_change` is told when following starts or stops."""

    def __init__(self, size: int = RING_SIZE, follower_queue: int = FOLLOWER_QUEUE, *,
                 clock: Callable[[], float] = time.perf_counter) -> None:  # fmt: skip
        """`clock`: the cap's windows and the latencies are measured on it (the callers' `started` is on it too)."""
        self._clock = clock
        self.ring: deque[Raw] = deque(maxlen=size)
        self.follower_queue = follower_queue
        self.followers: list[Follower] = []
        self.on_change: Callable[[], None] = lambda: None
        self.skipped = 0  # requests not recorded because every follower had its fill (`per_second`)
        # Called with the seconds left in the window when its records are spent: True if the observer stops
        # sending requests here until then (the hub does, in the server's loop: the requests meanwhile take the
        # path they take with nobody following, and it adds them to `skipped` when it resumes).
        self.pause: Callable[[float], bool] | None = None
        self.paused = False
        self._per_window: int | None = None  # records a WINDOW may have; None: every request is recorded
        self._window_end = 0.0
        self._left = 0

    def follow(self, wake: Callable[[], object], per_second: int | None = None) -> Follower:
        """A new follower; `per_second`: the most records a second it wants (None: all of them)."""
        follower = Follower(self, wake, self.follower_queue, per_second)
        self.followers = [*self.followers, follower]
        self._update_cap()
        if len(self.followers) == 1:
            self.on_change()
        return follower

    def unfollow(self, follower: Follower) -> None:
        self.followers = [f for f in self.followers if f is not follower]
        self._update_cap()
        if not self.followers:
            self.on_change()

    def _update_cap(self) -> None:
        """The largest cap of the followers, per window; none as soon as one follower wants every request."""
        caps = [f.per_second for f in self.followers]
        capped = [cap for cap in caps if cap is not None]
        everything = not caps or len(capped) < len(caps)
        self._per_window = None if everything else max(1, round(max(capped) * WINDOW))

    def records(self) -> list[Record]:
        return [describe(raw) for raw in self.ring]

    def record(self, client: str, transport: str, unit_id: int, pdu: bytes, reply: bytes | None, *,
               started: float | None = None, endpoint: str | None = None) -> None:  # fmt: skip
        """One answered request; `started`: its time.perf_counter() on arrival, when the caller had it; `endpoint`:
        the name of the endpoint it came to (None: the server's default one), which the caller has at hand."""
        if self.paused:  # the observer counts these (`pause`)
            return
        now = self._clock()
        if self._per_window is not None:
            if now >= self._window_end:
                self._window_end, self._left = now + WINDOW, self._per_window
            if not self._left:
                self.skipped += 1
                return
            self._left -= 1
            if not self._left and self.pause is not None:
                self.paused = self.pause(self._window_end - now)
        latency = None if started is None else now - started
        raw = (time.time(), client, transport, unit_id, pdu, reply, latency, endpoint)
        self.ring.append(raw)
        for follower in self.followers:
            follower.push(raw)


def describe(raw: Raw) -> Record:
    """The record of what `RequestLog.record` kept: the request decoded (`describe_request`) and its outcome."""
    at, client, transport, unit_id, pdu, reply, latency, endpoint = raw
    entry: Record = {"time": round(at, 6), "client": client, "transport": transport}
    if endpoint is not None:  # absent for the default endpoint: a server without endpoints logs as it always did
        entry["endpoint"] = endpoint
    entry["unit_id"] = unit_id
    entry |= describe_request(pdu)
    if reply is None:
        entry["outcome"] = "silent"
    elif reply[0] & 0x80 and len(reply) > 1:
        entry["outcome"] = "exception"
        entry["exception"] = reply[1]
        entry["exception_name"] = _exception_name(reply[1])
    else:
        entry["outcome"] = "ok"
    if latency is not None:
        entry["latency_ms"] = round(latency * 1000, 3)
    return entry


def _exception_name(code: int) -> str:
    try:
        return ExceptionCode(code).name
    except ValueError:
        return f"code {code}"


def describe_request(pdu: bytes) -> Record:
    """function, its name, and the address, quantity and values a request names (values only when it writes).

    FC22 (§6.16) shows its AND and OR masks as its two values; FC23 (§6.17) the read's address and quantity, and
    the write's address as ``write_address``. A request that does not decode keeps its raw bytes as ``data``.
    """
    if not pdu:
        return {"function": None}
    function = pdu[0]
    try:
        name = FunctionCode(function).name
    except ValueError:
        name = f"function {function}"
    entry: Record = {"function": function, "function_name": name}
    try:
        request = decode_request(pdu)
    except (ModbusError, FrameError, IndexError, ValueError):
        entry["data"] = pdu[1:].hex()[: 2 * MAX_VALUES]
        return entry
    address = getattr(request, "read_address", None)
    if address is None:
        address = getattr(request, "address", None)
    if address is not None:
        entry["address"] = address
    quantity = getattr(request, "read_quantity", None) or getattr(request, "quantity", None)
    values: list[int] | None = None
    if function in (FunctionCode.WRITE_SINGLE_COIL, FunctionCode.WRITE_SINGLE_REGISTER):
        values, quantity = [int(request.value)], 1  # type: ignore[attr-defined]  # both have a value
    elif function == FunctionCode.WRITE_MULTIPLE_COILS:
        values = list(unpack_bits(request.values, request.quantity))  # type: ignore[attr-defined]
    elif function in (FunctionCode.WRITE_MULTIPLE_REGISTERS, FunctionCode.READ_WRITE_MULTIPLE_REGISTERS):
        raw: bytes = request.values  # type: ignore[attr-defined]  # register bytes, big-endian
        values = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, min(len(raw), 2 * MAX_VALUES), 2)]
        entry["more_values"] = max(0, len(raw) // 2 - MAX_VALUES)
        if function == FunctionCode.WRITE_MULTIPLE_REGISTERS:
            quantity = len(raw) // 2
        else:
            entry["write_address"] = request.write_address  # type: ignore[attr-defined]
    elif function == FunctionCode.MASK_WRITE_REGISTER:
        values, quantity = [request.and_mask, request.or_mask], 1  # type: ignore[attr-defined]
    if quantity is not None:
        entry["quantity"] = quantity
    if values is not None:
        if "more_values" not in entry:
            entry["more_values"] = max(0, len(values) - MAX_VALUES)
        entry["values"] = values[:MAX_VALUES]
    return entry
