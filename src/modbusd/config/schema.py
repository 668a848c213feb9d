"""The schema of a device file: what each table may hold, as frozen dataclasses with their defaults.

No reading here (`reader.py`, `loader.py`): the settings a checked file gives, and how devices are built from
them. The settings of the services beside Modbus (the control API, metrics, the MQTT bridge) are
`service_settings.py`'s; `Config` holds them too.
"""

import importlib
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from modbusd.authorize import ReadOnly, Roles, Span
from modbusd.config.gateway import GatewayConfig
from modbusd.config.service_settings import HttpConfig, MetricsConfig, MqttConfig
from modbusd.faults import FaultSpec
from modbusd.model.device import Device, Layout, default_identification
from modbusd.model.identification import BASIC_LAST
from modbusd.model.names import parse_address
from modbusd.model.points import NAME, Point, write_at
from modbusd.model.tables import WordTable
from modbusd.model.values import Order, Value, ValueType
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.serial_line import SerialLine
from modbusd.simulate import GeneratorError, make
from modbusd.simulate.build import Context
from modbusd.version import __version__

DEFAULT_TLS_PORT = 802  # Modbus/TCP Security, IANA's mbap/tls/tcp (MODBUS/TCP Security §5)
KEY_PASSWORD_ENV = "MODBUSD_KEY_PASSWORD"  # an encrypted server key's passphrase: from the environment, not argv
UNKNOWN_UNIT_POLICIES = ("exception", "ignore")  # server.UnknownUnit's values; config may not import server
CSV_COLUMNS = ("name", "address", "type", "order", "value", "unit", "comment")
SERIAL_KEYS = ("device", "framing", "baudrate", "bytesize", "parity", "stopbits")
HOOK_TIMEOUT = 1.0  # seconds a coroutine request hook may take before exception 04
EVENTS_LOG_MAX_BYTES = 10 * 1024 * 1024  # the events log is rotated when it would grow past this
EVENTS_LOG_FILES = 5  # the events log and its rotated copies, .1 … .4
DEFAULT_SERVER_ID = b"\x01"  # FC17's server id when [device.server_id] does not give one (Device's default)


def import_hook(spec: str, folder: str | None = None) -> Callable[..., object]:
    """``"package.module:function"`` → the function; ValueError in one line saying what went wrong.

    `folder` (a device file's own) goes first on the module path, as Python puts a script's folder there: a hook
    module beside the device file imports from any working directory, the way ``eventslog`` and ``points_csv`` are
    found beside it. It stays there, so that the hook's own later imports of its neighbours work too.
    """
    module_name, colon, attribute = spec.strip().partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"{spec!r} is not package.module:function")
    if folder is not None and folder not in sys.path:
        sys.path.insert(0, folder)
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


# ------------------------------------------------------------------------------------------ the settings


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A point the server subscribes to when it is built (`Server.subscribe`): client writes to it make events,
    for the events log and every listener (the MQTT bridge among them)."""

    point: str  # a data point's name, or an address in any notation
    type: str | None = None  # None: a named point's own type, an address's default
    where: str = ""  # where it was given (FILE:LINE: key, or the option), to name it in a later mistake

    def __str__(self) -> str:
        return self.point if self.type is None else f"{self.point}:{self.type}"


def parse_subscribe(text: str, where: str = "") -> Subscribe:
    """``POINT[:TYPE]`` (``100.hr:float``, ``1.5.co``, ``setpoint``, an endpoint's ``meter7/setpoint``) → Subscribe;
    ValueError saying what is wrong.

    The syntax only: whether the point exists and can be subscribed is the server's to say, when it subscribes.
    """
    point, colon, type_text = text.strip().partition(":")
    point, type_text = point.strip(), type_text.strip()
    endpoint, slash, own = point.rpartition("/")
    try:
        if colon and not type_text:
            raise ValueError("no type after the colon")
        if slash and not ENDPOINT_NAME.fullmatch(endpoint.strip()):
            raise ValueError(f"{endpoint.strip()!r} is not an endpoint's name (ENDPOINT/POINT)")
        if not NAME.fullmatch(own.strip()):
            parse_address(own.strip())  # InvalidName, a ValueError
        if type_text:
            ValueType.parse(type_text)  # InvalidType, a ValueError
    except ValueError as exc:
        raise ValueError(f"{text!r}: {str(exc).removeprefix(f'{point!r}: ')}") from None
    return Subscribe(point, type_text or None, where)


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """A value generator the server adds when it is built (`Server.simulator`, docs/simulator.md)."""

    point: str  # a data point's name, or an address in any notation
    spec: str  # sine(offset=20, amplitude=5, period=60s)
    type: str | None = None  # None: a named point's own type, an address's default
    order: str | None = None  # None: a named point's own order, else ABCD
    where: str = ""  # FILE:LINE: key, or the option, to name it in a mistake found later
    base: str | None = None  # where a csv file's relative path starts: the device file's folder


def parse_simulate(text: str) -> GeneratorConfig:
    """``POINT[:TYPE[:ORDER]]=SPEC`` (``30001:float=sine(period=60s)``) → GeneratorConfig; ValueError saying what is
    wrong: the point's syntax, the type, the order and the spec's arguments (a csv file relative to the working
    directory). Whether the point exists, and the names in an expression, are the server's to check."""
    target, equals, spec = text.partition("=")
    if not equals or not spec.strip():
        raise ValueError(f"{text!r}: expected POINT[:TYPE[:ORDER]]=SPEC, e.g. 30001:float=sine(period=60s)")
    point, _, type_text = target.strip().partition(":")
    head, colon, last = type_text.rpartition(":")
    order = ""
    if colon and last.strip().upper() in tuple(Order):  # float:CDAB; string:10 keeps its colon
        type_text, order = head, last
    parse_subscribe(f"{point}:{type_text}" if type_text else point)  # the same POINT[:TYPE] rule
    try:  # every argument checked now; the names in an expression once the server's points are known
        make(spec, Context(is_point=lambda name: True))
    except GeneratorError as exc:
        raise ValueError(str(exc)) from None
    return GeneratorConfig(point.strip(), spec.strip(), type_text.strip() or None,
                           order.strip().upper() or None, "--simulate")  # fmt: skip


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Modbus/TCP Security (``[server.tls]``, ``--tls``): the MBAP ADU inside TLS, clients with certificates."""

    port: int = DEFAULT_TLS_PORT
    cert: str | None = None  # PEM: the server's certificate, then its chain to the root CA
    key: str | None = None  # PEM: its private key (None: in `cert`'s file); encrypted: KEY_PASSWORD_ENV
    ca: str | None = None  # PEM: the CA(s) the clients' certificates must be signed by
    no_role: str | None = None  # the role whose rights a certificate without a role gets (None: no rights)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int | None = 502  # None: no Modbus/TCP (`port = false`)
    layout: Layout = Layout.SEPARATE
    max_connections: int | None = None
    idle_timeout: float | None = None
    max_connections_per_client: int | None = None  # more from one address are closed at accept
    quit_command: str | None = None
    unknown_unit: str = "exception"
    udp: int | None = None  # [server.udp] port
    rtu_over_tcp: int | None = None  # [server.rtu_over_tcp] port
    serial: tuple[SerialLine, ...] = ()  # [[server.serial]], one per port
    name: str = "modbusd"  # the server name in event names, as HSYCO's Modbus server names its events
    hook: str | None = None  # "package.module:function", checked by importing it
    hook_timeout: float = HOOK_TIMEOUT
    hook_forwarded: bool = False  # the hook sees the gateway's forwarded unit ids too (--hook-forwarded)
    eventslog: str | None = None  # the events log's path (resolved against the file's folder)
    eventslog_max_bytes: int = EVENTS_LOG_MAX_BYTES
    eventslog_files: int = EVENTS_LOG_FILES
    listen_only: bool = True  # false: FC08/04 Force Listen Only Mode refused with exception 01 (--no-listen-only)
    tls: TlsConfig | None = None  # [server.tls]: Modbus/TCP Security
    # client allow-lists by endpoint (tcp, tls, udp, rtu-over-tcp; "*": [server] allow, for those without their own)
    allow: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    state: str | None = None  # the state file's path (resolved against the file's folder), docs/state.md
    state_sync: str = "full"  # SQLite's synchronous for it: "full" or "normal" (--state-sync)

    @property
    def serves_serial(self) -> bool:
        """Serial lines or RTU over TCP: the transports whose unit ids (slave ids) are 1..247."""
        return bool(self.serial) or self.rtu_over_tcp is not None


@dataclass(frozen=True, slots=True)
class ValueRange:
    """Initial values from `address` on in `table` (a `Device` attribute name): registers 0..65535, bits 0/1."""

    table: str
    address: int
    values: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.address + len(self.values)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device. `unit_ids` empty: it answers every unit id (the only device of the file)."""

    unit_ids: tuple[int, ...] = ()
    layout: Layout = Layout.SEPARATE
    order: Order = Order.ABCD
    sizes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    sparse: frozenset[str] = frozenset()
    identification: Mapping[int, str | bytes] = field(default_factory=lambda: MappingProxyType({}))
    points: tuple[Point, ...] = ()
    values: Mapping[str, Value] = field(default_factory=lambda: MappingProxyType({}))  # point name → initial value
    serial_unit_id: int | None = None  # answering every unit id: its unit id on serial lines, RTU over TCP (None: 1)
    address_register: int | None = None  # the address change: the holding register with the serial unit id
    subscribe: tuple[Subscribe, ...] = ()  # its points marked subscribe = true
    read_only: tuple[Span, ...] = ()  # coils and holding registers clients may not write
    read_only_exception: int = int(ExceptionCode.ILLEGAL_DATA_ADDRESS)  # their answer to a client's write: 2, 1 or 4
    allow: tuple[str, ...] | None = None  # the client networks its unit ids answer (None: every client)
    server_id: bytes = DEFAULT_SERVER_ID  # FC17 Report Server ID: [device.server_id] id, running, additional_data
    running: bool = True
    additional_data: bytes = b""
    ranges: tuple[ValueRange, ...] = ()  # [device.values]: initial values of address ranges

    def addresses(self) -> dict[str, list[int]]:
        """The implemented addresses of each sparse table: what its data points cover."""
        found: dict[str, set[int]] = {name: set() for name in self.sparse}
        for point in self.points:
            table = point.location.table.value
            if table in found:
                found[table].update(point.span)
        for value_range in self.ranges:
            if value_range.table in found:
                found[value_range.table].update(range(value_range.address, value_range.end))
        return {name: sorted(addresses) for name, addresses in found.items()}

    def objects(self) -> dict[int, str | bytes] | None:
        """The FC43 objects: exactly the file's, with modbusd's own for the mandatory basic ones it leaves out
        (§6.21), so that a copy of a device made by reading it answers with its objects and no others."""
        if not self.identification:
            return None
        defaults = default_identification(__version__)
        return {**{i: defaults[i] for i in range(BASIC_LAST + 1)}, **self.identification}

    def build(self) -> Device:
        """A fresh Device with its tables sized, sparse tables declared and every initial value written."""
        device = Device(self.layout, **self.sizes, addresses=self.addresses() or None,
                        identification=self.objects(), server_id=self.server_id,
                        additional_data=self.additional_data)  # fmt: skip
        device.running = self.running
        for value_range in self.ranges:
            table = getattr(device, value_range.table)
            if isinstance(table, WordTable):
                table.set_values(value_range.address, value_range.values)
            else:
                table.write(value_range.address, map(bool, value_range.values))
        for point in self.points:
            device.points[point.name] = point
            if point.name in self.values:
                write_at(device, point.location, point.type, self.values[point.name], point.order)
        if self.address_register is not None:
            device.set_address_register(self.address_register)
        if self.read_only:
            device.guard = ReadOnly(self.read_only, ExceptionCode(self.read_only_exception))
        return device


def build_devices(configs: Sequence[DeviceConfig]) -> Device | dict[int, Device]:
    """One Device answering every unit id, or a unit id → Device mapping (a device may serve several ids)."""
    if len(configs) == 1 and not configs[0].unit_ids:
        return configs[0].build()
    devices: dict[int, Device] = {}
    for config in configs:
        device = config.build()
        devices.update(dict.fromkeys(config.unit_ids, device))
    return devices


ENDPOINT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")  # no dots nor slashes: part of point and event names
TRANSPORTS = ("tcp", "udp", "rtu-over-tcp")  # an endpoint's listener


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One ``[[endpoint]]`` instance (`modbusd.endpoints.Endpoint`): a listener with devices of its own."""

    name: str
    devices: tuple[DeviceConfig, ...]
    host: str = "0.0.0.0"
    port: int = 502
    transport: str = "tcp"  # tcp, udp or rtu-over-tcp

    @property
    def unit_id(self) -> int:
        """A single device's slave id over RTU over TCP (its serial_unit_id, 1 if none)."""
        return self.devices[0].serial_unit_id or 1


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    server: ServerConfig = ServerConfig()
    http: HttpConfig | None = None
    devices: tuple[DeviceConfig, ...] = (DeviceConfig(),)  # empty: only endpoints are served
    mqtt: MqttConfig | None = None
    subscribe: tuple[Subscribe, ...] = ()  # points with subscribe = true, then [events] subscribe, then --subscribe
    roles: Roles | None = None  # [roles.NAME]: Modbus/TCP Security's roles-to-rights rules
    endpoints: tuple[EndpointConfig, ...] = ()  # [[endpoint]] tables, each instance of each
    faults: tuple[FaultSpec, ...] = ()  # [[fault]] tables, then --fault (docs/faults.md)
    metrics: MetricsConfig | None = None
    generators: tuple[GeneratorConfig, ...] = ()  # the devices' generators, then --simulate's
    gateway: GatewayConfig = field(default_factory=GatewayConfig)  # [gateway], its routes, then --forward's

    @property
    def subscriptions(self) -> tuple[Subscribe, ...]:
        """Every point to subscribe: `subscribe`, then [mqtt] subscribe (deprecated: the same list, since the
        bridge publishes every subscription's events)."""
        if self.mqtt is None or not self.mqtt.subscribe:
            return self.subscribe
        where = f"{self.path}: mqtt.subscribe"
        return (*self.subscribe, *(parse_subscribe(text, where) for text in self.mqtt.subscribe))

    def build_devices(self) -> Device | dict[int, Device]:
        """One Device answering every unit id, or a unit id → Device mapping (a device may serve several ids)."""
        return build_devices(self.devices)

    @property
    def points(self) -> tuple[Point, ...]:
        return tuple(p for d in self.devices for p in d.points)  # the default endpoint's

    @property
    def allow_units(self) -> dict[int, tuple[str, ...]]:
        """Unit id → the client networks it answers: the devices' ``allow``."""
        return {unit: d.allow for d in self.devices if d.allow is not None for unit in d.unit_ids}


def shared_table(layout: Layout, table: str) -> str:
    """The table that holds `table`'s addresses in `layout`: the shared layouts fold inputs into coils and registers."""
    if layout is Layout.SEPARATE:
        return table
    return {"input_registers": "holding_registers", "discrete_inputs": "coils"}.get(table, table)


def unit_id_list(unit_ids: Sequence[int]) -> str:
    return ", ".join(map(str, unit_ids))
