"""The device file's ``[device.values]``: initial values of whole address ranges, compactly.

A data point names one value; a device copied from a real one (`modbusd clone`) or a snapshot of a running server
has thousands of registers, most of them nameless. Each table takes a list of ranges, each its first protocol
address (0-based) and either its values or a count of one repeated value::

    [device.values]
    holding_registers = [{ address = 0, values = [17, 0x1234, 0] }, { address = 100, count = 50, value = 7 }]
    coils = [{ address = 0, values = "1011 0000 1111" }]

Bits are a list of 0/1 (true/false) or a text of 0 and 1, whose spaces, newlines, ``-`` and ``_`` only group
them. In a sparse table the ranges' addresses are implemented, as the data points' are. Ranges of one table may
not overlap; a data point's value is written after them, so it wins where it lies over one.
"""

import itertools
import re
from collections.abc import Mapping
from typing import Any

from modbusd.config.reader import Path_, Reader
from modbusd.config.schema import ValueRange, shared_table
from modbusd.model.device import TABLES, Layout
from modbusd.model.names import Table
from modbusd.protocol.codes import ADDRESS_SPACE

_BIT_GROUPING = re.compile(r"[\s_\-]+")


class RangeTables(Reader):
    """Reads ``[device.values]``."""

    def value_ranges(self, data: object, path: Path_, sizes: Mapping[str, int], layout: Layout
                     ) -> tuple[ValueRange, ...]:  # fmt: skip
        raw = self.table(data, path, TABLES)
        found: list[tuple[ValueRange, Path_]] = []
        for name, items in raw.items():
            if not isinstance(items, list):
                raise self.error((*path, name), "expected a list of ranges such as [{ address = 0, values = [1, 2] "
                                                "}]")  # fmt: skip
            table = shared_table(layout, name)
            for i, item in enumerate(items):
                where = (*path, name, i)
                found.append((self.value_range(item, where, table, Table(name).is_bits), where))
        by_table: dict[str, list[tuple[ValueRange, Path_]]] = {}
        for value_range, where in found:
            size = _size(sizes, value_range.table, layout)
            if value_range.end > size:
                table = value_range.table.replace("_", " ")
                raise self.error(where, f"this range ({_span(value_range)}) runs past the {table} table, "
                                        f"addresses 0..{size - 1}")  # fmt: skip
            by_table.setdefault(value_range.table, []).append((value_range, where))
        for ranges in by_table.values():
            ranges.sort(key=lambda found: found[0].address)
            for (before, _), (after, where) in itertools.pairwise(ranges):
                if after.address < before.end:
                    raise self.error(where, f"this range ({_span(after)}) overlaps another of the "
                                            f"table ({_span(before)})")  # fmt: skip
        return tuple(value_range for value_range, _ in found)

    def value_range(self, data: object, path: Path_, table: str, bits: bool) -> ValueRange:
        raw = self.table(data, path, ("address", "values", "count", "value"))
        if "address" not in raw:
            raise self.error(path, "a range needs its first address: { address = 0, values = [...] }")
        address = self.integer(raw, path, "address", 0, ADDRESS_SPACE - 1)
        high = 1 if bits else 0xFFFF
        if "values" in raw:
            for key in ("count", "value"):
                if key in raw:
                    raise self.error((*path, key), "give values, or count and value, not both")
            values = self.range_values(raw, path, bits)
        elif "count" in raw:
            count = self.integer(raw, path, "count", 1, ADDRESS_SPACE - address)
            value = self.integer(raw, path, "value", 0, high) if "value" in raw else 0
            values = (value,) * count
        else:
            raise self.error(path, "a range needs values = [...], or count = N (and value = V, default 0)")
        return ValueRange(table, address, values)

    def range_values(self, raw: Mapping[str, Any], path: Path_, bits: bool) -> tuple[int, ...]:
        value = raw["values"]
        if bits and isinstance(value, str):
            digits = _BIT_GROUPING.sub("", value)
            if not digits or set(digits) - {"0", "1"}:
                raise self.error((*path, "values"), f"expected bits as a text of 0 and 1 (spaces group them), got "
                                                    f"{value[:40]!r}")  # fmt: skip
            return tuple(int(d) for d in digits)
        what = "a list of bits (0 or 1), or a text of them" if bits else "a list of register values 0..65535"
        values = self.typed(raw, path, "values", list, what)
        high = 1 if bits else 0xFFFF
        ok = all(isinstance(v, int) and (bits or not isinstance(v, bool)) and 0 <= v <= high for v in values)
        if not values or not ok:
            raise self.error((*path, "values"), f"expected {what}, got {_short(values)}")
        return tuple(int(v) for v in values)


def _span(value_range: ValueRange) -> str:
    first, last = value_range.address, value_range.end - 1
    return f"address {first}" if first == last else f"addresses {first}..{last}"


def _size(sizes: Mapping[str, int], table: str, layout: Layout) -> int:
    if layout is Layout.PACKED and table == "coils":
        return min(sizes.get("coils", ADDRESS_SPACE), 16 * sizes.get("holding_registers", ADDRESS_SPACE))
    return sizes.get(table, ADDRESS_SPACE)


def _short(values: list[Any]) -> str:
    text = repr(values)
    return text if len(text) <= 60 else text[:57] + "..."
