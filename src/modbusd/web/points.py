"""Data points as JSON, and the paged listing of every one of them.

The listing runs in the loop that answers Modbus clients, so it does a bounded slice of work at a time and lets
the loop answer them in between: a control API that lists 100,000 points must not keep a PLC's poll waiting.
"""

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from modbusd import Location, Order, Point, Server, UnknownPoint, ValueType, format_value, parse_address

SLICE = 100  # points described between two turns of the loop: well under a millisecond of work
MAX_RANGE_REGISTERS = 125  # one FC03 read's worth (Application Protocol §6.3): a screenful, and a bounded answer
MAX_RANGE_BITS = 2000  # one FC01 read's worth (§6.1)
ONE = {False: ValueType.parse("ushort"), True: ValueType.parse("bit")}  # one address's type, by table.is_bits


@dataclass(frozen=True, slots=True)
class Paging:
    """``?offset=&limit=`` of ``GET /points``: how many points one answer may hold, by default and at most."""

    default_limit: int = 100
    max_limit: int = 1000

    def parse(self, offset: str | None, limit: str | None) -> tuple[int, int]:
        """(offset, limit) from the query; ValueError with the rule when either is no fitting number."""
        first = _number("offset", offset, 0, None) if offset is not None else 0
        count = _number("limit", limit, 1, self.max_limit) if limit is not None else self.default_limit
        return first, count


def _number(name: str, text: str, low: int, high: int | None) -> int:
    """At most 9 ASCII digits, so that no query can make int() work hard (nor exceed its 4,300-digit limit)."""
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else -1
    if value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f"{low} or more"
        raise ValueError(f"{name} must be a whole number {span}, not {text[:20]!r}")
    return value


def range_count(text: str, location: Location, vtype: ValueType) -> int:
    """``?count=N`` of ``GET /points/{point}``: at most one read request's worth of registers or bits."""
    if location.table.is_bits:
        return _number("count", text, 1, MAX_RANGE_BITS)
    most = max(1, MAX_RANGE_REGISTERS // max(1, vtype.registers))
    try:
        return _number("count", text, 1, most)
    except ValueError as exc:
        raise ValueError(f"{exc} ({most} values of {vtype} fill {MAX_RANGE_REGISTERS} registers, "
                         "one read request's worth)") from None  # fmt: skip


def spelling(text: str, point: Point) -> Callable[[Location], str]:
    """Addresses in the notation `text` uses: ``40001`` → ``40002``, ``1.100.hr`` → ``1.101.hr``, ``1.400001`` →
    ``1.400002``; a named point's own address keeps its name, the ones after it get ``unit.address.table``."""
    typed = text.strip()
    if point.name and typed == point.name:
        qualifier = typed.rpartition("/")[0]
        return lambda location: point.name if location == point.location else (
            f"{qualifier}/{location}" if qualifier else str(location))  # fmt: skip
    endpoint, slash, typed = typed.rpartition("/")  # ENDPOINT/POINT: the addresses after it keep its endpoint
    if slash:
        spell = spelling(typed, point)
        return lambda location: f"{endpoint}/{spell(location)}"
    if "." in typed and not typed.replace(".", "").isdigit():  # [unit.]address.table
        return str
    unit, _, digits = typed.rpartition(".")
    key = "5-digit" if len(digits) == 5 else "6-digit"
    prefix = f"{unit}." if unit else ""
    probe = parse_address(digits)  # the table only: unit ids and bits are not part of this notation

    def spell(location: Location) -> str:
        forms = Point("", Location(probe.table, location.address), ONE[probe.table.is_bits]).notations()
        return prefix + forms.get(key, forms["6-digit"])  # past x9999, five digits become six

    return spell


def describe_range(text: str, point: Point, vtype: ValueType, span: list[tuple[Location, bytes, object]],
                   order: Order | None = None) -> dict[str, object]:  # fmt: skip
    spell = spelling(text, point)
    bits = point.location.table.is_bits
    return {
        "name": point.name or None, "unit_id": point.location.unit_id, "table": point.location.table.value,
        "type": str(vtype), "order": (order or point.order).value, "count": len(span),
        "values": [{"address": spell(location), "raw": raw.hex(" ", 2).upper() if not bits else str(raw[0]),
                    "value": json_value(vtype, value), "text": format_value(vtype, value)}  # type: ignore[arg-type]
                   for location, raw, value in span],
    }  # fmt: skip


def json_value(vtype: ValueType, value: object) -> object:
    """JSON has no NaN, infinity or bytes: those go as their text."""
    if isinstance(value, bytes) or (isinstance(value, float) and not math.isfinite(value)):
        return format_value(vtype, value)  # type: ignore[arg-type]  # value came from Server.read
    return value


def describe(point: Point, vtype: ValueType, value: object, order: Order | None = None) -> dict[str, object]:
    return {
        "name": point.name or None,
        "unit_id": point.location.unit_id,
        "table": point.location.table.value,
        "address": point.notations(),
        "type": str(vtype),
        "order": (order or point.order).value,
        "value": json_value(vtype, value),
        "text": format_value(vtype, value),  # type: ignore[arg-type]  # value came from Server.read
        "unit": point.unit,
        "comment": point.comment,
    }


class Listing:
    """``GET /points``, page by page, over one snapshot of the server's point list.

    A listing from offset 0 takes a fresh snapshot (sorting every point: done in a worker thread, so the loop
    goes on answering); later pages slice that same list, so a pass from 0 to the end sees each point exactly
    once, in order, and costs time in proportion to the number of points. Values are read as each page is served.
    """

    def __init__(self, server: Server, paging: Paging) -> None:
        self._server = server
        self.paging = paging
        self._snapshot: list[Point] | None = None

    async def page(self, offset: int, limit: int) -> dict[str, object]:
        if self._snapshot is None or offset == 0:
            self._snapshot = await asyncio.to_thread(self._server.data_points)
        points = self._snapshot
        described = []
        for i, point in enumerate(points[offset : offset + limit]):
            if i and i % SLICE == 0:
                await asyncio.sleep(0)  # let the Modbus clients in
            try:
                value = self._server.read(point.name, point.type)
            except UnknownPoint:  # gone since the snapshot (an embedding program removed it)
                continue
            described.append(describe(point, point.type, value))
        after = offset + limit
        return {"points": described, "total": len(points), "offset": offset, "limit": limit,
                "next_offset": after if after < len(points) else None}  # fmt: skip
