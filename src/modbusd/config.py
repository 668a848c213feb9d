"""The device file: TOML (read with the standard library's tomllib) → frozen dataclasses → devices.

Imports the protocol and the model only; `Server.from_config` and the command line put it to use. Every mistake
is one `ConfigError` naming the file, the line, the key and what is wrong. tomllib reports no positions for
keys, so `_KeyLines` scans the text for table headers and keys to find the line; for a CSV point file the line is
the CSV line.

The file's shape (``modbusd init`` writes a commented example, `EXAMPLE` below):

- ``[server]``: host, port, layout (the default for devices), max_connections, idle_timeout, quit_command,
  unknown_unit. Transports other than Modbus/TCP get their own sub-table here (``[server.udp]``,
  ``[server.serial]``, ``[server.rtu_over_tcp]``): see `TRANSPORTS`, the one place to add them.
- ``[http]``: the control API (port, host, token); absent means off.
- ``[[device]]`` (any number): unit_id or unit_ids (leave both out for one device answering every unit id),
  layout, order (the default word order of its points), sparse, points_csv, ``[device.size]``,
  ``[device.identification]`` and ``[[device.point]]`` (name, address, type, order, value, unit, comment).
"""

import csv
import io
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from modbusd.model.device import TABLES, Device, Layout
from modbusd.model.identification import MAX_OBJECT_LENGTH, OBJECT_NAMES
from modbusd.model.names import MAX_UNIT_ID, InvalidName, Location, Table, parse_address
from modbusd.model.points import NAME, Point, check_type, default_type, write_at
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

DEFAULT_HTTP_PORT = 8020
LOOPBACK = ("127.0.0.1", "localhost", "::1")
UNKNOWN_UNIT_POLICIES = ("exception", "ignore")  # server.UnknownUnit's values; config may not import server
CSV_COLUMNS = ("name", "address", "type", "order", "value", "unit", "comment")

# Transports besides Modbus/TCP, each a sub-table of [server]. Not implemented in this version: the file names
# them so that a typo is still caught and the message says what is missing. To add one: a frozen dataclass for
# its settings, a parser in `_Loader._server`, a field in `ServerConfig`, and remove it from this table.
TRANSPORTS: Mapping[str, str] = MappingProxyType({
    "udp": "Modbus/UDP",
    "serial": "Modbus RTU/ASCII on a serial line",
    "rtu_over_tcp": "Modbus RTU framing over TCP",
})  # fmt: skip


class ConfigError(ValueError):
    """One mistake in a device file: ``FILE:LINE: KEY: what is wrong``."""

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# ------------------------------------------------------------------------------------------ the settings


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The control API (`modbusd.web`): off unless the file has [http] or the command line --http."""

    port: int = DEFAULT_HTTP_PORT
    host: str = "127.0.0.1"
    token: str | None = None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 502
    layout: Layout = Layout.SEPARATE
    max_connections: int | None = None
    idle_timeout: float | None = None
    quit_command: str | None = None
    unknown_unit: str = "exception"
    # transports besides TCP go here, one optional field each (see TRANSPORTS)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device. `unit_ids` empty: it answers every unit id (the only device of the file)."""

    unit_ids: tuple[int, ...] = ()
    layout: Layout = Layout.SEPARATE
    order: Order = Order.ABCD
    sizes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    sparse: frozenset[str] = frozenset()
    identification: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    points: tuple[Point, ...] = ()
    values: Mapping[str, Value] = field(default_factory=lambda: MappingProxyType({}))  # point name → initial value

    def addresses(self) -> dict[str, list[int]]:
        """The implemented addresses of each sparse table: what its data points cover."""
        found: dict[str, set[int]] = {name: set() for name in self.sparse}
        for point in self.points:
            table = point.location.table.value
            if table in found:
                found[table].update(point.span)
        return {name: sorted(addresses) for name, addresses in found.items()}

    def build(self) -> Device:
        """A fresh Device with its tables sized, sparse tables declared and every initial value written."""
        device = Device(self.layout, **self.sizes, addresses=self.addresses() or None)
        for object_id, text in self.identification.items():
            device.identification[object_id] = text
        for point in self.points:
            device.points[point.name] = point
            if point.name in self.values:
                write_at(device, point.location, point.type, self.values[point.name], point.order)
        return device


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    server: ServerConfig = ServerConfig()
    http: HttpConfig | None = None
    devices: tuple[DeviceConfig, ...] = (DeviceConfig(),)

    def build_devices(self) -> Device | dict[int, Device]:
        """One Device answering every unit id, or a unit id → Device mapping (a device may serve several ids)."""
        if len(self.devices) == 1 and not self.devices[0].unit_ids:
            return self.devices[0].build()
        devices: dict[int, Device] = {}
        for config in self.devices:
            device = config.build()
            devices.update(dict.fromkeys(config.unit_ids, device))
        return devices

    @property
    def points(self) -> tuple[Point, ...]:
        return tuple(p for d in self.devices for p in d.points)


# ---------------------------------------------------------------------------------------- line numbers

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_key(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""", text)]


def _depth(line: str) -> int:
    """Net change of bracket depth on a line, outside strings and comments."""
    depth, quote = 0, ""
    for char in line:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return depth


class _KeyLines:
    """Line of each table header and key, by path: ("device", 0, "point", 2, "type") → 37."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[object, ...], int] = {}
        counts: dict[tuple[object, ...], int] = {}
        table: tuple[object, ...] = ()
        depth, in_string = 0, ""
        for number, line in enumerate(text.splitlines(), 1):
            if in_string:
                if line.count(in_string) % 2:
                    in_string = ""
                continue
            for quotes in ('"""', "'''"):
                if line.count(quotes) % 2:
                    in_string = quotes
            if depth > 0:
                depth += _depth(line)
                continue
            header = _HEADER.match(line)
            if header:
                parts = _split_key(header.group(2))
                path: tuple[object, ...] = ()
                for i, part in enumerate(parts):
                    path = (*path, part)
                    if i == len(parts) - 1 and header.group(1) == "[[":
                        counts[path] = counts.get(path, 0) + 1
                    if path in counts:
                        path = (*path, counts[path] - 1)
                table = path
                self._lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self._lines.setdefault((*table, *_split_key(key.group(1))), number)
                depth = max(0, _depth(line[key.end() :]))

    def line(self, path: Sequence[object]) -> int:
        """The line of `path`, or of the nearest enclosing table or key that has one; 1 when nothing matches."""
        key = tuple(path)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return 1


# --------------------------------------------------------------------------------------------- loading


def load(path: str | Path) -> Config:
    """Read and check a device file; ConfigError on the first mistake."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(name, None, "", f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(name, None, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return loads(text, name, base=Path(path).parent)


def loads(text: str, name: str = "<config>", *, base: Path | None = None) -> Config:
    """A device file from its text; `base` is where relative CSV paths start (the file's folder)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(found.group(1)) if found else None
        reason = re.sub(r" ?\(at line.*\)", "", message)
        raise ConfigError(name, line, "", f"not valid TOML: {reason}") from None
    return _Loader(name, text, base or Path.cwd()).load(data)


_Path = tuple[object, ...]


class _Loader:
    def __init__(self, name: str, text: str, base: Path) -> None:
        self.name = name
        self.lines = _KeyLines(text)
        self.base = base

    def error(self, path: _Path, message: str, line: int | None = None) -> ConfigError:
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        return ConfigError(self.name, line or self.lines.line(path), key, message)

    # -------------------------------------------------------------------------------------------- helpers

    def table(self, data: object, path: _Path, known: Sequence[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.error(path, f"expected a table ([{'.'.join(p for p in path if isinstance(p, str))}]), "
                                   f"got {type(data).__name__}")  # fmt: skip
        for key in data:
            if key not in known:
                close = [k for k in known if _similar(k, key)]
                hint = f" (did you mean {close[0]!r}?)" if close else f"; expected one of: {', '.join(known)}"
                raise self.error((*path, key), f"unknown key{hint}")
        return data

    def typed(self, data: Mapping[str, Any], path: _Path, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self.error((*path, key), f"expected {what}, got {value!r}")
        return value

    def integer(self, data: Mapping[str, Any], path: _Path, key: str, low: int, high: int) -> int:
        value = self.typed(data, path, key, int, f"a whole number {low}..{high}")
        if not low <= value <= high:
            raise self.error((*path, key), f"{value} is outside {low}..{high}")
        return value

    def choice(self, data: Mapping[str, Any], path: _Path, key: str, choices: Sequence[str]) -> str:
        value = self.typed(data, path, key, str, f"one of {', '.join(choices)}")
        if value not in choices:
            raise self.error((*path, key), f"{value!r} is not one of {', '.join(choices)}")
        return value

    # ---------------------------------------------------------------------------------------------- file

    def load(self, data: dict[str, Any]) -> Config:
        self.table(data, (), ("server", "http", "device"))
        server = self.server(data.get("server", {}))
        http = self.http(data["http"]) if "http" in data else None
        raw_devices = data.get("device", [{}])
        if not isinstance(raw_devices, list):
            raise self.error(("device",), "devices are [[device]] tables (double brackets), one per device")
        devices = tuple(self.device(raw, ("device", i), server.layout) for i, raw in enumerate(raw_devices))
        self.check_devices(devices, raw_devices)
        return Config(self.name, server, http, devices)

    def server(self, data: object) -> ServerConfig:
        path: _Path = ("server",)
        raw = self.table(data, path, ("host", "port", "layout", "max_connections", "idle_timeout", "quit_command",
                                      "unknown_unit", *TRANSPORTS))  # fmt: skip
        for key, what in TRANSPORTS.items():
            if key in raw:
                raise self.error((*path, key), f"{what} is not supported by this version of modbusd yet")
        options: dict[str, Any] = {}
        if "host" in raw:
            options["host"] = self.typed(raw, path, "host", str, "an address such as 127.0.0.1 or 0.0.0.0")
        if "port" in raw:
            options["port"] = self.integer(raw, path, "port", 0, 65535)
        if "layout" in raw:
            options["layout"] = Layout(self.choice(raw, path, "layout", [x.value for x in Layout]))
        if "max_connections" in raw:
            options["max_connections"] = self.integer(raw, path, "max_connections", 1, 1_000_000)
        if "idle_timeout" in raw:
            timeout = self.typed(raw, path, "idle_timeout", (int, float), "a number of seconds")
            if not timeout > 0 or not math.isfinite(timeout):
                raise self.error((*path, "idle_timeout"), f"{timeout} must be a number of seconds greater than 0")
            options["idle_timeout"] = float(timeout)
        if "quit_command" in raw:
            word = self.typed(raw, path, "quit_command", str, "a word")
            if not word:
                raise self.error((*path, "quit_command"), "the quit command cannot be empty")
            options["quit_command"] = word
        if "unknown_unit" in raw:
            options["unknown_unit"] = self.choice(raw, path, "unknown_unit", UNKNOWN_UNIT_POLICIES)
        return ServerConfig(**options)

    def http(self, data: object) -> HttpConfig:
        path: _Path = ("http",)
        raw = self.table(data, path, ("host", "port", "token"))
        options: dict[str, Any] = {}
        if "host" in raw:
            options["host"] = self.typed(raw, path, "host", str, "an address such as 127.0.0.1")
        if "port" in raw:
            options["port"] = self.integer(raw, path, "port", 0, 65535)
        if "token" in raw:
            token = self.typed(raw, path, "token", str, "a text")
            if len(token) < 16:
                raise self.error((*path, "token"), "a bearer token needs at least 16 characters")
            options["token"] = token
        config = HttpConfig(**options)
        if config.host not in LOOPBACK and config.token is None:
            raise self.error((*path, "host"), f"the control API can write anything: binding it to {config.host} "
                                              "(beyond this machine) needs a token in [http]")  # fmt: skip
        return config

    # -------------------------------------------------------------------------------------------- device

    def device(self, data: object, path: _Path, layout: Layout) -> DeviceConfig:
        raw = self.table(data, path, ("unit_id", "unit_ids", "layout", "order", "sparse", "size", "identification",
                                      "points_csv", "point"))  # fmt: skip
        if "unit_id" in raw and "unit_ids" in raw:
            raise self.error((*path, "unit_ids"), "give unit_id or unit_ids, not both")
        unit_ids: tuple[int, ...] = ()
        if "unit_id" in raw:
            unit_ids = (self.integer(raw, path, "unit_id", 0, MAX_UNIT_ID),)
        if "unit_ids" in raw:
            ids = self.typed(raw, path, "unit_ids", list, "a list of unit ids such as [1, 2]")
            if not ids or any(isinstance(u, bool) or not isinstance(u, int) or not 0 <= u <= MAX_UNIT_ID for u in ids):
                raise self.error((*path, "unit_ids"), f"expected unit ids within 0..{MAX_UNIT_ID}, got {ids!r}")
            if len(set(ids)) != len(ids):
                raise self.error((*path, "unit_ids"), f"a unit id appears twice in {ids!r}")
            unit_ids = tuple(ids)
        if "layout" in raw:
            layout = Layout(self.choice(raw, path, "layout", [x.value for x in Layout]))
        order = Order(self.choice(raw, path, "order", [o.value for o in Order])) if "order" in raw else Order.ABCD
        sizes = self.sizes(raw.get("size", {}), (*path, "size"), layout)
        sparse = self.sparse(raw, path, layout)
        identification = self.identification(raw.get("identification", {}), (*path, "identification"))
        points: list[tuple[Point, Value | None, Callable[[str], ConfigError]]] = []
        raw_points = raw.get("point", [])
        if not isinstance(raw_points, list):
            raise self.error((*path, "point"), "data points are [[device.point]] tables (double brackets)")
        for i, item in enumerate(raw_points):
            points.append(self.point(item, (*path, "point", i), order, unit_ids))
        if "points_csv" in raw:
            points.extend(self.csv_points(raw, path, order, unit_ids))
        self.check_points(points, sizes, layout)
        return DeviceConfig(
            unit_ids=unit_ids, layout=layout, order=order, sizes=MappingProxyType(sizes), sparse=sparse,
            identification=MappingProxyType(identification), points=tuple(p for p, _, _ in points),
            values=MappingProxyType({p.name: v for p, v, _ in points if v is not None}),
        )  # fmt: skip

    def sizes(self, data: object, path: _Path, layout: Layout) -> dict[str, int]:
        raw = self.table(data, path, TABLES)
        sizes = {key: self.integer(raw, path, key, 0, ADDRESS_SPACE) for key in raw}
        if layout is not Layout.SEPARATE:
            for name, shared in (("input_registers", "holding_registers"), ("discrete_inputs", "coils")):
                if name in sizes and sizes[name] != sizes.get(shared, ADDRESS_SPACE):
                    raise self.error((*path, name), f"the {layout} layout shares one table for {name} and {shared}: "
                                                    f"give only {shared}'s size")  # fmt: skip
        return sizes

    def sparse(self, raw: Mapping[str, Any], path: _Path, layout: Layout) -> frozenset[str]:
        if "sparse" not in raw:
            return frozenset()
        value = raw["sparse"]
        if value is True:
            names = set(TABLES)
        elif value is False:
            names = set()
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            unknown = [v for v in value if v not in TABLES]
            if unknown:
                raise self.error((*path, "sparse"), f"no table named {unknown[0]!r}: expected {', '.join(TABLES)}")
            names = set(value)
        else:
            raise self.error((*path, "sparse"), f"expected true, false or a list of tables such as "
                                                f"[\"holding_registers\"], got {value!r}")  # fmt: skip
        if layout is not Layout.SEPARATE:
            names = {_shared(layout, n) for n in names}
        return frozenset(names)

    def identification(self, data: object, path: _Path) -> dict[int, str]:
        raw = self.table(data, path, tuple(OBJECT_NAMES))
        objects: dict[int, str] = {}
        for key in raw:
            text = self.typed(raw, path, key, str, "a text")
            if len(text.encode()) > MAX_OBJECT_LENGTH:
                raise self.error((*path, key), f"at most {MAX_OBJECT_LENGTH} bytes fit one FC43 response")
            objects[OBJECT_NAMES[key]] = text
        return objects

    # -------------------------------------------------------------------------------------------- points

    def point(
        self, data: object, path: _Path, order: Order, unit_ids: tuple[int, ...]
    ) -> tuple[Point, Value | None, Callable[[str], ConfigError]]:
        raw = self.table(data, path, CSV_COLUMNS)
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

    def csv_points(
        self, raw: Mapping[str, Any], path: _Path, order: Order, unit_ids: tuple[int, ...]
    ) -> list[tuple[Point, Value | None, Callable[[str], ConfigError]]]:
        relative = self.typed(raw, path, "points_csv", str, "the path of a CSV file")
        file = self.base / relative
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise self.error((*path, "points_csv"), f"cannot read {file}: {reason or exc}") from None
        name = str(file)
        reader = csv.reader(io.StringIO(text))
        header: list[str] | None = None
        found: list[tuple[Point, Value | None, Callable[[str], ConfigError]]] = []
        for row in reader:
            line = reader.line_num
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
    ) -> tuple[Point, Value | None, Callable[[str], ConfigError]]:
        name = texts["name"]
        if not NAME.fullmatch(name):
            raise fail("name")(f"{name!r} is not a name: start with a letter, then letters, digits, _ . or -")
        try:
            location = parse_address(texts["address"])
        except InvalidName as exc:
            raise fail("address")(str(exc)) from None
        if location.unit_id is not None:
            if unit_ids and location.unit_id not in unit_ids:
                raise fail("address")(f"unit id {location.unit_id} is not this device's ({_ids(unit_ids)})")
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
        points: list[tuple[Point, Value | None, Callable[[str], ConfigError]]],
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
            table = _shared(layout, location.table.value)
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

    def check_devices(self, devices: Sequence[DeviceConfig], raw: Sequence[Any]) -> None:
        if len(devices) > 1:
            for i, device in enumerate(devices):
                if not device.unit_ids:
                    raise self.error(("device", i), "with several devices each needs unit_id or unit_ids "
                                                    "(leave them out only for one device answering every unit id)")
        seen: dict[int, int] = {}
        names: dict[str, int] = {}
        for i, device in enumerate(devices):
            for unit_id in device.unit_ids:
                if unit_id in seen:
                    key = "unit_id" if "unit_id" in raw[i] else "unit_ids"
                    raise self.error(("device", i, key), f"unit id {unit_id} already belongs to device "
                                                         f"{seen[unit_id] + 1} of the file")  # fmt: skip
                seen[unit_id] = i
            for point in device.points:
                if point.name in names:
                    raise self.error(("device", i), f"data point name {point.name!r} is used by device "
                                                    f"{names[point.name] + 1} too: names must be unique in the file")
                names[point.name] = i


def _shared(layout: Layout, table: str) -> str:
    if layout is Layout.SEPARATE:
        return table
    return {"input_registers": "holding_registers", "discrete_inputs": "coils"}.get(table, table)


def _ids(unit_ids: Sequence[int]) -> str:
    return ", ".join(map(str, unit_ids))


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _similar(a: str, b: str) -> bool:
    """Close enough to be a typo: same letters give or take one, or one a prefix of the other."""
    if a.startswith(b) or b.startswith(a):
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    return sum(x != y for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b)) <= 2


# --------------------------------------------------------------------------------------------- summary


def summary(config: Config) -> list[str]:
    """What `modbusd check` prints: the server, then one line per device and per data point."""
    s = config.server
    lines = [f"{config.path}: OK", f"server: tcp {s.host} port {s.port}"]
    if config.http is not None:
        lines.append(f"http control API: {config.http.host} port {config.http.port}"
                     + (" (token required)" if config.http.token else ""))  # fmt: skip
    for device in config.devices:
        units = f"unit ids {_ids(device.unit_ids)}" if device.unit_ids else "every unit id"
        tables = []
        for table in TABLES:
            if device.layout is not Layout.SEPARATE and table in ("input_registers", "discrete_inputs"):
                continue
            size = device.sizes.get(table, ADDRESS_SPACE)
            tables.append(f"{table} {size}{' sparse' if table in device.sparse else ''}")
        lines.append(f"device ({units}): layout {device.layout}, {', '.join(tables)}; "
                     f"{len(device.points)} data points")  # fmt: skip
        for point in device.points:
            value = device.values.get(point.name)
            shown = "" if value is None else f" = {value}"
            unit = f" {point.unit}" if point.unit else ""
            lines.append(f"  {point.name}: {point.location} {point.type}"
                         f"{'' if point.order is Order.ABCD else ' ' + point.order}{shown}{unit}")  # fmt: skip
    return lines


EXAMPLE = """\
# modbusd device file: `modbusd --config modbusd.toml` serves it, `modbusd check modbusd.toml` checks it.
# Addresses take any notation: 40001 (holding register 1 counted from 1 = protocol address 0), 400001,
# 0.hr (protocol address 0), 1.0.hr (with a unit id), 100.hr.3 (bit 3 of a register). Mind the off-by-one:
# 40001 and 0.hr are the same register.

[server]
host = "127.0.0.1"          # 0.0.0.0: every interface
port = 5020                 # 502 is the standard port, but needs root
layout = "separate"         # separate | overlaid | packed (the default for every device)
# max_connections = 100     # at the limit the longest-unused connection is closed
# idle_timeout = 60         # seconds
# quit_command = "shutdown" # a client sending exactly this word stops the server
# unknown_unit = "exception"  # exception | ignore: requests for a unit id without a device

# The HTTP control API, for `modbusd get` / `modbusd set` and other programs. Off without this table.
[http]
port = 8020
host = "127.0.0.1"          # any other address needs a token (at least 16 characters):
# token = "change-me-to-a-long-secret"

[[device]]
# unit_id = 1               # or unit_ids = [1, 2]; leave out for one device answering every unit id
order = "ABCD"              # default word order: ABCD (big-endian) | CDAB | BADC | DCBA
sparse = ["input_registers"]  # in these tables only the data points' addresses exist; the rest is exception 02
# points_csv = "registers.csv"  # more points from a CSV file: name,address,type,order,value,unit,comment

[device.size]               # addresses implemented per table (default 65536)
coils = 1000
discrete_inputs = 1000
holding_registers = 1000
input_registers = 1000

[device.identification]     # FC43 Read Device Identification
vendor_name = "ACME"
product_code = "TH-100"
major_minor_revision = "1.0"
product_name = "Thermostat"

[[device.point]]
name = "temperature"
address = "30001"           # input register 1 = protocol address 0
type = "float"              # ushort short uint int ulong long float double string:N hex bits
value = 21.5
unit = "°C"
comment = "room temperature, two registers"

[[device.point]]
name = "humidity"
address = "30003"
type = "ushort"
value = 45
unit = "%"

[[device.point]]
name = "setpoint"
address = "40001"
type = "float"
order = "CDAB"              # word-swapped, as some PLCs send it
value = 20.0
unit = "°C"

[[device.point]]
name = "label"
address = "40011"
type = "string:8"           # 8 registers, 16 characters
value = "Living room"

[[device.point]]
name = "heating"
address = "00001"           # coil 1 = protocol address 0
type = "bit"
value = true

[[device.point]]
name = "window_open"
address = "10001"           # discrete input 1
value = false
"""
