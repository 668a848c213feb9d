"""The live request log: one record per request a device answered, kept only while someone follows it.

`modbusd log --follow` (the control API's ``GET /log?follow=1``) shows what clients ask, as it happens. Recording
costs time on every request, so nothing is recorded while nobody follows: the events hub then leaves its
`observed` set as it was, and the answer functions never reach `RequestLog.record` (`hub.py`, `answers.py`).
While someone follows, the hub observes every function code and records each request here, in the server's loop.

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

Record = dict[str, object]
"""time, client, transport, unit_id, function (and its name), address, quantity, values written (at most
MAX_VALUES, the rest counted), outcome ("ok", "exception" with its code and name, "silent"), latency_ms."""


class Follower:
    """One reader of the live log: its own bounded queue, the records it lost, and how to wake it up."""

    def __init__(self, wake: Callable[[], object], limit: int) -> None:
        self.wake = wake
        self.limit = limit
        self.queue: deque[Record] = deque()
        self.dropped = 0

    def push(self, record: Record) -> None:
        queue = self.queue
        if len(queue) >= self.limit:
            queue.popleft()  # the oldest goes: a follower wants to see what happens now
            self.dropped += 1
        queue.append(record)
        if len(queue) == 1:
            self.wake()

    def take(self) -> tuple[list[Record], int]:
        """The records queued since the last call, and how many were lost since then."""
        records, dropped = list(self.queue), self.dropped
        self.queue.clear()
        self.dropped = 0
        return records, dropped


class RequestLog:
    """The ring of the last `size` records and the followers; `on_change` is told when following starts or stops."""

    def __init__(self, size: int = RING_SIZE, follower_queue: int = FOLLOWER_QUEUE) -> None:
        self.ring: deque[Record] = deque(maxlen=size)
        self.follower_queue = follower_queue
        self.followers: list[Follower] = []
        self.on_change: Callable[[], None] = lambda: None

    def follow(self, wake: Callable[[], object]) -> Follower:
        follower = Follower(wake, self.follower_queue)
        self.followers = [*self.followers, follower]
        if len(self.followers) == 1:
            self.on_change()
        return follower

    def unfollow(self, follower: Follower) -> None:
        self.followers = [f for f in self.followers if f is not follower]
        if not self.followers:
            self.on_change()

    def records(self) -> list[Record]:
        return list(self.ring)

    def record(self, client: str, transport: str, unit_id: int, pdu: bytes, reply: bytes | None, *,
               started: float | None = None) -> None:  # fmt: skip
        """One answered request; `started`: its time.perf_counter() on arrival, when the caller had it."""
        now = time.time()
        entry: Record = {"time": round(now, 6), "client": client, "transport": transport, "unit_id": unit_id}
        entry |= describe_request(pdu)
        if reply is None:
            entry["outcome"] = "silent"
        elif reply[0] & 0x80 and len(reply) > 1:
            entry["outcome"] = "exception"
            entry["exception"] = reply[1]
            entry["exception_name"] = _exception_name(reply[1])
        else:
            entry["outcome"] = "ok"
        if started is not None:
            entry["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        self.ring.append(entry)
        for follower in self.followers:
            follower.push(entry)


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
