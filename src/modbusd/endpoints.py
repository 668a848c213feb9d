"""Endpoints: more listeners in one server, each with its own host, port and devices (a plant in one process).

A `Server`'s own host, port and devices are its default endpoint, as ever. Each `Endpoint` adds one listener
(Modbus/TCP, Modbus over UDP or RTU over TCP) with devices of its own, so that fifty meters can each be "a Modbus/TCP
server at its own address or port" as the Messaging on TCP/IP Implementation Guide §3.1.3 pictures devices on a
network, while all of them are served by one loop, under the same connection limits, with the same request hook,
subscriptions, listeners and events log. An endpoint at work (`Served`) holds what the server holds for its default
devices: the devices, their answers and sessions (`answers.py`, `sessions.py`), their bus (`bus.py`, for RTU over
TCP) and the owner's typed access to their points (`access.py`); `Endpoints` holds them all and finds a point's
endpoint by its name.

Names: a point of an endpoint is ``ENDPOINT/POINT`` (``meter7/1.100.hr``, ``meter7/40001``, ``meter7/power``),
wherever a point is named (`Server.read`, `write`, `subscribe`, the control API, ``modbusd get``/``set``); a name
without ``/`` is the default endpoint's, as before. Event names put the server name in front
(``plant.meter7/1.100.hr``), and the request hook is called with ``plant/meter7`` as the server name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from modbusd.access import PointAccess, Span, split_devices
from modbusd.admission import Admission
from modbusd.answers import Answers, Hook, UnknownUnit
from modbusd.bus import Bus, make_bus
from modbusd.config import ENDPOINT_NAME, TRANSPORTS, Config, build_devices
from modbusd.durable import Durable
from modbusd.faults import Faults
from modbusd.hooks import RequestHook
from modbusd.hub import EventsHub
from modbusd.model.device import Device
from modbusd.model.points import Point, UnknownPoint
from modbusd.model.values import Order, Value, ValueType
from modbusd.ratelimit import RateLimitedLog
from modbusd.security import Security
from modbusd.session import Session
from modbusd.sessions import Sessions
from modbusd.stats import Stats
from modbusd.transport.tcp import TcpConnection
from modbusd.transports import StartError, Transports

SEPARATOR: Final = "/"  # ENDPOINT/POINT: no point name or address notation holds a slash


@dataclass(frozen=True, slots=True, eq=False)
class Endpoint:
    """One more listener of a `Server`, with devices of its own (each its own memory).

    `devices`: as `Server`'s (one Device answering every unit id, or unit id → Device; None: a blank one).
    `transport`: ``tcp`` (Modbus/TCP), ``udp`` (Modbus over UDP) or ``rtu-over-tcp``; `port` 0 picks a free one,
    read back from ``server.endpoints[name].port`` once started. `unit_id`: a single device's slave id over RTU over
    TCP (Serial Line §2.2: a bus device has one address).
    """

    name: str
    devices: Device | Mapping[int, Device] | None = None
    host: str = "0.0.0.0"
    port: int = 502
    transport: str = "tcp"
    unit_id: int = 1

    def __post_init__(self) -> None:
        if not ENDPOINT_NAME.fullmatch(self.name):
            raise ValueError(f"endpoint name {self.name!r}: start with a letter, then letters, digits, _ or - "
                             "(no dots or slashes: it is part of point and event names)")  # fmt: skip
        if self.transport not in TRANSPORTS:
            raise ValueError(
                f"endpoint {self.name}: transport {self.transport!r} is not one of {', '.join(TRANSPORTS)}"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"endpoint {self.name}: port {self.port} outside 0..65535")


@dataclass(frozen=True, slots=True)
class Wiring:
    """What every endpoint shares with the server: events, connection limits, the hook, the quit word."""

    server_name: str
    hub: EventsHub
    admission: Admission
    unknown_unit: UnknownUnit
    hook: RequestHook | None
    hook_timeout: float
    quit_word: bytes | None
    on_quit: Callable[[], None]
    serving: Callable[[], bool]
    listen_only: bool
    faults: Faults | None = None  # the server's fault rules: they apply to every endpoint's sessions too
    security: Security | None = None  # the server's access rules: its allow-list of every network endpoint
    stats: Stats | None = None  # requests per transport, for GET /metrics: every endpoint's counted with the server's
    durable: Durable | None = None  # the server's state file: every endpoint's writes are stored before answered


class Admitted:
    """The `ConnectionOwner` of one endpoint's TCP connections (the server's default endpoint's too): each is
    admitted under the server's connection limits (`Admission`), then given a session of that endpoint's `Sessions`."""

    def __init__(self, admission: Admission, sessions: Sessions) -> None:
        self._admission, self._sessions = admission, sessions

    @property
    def peer_warnings(self) -> RateLimitedLog:
        """Repeated warnings about peers (bad frames, limits): one line per peer and kind a minute."""
        return self._admission.peer_warnings

    def open_session(self, connection: TcpConnection) -> Session:
        self._admission.admit(connection)
        return self._sessions.tcp_session(connection.peer)

    def open_rtu_session(self, connection: TcpConnection) -> Session:
        self._admission.admit(connection)
        return self._sessions.rtu_session(connection.peer)

    def connection_closed(self, connection: TcpConnection) -> None:
        self._admission.closed(connection)


class Served:
    """An endpoint at work: its devices, sessions (and their answers), bus and point access, and its one listener.

    Its TCP connections are `Admitted` by the server's connection limits and get this endpoint's answers.
    """

    def __init__(self, endpoint: Endpoint, wiring: Wiring) -> None:
        self.name = endpoint.name
        self.transport = endpoint.transport
        self.single, self.devices = split_devices(endpoint.devices)
        if not wiring.listen_only:
            for device in self._distinct():
                device.diagnostics.refuse_listen_only = True
        port = endpoint.port
        self.transports = Transports(
            endpoint.host, port if endpoint.transport == "tcp" else None, serial_lines=(), serving=wiring.serving,
            rtu_over_tcp=port if endpoint.transport == "rtu-over-tcp" else None,
            udp=port if endpoint.transport == "udp" else None,
        )  # fmt: skip
        hub = wiring.hub
        self._bus: Bus | None = None
        if endpoint.transport == "rtu-over-tcp":
            write = functools.partial(hub.observe, endpoint=self.name)
            self._bus = make_bus(self.single, self.devices, endpoint.unit_id, hub.observed, write)
        hook = None
        if wiring.hook is not None:  # called with "<server>/<endpoint>" for the server's name
            named = f"{wiring.server_name}{SEPARATOR}{self.name}"
            hook = Hook(wiring.hook, wiring.hook_timeout, named, hub, endpoint=self.name)
        self._admission = wiring.admission
        self._refuse = None if wiring.security is None else wiring.security.endpoint_refuser(self.name)
        answers = Answers(self.single, self.devices, unknown_unit=wiring.unknown_unit, routes={}, hub=hub, hook=hook,
                          bus=self._bus, endpoint=self.name)  # fmt: skip
        self.sessions = Sessions(
            answers, bus=self._bus, quit_word=wiring.quit_word, on_quit=wiring.on_quit,
            warnings=wiring.admission.peer_warnings, endpoint=self.name, faults=wiring.faults, stats=wiring.stats,
            durable=wiring.durable,
        )  # fmt: skip
        self.points = PointAccess(self.single, self.devices, self.device_for)
        self.owner = Admitted(self._admission, self.sessions)

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.transport} {self.host} port {self.port}>"

    @property
    def host(self) -> str | None:
        return self.transports.host

    @property
    def port(self) -> int:
        """The port (the one bound, once started, when 0 was asked for)."""
        t = self.transports
        return t.port if t.port is not None else t.udp_port if t.udp_port is not None else t.rtu_over_tcp_port  # type: ignore[return-value]  # one is set

    @property
    def device(self) -> Device:
        """The device answering every unit id."""
        if self.single is None:
            raise AttributeError(f"endpoint {self.name} has one device per unit id: use .devices[unit_id]")
        return self.single

    def device_for(self, unit_id: int) -> Device | None:
        return self.single if self.single is not None else self.devices.get(unit_id)

    def _distinct(self) -> list[Device]:
        return [self.single] if self.single is not None else list({id(d): d for d in self.devices.values()}.values())

    # ------------------------------------------------------------------------------------ life cycle

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the listener; StartError naming this endpoint (and its host) when it cannot."""
        try:
            await self.transports.start(loop, self.owner, rtu_session=self.owner.open_rtu_session,
                                         udp_session=self.sessions.udp_session, serial_session=self._no_serial,
                                         gate=self._admission, warnings=self._admission.peer_warnings,
                                         refuser=lambda _transport: self._refuse)  # fmt: skip
        except StartError as exc:
            exc.endpoint, exc.host = self.name, self.host or "0.0.0.0"
            raise

    @staticmethod
    def _no_serial(_line: object) -> Session:
        raise AssertionError("an endpoint has no serial lines")

    def describe(self) -> str:
        """The banner's line: ``meter7: 127.0.0.1 port 5026 (unit 1)``, ``meter7: UDP on …``."""
        units = None if self._bus is None else self._bus.units
        return f"{self.name}: {', '.join(self.transports.describe(units))}{self._devices_text()}"

    def _devices_text(self) -> str:
        if self.single is not None:
            return "" if self._bus is not None else " (every unit id)"
        units = sorted(self.devices)
        return "" if self._bus is not None else f" (unit{'s' if len(units) > 1 else ''} {', '.join(map(str, units))})"

    def info(self) -> dict[str, object]:
        """``GET /endpoints``'s entry: where it listens, and its devices (unit ids, number of data points)."""
        return {"name": self.name, "transport": self.transport, "host": self.host, "port": self.port,
                "listening": self.describe().partition(": ")[2],
                "devices": devices_info(self.single, self.devices)}  # fmt: skip


def devices_info(single: Device | None, devices: Mapping[int, Device]) -> list[dict[str, object]]:
    """Each device once, with the unit ids it answers (None: every one) and how many data points it has."""
    if single is not None:
        return [{"unit_ids": None, "points": len(single.points)}]
    units: dict[int, tuple[Device, list[int]]] = {}
    for unit, device in sorted(devices.items()):
        units.setdefault(id(device), (device, []))[1].append(unit)
    return [{"unit_ids": ids, "points": len(device.points)} for device, ids in units.values()]


def own_port(devices: object, endpoints: Sequence[Endpoint], port: int | None, *others: object) -> int | None:
    """The server's own Modbus/TCP port: none when it serves only endpoints (no `devices`). ValueError then for
    its other transports (`others`: udp, rtu_over_tcp, serial), which would serve a blank device."""
    if devices is not None or not endpoints:
        return port
    if any(other not in (None, ()) for other in others):
        raise ValueError("UDP, RTU over TCP and serial lines of the server's own serve its devices, and it has none "
                         "besides its endpoints: give them devices, or make them endpoints")  # fmt: skip
    return None


class Endpoints:
    """The server's endpoints by name, and the owner's access to points across them: ``ENDPOINT/POINT`` goes to
    that endpoint's `PointAccess`, any other name to the default endpoint's (`default`, None when the server serves
    only its endpoints)."""

    def __init__(self, default: PointAccess | None, endpoints: Sequence[Endpoint], wiring: Wiring) -> None:
        self.default = default
        self.served: dict[str, Served] = {}
        taken: dict[tuple[str, str | None, int], str] = {}
        for endpoint in endpoints:
            if endpoint.name in self.served:
                raise ValueError(f"two endpoints are named {endpoint.name}: names must be unique")
            kind = "udp" if endpoint.transport == "udp" else "tcp"  # RTU over TCP is a TCP port too
            key = (kind, endpoint.host, endpoint.port)
            if endpoint.port and key in taken:
                raise ValueError(f"endpoints {taken[key]} and {endpoint.name} both listen on {endpoint.host} "
                                 f"port {endpoint.port} ({kind}): give each its own port or address")  # fmt: skip
            taken[key] = endpoint.name
            self.served[endpoint.name] = Served(endpoint, wiring)

    # ------------------------------------------------------------------------------------- names

    def split(self, point: str) -> tuple[str | None, PointAccess, str]:
        """``ENDPOINT/POINT`` → (endpoint name, its access, POINT); a name without ``/`` → the default's."""
        name, slash, rest = point.strip().partition(SEPARATOR)
        if not slash:
            if self.default is None:
                raise UnknownPoint(f"{point!r}: which endpoint? name it, as in {self._example()}/{point.strip()}")
            return None, self.default, point
        served = self.served.get(name.strip())
        if served is None:
            known = ", ".join(list(self.served)[:5]) + (", …" if len(self.served) > 5 else "")
            more = f" (endpoints: {known})" if known else " (this server has no endpoints)"
            raise UnknownPoint(f"{point!r}: no endpoint named {name.strip()!r}{more}")
        return served.name, served.points, rest

    def _example(self) -> str:
        return next(iter(self.served), "ENDPOINT")

    def endpoint_of(self, point: str) -> str | None:
        return self.split(point)[0]

    def locate(self, point: str) -> tuple[Device, Point]:
        """As `PointAccess.locate`; a named point of an endpoint comes back with its qualified name."""
        name, access, rest = self.split(point)
        device, found = access.locate(rest)
        if name is not None and found.name:
            found = dataclasses.replace(found, name=f"{name}{SEPARATOR}{found.name}")
        return device, found

    def read(self, point: str, vtype: ValueType | str | None = None, order: Order | str | None = None) -> Value:
        _, access, rest = self.split(point)
        return access.read(rest, vtype, order)

    def read_range(self, point: str, count: int, vtype: ValueType | str | None = None,
                   order: Order | str | None = None) -> Span:  # fmt: skip
        _, access, rest = self.split(point)
        return access.read_range(rest, count, vtype, order)

    def write(self, point: str, value: Value, vtype: ValueType | str | None = None,
              order: Order | str | None = None) -> None:  # fmt: skip
        _, access, rest = self.split(point)
        access.write(rest, value, vtype, order)

    def data_points(self) -> list[Point]:
        """The default endpoint's named points, then each endpoint's, named ``ENDPOINT/NAME``."""
        points = [] if self.default is None else self.default.data_points()
        for name, served in self.served.items():
            points.extend(
                dataclasses.replace(p, name=f"{name}{SEPARATOR}{p.name}") for p in served.points.data_points()
            )
        return points

    def device_counters(self) -> dict[str, dict[str, object]]:
        return {} if self.default is None else self.default.device_counters()

    def counters(self) -> dict[str, object]:
        """`Server.counters`'s ``endpoints``: each endpoint's devices' FC08 counters (nothing without endpoints)."""
        if not self.served:
            return {}
        return {"endpoints": {name: served.points.device_counters() for name, served in self.served.items()}}

    # -------------------------------------------------------------------------------- life cycle

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        for served in self.served.values():
            await served.start(loop)

    def close(self) -> None:
        for served in self.served.values():
            served.transports.close()

    async def wait_closed(self) -> None:
        for served in self.served.values():
            await served.transports.wait_closed()

    def describe(self) -> list[str]:
        return [served.describe() for served in self.served.values()]

    def info(
        self, listening: list[str], single: Device | None, devices: Mapping[int, Device]
    ) -> list[dict[str, object]]:
        """``GET /endpoints``: the default endpoint first (name null; absent when it serves nothing), then each one.
        `listening`: the default endpoint's banner items; `single`, `devices`: its devices."""
        default = {"name": None, "transport": None, "host": None, "port": None, "listening": ", ".join(listening),
                   "devices": devices_info(single, devices)}  # fmt: skip
        return ([default] if self.default is not None and listening else []) + [s.info() for s in self.served.values()]


def endpoints_from_config(config: Config) -> list[Endpoint]:
    """The device file's ``[[endpoint]]`` instances, each with freshly built devices (its own memory).

    ValueError for ``-p`` laid over a file without top-level devices: that port would serve a blank device."""
    if not config.devices and config.server.port is not None:
        raise ValueError(f"-p {config.server.port}: {config.path} serves only its [[endpoint]] tables (it has "
                         "no top-level [[device]] for the port to serve): give the port to an endpoint in the "
                         "file")  # fmt: skip
    return [Endpoint(e.name, build_devices(e.devices), host=e.host, port=e.port, transport=e.transport,
                     unit_id=e.unit_id) for e in config.endpoints]  # fmt: skip
