"""The Server: owns the devices, wires sessions to transports, and starts and stops everything.

It is the one module that knows all the others. Unit-id dispatch, connection limits, idle time-outs and
the remote quit command live here because they need the clock, the devices or the set of connections.

The gateway lives here too: unit ids forwarded to a serial line or another Modbus/TCP server (see
`forward.py`) are routed before any local device is looked up; a unit id is either forwarded or local.

Two unit-id semantics meet here. Modbus/TCP and UDP: one device answers every unit id, or one device per
unit id with a policy for the others. Serial lines (RTU, ASCII, and RTU over TCP, which carries a serial
line's frames): each device has one slave id, requests for other ids are ignored (other devices on the
bus answer them), 0 is a broadcast, and frames that fail their check are counted, never answered; those
semantics are `bus.py`'s, and the server gives every serial session the one `Bus`.

Write events are made here and handed to `events.py` (listeners, each with its own queue) and `events_log.py`
(the writer thread of the events log); both names stay importable from here, as does `ANY_UNIT_ID`.
"""

from __future__ import annotations  # annotations as strings: nested answer functions are made per connection

import asyncio
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from modbusd import handler
from modbusd.bus import (
    ANY_UNIT_ID,  # noqa: F401  (re-exported: importable from here, as before bus.py)
    Bus,
    LineErrors,
)
from modbusd.config import EVENTS_LOG_FILES, EVENTS_LOG_MAX_BYTES, HOOK_TIMEOUT, Config, import_hook
from modbusd.events import EVENT_QUEUE, Listener
from modbusd.events_log import EventsLog
from modbusd.forward import Downstream, SerialDownstream, TcpDownstream
from modbusd.hooks import (
    WRITE_FUNCTIONS,
    HookFailure,
    RequestHook,
    Subscription,
    Subscriptions,
    WriteEvent,
    check_response,
    event_record,
    make_subscription,
    write_record,
    written_range,
)
from modbusd.model.device import Device
from modbusd.model.names import parse_address
from modbusd.model.points import NAME, Point, UnknownPoint, default_type, read_at, write_at
from modbusd.model.values import Order, Value, ValueType
from modbusd.protocol.ascii import AsciiFramer
from modbusd.protocol.codes import BROADCAST_UNIT_ID, MAX_UNIT_ID, MIN_UNIT_ID, ExceptionCode
from modbusd.protocol.errors import ModbusError
from modbusd.protocol.pdu import exception_pdu
from modbusd.protocol.rtu import RtuFramer, silent_intervals
from modbusd.protocol.serial_line import Framing, SerialLine
from modbusd.session import AddressedAnswer, Answer, Session
from modbusd.transport.tcp import TcpConnection, read_buffer
from modbusd.transport.udp import UdpEndpoint

if TYPE_CHECKING:  # imported when a serial line is opened: pyserial is an optional dependency
    from modbusd.transport.serial import SerialConnection

log = logging.getLogger(__name__)

_CLOSE_GRACE = 2.0  # seconds a closing connection gets to flush its responses before it is aborted


class UnknownUnit(StrEnum):
    """What a request for a unit id without a device gets, in multi-device mode."""

    EXCEPTION = "exception"  # exception 0x0B, Gateway Target Device Failed to Respond: the client learns at once
    IGNORE = "ignore"  # no response, as a serial device that is not there; the client times out


ASCII_TIMEOUT = 1.0  # Serial Line §2.5.2.1: the inter-character time-out, 1 s by default


@dataclass(frozen=True, slots=True)
class TcpTarget:
    """A Modbus/TCP server the gateway forwards to."""

    host: str
    port: int = 502

    def __post_init__(self) -> None:
        if not 0 < self.port <= 65535:
            raise ValueError(f"port {self.port} outside 1..65535")

    def __str__(self) -> str:
        return f"TCP {self.host}:{self.port}"


Target = SerialLine | TcpTarget
"""Where the gateway forwards a unit id's requests: devices on a serial line, or a Modbus/TCP server."""

FORWARD_TIMEOUT = 1.0  # seconds a downstream device has to answer before exception 0x0B
FORWARD_QUEUE = 16  # requests that may wait for one downstream (besides the one under way) before exception 06


def unit_ranges(units: Sequence[int]) -> str:
    """[1, 2, 3, 7] → `1-3, 7`, for the banner."""
    ranges: list[list[int]] = []
    for unit in sorted(units):
        if ranges and unit == ranges[-1][1] + 1:
            ranges[-1][1] = unit
        else:
            ranges.append([unit, unit])
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


class StartError(OSError):
    """A transport could not be started. `kind`: tcp, rtu-over-tcp, udp or serial; `target`: port or device."""

    def __init__(self, kind: str, target: int | str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.kind = kind
        self.target = target
        self.cause = cause


_PASS: Final = object()  # the request hook returned None: the tables answer


async def _quiet(awaitable: Awaitable[object]) -> None:
    """A broadcast's hook answer: awaited, never sent."""
    await awaitable


class Server:
    """A Modbus server for one device (answering every unit id) or several (one per unit id).

    Use it inside a running asyncio loop (`await start()` … `await stop()`, or `async with`), or from
    plain threaded code (`start_thread()` … `stop_thread()`).
    """

    def __init__(
        self,
        devices: Device | Mapping[int, Device] | None = None,
        *,
        host: str | None = "0.0.0.0",
        port: int = 502,
        unknown_unit: UnknownUnit | str = UnknownUnit.EXCEPTION,
        max_connections: int | None = None,
        idle_timeout: float | None = None,
        quit_word: str | bytes | None = None,
        serial: SerialLine | Sequence[SerialLine] = (),
        unit_id: int = 1,
        rtu_over_tcp: int | None = None,
        udp: int | None = None,
        forward: Mapping[int, Target] | None = None,
        forward_timeout: float = FORWARD_TIMEOUT,
        forward_queue: int = FORWARD_QUEUE,
        name: str = "modbusd",
        hook: RequestHook | str | None = None,
        hook_timeout: float = HOOK_TIMEOUT,
        events_log: str | Path | None = None,
        events_log_max_bytes: int = EVENTS_LOG_MAX_BYTES,
        events_log_files: int = EVENTS_LOG_FILES,
    ) -> None:
        """`port`: Modbus/TCP's port, None for no Modbus/TCP. `serial`: serial ports to serve;
        `rtu_over_tcp`, `udp`: ports for those (0: any free one). `unit_id`: a single device's slave id on
        serial lines and RTU over TCP (with one device per unit id, each answers at its own).

        `forward`: the gateway, unit id → SerialLine or TcpTarget: requests over Modbus/TCP and UDP for those
        unit ids go there (unit 0 to a serial line: a broadcast, sent and not answered). Equal targets are one
        downstream. A forwarded unit id is never answered locally; with one device per unit id, it must not
        also be a device's. `forward_timeout`: seconds to wait for a response (then exception 0x0B);
        `forward_queue`: requests that may wait per downstream (more get exception 06).

        `name`: seed 003's server name, passed to the hook and the first part of event names. `hook`: a request
        hook (`modbusd.hooks.RequestHook`), or its "package.module:function" to import; a coroutine hook taking
        longer than `hook_timeout` seconds gets exception 04. `events_log`: a file for every client write and
        every event, one JSON line each (`EventsLog`), rotated at `events_log_max_bytes` into
        `events_log_files` files."""
        if devices is None:
            devices = Device()
        if isinstance(devices, Device):
            self._single: Device | None = devices
            self.devices: dict[int, Device] = {}
        else:
            for unit in devices:
                if not 0 <= unit <= 255:
                    raise ValueError(f"unit id {unit} outside 0..255")
            self._single = None
            self.devices = dict(devices)
        self.host = host
        self.port = port
        self.unknown_unit = UnknownUnit(unknown_unit)
        if max_connections is not None and max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.quit_word = quit_word.encode() if isinstance(quit_word, str) else quit_word
        self.quit_requested = False
        self.serial_lines = (serial,) if isinstance(serial, SerialLine) else tuple(serial)
        self.rtu_over_tcp_port = rtu_over_tcp
        self.udp_port = udp
        self.name = name
        if isinstance(hook, str):
            hook = import_hook(hook)  # type: ignore[assignment]  # a callable; what it returns is checked per request
        if hook_timeout <= 0:
            raise ValueError("hook_timeout must be greater than 0")
        self.hook: RequestHook | None = hook
        self.hook_timeout = hook_timeout
        # Write function codes whose requests are observed (events, the events log): empty while nothing
        # observes, so that a request costs one set lookup more than without any of this.
        self._observed: set[int] = set()
        self._subscriptions = Subscriptions()
        self._listeners: list[Listener] = []
        self._request_ids = itertools.count(1)
        self.events_published = 0
        self.events_log = None if events_log is None else EventsLog(
            events_log, max_bytes=events_log_max_bytes, files=events_log_files)  # fmt: skip
        self._update_observed()
        if self.serial_lines or rtu_over_tcp is not None:
            self._bus: Bus | None = self._make_bus(unit_id)
        else:
            self._bus = None
        self.downstreams: dict[Target, Downstream] = {}
        self._routes: dict[int, Downstream] = {}
        if forward:
            self._make_routes(forward, forward_timeout, forward_queue)
        self._answer = self._make_answer()
        self._connections: set[TcpConnection] = set()
        self._listener: asyncio.Server | None = None
        self._rtu_listener: asyncio.Server | None = None
        self._udp: UdpEndpoint | None = None
        self._serial: list[SerialConnection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: Config, *, address_register: int | None = None, **transports: Any) -> Server:
        """A server as a device file describes it, every data point holding its initial value.

        The file's transports ([server] port, udp, rtu_over_tcp, serial; a device's serial_unit_id as `unit_id`)
        are served unless `transports` (serial, unit_id, rtu_over_tcp, udp, port) replace them: each one given
        is passed on to the constructor over the file's. `address_register` turns seed 002's address change on for
        every device, over the file's per-device address_register.
        """
        s = config.server
        devices = config.build_devices()
        if address_register is not None:
            for device in [devices] if isinstance(devices, Device) else devices.values():
                device.set_address_register(address_register)
        options: dict[str, Any] = {
            "host": s.host, "port": s.port, "unknown_unit": s.unknown_unit, "max_connections": s.max_connections,
            "idle_timeout": s.idle_timeout, "quit_word": s.quit_command, "serial": s.serial,
            "rtu_over_tcp": s.rtu_over_tcp, "udp": s.udp,
            "unit_id": config.devices[0].serial_unit_id or MIN_UNIT_ID,
            "name": s.name, "hook": s.hook, "hook_timeout": s.hook_timeout, "events_log": s.eventslog,
            "events_log_max_bytes": s.eventslog_max_bytes, "events_log_files": s.eventslog_files,
        }  # fmt: skip
        return cls(devices, **(options | transports))

    # ------------------------------------------------------------------------------------------ devices

    @property
    def device(self) -> Device:
        """The device in single-device mode."""
        if self._single is None:
            raise AttributeError("this server has one device per unit id: use server.devices[unit_id]")
        return self._single

    def device_for(self, unit_id: int) -> Device | None:
        return self._single if self._single is not None else self.devices.get(unit_id)

    def _make_routes(self, forward: Mapping[int, Target], timeout: float, queue: int) -> None:
        served = {line.device for line in self.serial_lines}
        for unit, target in forward.items():
            if not 0 <= unit <= 255:
                raise ValueError(f"forwarded unit id {unit} outside 0..255")
            if unit in self.devices:
                raise ValueError(f"unit id {unit} is both a local device and forwarded: choose one")
            if isinstance(target, SerialLine):
                if unit > MAX_UNIT_ID:
                    raise ValueError(f"unit id {unit} forwarded to {target.device}: slave ids are 0..247")
                if target.device in served:
                    raise ValueError(f"{target.device} is both served and forwarded to: a line has one master")
            downstream = self.downstreams.get(target)
            if downstream is None:
                downstream = self.downstreams[target] = self._make_downstream(target, timeout, queue)
            self._routes[unit] = downstream

    @staticmethod
    def _make_downstream(target: Target, timeout: float, queue: int) -> Downstream:
        if isinstance(target, TcpTarget):
            return TcpDownstream(target.host, target.port, timeout=timeout, queue_limit=queue)
        return SerialDownstream(
            target.device, framing=target.framing, baudrate=target.baudrate, bytesize=target.bytesize,
            parity=target.parity, stopbits=target.effective_stopbits, timeout=timeout, queue_limit=queue,
        )  # fmt: skip

    def _make_answer(self) -> Answer:
        local = self._make_local_answer()
        routes = self._routes
        if not routes:
            return local

        def gateway(unit_id: int, pdu: bytes) -> bytes | Awaitable[bytes | None] | None:
            downstream = routes.get(unit_id)
            if downstream is None:
                return local(unit_id, pdu)
            return downstream.forward(unit_id, pdu)  # a future: the session holds its place in line

        return gateway

    def _make_local_answer(self) -> Answer:
        single = self._single
        respond = handler.respond
        if single is not None:
            return lambda _unit_id, pdu: respond(single, pdu)  # TCP guide: a direct device ignores the unit id
        devices = self.devices
        silent = self.unknown_unit is UnknownUnit.IGNORE
        gateway_failure = ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND

        def answer(unit_id: int, pdu: bytes) -> bytes | None:
            device = devices.get(unit_id)
            if device is not None:
                return respond(device, pdu)
            log.debug("no device for unit id %d", unit_id)
            return None if silent else exception_pdu(pdu[0], gateway_failure)

        return answer

    @property
    def unit_id(self) -> int:
        """A single device's slave id on serial lines (it changes with seed 002's address change)."""
        if self._single is None or self._bus is None:
            raise AttributeError("only a single device served on a serial line has one slave id")
        return next(iter(self._bus.units))

    def _make_bus(self, unit_id: int) -> Bus:
        if self._single is not None:
            if not MIN_UNIT_ID <= unit_id <= MAX_UNIT_ID:
                raise ValueError(f"unit id {unit_id} outside 1..247, the slave ids of a serial line")
            units = {unit_id: self._single}
        else:
            bad = [u for u in self.devices if not MIN_UNIT_ID <= u <= MAX_UNIT_ID]
            if bad:
                raise ValueError(f"unit ids {bad} outside 1..247, the slave ids of a serial line")
            units = self.devices  # the same dict: an address change moves the device for TCP too
        for unit, device in units.items():
            if device.address_register is not None:  # the register reads back the address
                device.holding_registers.write(device.address_register, unit.to_bytes(2, "big"))
        return Bus(units, self._observed, self._write)

    # ------------------------------------------------------------------- local reads and writes (the owner's)

    def data_points(self) -> list[Point]:
        """Every named data point of every device, in unit id order then address order."""
        devices = [self._single] if self._single is not None else [self.devices[u] for u in sorted(self.devices)]
        seen: set[int] = set()
        points: list[Point] = []
        for device in devices:
            if id(device) not in seen:  # one device may serve several unit ids
                seen.add(id(device))
                points.extend(sorted(device.points.values(), key=lambda p: (p.location.table, p.location.address)))
        return points

    def locate(self, point: str) -> tuple[Device, Point]:
        """A data point's name, or an address in any notation (`modbusd.model.names`) → (device, point).

        An address that is no named point gives an unnamed Point of the address's default type. Raises
        UnknownPoint for an unknown name or a unit id without a device, InvalidName for a malformed address.
        """
        text = point.strip()
        if NAME.fullmatch(text):  # a dict look-up per device, in unit id order: listing every point stays linear
            devices = [self._single] if self._single is not None else [self.devices[u] for u in sorted(self.devices)]
            for candidate in (d.points.get(text) for d in devices):
                if candidate is not None:
                    unit_id = candidate.location.unit_id
                    device = self._single if unit_id is None else self.device_for(unit_id)
                    assert device is not None
                    return device, candidate
            raise UnknownPoint(f"no data point named {text!r}")
        location = parse_address(text)
        if self._single is not None:
            device = self._single
        elif location.unit_id is None:
            if len(self.devices) != 1:
                raise UnknownPoint(f"{text!r}: which device? name the unit id, as in 1.{text}")
            device = next(iter(self.devices.values()))
        else:
            found = self.devices.get(location.unit_id)
            if found is None:
                raise UnknownPoint(f"{text!r}: no device has unit id {location.unit_id}")
            device = found
        where = (location.table, location.address, location.bit)
        for candidate in device.points.values():
            if (candidate.location.table, candidate.location.address, candidate.location.bit) == where:
                return device, candidate
        return device, Point("", location, default_type(location))

    def read(self, point: str, vtype: ValueType | str | None = None) -> Value:
        """The value of a data point (by name) or of any address, as its own type or as `vtype`.

        `server.read("temperature")`, `server.read("30001", "float")`. IllegalDataAddress outside the table.
        """
        device, found = self.locate(point)
        chosen = found.type if vtype is None else ValueType.parse(vtype) if isinstance(vtype, str) else vtype
        return read_at(device, found.location, chosen, found.order)

    def write(self, point: str, value: Value, vtype: ValueType | str | None = None) -> None:
        """Store a value (or its text) at a data point or any address, every table included.

        `server.write("30001", 21.5, "float")`, `server.write("pump_on", "on")`. The read-only tables are read-only
        for clients, not for the program that owns the server (seed 003).
        """
        device, found = self.locate(point)
        chosen = found.type if vtype is None else ValueType.parse(vtype) if isinstance(vtype, str) else vtype
        write_at(device, found.location, chosen, value, found.order)

    def counters(self) -> dict[str, object]:
        """Open connections, events (published, dropped per listener, the events log's), and each device's FC08
        counters, for monitoring."""
        units: dict[str, Device] = {"*": self._single} if self._single is not None else {
            str(u): d for u, d in sorted(self.devices.items())}  # fmt: skip
        names = ("bus_message", "bus_communication_error", "bus_exception_error", "server_message",
                 "server_no_response", "server_nak", "server_busy", "bus_character_overrun", "event_count")  # fmt: skip
        return {
            "connections": self.connection_count,
            "events": self._events_counters(),
            "devices": {
                unit: {name: getattr(device.diagnostics, name) for name in names} | {
                    "listen_only": device.diagnostics.listen_only}
                for unit, device in units.items()
            },
        }  # fmt: skip

    def _events_counters(self) -> dict[str, object]:
        listeners = self._listeners
        counters: dict[str, object] = {
            "subscriptions": len(self._subscriptions),
            "published": self.events_published,
            "dropped": sum(x.dropped for x in listeners),
            "listeners": [{"name": x.name, "queued": len(x.queue), "delivered": x.delivered, "dropped": x.dropped,
                           "failures": x.failures} for x in listeners],
        }  # fmt: skip
        if self.events_log is not None:
            counters["log"] = self.events_log.counters()
        return counters

    def _discarded(self, unit_id: int) -> None:
        device = self.device_for(unit_id)
        if device is not None:
            handler.discarded(device)

    # -------------------------------------------------------------------------------------- connections

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def open_session(self, connection: TcpConnection) -> Session:
        self._admit(connection)
        return Session(
            self._session_answer(connection.peer), peer=connection.peer, discard=self._discarded,
            quit_word=self.quit_word, on_quit=self._remote_quit,
        )  # fmt: skip

    def _open_rtu_session(self, connection: TcpConnection) -> Session:
        """RTU over TCP: a serial line's frames and unit-id rules, without its silences (so: resync)."""
        self._admit(connection)
        assert self._bus is not None
        bus, peer = self._bus, connection.peer
        errors = LineErrors(f"RTU over TCP from {peer}", bus)
        answer = self._hook_addressed(peer, lambda unit_id, pdu: bus.answer(unit_id, pdu, peer))
        return Session(answer, framer=RtuFramer(resync=True, on_discard=errors), addressed=True,
                       peer=peer, quit_word=self.quit_word, on_quit=self._remote_quit)  # fmt: skip

    def _udp_session(self, peer: str) -> Session:
        return Session(self._session_answer(peer), peer=peer, discard=self._discarded)

    def _serial_session(self, line: SerialLine) -> Session:
        assert self._bus is not None
        bus, peer = self._bus, line.device
        errors = LineErrors(line.device, bus)
        if line.framing is Framing.RTU:
            answer = self._hook_addressed(peer, lambda unit_id, pdu: bus.answer(unit_id, pdu, peer))
            return Session(answer, framer=RtuFramer(on_discard=errors), addressed=True, peer=peer)
        framer = AsciiFramer(on_discard=errors)

        def ascii_answer(unit_id: int, pdu: bytes) -> tuple[int, bytes] | None:
            found = bus.answer_from(unit_id, pdu, peer)
            if found is None:
                return None
            device, from_unit, reply = found
            framer.change_delimiter(device.diagnostics.ascii_delimiter)  # FC08/03, from the next frame on
            return from_unit, reply

        return Session(self._hook_addressed(peer, ascii_answer), framer=framer, addressed=True, peer=peer)

    # ------------------------------------------------------------------------ hooks, writes and events

    def _session_answer(self, peer: str) -> Answer:
        """The answer function of one Modbus/TCP connection or UDP datagram from `peer`.

        Without a hook it costs one set lookup more than the tables' own answer: a write is observed (events,
        the events log) only while `_observed` holds its function code.
        """
        # One function per connection: its context travels in default arguments, one tuple, rather than in
        # a closure's cells, one object each (memory per idle connection).
        single = self._single
        if single is not None and not self._routes:

            def tables(  # noqa: PLR0917  (defaults, not a calling convention: callers pass two)
                unit_id: int, pdu: bytes, observed: set[int] = self._observed,
                write: Callable[[int, bytes, str], object] = self._write_local,
                respond: Callable[[Device, bytes], bytes | None] = handler.respond,
                device: Device = single, peer: str = peer,
            ) -> bytes | Awaitable[bytes | None] | None:  # fmt: skip
                if pdu[0] in observed:
                    return write(unit_id, pdu, peer)
                return respond(device, pdu)  # TCP guide: a direct device ignores the unit id
        else:

            def tables(  # noqa: PLR0917  (as above)
                unit_id: int, pdu: bytes, observed: set[int] = self._observed,
                write: Callable[[int, bytes, str], object] = self._write_local,
                base: Answer = self._answer, peer: str = peer,
            ) -> bytes | Awaitable[bytes | None] | None:  # fmt: skip
                if pdu[0] in observed:
                    return write(unit_id, pdu, peer)
                return base(unit_id, pdu)

        if self.hook is None:
            return tables
        hooked = self._hooked

        def answer(unit_id: int, pdu: bytes) -> bytes | Awaitable[bytes | None] | None:
            result = hooked(peer, unit_id, pdu, tables)
            return tables(unit_id, pdu) if result is _PASS else result  # type: ignore[return-value]  # not _PASS

        return answer

    def _hook_addressed(self, peer: str, tables: AddressedAnswer) -> AddressedAnswer:
        """A serial line's (or RTU over TCP's) answer with the request hook in front, for the bus's own unit ids
        and broadcasts (a request for another slave id is the other device's to answer, not the hook's)."""
        if self.hook is None:
            return tables
        assert self._bus is not None
        units = self._bus.units
        hooked = self._hooked

        def pdu_only(unit_id: int, pdu: bytes) -> bytes | None:
            found = tables(unit_id, pdu)
            return None if found is None else found[1]  # type: ignore[index]  # the bus answers at once

        def answer(unit_id: int, pdu: bytes) -> tuple[int, bytes] | Awaitable[bytes | None] | None:
            if unit_id != BROADCAST_UNIT_ID and unit_id not in units:
                return tables(unit_id, pdu)
            result = hooked(peer, unit_id, pdu, pdu_only)
            if result is _PASS:
                return tables(unit_id, pdu)
            if result is None:
                return None
            if result.__class__ is bytes:
                return None if unit_id == BROADCAST_UNIT_ID else (unit_id, result)  # type: ignore[return-value]
            return _quiet(result) if unit_id == BROADCAST_UNIT_ID else result  # type: ignore[arg-type,return-value]

        return answer

    def _hooked(
        self, peer: str, unit_id: int, pdu: bytes, tables: Callable[[int, bytes], object]
    ) -> bytes | Awaitable[bytes | None] | object:
        """The hook's answer: a checked response, an awaitable of one, or _PASS when the tables answer."""
        try:
            result = self.hook(self.name, peer, unit_id, pdu)  # type: ignore[misc]  # set, or we are not called
        except ModbusError as exc:  # a deliberate exception response
            reply = exception_pdu(pdu[0], exc.code)
        except Exception as exc:
            reply = self._hook_failed(peer, pdu, f"raised {type(exc).__name__}: {exc}")
        else:
            if result is None:
                return _PASS
            if result.__class__ is not bytes and inspect.isawaitable(result):
                return self._await_hook(result, peer, unit_id, pdu, tables)
            reply = self._checked(peer, pdu, result)
        self._log_hooked(peer, unit_id, pdu, reply)
        return reply

    async def _await_hook(
        self, awaitable: Awaitable[object], peer: str, unit_id: int, pdu: bytes, tables: Callable[[int, bytes], object]
    ) -> bytes | None:
        try:
            result = await asyncio.wait_for(awaitable, self.hook_timeout)
        except ModbusError as exc:
            reply = exception_pdu(pdu[0], exc.code)
        except TimeoutError:
            reply = self._hook_failed(peer, pdu, f"took longer than {self.hook_timeout:g} s")
        except Exception as exc:
            reply = self._hook_failed(peer, pdu, f"raised {type(exc).__name__}: {exc}")
        else:
            if result is None:  # the tables answer, now: in this connection's order, after the hook
                answered = tables(unit_id, pdu)
                if inspect.isawaitable(answered):  # the gateway
                    answered = await answered
                return answered  # type: ignore[return-value]  # a response PDU or None
            reply = self._checked(peer, pdu, result)
        self._log_hooked(peer, unit_id, pdu, reply)
        return reply

    def _checked(self, peer: str, pdu: bytes, result: object) -> bytes:
        """The hook's own response, if it is a sane one for `pdu`; exception 04 otherwise."""
        try:
            return check_response(pdu, result)
        except HookFailure as exc:
            return self._hook_failed(peer, pdu, str(exc))

    def _hook_failed(self, peer: str, pdu: bytes, reason: str) -> bytes:
        log.error("request hook %s on %s from %s; answered with exception 04", reason, pdu.hex(" "), peer)
        return exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)

    def _log_hooked(self, peer: str, unit_id: int, pdu: bytes, reply: bytes) -> None:
        """A write the hook answered (the tables were not touched) still goes to the events log."""
        if self.events_log is not None and pdu[0] in WRITE_FUNCTIONS:
            self.events_log.put(write_record(pdu, reply, time=time.time(), client=peer, unit_id=unit_id,
                                             request_id=next(self._request_ids), by="hook"))  # fmt: skip

    def _write_local(self, unit_id: int, pdu: bytes, peer: str) -> bytes | Awaitable[bytes | None] | None:
        """A write request over Modbus/TCP or UDP while writes are observed."""
        if unit_id in self._routes:  # forwarded: the downstream device's write, and its business
            return self._answer(unit_id, pdu)
        device = self.device_for(unit_id)
        if device is None:  # no device has this unit id: exception 0x0B (logged) or silence, as ever
            reply = self._answer(unit_id, pdu)
            if self.events_log is not None:
                self.events_log.put(write_record(pdu, reply, time=time.time(), client=peer, unit_id=unit_id,
                                                 request_id=next(self._request_ids)))  # type: ignore[arg-type]  # no device: at once  # fmt: skip
            return reply
        return self._write(device, unit_id, pdu, peer, False)

    def _write(self, device: Device, unit_id: int, pdu: bytes, peer: str, broadcast: bool) -> bytes | None:
        """Carry out a write request on `device`, with its events and its line in the events log.

        The subscribed points it touches are read before and after (only those, and only when there are any).
        """
        found = written_range(pdu)
        touched = self._subscriptions.touched(device, unit_id, *found, broadcast=broadcast) if found and len(
            self._subscriptions) else []  # fmt: skip
        before = [subscription.capture() for subscription in touched]
        reply = handler.respond(device, pdu, broadcast=broadcast, answer_broadcast=True)
        request_id = next(self._request_ids)
        now = time.time()
        if self.events_log is not None:
            self.events_log.put(write_record(pdu, reply, time=now, client=peer, unit_id=unit_id,
                                             request_id=request_id, broadcast=broadcast))  # fmt: skip
        if touched and reply is not None and not reply[0] & 0x80:
            assert found is not None
            events: list[WriteEvent] = []
            for subscription, old in zip(touched, before, strict=True):
                events.extend(subscription.events(
                    old, subscription.capture(), found[1:], server=self.name, unit_id=unit_id, client=peer,
                    time=now, request_id=request_id, function=pdu[0]))  # fmt: skip
            self._publish(events)
        return None if broadcast else reply

    def _publish(self, events: list[WriteEvent]) -> None:
        self.events_published += len(events)
        events_log = self.events_log
        for event in events:
            if events_log is not None:
                events_log.put(event_record(event))
            for listener in self._listeners:
                listener._push(event)

    def _update_observed(self) -> None:
        if len(self._subscriptions) or self.events_log is not None:
            self._observed.update(WRITE_FUNCTIONS)
        else:
            self._observed.clear()

    def subscribe(
        self, point: str, vtype: ValueType | str | None = None, *, count: int = 1, order: Order | str | None = None
    ) -> Subscription:
        """Seed 003's ``subscribe``: every client write touching these points makes events, even when the value
        does not change. Events go to every listener (`add_listener`, `events`).

        `point`: a coil (`count` consecutive coils from there, one event per coil written) or a holding register
        (one value of `vtype`: ushort, uint, ulong, short, int, long, float, double, hex or bits, in `order`);
        a name or any address notation, as `locate` takes. A named point gives its own type and order unless
        told otherwise. ``1.100.hr`` sees writes to unit id 1 only; ``100.hr`` (a device answering every unit
        id) sees every unit id's, and its events carry the unit id of the request.
        """
        device, found = self.locate(point)
        location = found.location
        chosen: ValueType | str | None = vtype
        if chosen is None and found.name and not location.table.is_bits:
            chosen = found.type
        if order is None:
            order = found.order if found.name else Order.ABCD
        subscription = make_subscription(device, location, chosen, count=count, order=order)
        self._subscriptions.add(subscription)
        self._update_observed()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)
        self._update_observed()

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)

    def add_listener(
        self, callback: Callable[[WriteEvent], object], *, queue: int = EVENT_QUEUE, name: str | None = None
    ) -> Listener:
        """Call `callback(event)` (a function, or a coroutine function, awaited) for every event, in order, from
        a task of the server's loop, through a queue of at most `queue` events (more are dropped and counted).

        A plain function runs in the loop: keep it short, or hand the work to a thread. One that raises is
        logged and goes on getting events."""
        listener = Listener(self, callback, queue, name or getattr(callback, "__qualname__", repr(callback)))
        self._add(listener)
        return listener

    def events(self, *, queue: int = EVENT_QUEUE, name: str = "events()") -> Listener:
        """An async iterator of every event from now on: ``async for event in server.events(): …``. It ends
        once the server stops (or `close()` is called) and the queued events are taken."""
        listener = Listener(self, None, queue, name)
        self._add(listener)
        return listener

    def _add(self, listener: Listener) -> None:
        self._listeners = [*self._listeners, listener]
        loop = self._loop
        if loop is not None and self._stopped is not None and not self._stopped.is_set():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                listener._start()
            else:
                loop.call_soon_threadsafe(listener._start)

    def remove_listener(self, listener: Listener) -> None:
        """Stop delivering to `listener`: what is still queued is not delivered to a callback."""
        self._listeners = [x for x in self._listeners if x is not listener]
        listener.closed = True
        task, listener._task = listener._task, None
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(listener._ready.set)
            if task is not None:
                loop.call_soon_threadsafe(task.cancel)

    def _admit(self, connection: TcpConnection) -> None:
        if self.max_connections is not None and len(self._connections) >= self.max_connections:
            oldest = min(self._connections, key=lambda c: c.last_active)
            log.warning(
                "connection limit %d reached: closing the longest unused connection, from %s",
                self.max_connections, oldest.peer,
            )  # fmt: skip
            self._connections.discard(oldest)  # TCP guide §4.2.1: close the oldest unused connection
            oldest.close()
        self._connections.add(connection)

    def connection_closed(self, connection: TcpConnection) -> None:
        self._connections.discard(connection)

    def request_stop(self) -> None:
        """Make `serve_forever` return (after a clean stop). Safe to call from a signal handler."""
        if self._stopped is not None:
            self._stopped.set()

    def _remote_quit(self) -> None:
        """Seed 000's remote shutdown: a client sent the quit word."""
        self.quit_requested = True
        self.request_stop()

    async def _reap_idle(self, timeout: float) -> None:
        while True:
            await asyncio.sleep(min(timeout / 2, 1.0))
            now = time.monotonic()
            for connection in [c for c in self._connections if now - c.last_active > timeout]:
                log.info("closing %s: idle for more than %g s", connection.peer, timeout)
                connection.close()

    # -------------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Listen on every configured transport.

        Raises StartError (an OSError) naming the transport that could not start (port in use, no
        privilege, serial port missing); whatever had started by then is stopped again.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopped = asyncio.Event()
        if self.events_log is not None:
            self.events_log.start()  # an unwritable file is reported, and the server goes on
        for listener in self._listeners:
            listener._start()
        try:
            for downstream in self.downstreams.values():  # before any request can come for them
                await downstream.start()
                log.info("forwarding unit%s %s to %s", "s" if len(self._units_of(downstream)) > 1 else "",
                         unit_ranges(self._units_of(downstream)), downstream)  # fmt: skip
            await self._start_transports(loop)
        except BaseException:
            await self.stop()
            raise
        if self.idle_timeout:
            self._reaper = loop.create_task(self._reap_idle(self.idle_timeout))

    async def _start_transports(self, loop: asyncio.AbstractEventLoop) -> None:
        buffer = read_buffer()
        host = self.host or None
        if self.port is not None:
            try:
                self._listener = await loop.create_server(
                    lambda: TcpConnection(self, buffer), host, self.port, reuse_address=True, backlog=1024
                )
            except OSError as exc:
                raise StartError("tcp", self.port, exc) from exc
            self.port = self._listener.sockets[0].getsockname()[1]
            log.info("listening on %s port %d (Modbus/TCP)", self.host or "*", self.port)
        if self.rtu_over_tcp_port is not None:
            try:
                self._rtu_listener = await loop.create_server(
                    lambda: TcpConnection(self, buffer, self._open_rtu_session), host, self.rtu_over_tcp_port,
                    reuse_address=True,
                )  # fmt: skip
            except OSError as exc:
                raise StartError("rtu-over-tcp", self.rtu_over_tcp_port, exc) from exc
            self.rtu_over_tcp_port = self._rtu_listener.sockets[0].getsockname()[1]
            log.info("listening on %s port %d (RTU over TCP)", self.host or "*", self.rtu_over_tcp_port)
        if self.udp_port is not None:
            try:
                transport, endpoint = await loop.create_datagram_endpoint(
                    lambda: UdpEndpoint(self._udp_session), local_addr=(host or "0.0.0.0", self.udp_port)
                )
            except OSError as exc:
                raise StartError("udp", self.udp_port, exc) from exc
            self._udp = endpoint
            self.udp_port = transport.get_extra_info("sockname")[1]
            log.info("listening on %s port %d (Modbus over UDP)", self.host or "*", self.udp_port)
        for line in self.serial_lines:
            await self._open_serial(line)

    async def _open_serial(self, line: SerialLine) -> None:
        try:
            from modbusd.transport import serial
        except ImportError as exc:  # the `serial` extra is not installed
            raise ImportError(
                f"serial lines need pyserial-asyncio-fast ({exc.name} is missing): pip install 'modbusd[serial]'"
            ) from exc
        if line.framing is Framing.RTU:
            gap, end = silent_intervals(line.baudrate)
            timing: dict[str, float] = {"gap_after": gap, "end_after": end}
        else:
            timing = {"end_after": ASCII_TIMEOUT}
        connection = serial.SerialConnection(self._serial_session(line), on_lost=self._serial_lost, **timing)
        try:
            await serial.open_port(connection, line.device, baudrate=line.baudrate, bytesize=line.bytesize,
                                   parity=line.parity, stopbits=line.effective_stopbits)  # fmt: skip
        except OSError as exc:
            raise StartError("serial", line.device, exc) from exc
        self._serial.append(connection)
        log.info("serving %s", line)

    def _units_of(self, downstream: Downstream) -> list[int]:
        return [unit for unit, to in self._routes.items() if to is downstream]

    def _serial_lost(self, connection: SerialConnection, exc: Exception | None) -> None:
        if connection in self._serial and self._stopped is not None and not self._stopped.is_set():
            log.error("serial port %s closed: %s; no longer served", connection, exc or "end of file")

    def listening(self) -> list[str]:
        """What this server serves, one item per transport, for the banner: `0.0.0.0 port 502` for
        Modbus/TCP, then `RTU on /dev/ttyUSB0 (19200 8E1, unit 1)`, `UDP on 0.0.0.0 port 5021` …"""
        host = self.host or "*"
        items = []
        if self.port is not None:
            items.append(f"{host} port {self.port}")
        if self._bus is not None:
            units = ", ".join(str(unit) for unit in sorted(self._bus.units))
            which = f"unit{'s' if len(self._bus.units) > 1 else ''} {units}"
            for line in self.serial_lines:
                items.append(f"{line.framing.upper()} on {line.device} ({line.settings}, {which})")
            if self.rtu_over_tcp_port is not None:
                items.append(f"RTU over TCP on {host} port {self.rtu_over_tcp_port} ({which})")
        if self.udp_port is not None:
            items.append(f"UDP on {host} port {self.udp_port}")
        for target, downstream in self.downstreams.items():
            units = self._units_of(downstream)
            detail = f" ({target.settings})" if isinstance(target, SerialLine) else ""
            which = f"unit{'s' if len(units) > 1 else ''} {unit_ranges(units)}"
            items.append(f"gateway for {which} to {downstream}{detail}")
        return items

    async def serve_forever(self) -> None:
        """Start (if not started) and serve until `stop()` or the quit command."""
        if self._stopped is None or self._stopped.is_set():
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop accepting, let every connection send what it already owes, then close it."""
        if self._stopped is not None:
            self._stopped.set()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        listeners = [x for x in (self._listener, self._rtu_listener) if x is not None]
        for listener in listeners:
            listener.close()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        serial_lines, self._serial = self._serial, []
        for line in serial_lines:
            line.close()
        for connection in list(self._connections):
            connection.close()
        deadline = time.monotonic() + _CLOSE_GRACE
        while (self._connections or not all(c.closed for c in serial_lines)) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._connections):  # a peer that never reads its responses cannot hold us up
            log.warning("%s did not take its last responses in %g s; dropping the connection", connection.peer,
                        _CLOSE_GRACE)  # fmt: skip
            connection.abort()
        for downstream in self.downstreams.values():  # its clients' connections are closed: nobody waits
            await downstream.stop()
        for listener in listeners:
            await listener.wait_closed()
        self._listener = self._rtu_listener = None
        for subscriber in self._listeners:  # the last writes' events are delivered, or dropped after a grace
            await subscriber._stop()
        if self.events_log is not None:
            await asyncio.to_thread(self.events_log.close)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------------- thread helpers

    def start_thread(self, *, timeout: float = 10.0) -> None:
        """Serve from a background thread with its own event loop; returns once listening.

        Tables may then be read and written from the calling thread: each table operation is one
        bytearray slice, which the GIL keeps whole.
        """
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            async def main() -> None:
                try:
                    await self.start()
                except BaseException as exc:  # handed to the caller of start_thread
                    failure.append(exc)
                    ready.set()
                    return
                ready.set()
                await self.serve_forever()

            asyncio.run(main())

        self._thread = threading.Thread(target=run, name="modbusd", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the server did not start in time")
        if failure:
            self._thread.join()
            raise failure[0]

    def stop_thread(self, *, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)
        self._thread = None
