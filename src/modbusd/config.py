"""The device file: TOML (read with the standard library's tomllib) → frozen dataclasses → devices.

Imports the protocol and the model only; `Server.from_config` and the command line put it to use. Every mistake
is one `ConfigError` naming the file, the line, the key and what is wrong. tomllib reports no positions for keys,
so `_KeyLines` scans the text for table headers and keys to find the line; for a CSV point file the line is the
CSV line.

The file's shape (``modbusd init`` writes a commented example, `EXAMPLE` below):

- ``[server]``: host, port (``false``: no Modbus/TCP), layout (the default for devices), max_connections,
  idle_timeout, quit_command, unknown_unit. The other transports are sub-tables, each off unless present:
  ``[server.udp]`` and ``[server.rtu_over_tcp]`` (port), ``[[server.serial]]`` (one per serial port: device,
  framing, baudrate, bytesize, parity, stopbits).
- ``[server]`` also: name (seed 003's server name, the first word of event names), hook (a request hook,
  ``"package.module:function"``, imported when the file is loaded), hook_timeout, eventslog (a file for every
  client write and event, one JSON line each; relative to the file's folder; ``false``: none),
  eventslog_max_bytes and eventslog_files (its rotation).
- ``[http]``: the control API (port, host, token); absent means off.
- ``[mqtt]``: the MQTT bridge (url, prefix, retain, qos, subscribe, queue); absent means off.
- ``[[device]]`` (any number): unit_id or unit_ids (leave both out for one device answering every unit id),
  serial_unit_id (that one device's unit id on serial lines and RTU over TCP), address_register (seed 002), layout,
  order (the default word order of its points), sparse, points_csv, ``[device.size]``,
  ``[device.identification]`` and ``[[device.point]]`` (name, address, type, order, value, unit, comment).
"""

import csv
import importlib
import io
import math
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from modbusd.protocol.codes import ADDRESS_SPACE, MIN_UNIT_ID
from modbusd.protocol.codes import MAX_UNIT_ID as MAX_SERIAL_UNIT_ID
from modbusd.protocol.serial_line import Framing, SerialLine

DEFAULT_HTTP_PORT = 8020
DEFAULT_MQTT_PORT = 1883
LOOPBACK = ("127.0.0.1", "localhost", "::1")
UNKNOWN_UNIT_POLICIES = ("exception", "ignore")  # server.UnknownUnit's values; config may not import server
CSV_COLUMNS = ("name", "address", "type", "order", "value", "unit", "comment")
SERIAL_KEYS = ("device", "framing", "baudrate", "bytesize", "parity", "stopbits")
HOOK_TIMEOUT = 1.0  # seconds a coroutine request hook may take before exception 04
EVENTS_LOG_MAX_BYTES = 10 * 1024 * 1024  # the events log is rotated when it would grow past this
EVENTS_LOG_FILES = 5  # the events log and its rotated copies, .1 … .4


def import_hook(spec: str) -> Callable[..., object]:
    """``"package.module:function"`` → the function; ValueError in one line saying what went wrong."""
    module_name, colon, attribute = spec.strip().partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"{spec!r} is not package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name}: {exc}") from None
    except Exception as exc:  # the module's own code failed while importing
        raise ValueError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from None
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{module_name} has no {attribute}") from None
    if not callable(target):
        raise ValueError(f"{spec} is a {type(target).__name__}, not a function")
    return target


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
    allow_hosts: tuple[str, ...] = ()  # Host names clients may use besides loopback's and `host` (DNS rebinding)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The MQTT bridge (`modbusd.mqtt`): off unless the file has [mqtt] or the command line --mqtt."""

    host: str = "localhost"
    port: int = DEFAULT_MQTT_PORT
    username: str | None = None
    password: str | None = None
    prefix: str = "modbusd"
    retain: bool = True
    qos: int = 1
    subscribe: tuple[str, ...] = ()  # more points to publish, "POINT[:TYPE]", besides the named co/hr points
    queue: int = 1000

    @property
    def url(self) -> str:
        """The broker's address, without the password."""
        user = f"{self.username}@" if self.username else ""
        return f"mqtt://{user}{self.host}:{self.port}"


def parse_mqtt_url(text: str) -> dict[str, Any]:
    """``mqtt://[user[:password]@]host[:port]`` → host, port, username, password; ValueError saying what is wrong."""
    url = text.strip()
    if "://" not in url:
        url = "mqtt://" + url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "mqtt":
        raise ValueError(f"{text!r}: expected mqtt://host[:port] (tls is not supported)")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ValueError(f"{text!r}: expected mqtt://[user:password@]host[:port], without a path")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"{text!r}: the port must be a number 1..65535") from None
    if not parsed.hostname:
        raise ValueError(f"{text!r}: no host: expected mqtt://host[:port]")
    return {"host": parsed.hostname, "port": port or DEFAULT_MQTT_PORT,
            "username": urllib.parse.unquote(parsed.username) if parsed.username else None,
            "password": urllib.parse.unquote(parsed.password) if parsed.password is not None else None}  # fmt: skip


_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*|[0-9a-f:.]*:[0-9a-f:.]*")


def check_host_name(name: object) -> str:
    """A name for the control API's Host check (`modbusd.web.checks`): a host name or address, no port, no *."""
    plain = name.strip().lower().removeprefix("[").removesuffix("]") if isinstance(name, str) else ""
    if not _HOST_NAME.fullmatch(plain):
        raise ValueError(f"{name!r} is not a host name such as plant.example or an IP address (no port, no *)")
    return plain


def check_mqtt_prefix(prefix: str) -> str:
    cleaned = prefix.strip().strip("/")
    if not cleaned or any(c in cleaned for c in "+#"):
        raise ValueError(f"the MQTT prefix must be a topic without + or #, such as modbusd, not {prefix!r}")
    return cleaned


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int | None = 502  # None: no Modbus/TCP (`port = false`)
    layout: Layout = Layout.SEPARATE
    max_connections: int | None = None
    idle_timeout: float | None = None
    quit_command: str | None = None
    unknown_unit: str = "exception"
    udp: int | None = None  # [server.udp] port
    rtu_over_tcp: int | None = None  # [server.rtu_over_tcp] port
    serial: tuple[SerialLine, ...] = ()  # [[server.serial]], one per port
    name: str = "modbusd"  # seed 003's server name in event names
    hook: str | None = None  # "package.module:function", checked by importing it
    hook_timeout: float = HOOK_TIMEOUT
    eventslog: str | None = None  # the events log's path (resolved against the file's folder)
    eventslog_max_bytes: int = EVENTS_LOG_MAX_BYTES
    eventslog_files: int = EVENTS_LOG_FILES

    @property
    def serves_serial(self) -> bool:
        """Serial lines or RTU over TCP: the transports whose unit ids (slave ids) are 1..247."""
        return bool(self.serial) or self.rtu_over_tcp is not None


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
    serial_unit_id: int | None = None  # answering every unit id: its unit id on serial lines, RTU over TCP (None: 1)
    address_register: int | None = None  # seed 002's address change: the holding register with the unit id

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
        if self.address_register is not None:
            device.set_address_register(self.address_register)
        return device


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    server: ServerConfig = ServerConfig()
    http: HttpConfig | None = None
    devices: tuple[DeviceConfig, ...] = (DeviceConfig(),)
    mqtt: MqttConfig | None = None

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
                close = sorted((k for k in known if _similar(k, key)), key=lambda k: _closeness(k, key))
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
        self.table(data, (), ("server", "http", "mqtt", "device"))
        server = self.server(data.get("server", {}))
        http = self.http(data["http"]) if "http" in data else None
        raw_devices = data.get("device", [{}])
        if not isinstance(raw_devices, list):
            raise self.error(("device",), "devices are [[device]] tables (double brackets), one per device")
        devices = tuple(self.device(raw, ("device", i), server.layout) for i, raw in enumerate(raw_devices))
        self.check_devices(devices, raw_devices)
        if server.serves_serial:
            self.check_serial_unit_ids(devices, raw_devices)
        mqtt = self.mqtt(data["mqtt"]) if "mqtt" in data else None
        return Config(self.name, server, http, devices, mqtt)

    def server(self, data: object) -> ServerConfig:
        path: _Path = ("server",)
        raw = self.table(data, path, ("host", "port", "layout", "max_connections", "idle_timeout", "quit_command",
                                      "unknown_unit", "udp", "rtu_over_tcp", "serial", "name", "hook",
                                      "hook_timeout", "eventslog", "eventslog_max_bytes",
                                      "eventslog_files"))  # fmt: skip
        options: dict[str, Any] = self.hooks(raw, path)
        if "host" in raw:
            options["host"] = self.typed(raw, path, "host", str, "an address such as 127.0.0.1 or 0.0.0.0")
        if "port" in raw:
            port = raw["port"]
            if port is False:
                options["port"] = None
            elif isinstance(port, int) and not isinstance(port, bool):
                options["port"] = self.integer(raw, path, "port", 0, 65535)
            else:
                raise self.error((*path, "port"), f"expected a port number 0..65535, or false for no Modbus/TCP, "
                                                  f"got {port!r}")  # fmt: skip
        for key, what in (("udp", "Modbus over UDP"), ("rtu_over_tcp", "RTU over TCP")):
            if key in raw:
                options[key] = self.listener(raw[key], (*path, key), what)
        if "serial" in raw:
            options["serial"] = self.serial(raw["serial"], (*path, "serial"))
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
        config = ServerConfig(**options)
        if config.port is None and not config.serves_serial and config.udp is None:
            raise self.error((*path, "port"), "Modbus/TCP is off and no other transport is given "
                                              "([server.udp], [server.rtu_over_tcp], [[server.serial]]): "
                                              "nothing would be served")  # fmt: skip
        if config.rtu_over_tcp is not None and config.rtu_over_tcp == config.port != 0:
            raise self.error((*path, "rtu_over_tcp", "port"), f"port {config.port} is Modbus/TCP's already "
                                                              "([server] port): give RTU over TCP another "
                                                              "one")  # fmt: skip
        return config

    def hooks(self, raw: Mapping[str, Any], path: _Path) -> dict[str, Any]:
        """[server] name, hook, hook_timeout, eventslog and its rotation (seed 003)."""
        options: dict[str, Any] = {}
        if "name" in raw:
            name = self.typed(raw, path, "name", str, 'a name such as "plant"')
            if not NAME.fullmatch(name) or "." in name:
                raise self.error((*path, "name"), f"{name!r}: start with a letter, then letters, digits, _ or - "
                                                  "(no dots: the name is the first part of event names)")  # fmt: skip
            options["name"] = name
        if "hook" in raw:
            spec = self.typed(raw, path, "hook", str, 'a function to import, "package.module:function"')
            try:
                import_hook(spec)
            except ValueError as exc:
                raise self.error((*path, "hook"), str(exc)) from None
            options["hook"] = spec
        if "hook_timeout" in raw:
            timeout = self.typed(raw, path, "hook_timeout", (int, float), "a number of seconds")
            if not timeout > 0 or not math.isfinite(timeout):
                raise self.error((*path, "hook_timeout"), f"{timeout} must be a number of seconds greater than 0")
            options["hook_timeout"] = float(timeout)
        if "eventslog" in raw:
            value = raw["eventslog"]
            if value is True:
                raise self.error((*path, "eventslog"), 'give the file to write, e.g. eventslog = "events.jsonl" '
                                                       "(false: no events log)")  # fmt: skip
            if value is not False:
                text = self.typed(raw, path, "eventslog", str, 'a file such as "events.jsonl", or false')
                if not text.strip():
                    raise self.error((*path, "eventslog"), "the file name cannot be empty (false: no events log)")
                options["eventslog"] = str(self.base / text)
        if "eventslog_max_bytes" in raw:
            options["eventslog_max_bytes"] = self.integer(raw, path, "eventslog_max_bytes", 1024, 1 << 40)
        if "eventslog_files" in raw:
            options["eventslog_files"] = self.integer(raw, path, "eventslog_files", 1, 1000)
        return options

    def listener(self, data: object, path: _Path, what: str) -> int:
        """[server.udp] or [server.rtu_over_tcp]: the port."""
        raw = self.table(data, path, ("port",))
        if "port" not in raw:
            raise self.error(path, f"{what} needs a port (0: any free one)")
        return self.integer(raw, path, "port", 0, 65535)

    def serial(self, data: object, path: _Path) -> tuple[SerialLine, ...]:
        """[[server.serial]]: each line checked by `SerialLine`'s own rules, one key at a time, then together."""
        if not isinstance(data, list):
            raise self.error(path, "serial lines are [[server.serial]] tables (double brackets), one per port")
        lines: list[SerialLine] = []
        for i, item in enumerate(data):
            where: _Path = (*path, i)
            raw = self.table(item, where, SERIAL_KEYS)
            if "device" not in raw:
                raise self.error(where, 'a serial line needs a device, such as "/dev/ttyUSB0"')
            device = self.typed(raw, where, "device", str, 'a serial port such as "/dev/ttyUSB0"')
            if not device:
                raise self.error((*where, "device"), 'the device cannot be empty: a serial port such as "/dev/ttyUSB0"')
            framing = self.choice(raw, where, "framing", [f.value for f in Framing]) if "framing" in raw else "rtu"
            settings: dict[str, Any] = {}
            for key in ("baudrate", "bytesize", "stopbits"):
                if key in raw:
                    settings[key] = self.typed(raw, where, key, int, "a whole number")
            if "parity" in raw:
                settings["parity"] = self.typed(raw, where, "parity", str, 'one of "E", "O", "N"')
            for key, value in settings.items():  # one at a time, so that the message names the key
                try:
                    SerialLine(device, framing, **{key: value})
                except ValueError as exc:
                    raise self.error((*where, key), str(exc)) from None
            try:
                line = SerialLine(device, framing, **settings)
            except ValueError as exc:  # a rule about several keys together
                raise self.error(where, str(exc)) from None
            for j, other in enumerate(lines):
                if other.device == device:
                    raise self.error((*where, "device"), f"{device} is served by server.serial[{j}] already")
            lines.append(line)
        return tuple(lines)

    def http(self, data: object) -> HttpConfig:
        path: _Path = ("http",)
        raw = self.table(data, path, ("host", "port", "token", "allow_hosts"))
        options: dict[str, Any] = {}
        if "allow_hosts" in raw:
            names = self.typed(raw, path, "allow_hosts", list, 'a list of host names, such as ["plant.example"]')
            try:
                options["allow_hosts"] = tuple(check_host_name(name) for name in names)
            except ValueError as exc:
                raise self.error((*path, "allow_hosts"), str(exc)) from None
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

    def mqtt(self, data: object) -> MqttConfig:
        path: _Path = ("mqtt",)
        raw = self.table(data, path, ("url", "prefix", "retain", "qos", "subscribe", "queue"))
        options: dict[str, Any] = {}
        if "url" not in raw:
            raise self.error(path, 'the broker\'s url is missing: url = "mqtt://localhost:1883"')
        try:
            options.update(parse_mqtt_url(self.typed(raw, path, "url", str, "a text such as mqtt://localhost:1883")))
        except ValueError as exc:
            raise self.error((*path, "url"), str(exc)) from None
        if "prefix" in raw:
            try:
                options["prefix"] = check_mqtt_prefix(self.typed(raw, path, "prefix", str, "a topic such as modbusd"))
            except ValueError as exc:
                raise self.error((*path, "prefix"), str(exc)) from None
        if "retain" in raw:
            options["retain"] = self.typed(raw, path, "retain", bool, "true or false")
        if "qos" in raw:
            options["qos"] = self.integer(raw, path, "qos", 0, 2)
        if "queue" in raw:
            options["queue"] = self.integer(raw, path, "queue", 1, 10_000_000)
        if "subscribe" in raw:
            points = raw["subscribe"]
            if not isinstance(points, list) or not all(isinstance(p, str) for p in points):
                raise self.error((*path, "subscribe"), f"expected a list of points such as [\"100.hr:float\"], "
                                                       f"got {points!r}")  # fmt: skip
            for text in points:
                point, _, type_text = text.partition(":")
                try:
                    if not NAME.fullmatch(point.strip()):
                        parse_address(point)
                    if type_text:
                        ValueType.parse(type_text)
                except (InvalidName, InvalidType) as exc:
                    raise self.error((*path, "subscribe"), f"{text!r}: {exc}") from None
            options["subscribe"] = tuple(points)
        return MqttConfig(**options)

    # -------------------------------------------------------------------------------------------- device

    def device(self, data: object, path: _Path, layout: Layout) -> DeviceConfig:
        raw = self.table(data, path, ("unit_id", "unit_ids", "serial_unit_id", "address_register", "layout",
                                      "order", "sparse", "size", "identification", "points_csv", "point"))  # fmt: skip
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
        serial_unit_id = None
        if "serial_unit_id" in raw:
            serial_unit_id = self.integer(raw, path, "serial_unit_id", MIN_UNIT_ID, MAX_SERIAL_UNIT_ID)
            if unit_ids:
                raise self.error((*path, "serial_unit_id"), "a device with unit_id or unit_ids answers at those on "
                                                            "serial lines too: serial_unit_id is for one device "
                                                            "answering every unit id")  # fmt: skip
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
        config = DeviceConfig(
            unit_ids=unit_ids, layout=layout, order=order, sizes=MappingProxyType(sizes), sparse=sparse,
            identification=MappingProxyType(identification), points=tuple(p for p, _, _ in points),
            values=MappingProxyType({p.name: v for p, v, _ in points if v is not None}),
            serial_unit_id=serial_unit_id,
        )  # fmt: skip
        if "address_register" in raw:
            config = replace(config, address_register=self.address_register(raw, path, config))
        return config

    def address_register(self, raw: Mapping[str, Any], path: _Path, device: DeviceConfig) -> int:
        """Seed 002's register: a holding register this device implements (its protocol address, e.g. 0x07D0)."""
        address = self.integer(raw, path, "address_register", 0, ADDRESS_SPACE - 1)
        size = device.sizes.get("holding_registers", ADDRESS_SPACE)
        if address >= size:
            raise self.error((*path, "address_register"), f"{address} is outside the holding registers, "
                                                          f"addresses 0..{size - 1}")  # fmt: skip
        sparse = device.addresses().get("holding_registers")
        if sparse is not None and address not in sparse:
            raise self.error((*path, "address_register"), f"holding register {address} is not implemented: the "
                                                          "table is sparse, and no data point covers it")  # fmt: skip
        return address

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
                    raise self.error(
                        ("device", i),
                        "with several devices each needs unit_id or unit_ids "
                        "(leave them out only for one device answering every unit id)",
                    )
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
                    raise self.error(
                        ("device", i),
                        f"data point name {point.name!r} is used by device "
                        f"{names[point.name] + 1} too: names must be unique in the file",
                    )
                names[point.name] = i

    def check_serial_unit_ids(self, devices: Sequence[DeviceConfig], raw: Sequence[Any]) -> None:
        """With serial lines or RTU over TCP every device's unit ids are serial unit ids too: 1..247."""
        for i, device in enumerate(devices):
            bad = [u for u in device.unit_ids if not MIN_UNIT_ID <= u <= MAX_SERIAL_UNIT_ID]
            if bad:
                key = "unit_id" if "unit_id" in raw[i] else "unit_ids"
                raise self.error(("device", i, key), f"unit id {bad[0]} is outside {MIN_UNIT_ID}.."
                                                     f"{MAX_SERIAL_UNIT_ID}, the unit ids of serial lines and RTU "
                                                     "over TCP, which this file serves")  # fmt: skip


def _shared(layout: Layout, table: str) -> str:
    if layout is Layout.SEPARATE:
        return table
    return {"input_registers": "holding_registers", "discrete_inputs": "coils"}.get(table, table)


def _ids(unit_ids: Sequence[int]) -> str:
    return ", ".join(map(str, unit_ids))


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _similar(a: str, b: str) -> bool:
    """Close enough to be a typo: one a prefix of the other, or at most two letters changed, added or dropped
    (`stop_bits` for stopbits, `prot` for port)."""
    return a.startswith(b) or b.startswith(a) or _distance(a, b) <= 2


def _closeness(a: str, b: str) -> int:
    """For ranking likely keys: 0 for a prefix, else the edit distance."""
    return 0 if a.startswith(b) or b.startswith(a) else _distance(a, b)


def _distance(a: str, b: str) -> int:
    """Edit distance: the fewest letters to change, add or drop to turn `a` into `b`."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


# --------------------------------------------------------------------------------------------- summary


def summary(config: Config) -> list[str]:
    """What `modbusd check` prints: the server, then one line per device and per data point."""
    s = config.server
    lines = [f"{config.path}: OK", f"server: tcp {s.host} port {s.port}" if s.port is not None else "server: tcp off"]
    if s.udp is not None:
        lines.append(f"server: udp {s.host} port {s.udp}")
    if s.rtu_over_tcp is not None:
        lines.append(f"server: rtu over tcp {s.host} port {s.rtu_over_tcp}")
    lines.extend(f"server: serial {line.framing} {line.device} {line.settings}" for line in s.serial)
    if s.hook is not None:
        lines.append(f"server: request hook {s.hook} (time-out {s.hook_timeout:g} s)")
    if s.eventslog is not None:
        lines.append(f"server: events log {s.eventslog} (rotated at {s.eventslog_max_bytes} bytes, "
                     f"{s.eventslog_files} files)")  # fmt: skip
    if config.http is not None:
        lines.append(f"http control API: {config.http.host} port {config.http.port}"
                     + (" (token required)" if config.http.token else ""))  # fmt: skip
    if config.mqtt is not None:
        m = config.mqtt
        lines.append(f"mqtt bridge: {m.url} prefix {m.prefix}, qos {m.qos}{', retained' if m.retain else ''}"
                     + (f"; also {', '.join(m.subscribe)}" if m.subscribe else ""))  # fmt: skip
    for device in config.devices:
        units = f"unit ids {_ids(device.unit_ids)}" if device.unit_ids else "every unit id"
        if s.serves_serial and not device.unit_ids:
            units += f"; unit id {device.serial_unit_id or MIN_UNIT_ID} on serial lines"
        if device.address_register is not None:
            units += f"; address register {device.address_register} (0x{device.address_register:04X})"
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
# name = "modbusd"          # the first part of event names (seed 003): modbusd.1.100.hr
# hook = "mypackage.hooks:on_request"  # a request hook (Python), imported at start; see the README
# hook_timeout = 1.0        # seconds a coroutine hook may take; then exception 04
# eventslog = "events.jsonl"  # every client write and event, one JSON line each, rotated at 10 MB x 5 files
# unknown_unit = "exception"  # exception | ignore: requests for a unit id without a device
# port = false              # instead of the port above: no Modbus/TCP, only the transports below

# More transports, all on one data model; each is off unless its table is here (uncomment to serve it).
# [server.udp]              # Modbus/TCP's frames (MBAP) in UDP datagrams
# port = 5021
# [server.rtu_over_tcp]     # serial-line RTU frames (with CRC) over TCP, with the serial unit ids
# port = 5022
# [[server.serial]]         # one [[server.serial]] table per serial port; needs pip install 'modbusd[serial]'
# device = "/dev/ttyUSB0"
# framing = "rtu"           # rtu | ascii
# baudrate = 19200
# parity = "E"              # E (the standard's default) | O | N
# bytesize = 8              # RTU needs 8; ASCII 7 or 8
# stopbits = 1              # default 1, or 2 with parity N

# The HTTP control API, for `modbusd get` / `modbusd set` and other programs. Off without this table.
[http]
port = 8020
host = "127.0.0.1"          # any other address needs a token (at least 16 characters):
# token = "change-me-to-a-long-secret"
# allow_hosts = ["plant.example"]  # Host names besides localhost and the address above (against DNS rebinding)

# The MQTT bridge (pip install 'modbusd[mqtt]'): client writes to the named coils and holding registers are
# published to <prefix>/<unit>/<table>/<address>; <prefix>/<unit>/<table>/<address>/set writes. Off without it.
# [mqtt]
# url = "mqtt://localhost:1883"  # mqtt://user:password@host:port
# prefix = "modbusd"
# retain = true             # the broker keeps each point's last value for newcomers
# qos = 1                   # 0 | 1 | 2
# subscribe = ["200.hr:float"]  # more points to publish (POINT[:TYPE]) besides the named ones

[[device]]
# unit_id = 1               # or unit_ids = [1, 2]; leave out for one device answering every unit id
# serial_unit_id = 7        # without unit_id: its unit id on serial lines and RTU over TCP (default 1)
# address_register = 999    # seed 002: writing a unit id 1..247 to this holding register moves the device there
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
