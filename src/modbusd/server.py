"""The Server: owns the devices and the pieces that serve them, and starts and stops the transports.

It is the one module that knows all the others, and it reads as their table of contents:

- `answers.py`: request → answer, per transport: the tables, the request hook, the gateway (`UnknownUnit`);
- `routing.py`: the gateway's routes, unit id → downstream (`TcpTarget`, `Target`, `forward.py` forwards);
- `bus.py`: serial-bus semantics (slave ids, broadcast, address change) for serial lines and RTU over TCP;
- `access.py`: typed access to data points for the owner (`locate`, `read`, `write`, `data_points`);
- `hub.py`: write subscriptions, listeners (`events.py`) and the events log (`events_log.py`);
- `admission.py`: the open connections, the connection limit and the idle time-out.

Names that lived here before those modules (`ANY_UNIT_ID`, `UnknownUnit`, `TcpTarget`, `Target`, `FORWARD_TIMEOUT`,
`FORWARD_QUEUE`, `unit_ranges`, `EVENT_QUEUE`, `Listener`, `EventsLog`, `SerialLine`) stay importable from here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modbusd.access import PointAccess
from modbusd.admission import Admission
from modbusd.answers import Answers, Hook, UnknownUnit
from modbusd.bus import (
    ANY_UNIT_ID,
    Bus,
    make_bus,
)
from modbusd.config import EVENTS_LOG_FILES, EVENTS_LOG_MAX_BYTES, HOOK_TIMEOUT, Config, import_hook
from modbusd.events import EVENT_QUEUE, Listener
from modbusd.events_log import EventsLog
from modbusd.hooks import RequestHook, Subscription, WriteEvent
from modbusd.hub import EventsHub
from modbusd.model.device import Device
from modbusd.model.points import Point
from modbusd.model.values import Order, Value, ValueType
from modbusd.protocol.codes import MIN_UNIT_ID
from modbusd.protocol.rtu import silent_intervals
from modbusd.protocol.serial_line import Framing, SerialLine
from modbusd.routing import FORWARD_QUEUE, FORWARD_TIMEOUT, Routes, Target, TcpTarget, unit_ranges
from modbusd.session import Session
from modbusd.transport.tcp import TcpConnection, read_buffer
from modbusd.transport.udp import UdpEndpoint

if TYPE_CHECKING:  # imported when a serial line is opened: pyserial is an optional dependency
    from modbusd.transport.serial import SerialConnection

__all__ = [  # what the rest of modbusd and embedding programs import from here
    "ANY_UNIT_ID", "ASCII_TIMEOUT", "EVENT_QUEUE", "FORWARD_QUEUE", "FORWARD_TIMEOUT", "EventsLog", "Listener",
    "SerialLine", "Server", "StartError", "Target", "TcpTarget", "UnknownUnit", "unit_ranges",
]  # fmt: skip

log = logging.getLogger(__name__)

_CLOSE_GRACE = 2.0  # seconds a closing connection gets to flush its responses before it is aborted

ASCII_TIMEOUT = 1.0  # Serial Line §2.5.2.1: the inter-character time-out, 1 s by default


class StartError(OSError):
    """A transport could not be started. `kind`: tcp, rtu-over-tcp, udp or serial; `target`: port or device."""

    def __init__(self, kind: str, target: int | str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.kind = kind
        self.target = target
        self.cause = cause


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

        `name`: the server's name (HSYCO's), passed to the hook and the first part of event names. `hook`: a request
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
        self._admission = Admission(max_connections, idle_timeout)
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
        self.events_log = None if events_log is None else EventsLog(
            events_log, max_bytes=events_log_max_bytes, files=events_log_files)  # fmt: skip
        self._hub = EventsHub(name, self.events_log)
        self._bus: Bus | None = None
        if self.serial_lines or rtu_over_tcp is not None:
            self._bus = make_bus(self._single, self.devices, unit_id, self._hub.observed, self._hub.write)
        self._routes = Routes(forward, local=self.devices, served=self.serial_lines, timeout=forward_timeout,
                              queue=forward_queue)  # fmt: skip
        self.downstreams = self._routes.downstreams
        self._answers = Answers(
            self._single, self.devices, unknown_unit=self.unknown_unit, routes=self._routes.routes, hub=self._hub,
            hook=None if hook is None else Hook(hook, hook_timeout, name, self._hub), bus=self._bus,
            quit_word=self.quit_word, on_quit=self._remote_quit,
        )  # fmt: skip
        self._points = PointAccess(self._single, self.devices, self.device_for)
        self._listener: asyncio.Server | None = None
        self._rtu_listener: asyncio.Server | None = None
        self._udp: UdpEndpoint | None = None
        self._serial: list[SerialConnection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: Config, *, address_register: int | None = None, **transports: Any) -> Server:
        """A server as a device file describes it, every data point holding its initial value.

        The file's transports ([server] port, udp, rtu_over_tcp, serial; a device's serial_unit_id as `unit_id`)
        are served unless `transports` (serial, unit_id, rtu_over_tcp, udp, port) replace them: each one given
        is passed on to the constructor over the file's. `address_register` turns the address change on for
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

    @property
    def unit_id(self) -> int:
        """A single device's slave id on serial lines (it changes with the address change)."""
        if self._single is None or self._bus is None:
            raise AttributeError("only a single device served on a serial line has one slave id")
        return next(iter(self._bus.units))

    # ------------------------------------------------------------------- local reads and writes (the owner's)

    def data_points(self) -> list[Point]:
        """Every named data point of every device, in unit id order then address order."""
        return self._points.data_points()

    def locate(self, point: str) -> tuple[Device, Point]:
        """A data point's name, or an address in any notation (`modbusd.model.names`) → (device, point).

        An address that is no named point gives an unnamed Point of the address's default type. Raises
        UnknownPoint for an unknown name or a unit id without a device, InvalidName for a malformed address.
        """
        return self._points.locate(point)

    def read(self, point: str, vtype: ValueType | str | None = None) -> Value:
        """The value of a data point (by name) or of any address, as its own type or as `vtype`.

        `server.read("temperature")`, `server.read("30001", "float")`. IllegalDataAddress outside the table.
        """
        return self._points.read(point, vtype)

    def write(self, point: str, value: Value, vtype: ValueType | str | None = None) -> None:
        """Store a value (or its text) at a data point or any address, every table included.

        `server.write("30001", 21.5, "float")`, `server.write("pump_on", "on")`. The read-only tables are read-only
        for clients, not for the program that owns the server (as in HSYCO's).
        """
        self._points.write(point, value, vtype)

    def counters(self) -> dict[str, object]:
        """Open connections, events (published, dropped per listener, the events log's), and each device's FC08
        counters, for monitoring."""
        units: dict[str, Device] = {"*": self._single} if self._single is not None else {
            str(u): d for u, d in sorted(self.devices.items())}  # fmt: skip
        names = ("bus_message", "bus_communication_error", "bus_exception_error", "server_message",
                 "server_no_response", "server_nak", "server_busy", "bus_character_overrun", "event_count")  # fmt: skip
        return {
            "connections": self.connection_count,
            "events": self._hub.counters(),
            "devices": {
                unit: {name: getattr(device.diagnostics, name) for name in names} | {
                    "listen_only": device.diagnostics.listen_only}
                for unit, device in units.items()
            },
        }  # fmt: skip

    @property
    def events_published(self) -> int:
        return self._hub.published

    # ---------------------------------------------------------------------------- subscriptions and events

    def subscribe(
        self, point: str, vtype: ValueType | str | None = None, *, count: int = 1, order: Order | str | None = None
    ) -> Subscription:
        """HSYCO's ``subscribe``: every client write touching these points makes events, even when the value
        does not change. Events go to every listener (`add_listener`, `events`).

        `point`: a coil (`count` consecutive coils from there, one event per coil written) or a holding register
        (one value of `vtype`: ushort, uint, ulong, short, int, long, float, double, hex or bits, in `order`);
        a name or any address notation, as `locate` takes. A named point gives its own type and order unless
        told otherwise. ``1.100.hr`` sees writes to unit id 1 only; ``100.hr`` (a device answering every unit
        id) sees every unit id's, and its events carry the unit id of the request.
        """
        device, found = self.locate(point)
        return self._hub.subscribe(device, found, vtype, count, order)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._hub.unsubscribe(subscription)

    @property
    def subscriptions(self) -> list[Subscription]:
        return self._hub.subscriptions

    def add_listener(
        self, callback: Callable[[WriteEvent], object], *, queue: int = EVENT_QUEUE, name: str | None = None
    ) -> Listener:
        """Call `callback(event)` (a function, or a coroutine function, awaited) for every event, in order, from
        a task of the server's loop, through a queue of at most `queue` events (more are dropped and counted).

        A plain function runs in the loop: keep it short, or hand the work to a thread. One that raises is
        logged and goes on getting events."""
        return self._hub.add_listener(callback, queue, name or getattr(callback, "__qualname__", repr(callback)))

    def events(self, *, queue: int = EVENT_QUEUE, name: str = "events()") -> Listener:
        """An async iterator of every event from now on: ``async for event in server.events(): …``. It ends
        once the server stops (or `close()` is called) and the queued events are taken."""
        return self._hub.add_listener(None, queue, name)

    def remove_listener(self, listener: Listener) -> None:
        """Stop delivering to `listener`: what is still queued is not delivered to a callback."""
        self._hub.remove_listener(listener)

    # -------------------------------------------------------------------------------------- connections

    @property
    def max_connections(self) -> int | None:
        return self._admission.max_connections

    @property
    def idle_timeout(self) -> float | None:
        return self._admission.idle_timeout

    @property
    def connection_count(self) -> int:
        return len(self._admission.connections)

    def open_session(self, connection: TcpConnection) -> Session:
        self._admission.admit(connection)
        return self._answers.tcp_session(connection.peer)

    def _open_rtu_session(self, connection: TcpConnection) -> Session:
        self._admission.admit(connection)
        return self._answers.rtu_session(connection.peer)

    def connection_closed(self, connection: TcpConnection) -> None:
        self._admission.closed(connection)

    def request_stop(self) -> None:
        """Make `serve_forever` return (after a clean stop). Safe to call from a signal handler."""
        if self._stopped is not None:
            self._stopped.set()

    def _remote_quit(self) -> None:
        """MBAsyncServer's remote shutdown: a client sent the quit word."""
        self.quit_requested = True
        self.request_stop()

    # -------------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Listen on every configured transport.

        Raises StartError (an OSError) naming the transport that could not start (port in use, no
        privilege, serial port missing); whatever had started by then is stopped again.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopped = asyncio.Event()
        self._hub.start(loop, self._stopped)
        try:
            for downstream in self.downstreams.values():  # before any request can come for them
                await downstream.start()
                log.info("forwarding unit%s %s to %s", "s" if len(self._routes.units_of(downstream)) > 1 else "",
                         unit_ranges(self._routes.units_of(downstream)), downstream)  # fmt: skip
            await self._start_transports(loop)
        except BaseException:
            await self.stop()
            raise
        self._admission.start(loop)

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
                    lambda: UdpEndpoint(self._answers.udp_session), local_addr=(host or "0.0.0.0", self.udp_port)
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
        connection = serial.SerialConnection(self._answers.serial_session(line), on_lost=self._serial_lost, **timing)
        try:
            await serial.open_port(connection, line.device, baudrate=line.baudrate, bytesize=line.bytesize,
                                   parity=line.parity, stopbits=line.effective_stopbits)  # fmt: skip
        except OSError as exc:
            raise StartError("serial", line.device, exc) from exc
        self._serial.append(connection)
        log.info("serving %s", line)

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
        items.extend(self._routes.describe())
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
        self._admission.stop_reaping()
        listeners = [x for x in (self._listener, self._rtu_listener) if x is not None]
        for listener in listeners:
            listener.close()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        serial_lines, self._serial = self._serial, []
        for line in serial_lines:
            line.close()
        self._admission.close_all()
        deadline = time.monotonic() + _CLOSE_GRACE
        while (self._admission.connections or not all(c.closed for c in serial_lines)) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._admission.abort_rest(_CLOSE_GRACE)
        for downstream in self.downstreams.values():  # its clients' connections are closed: nobody waits
            await downstream.stop()
        for listener in listeners:
            await listener.wait_closed()
        self._listener = self._rtu_listener = None
        await self._hub.stop()  # the last writes' events are delivered, or dropped after a grace

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
