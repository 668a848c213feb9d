"""Request hooks, write subscriptions and their events (HSYCO's), and the bounded-queue policy. Sans-I/O.

This module holds the types and the bookkeeping: which points a program subscribed to, which of them a write
request touches, their values before and after it as events, and the policy of a subscriber's bounded queue. The
write as data (what a request touches, the `WriteEvent`, the JSON-able records of the events log) is `writes.py`'s.
Delivering anything (tasks, queues being awaited, files) is the server's job; nothing here knows asyncio, a socket
or the clock (times come in as arguments).

Names follow HSYCO's: ``<server>.<unitid>.<address>.<table>``, e.g. ``plant.1.100.hr``; a ``bits`` subscription
gives one event per bit, ``plant.1.100.hr.<n>`` with n = 1 … 16 counted from the LSB of the register's first
byte (`modbusd.model.values.register_bit`).
"""

from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from modbusd.model.device import Device, same_memory
from modbusd.model.names import Location, Table
from modbusd.model.values import Kind, Order, Value, ValueType, decode, register_bit
from modbusd.protocol.codes import MAX_PDU
from modbusd.writes import WRITE_FUNCTIONS, WriteEvent, event_record, outcome, write_record, written_range

__all__ = [  # and what `writes.py` holds, which was here first and is imported from here
    "SUBSCRIBABLE", "WRITE_FUNCTIONS", "EventQueue", "HookFailure", "RequestHook", "Subscription", "Subscriptions",
    "WriteEvent", "check_response", "event_record", "make_subscription", "outcome", "write_record", "written_range",
]  # fmt: skip

# ---------------------------------------------------------------------------------------------- request hook

RequestHook = Callable[[str, str, int, bytes], bytes | Awaitable[bytes | None] | None]
"""(server name, client address "host:port" or serial device, unit id, request PDU) → response PDU or None.

HSYCO's ModbusEvent callback. A plain function or a coroutine function. Bytes are sent as the response (after
`check_response`); None lets the server answer from its tables.
"""


class HookFailure(Exception):
    """A hook's answer cannot be sent: the request is answered with exception 04, and the reason is logged."""


def check_response(request: bytes, response: object) -> bytes:
    """`response` if it can go out as the answer to `request`; HookFailure saying why not otherwise.

    A response PDU is 1 … 253 bytes (§4.1) and starts with the request's function code, or that code | 0x80
    for an exception response.
    """
    if not isinstance(response, bytes | bytearray):
        raise HookFailure(f"returned {type(response).__name__}, not bytes or None")
    if not response:
        raise HookFailure("returned an empty response")
    if len(response) > MAX_PDU:
        raise HookFailure(f"returned {len(response)} bytes; a response PDU has at most {MAX_PDU}")
    function = request[0]
    if response[0] not in (function, function | 0x80):
        raise HookFailure(f"returned function code 0x{response[0]:02X} for a request with 0x{function:02X}")
    return bytes(response)


# ------------------------------------------------------------------------------------------ subscriptions

SUBSCRIBABLE: Final = ("ushort", "uint", "ulong", "short", "int", "long", "float", "double", "hex", "bits")
"""HSYCO's holding-register subscription types, plus double."""


@dataclass(frozen=True, slots=True, eq=False)
class Subscription:
    """HSYCO's ``subscribe``: coils (`count` consecutive, one event per coil written), or holding registers
    holding one value of `type` in `order` (``bits``: one event per bit of the register).

    `unit_id` None: the device answers every unit id, and the event carries the request's.
    """

    device: Device
    table: Table
    address: int
    count: int  # coils subscribed, or registers the value spans
    type: ValueType
    order: Order = Order.ABCD
    unit_id: int | None = None
    endpoint: str | None = None  # the endpoint the device is served by; None: the server's default one

    def touches(self, address: int, quantity: int) -> bool:
        return address < self.address + self.count and self.address < address + quantity

    def capture(self) -> bytes | list[bool]:
        """The subscribed points' state now, for `events` (before and after a write)."""
        if self.table is Table.COILS:
            return self.device.coils.read(self.address, self.count)
        return self.device.holding_registers.read(self.address, self.count)

    def location(self, unit_id: int) -> Location:
        return Location(self.table, self.address, self.unit_id if self.unit_id is not None else unit_id)

    def events(
        self, before: bytes | list[bool], after: bytes | list[bool], written: tuple[int, int], *, server: str,
        unit_id: int, client: str, time: float, request_id: int, function: int, role: str | None = None,
    ) -> list[WriteEvent]:  # fmt: skip
        unit = self.unit_id if self.unit_id is not None else unit_id
        prefix = f"{server}.{unit}." if self.endpoint is None else f"{server}.{self.endpoint}/{unit}."

        def event(address: int, bit: int | None, value: Value, previous: Value) -> WriteEvent:
            name = f"{prefix}{address}.{self.table.suffix}" + ("" if bit is None else f".{bit}")
            return WriteEvent(name, value, previous, client, time, request_id, unit, self.table, address, bit,
                              self.type, function, role, self.endpoint)  # fmt: skip

        if self.table is Table.COILS:
            start, quantity = written
            first, stop = max(start, self.address), min(start + quantity, self.address + self.count)
            return [event(a, None, after[a - self.address], before[a - self.address]) for a in range(first, stop)]
        if self.type.kind is Kind.BITS:
            new, old = int.from_bytes(after), int.from_bytes(before)
            return [event(self.address, n, bool(new >> register_bit(n) & 1), bool(old >> register_bit(n) & 1))
                    for n in range(1, 17)]  # fmt: skip
        return [event(self.address, None, decode(self.type, after, self.order),  # type: ignore[arg-type]  # bytes
                      decode(self.type, before, self.order))]  # type: ignore[arg-type]  # fmt: skip


def make_subscription(
    device: Device, location: Location, vtype: ValueType | str | None = None, *, count: int = 1,
    order: Order | str = Order.ABCD, endpoint: str | None = None,
) -> Subscription:  # fmt: skip
    """A checked Subscription at `location` (coils or holding registers): ValueError saying what is wrong.

    The points must exist in the device's table (IllegalDataAddress otherwise), so that a subscription never
    fails later, on a client's write.
    """
    if location.bit is not None:
        raise ValueError(f"{location}: subscribe to the register with type bits, which gives an event per bit")
    if location.table is Table.COILS:
        if vtype is not None and str(vtype) not in ("bit", "bits"):
            raise ValueError(f"{location} is a coil: coils take no type (count: how many consecutive ones)")
        if not 1 <= count <= 0x10000 - location.address:
            raise ValueError(f"count {count} outside 1..{0x10000 - location.address}")
        chosen = ValueType(Kind.BIT)
        span = count
    elif location.table is Table.HOLDING_REGISTERS:
        chosen = ValueType.parse(vtype) if isinstance(vtype, str) else vtype or ValueType(Kind.USHORT)
        if str(chosen) not in SUBSCRIBABLE:
            raise ValueError(f"type {chosen} cannot be subscribed: expected one of {', '.join(SUBSCRIBABLE)}")
        if count != 1:
            raise ValueError("count is for coils; a holding register subscription spans its type's registers")
        span = chosen.registers
    else:
        raise ValueError(f"{location}: only coils and holding registers are written by clients")
    subscription = Subscription(device, location.table, location.address, span, chosen, Order(order),
                                location.unit_id, endpoint)  # fmt: skip
    subscription.capture()  # IllegalDataAddress now rather than at the first write
    return subscription


class Subscriptions:
    """The registry: every subscription, found by device and written range. Empty means zero cost.

    Equal subscriptions (same device, points, type, order and unit id) are one, counted: subscribing a point twice
    (a device file's point and the MQTT bridge's named points, say) gives one event per write, not two, and it
    stays until each subscriber has removed it.
    """

    def __init__(self) -> None:
        self._all: list[Subscription] = []
        self._refs: dict[Subscription, int] = {}  # by identity (eq=False): how many subscribers hold each

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self._all)

    @staticmethod
    def _key(s: Subscription) -> tuple[object, ...]:
        return id(s.device), s.table, s.address, s.count, str(s.type), s.order, s.unit_id, s.endpoint

    # A new list each time, never changed in place: another thread may subscribe while the loop looks for touched
    # subscriptions, and list.sort empties a list while it sorts.
    def add(self, subscription: Subscription) -> Subscription:
        """`subscription`, or the equal one already here (counted once more)."""
        key = self._key(subscription)
        for held in self._all:
            if self._key(held) == key:
                self._refs[held] += 1
                return held
        self._refs[subscription] = 1
        self._all = sorted([*self._all, subscription], key=lambda s: (s.table, s.address, s.count))
        return subscription

    def remove(self, subscription: Subscription) -> None:
        refs = self._refs.get(subscription, 0)
        if refs > 1:
            self._refs[subscription] = refs - 1
            return
        self._refs.pop(subscription, None)
        self._all = [s for s in self._all if s is not subscription]

    def touched(
        self, device: Device, unit_id: int, table: Table, address: int, quantity: int, *, broadcast: bool = False
    ) -> list[tuple[Subscription, tuple[int, int]]]:
        """The subscriptions a write of `quantity` points of `table` at `address` touches, in address order, each
        with the (address, quantity) written as its own table sees them.

        The memory decides, not the function code: in the packed layout a coil write touches the holding register
        that holds the coil, and a register write its 16 coils (`same_memory`). A subscription naming a unit id
        sees the writes to that unit id, and broadcasts (every device takes them).
        """
        ranges = {t: (a, q) for t, a, q in same_memory(device.layout, table, address, quantity)}
        found = []
        for s in self._all:
            if s.device is device and (s.unit_id is None or s.unit_id == unit_id or broadcast):
                written = ranges.get(s.table)
                if written is not None and s.touches(*written):
                    found.append((s, written))
        return found


# ------------------------------------------------------------------------------------- bounded queues


class EventQueue:
    """A subscriber's bounded queue: events wait here until it takes them; when it is full, new ones are dropped
    and counted (never silently lost: `dropped`, and `put` says when a burst of drops starts and ends)."""

    __slots__ = ("_items", "burst", "delivered", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a subscriber's queue holds at least 1 event")
        self.limit = limit
        self._items: deque[WriteEvent] = deque()
        self.dropped = 0  # ever
        self.burst = 0  # dropped since the queue last had room
        self.delivered = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: WriteEvent) -> int:
        """Queue `event`: 0 when queued; otherwise the drops in this burst so far (1: the burst starts now).

        A negative result: queued, after a burst of that many drops ended (the caller can say so once)."""
        if len(self._items) >= self.limit:
            self.dropped += 1
            self.burst += 1
            return self.burst
        self._items.append(event)
        if self.burst:
            ended, self.burst = self.burst, 0
            return -ended
        return 0

    def take(self) -> WriteEvent | None:
        if not self._items:
            return None
        self.delivered += 1
        return self._items.popleft()
