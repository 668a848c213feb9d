"""The device file's data points: ``[[device.point]]`` tables and the rows of a ``points_csv`` file.

Each point is checked where it is written (name, address in any notation, type, order, initial value), then
all of a device's points together (unique names, inside their tables, no two sharing an address or bit).
"""

import csv
import io
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from modbusd.config.reader import ConfigError, Path_, Reader, UnreadableFile, read_text
from modbusd.config.schema import CSV_COLUMNS, Subscribe, shared_table, unit_id_list
from modbusd.model.device import Layout
from modbusd.model.names import InvalidName, Location, Table, parse_address
from modbusd.model.points import NAME, Point, check_type, default_type
from modbusd.model.values import (
    InvalidType,
    InvalidValue,
    Kind,
    Order,
    Value,
    ValueType,
    encode,
    parse_bit_string,
    parse_value,
)
from modbusd.protocol.codes import ADDRESS_SPACE

Found = tuple[Point, Value | None, Callable[[str], ConfigError]]
"""A point read, its initial value (None: none given), and how to report a mistake at the place it came from."""


def csv_rows(name: str, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each CSV record; ConfigError at the line where a record that is not CSV begins.

    Strict: a quote never closed would otherwise swallow the rest of the file into one cell, silently.
    """
    reader = csv.reader(io.StringIO(text), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if reason.startswith("field larger than field limit"):
                reason = f"a cell longer than {csv.field_size_limit()} characters"
            elif reason == "unexpected end of data":
                reason = "a quote opened here is never closed"
            raise ConfigError(name, start, "", f"not valid CSV: {reason}") from None
        yield reader.line_num, row


class PointTables(Reader):
    """Reads a device's data points."""

    def point(self, data: object, path: Path_, order: Order, unit_ids: tuple[int, ...]) -> Found:
        raw = self.table(data, path, (*CSV_COLUMNS, "subscribe", "generate"))
        for key in ("name", "address"):
            if key not in raw:
                raise self.error(path, f"a data point needs a {key}")
        texts: dict[str, str] = {}
        for key in ("name", "address", "type", "order", "unit", "comment"):
            if key in raw:
                kinds = (str, int) if key == "address" else str
                texts[key] = str(self.typed(raw, path, key, kinds, "a text"))

        def fail(key: str) -> Callable[[str], ConfigError]:
            return lambda message: self.error((*path, key), message)

        return self.make_point(texts, raw.get("value"), order, unit_ids, fail, overlap=fail("name"))

    def subscribed(self, data: dict[str, Any], path: Path_, point: Point) -> Subscribe | None:
        """A [[device.point]]'s ``subscribe = true``: client writes to it make events (its own type and order)."""
        if "subscribe" not in data or not self.typed(data, path, "subscribe", bool, "true or false"):
            return None
        if point.location.table not in (Table.COILS, Table.HOLDING_REGISTERS) or point.location.bit is not None:
            raise self.error((*path, "subscribe"), f"{point.name} is at {point.location}: only coils and holding "
                             "registers are written by clients (for a register bit, subscribe to its register with "
                             "type bits)")  # fmt: skip
        return Subscribe(point.name, None, self.where((*path, "subscribe")))

    def csv_points(self, raw: Mapping[str, Any], path: Path_, order: Order, unit_ids: tuple[int, ...]) -> list[Found]:
        relative = self.typed(raw, path, "points_csv", str, "the path of a CSV file")
        file = self.base / relative
        try:
            text = read_text(file, "utf-8-sig")
        except UnreadableFile as exc:
            raise self.error((*path, "points_csv"), f"cannot read {file}: {exc}") from None
        name = str(file)
        header: list[str] | None = None
        found: list[Found] = []
        for line, row in csv_rows(name, text):
            if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue

            def fail(key: str, line: int = line) -> Callable[[str], ConfigError]:
                return lambda message: ConfigError(name, line, key, message)

            if header is None:
                header = [cell.strip().lower() for cell in row]
                for column in header:
                    if column not in CSV_COLUMNS:
                        raise fail(column)(f"unknown column: expected {', '.join(CSV_COLUMNS)}")
                for column in ("name", "address"):
                    if column not in header:
                        raise fail(column)(f"the header row has no {column} column")
                if len(set(header)) != len(header):
                    raise fail("header")("a column appears twice")
                continue
            if len(row) > len(header):
                raise fail("row")(f"{len(row)} cells, but the header has {len(header)} columns")
            cells = {column: cell.strip() for column, cell in zip(header, row, strict=False)}
            texts = {k: v for k, v in cells.items() if v and k != "value"}
            for column in ("name", "address"):
                if column not in texts:
                    raise fail(column)(f"the {column} is empty")
            value = cells.get("value") or None
            found.append(self.make_point(texts, value, order, unit_ids, fail, overlap=fail("name")))
        return found

    def make_point(
        self,
        texts: Mapping[str, str],
        value: object,
        order: Order,
        unit_ids: tuple[int, ...],
        fail: Callable[[str], Callable[[str], ConfigError]],
        *,
        overlap: Callable[[str], ConfigError],
    ) -> Found:
        name = texts["name"]
        if not NAME.fullmatch(name):
            raise fail("name")(f"{name!r} is not a name: start with a letter, then letters, digits, _ . or -")
        try:
            location = parse_address(texts["address"])
        except InvalidName as exc:
            raise fail("address")(str(exc)) from None
        if location.unit_id is not None:
            if unit_ids and location.unit_id not in unit_ids:
                raise fail("address")(f"unit id {location.unit_id} is not this device's ({unit_id_list(unit_ids)})")
            if not unit_ids:
                raise fail("address")("this device answers every unit id: leave the unit id out of the address")
        location = Location(location.table, location.address, unit_ids[0] if unit_ids else None, location.bit)
        try:
            vtype = ValueType.parse(texts["type"]) if "type" in texts else default_type(location)
            check_type(location, vtype)
        except InvalidType as exc:
            raise fail("type")(str(exc)) from None
        point_order = order
        if "order" in texts:
            try:
                point_order = Order(texts["order"].upper())
            except ValueError:
                raise fail("order")(f"{texts['order']!r} is not one of ABCD, CDAB, BADC, DCBA") from None
        point = Point(name, location, vtype, point_order, texts.get("unit", ""), texts.get("comment", ""))
        initial = None if value is None else self.value(point, value, fail("value"))
        return point, initial, overlap

    def value(self, point: Point, raw: object, fail: Callable[[str], ConfigError]) -> Value:
        vtype, kind = point.type, point.type.kind
        try:
            if isinstance(raw, str):
                value: Value = raw if kind is Kind.STRING else parse_value(vtype, raw)
            elif kind in (Kind.BIT,) and isinstance(raw, bool | int) and raw in (0, 1):
                value = bool(raw)
            elif isinstance(raw, bool):
                raise InvalidValue(f"{raw!r} is not a {vtype} value")
            elif isinstance(raw, int | float) and kind in (Kind.FLOAT, Kind.DOUBLE):
                value = float(raw)
            elif isinstance(raw, int) and kind not in (Kind.STRING, Kind.HEX, Kind.BITS, Kind.BIT):
                value = raw
            else:
                raise InvalidValue(f"{raw!r} is not a {vtype} value (write it as text if in doubt)")
            if point.location.table.is_bits:
                if kind is Kind.BITS:
                    parse_bit_string(str(value))
            elif kind is not Kind.BIT:
                encode(vtype, value, point.order)  # the range check
        except (InvalidValue, InvalidType) as exc:
            raise fail(str(exc)) from None
        return value

    def check_points(
        self,
        points: list[Found],
        sizes: Mapping[str, int],
        layout: Layout,
    ) -> None:
        """Names unique in the device, points inside their tables, no two points sharing an address or bit."""
        claims: dict[tuple[str, int], object] = {}  # (table, register) → a point name, or {bit: name}
        names: set[str] = set()
        packed_bits = min(sizes.get("coils", ADDRESS_SPACE), 16 * sizes.get("holding_registers", ADDRESS_SPACE))
        for point, value, fail in points:
            if point.name in names:
                raise fail(f"a data point named {point.name!r} is already defined")
            names.add(point.name)
            location = point.location
            table = shared_table(layout, location.table.value)
            size = packed_bits if layout is Layout.PACKED and table == "coils" else sizes.get(table, ADDRESS_SPACE)
            count = len(str(value)) if point.type.kind is Kind.BITS and location.table.is_bits and value else 1
            span = point.span if not location.table.is_bits else range(location.address, location.address + count)
            if span.stop > size:
                raise fail(f"{point.name}: {location} (to address {span.stop - 1}) is outside the "
                           f"{table.replace('_', ' ')} table, addresses 0..{size - 1}")  # fmt: skip
            for address in span:
                if layout is Layout.PACKED and table == "coils":
                    key, bit = ("holding_registers", address // 16), address % 16
                elif location.bit is not None:
                    key, bit = (table, address), (location.bit - 1) ^ 8
                else:
                    key, bit = (table, address), None
                held = claims.get(key)
                if held is None:
                    claims[key] = {bit: point.name} if bit is not None else point.name
                    continue
                other = held if isinstance(held, str) else held.get(bit) if bit is not None else next(
                    iter(held.values()))  # fmt: skip
                if other is None and isinstance(held, dict) and bit is not None:
                    held[bit] = point.name
                    continue
                raise fail(f"{point.name} at {location} overlaps data point {other!r} "
                           f"(both use {Table(table).label} {address})")  # fmt: skip
