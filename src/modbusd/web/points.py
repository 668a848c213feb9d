"""Data points as JSON, and the paged listing of every one of them.

The listing runs in the loop that answers Modbus clients, so it does a bounded slice of work at a time and lets
the loop answer them in between: a control API that lists 100,000 points must not keep a PLC's poll waiting.
"""

import asyncio
import math
from dataclasses import dataclass

from modbusd import Point, Server, UnknownPoint, ValueType, format_value

SLICE = 100  # points described between two turns of the loop: well under a millisecond of work


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


def json_value(vtype: ValueType, value: object) -> object:
    """JSON has no NaN, infinity or bytes: those go as their text."""
    if isinstance(value, bytes) or (isinstance(value, float) and not math.isfinite(value)):
        return format_value(vtype, value)  # type: ignore[arg-type]  # value came from Server.read
    return value


def describe(point: Point, vtype: ValueType, value: object) -> dict[str, object]:
    return {
        "name": point.name or None,
        "unit_id": point.location.unit_id,
        "table": point.location.table.value,
        "address": point.notations(),
        "type": str(vtype),
        "order": point.order.value,
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
