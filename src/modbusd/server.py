"""The Server: owns the devices and the pieces that serve them, and starts and stops the transports.

It is the one module that knows all the others, and it reads as their table of contents:

- `answers.py`: request → answer: the tables, the request hook, the gateway (`UnknownUnit`);
- `sessions.py`: each transport's sessions around those answers (access rules, state file, fault rules);
- `routing.py`: the gateway's routes, unit id → downstream (`TcpTarget`, `Target`, `forward.py` forwards);
- `bus.py`: serial-bus semantics (slave ids, broadcast, address change) for serial lines and RTU over TCP;
- `access.py`: typed access to data points for the owner (`locate`, `read`, `write`, `data_points`);
- `hub.py`: write subscriptions, listeners (`events.py`) and the events log (`events_log.py`);
- `admission.py`: the open connections, the connection limit and the idle time-out;
- `transports.py`: the listeners (Modbus/TCP, RTU over TCP, UDP, serial lines), opened and closed together;
- `endpoints.py`: more listeners, each with devices of its own (``ENDPOINT/POINT`` names their points);
- `runner.py`: serving from a thread of its own, for programs without an event loop.
- `durable.py`: the state file (`state.py`, `state_store.py`): written values kept, responses held until stored.

Names that lived here before those modules (`ANY_UNIT_ID`, `UnknownUnit`, `TcpTarget`, `Target`, `FORWARD_TIMEOUT`,
`FORWARD_QUEUE`, `FORWARD_IN_FLIGHT`, `unit_ranges`, `EVENT_QUEUE`, `Listener`, `EventsLog`, `SerialLine`, `StartError`,
`ASCII_TIMEOUT`) stay importable from here.

Longer than the ~400 lines a module should be (about 580) for the reason the Server class gives: the class is
nearly all of it, and what else is here is the imports and re-exports above. Splitting the public API over
mixins or a second module to shorten it would spread one class's methods over several files; every piece of work
has already moved out (the list above), and `from_config`'s mapping of the file onto the constructor's arguments
stays beside the constructor it fills in (``config`` may not import this module). The constructor's wiring stays
too: most of its lines set the public attributes a program reads (`state`, `faults`, `stats`, `simulator`,
`downstreams` …), in the order the pieces need each other, and a builder would hand each back to be set here.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modbusd.access import PointAccess, Span, split_devices
from modbusd.admission import FRAME_TIMEOUT, WRITE_TIMEOUT, Admission
from modbusd.answers import Answers, Hook, UnknownUnit
from modbusd.authorize import Roles
from modbusd.bus import ANY_UNIT_ID, Bus, make_bus
from modbusd.config import EVENTS_LOG_FILES, EVENTS_LOG_MAX_BYTES, HOOK_TIMEOUT, Config, import_hook
from modbusd.config.schema import DEFAULT_TLS_PORT
from modbusd.config.tls import server_tls_context
from modbusd.durable import Durable
from modbusd.endpoints import Admitted, Endpoint, Endpoints, Served, Wiring, endpoints_from_config, own_port
from modbusd.events import EVENT_QUEUE, Listener
from modbusd.events_log import EventsLog
from modbusd.faults import Faults
from modbusd.hooks import RequestHook, Subscription, WriteEvent
from modbusd.hub import EventsHub
from modbusd.model.device import Device
from modbusd.model.points import Point
from modbusd.model.values import Order, Value, ValueType
from modbusd.protocol.codes import MIN_UNIT_ID
from modbusd.protocol.errors import ModbusError
from modbusd.protocol.serial_line import SerialLine
from modbusd.ratelimit import RateLimitedLog
from modbusd.routing import FORWARD_IN_FLIGHT, FORWARD_QUEUE, FORWARD_TIMEOUT, Routes, Target, TcpTarget, unit_ranges
from modbusd.runner import ServingThread
from modbusd.security import make_security
from modbusd.session import Session
from modbusd.sessions import Sessions
from modbusd.simulate import Simulator
from modbusd.stats import Stats
from modbusd.traffic import RequestLog
from modbusd.transport.tcp import CLOSE_GRACE, TcpConnection
from modbusd.transports import ASCII_TIMEOUT, StartError, Transports

__all__ = [  # what the rest of modbusd and embedding programs import from here
    "ANY_UNIT_ID", "ASCII_TIMEOUT", "EVENT_QUEUE", "FORWARD_IN_FLIGHT", "FORWARD_QUEUE", "FORWARD_TIMEOUT",
    "FRAME_TIMEOUT", "WRITE_TIMEOUT", "Endpoint", "EventsLog", "Listener", "SerialLine", "Server", "StartError",
    "Target", "TcpTarget", "UnknownUnit", "unit_ranges",
]  # fmt: skip

log = logging.getLogger(__name__)

_CLOSE_GRACE = CLOSE_GRACE  # seconds a closing connection gets to flush its responses before it is aborted


class Server:
    """A Modbus server for one device (answering every unit id) or several (one per unit id).

    Use it inside a running asyncio loop (`await start()` … `await stop()`, or `async with`), or from
    plain threaded code (`start_thread()` … `stop_thread()`).

    Longer than the ~300 lines a class should be (about 500) because it is the public API: every method a program
    calls, each with its docstring, and each handing the work in a line or two to the piece that does it.
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
        max_connections_per_client: int | None = None,
        frame_timeout: float | None = FRAME_TIMEOUT,
        write_timeout: float | None = WRITE_TIMEOUT,
        quit_word: str | bytes | None = None,
        serial: SerialLine | Sequence[SerialLine] = (),
        unit_id: int = 1,
        rtu_over_tcp: int | None = None,
        udp: int | None = None,
        forward: Mapping[int, Target] | None = None,
        forward_timeout: float = FORWARD_TIMEOUT,
        forward_queue: int = FORWARD_QUEUE,
        forward_in_flight: int = FORWARD_IN_FLIGHT,
        name: str = "modbusd",
        hook: RequestHook | str | None = None,
        hook_timeout: float = HOOK_TIMEOUT,
        hook_forwarded: bool = False,
        events_log: str | Path | None = None,
        events_log_max_bytes: int = EVENTS_LOG_MAX_BYTES,
        events_log_files: int = EVENTS_LOG_FILES,
        listen_only: bool = True,
        tls: ssl.SSLContext | None = None,
        tls_port: int = DEFAULT_TLS_PORT,
        roles: Roles | None = None,
        allow: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
        allow_units: Mapping[int, Iterable[str]] | None = None,
        state: str | Path | None = None,
        reset_state: bool = False,
        state_sync: str = "full",
        endpoints: Sequence[Endpoint] = (),
    ) -> None:
        """`port`: Modbus/TCP's port, None for no Modbus/TCP. `serial`: serial ports to serve;
        `rtu_over_tcp`, `udp`: ports for those (0: any free one). `unit_id`: a single device's slave id on
        serial lines and RTU over TCP (with one device per unit id, each answers at its own).

        `forward`: the gateway, unit id → SerialLine or TcpTarget: requests over Modbus/TCP and UDP for those
        unit ids go there (unit 0 to a serial line: a broadcast, sent and not answered). Equal targets are one
        downstream. A forwarded unit id is never answered locally; with one device per unit id, it must not
        also be a device's. `forward_timeout`: seconds to wait for a response (then exception 0x0B);
        `forward_queue`: requests that may wait per downstream (more get exception 06); `forward_in_flight`:
        requests sent to a Modbus/TCP server before its responses come (a serial line has one at a time).

        Connections (docs/limits.md): `max_connections` (at the limit, an unused one is closed: first those that
        never completed a request), `max_connections_per_client` (more from one address are closed at accept),
        `idle_timeout` (no complete request for that long), `frame_timeout` (a request begun and not finished),
        `write_timeout` (the peer takes none of its responses); None turns one off. Whatever is set, the open-files
        limit is raised to its hard limit at start, and at that limit, less a margin, new clients wait.

        `name`: the server's name (HSYCO's), passed to the hook and the first part of event names. `hook`: a request
        hook (`modbusd.hooks.RequestHook`), or its "package.module:function" to import; a coroutine hook taking
        longer than `hook_timeout` seconds gets exception 04. The hook sees only the requests this server answers itself
        unless `hook_forwarded`: then also those for the unit ids of `forward` (a filtering or inspecting gateway;
        None from the hook lets them go on to the downstream device). `events_log`: a file for every client write and
        every event, one JSON line each (`EventsLog`), rotated at `events_log_max_bytes` into
        `events_log_files` files.

        `listen_only`: False refuses FC08/04 Force Listen Only Mode on every device with exception 01, so that no
        client (nor one spoofed UDP datagram) can silence the devices for all the others (§6.8.1 requires it,
        and only FC08/01 from a client, or a restart, ends it).

        Access rules (docs/security.md): `tls`, a server context (`modbusd.config.server_tls_context`), serves
        Modbus/TCP Security on `tls_port`; `roles` (`modbusd.authorize.Roles`) are its roles-to-rights rules
        (None: a client with a certificate may do everything). `allow`: the client networks every network endpoint
        accepts, or endpoint ("tcp", "tls", "udp", "rtu-over-tcp", "*") → networks; `allow_units`: unit id →
        networks. A device's read-only ranges are its `guard` (`modbusd.authorize.ReadOnly`).

        `state`: a state file (docs/state.md): written values are restored from it now, and every write is stored
        before it is answered, every endpoint's devices each under the endpoint's name; `reset_state` empties it
        first; `state_sync` "full" or "normal" (SQLite's synchronous). Raises StateError (a ValueError) for a file
        that cannot be used (one made for other devices, or for an endpoint no longer given).


        `endpoints`: more listeners, each with its own devices (`modbusd.endpoints`); with endpoints and no
        `devices`, the server serves only them (no Modbus/TCP of its own, and every point is ``ENDPOINT/POINT``)."""
        plant_only = devices is None and bool(endpoints)
        port = own_port(devices, endpoints, port, udp, rtu_over_tcp, serial)
        self._single, self.devices = split_devices(devices)
        if not listen_only:
            for device in [self._single] if self._single is not None else self.devices.values():
                device.diagnostics.refuse_listen_only = True
        self.unknown_unit = UnknownUnit(unknown_unit)
        self._admission = Admission(max_connections, idle_timeout, max_per_client=max_connections_per_client,
                                    frame_timeout=frame_timeout, write_timeout=write_timeout)  # fmt: skip
        self.quit_word = quit_word.encode() if isinstance(quit_word, str) else quit_word
        self.quit_requested = False
        self._transports = Transports(host, port, rtu_over_tcp=rtu_over_tcp, udp=udp, serving=self._serving,
                                      serial_lines=(serial,) if isinstance(serial, SerialLine) else serial,
                                      tls=None if tls is None else (tls_port, tls))  # fmt: skip
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
        self._security = make_security(tls=tls is not None, roles=roles, allow=allow, units=allow_units, hub=self._hub,
                                       warnings=self._admission.peer_warnings)  # fmt: skip
        self.faults = Faults(self.events_log)  # fault injection (docs/faults.md): rules added here, or at run time
        self._bus: Bus | None = None
        if self.serial_lines or rtu_over_tcp is not None:
            self._bus = make_bus(self._single, self.devices, unit_id, self._hub.observed, self._hub.observe)
        self._hub.serial_transports = {line.device: line.framing.value for line in self.serial_lines}
        self._routes = Routes(forward, local=self.devices, served=self.serial_lines, timeout=forward_timeout,
                              queue=forward_queue, in_flight=forward_in_flight)  # fmt: skip
        self.downstreams = self._routes.downstreams
        self.state = None if state is None else Durable(state, reset=reset_state, sync=state_sync)
        if self.state is not None:
            self.state.undoing = self._hub.undoing  # a write undone is told to the subscribers of its points
        self.stats = Stats()  # requests per transport, connections, discarded frames: read by GET /metrics
        self._hub.count_requests = self.stats.total  # the request log's not-shown count, while it pauses
        answers = Answers(
            self._single, self.devices, unknown_unit=self.unknown_unit, routes=self._routes.routes, hub=self._hub,
            hook=None if hook is None else Hook(hook, hook_timeout, name, self._hub, forwarded=hook_forwarded),
            bus=self._bus,
        )  # fmt: skip
        self._sessions = Sessions(
            answers, bus=self._bus,
            quit_word=self.quit_word, on_quit=self._remote_quit, warnings=self._admission.peer_warnings,
            security=self._security,
            durable=self.state,
            faults=self.faults,
            stats=self.stats,
        )  # fmt: skip
        wiring = Wiring(name, self._hub, self._admission, self.unknown_unit, hook, hook_timeout, self.quit_word,
                        self._remote_quit, self._serving, listen_only, self.faults, self._security,
                        self.stats, self.state)  # fmt: skip
        self._endpoints = Endpoints(None if plant_only else PointAccess(self._single, self.devices, self.device_for),
                                    endpoints, wiring)  # fmt: skip
        if self.state is not None:  # every endpoint's devices, once they are made: each endpoint's under its name
            self.state.open(None if plant_only else (self._single, self.devices),
                            {name: (s.single, s.devices) for name, s in self.endpoints.items()})  # fmt: skip
        self._points = self._endpoints  # the owner's access to points: ENDPOINT/POINT, or the default endpoint's
        self.simulator = Simulator(self.locate, self.read)  # value generators (docs/simulator.md)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._runner = ServingThread()

    @classmethod
    def from_config(cls, config: Config, *, address_register: int | None = None, **transports: Any) -> Server:
        """A server as a device file describes it, every data point holding its initial value.

        The file's gateway ([gateway] and its [[gateway.forward]] routes) is the server's `forward` and its settings.
        The file's transports ([server] port, udp, rtu_over_tcp, serial; a device's serial_unit_id as `unit_id`)
        are served unless `transports` (serial, unit_id, rtu_over_tcp, udp, port) replace them: each one given
        is passed on to the constructor over the file's. `address_register` turns the address change on for
        every device, over the file's per-device address_register. The file's subscriptions (points marked
        ``subscribe = true``, ``[events] subscribe``) are made; ValueError, naming where it was given, for one
        that cannot be (a point no device has, a type that cannot be subscribed).
        """
        s = config.server
        devices = config.build_devices()
        if address_register is not None:
            for device in [devices] if isinstance(devices, Device) else devices.values():
                device.set_address_register(address_register)
        options: dict[str, Any] = {
            "host": s.host, "port": s.port, "unknown_unit": s.unknown_unit, "max_connections": s.max_connections,
            "idle_timeout": s.idle_timeout, "max_connections_per_client": s.max_connections_per_client,
            "quit_word": s.quit_command, "serial": s.serial,
            "rtu_over_tcp": s.rtu_over_tcp, "udp": s.udp,
            "unit_id": (config.devices[0].serial_unit_id if config.devices else None) or MIN_UNIT_ID,
            "endpoints": endpoints_from_config(config),
            "name": s.name, "hook": s.hook, "hook_timeout": s.hook_timeout, "hook_forwarded": s.hook_forwarded,
            "events_log": s.eventslog, "events_log_max_bytes": s.eventslog_max_bytes,
            "events_log_files": s.eventslog_files, "listen_only": s.listen_only, "roles": config.roles,
            "tls": None if s.tls is None else server_tls_context(s.tls), "tls_port": s.tls.port if s.tls else 0,
            "allow": s.allow or None, "allow_units": config.allow_units or None,
            "state": s.state, "state_sync": s.state_sync,
            "forward": config.gateway.forward, "forward_timeout": config.gateway.timeout,
            "forward_queue": config.gateway.queue, "forward_in_flight": config.gateway.in_flight,
        }  # fmt: skip
        server = cls(devices if config.devices else None, **(options | transports))
        for fault in config.faults:  # the file's [[fault]] rules, then the command line's --fault
            server.faults.add(fault)
        for item in config.subscriptions:  # the file's, and those the command line added
            try:
                server.subscribe(item.point, item.type)
            except (ValueError, LookupError, ModbusError) as exc:
                reason = str(exc) if str(exc).startswith(item.point) else f"{item}: {exc}"
                raise ValueError(f"{item.where or 'subscribe'}: {reason}") from None
        for made in config.generators:  # the file's, and --simulate's
            try:
                server.simulator.add(made.point, made.spec, made.type, made.order, base=made.base)
            except (ValueError, LookupError) as exc:
                raise ValueError(f"{made.where}: {made.point}: {exc}") from None
        return server

    # ------------------------------------------------------------------------------- what it serves, where

    @property
    def host(self) -> str | None:
        return self._transports.host

    @property
    def port(self) -> int | None:
        """Modbus/TCP's port (the one bound, once started, when 0 was asked for); None: no Modbus/TCP."""
        return self._transports.port

    @property
    def rtu_over_tcp_port(self) -> int | None:
        return self._transports.rtu_over_tcp_port

    @property
    def tls_port(self) -> int | None:
        """Modbus/TCP Security's port (the one bound, once started, when 0 was asked for); None: no TLS."""
        return self._transports.tls_port

    @property
    def udp_port(self) -> int | None:
        return self._transports.udp_port

    @property
    def serial_lines(self) -> tuple[SerialLine, ...]:
        return self._transports.serial_lines

    @property
    def endpoints(self) -> dict[str, Served]:
        """The endpoints by name, each with its `host`, `port` (bound, once started), `devices` and `device`."""
        return self._endpoints.served

    def endpoints_info(self) -> list[dict[str, object]]:
        """Where each endpoint listens and its devices (``GET /endpoints``), the default one first, name None."""
        own = self.listening()[: len(self.listening()) - len(self.endpoints)]
        return self._endpoints.info(own, self._single, self.devices)

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

    def read(self, point: str, vtype: ValueType | str | None = None, order: Order | str | None = None) -> Value:
        """The value of a data point (by name) or of any address, as its own type or as `vtype`, in its own
        word order or `order`.

        `server.read("temperature")`, `server.read("30001", "float")`. IllegalDataAddress outside the table.
        """
        return self._points.read(point, vtype, order)

    def read_range(self, point: str, count: int, vtype: ValueType | str | None = None,
                   order: Order | str | None = None) -> Span:  # fmt: skip
        """`count` values laid end to end from a point or address on, as (Location, raw bytes, value): what
        `modbusd get 40001:10 float` shows. A float takes two registers; a range of bits is read bit by bit."""
        return self._points.read_range(point, count, vtype, order)

    def write(self, point: str, value: Value, vtype: ValueType | str | None = None,
              order: Order | str | None = None) -> None:  # fmt: skip
        """Store a value (or its text) at a data point or any address, every table included.

        `server.write("30001", 21.5, "float")`, `server.write("pump_on", "on")`. The read-only tables are read-only
        for clients, not for the program that owns the server (as in HSYCO's).
        """
        self._points.write(point, value, vtype, order)
        if self.state is not None:
            self.state.commit_now()  # stored before this returns, or undone and ServerDeviceFailure

    def counters(self) -> dict[str, object]:
        """Open connections, events (published, dropped per listener, the events log's), each device's FC08
        counters, what UDP datagrams held after their first request (dropped), and each fault rule's counts, for
        monitoring."""
        return {"connections": self.connection_count, "events": self._hub.counters(),
                "devices": self._points.device_counters(), "udp": self._sessions.udp_drops.counters(),
                **({"security": self._security.counters()} if self._security is not None else {}),
                "faults": self.faults.counters(),
                } | self._endpoints.counters()  # fmt: skip

    @property
    def requests(self) -> RequestLog:
        """The live request log (`modbusd.traffic`): records requests only while it has a follower."""
        return self._hub.requests

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
        return self._hub.subscribe(device, found, vtype, count, order, endpoint=self._endpoints.endpoint_of(point))

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
    def max_connections_per_client(self) -> int | None:
        return self._admission.max_per_client

    @property
    def frame_timeout(self) -> float | None:
        return self._admission.frame_timeout

    @property
    def write_timeout(self) -> float | None:
        return self._admission.write_timeout

    def connections(self) -> list[dict[str, object]]:
        """The open TCP connections (Modbus/TCP, RTU over TCP): peer, requests completed, seconds open and idle."""
        return self._admission.describe(time.monotonic())

    @property
    def connection_count(self) -> int:
        return len(self._admission.connections)

    @property
    def peer_warnings(self) -> RateLimitedLog:
        """Repeated warnings about peers (bad frames, limits): one line per peer and kind a minute."""
        return self._admission.peer_warnings

    def _open_tls_session(self, connection: TcpConnection) -> Session:
        self._admission.admit(connection)
        assert self._security is not None  # made whenever there is TLS
        return self._security.tls_session(
            connection, lambda peer, role: self._sessions.tcp_session(peer, tls=True, role=role)
        )

    def _serving(self) -> bool:
        return self._stopped is not None and not self._stopped.is_set()

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
        if self.state is not None:
            self.state.start(loop)
        self._admission.start(loop)
        self.simulator.start(loop)
        try:
            for downstream in self.downstreams.values():  # before any request can come for them
                await downstream.start()
                log.info("forwarding unit%s %s to %s", "s" if len(self._routes.units_of(downstream)) > 1 else "",
                         unit_ranges(self._routes.units_of(downstream)), downstream)  # fmt: skip
            owner = Admitted(self._admission, self._sessions)
            await self._transports.start(loop, owner, rtu_session=owner.open_rtu_session,
                                         udp_session=self._sessions.udp_session,
                                         serial_session=self._sessions.serial_session, gate=self._admission,
                                         warnings=self._admission.peer_warnings, tls_session=self._open_tls_session,
                                         **({} if self._security is None else {"refuser": self._security.refuser,
                                            "handshake_failed": self._security.handshake_failed}))  # fmt: skip
            await self._endpoints.start(loop)
        except BaseException:
            await self.stop()
            raise
        self._admission.announce()

    def listening(self) -> list[str]:
        """What this server serves, one item per transport, for the banner: `0.0.0.0 port 502` for
        Modbus/TCP, then `RTU on /dev/ttyUSB0 (19200 8E1, unit 1)`, `UDP on 0.0.0.0 port 5021` …"""
        units = None if self._bus is None else self._bus.units
        return self._transports.describe(units) + self._routes.describe() + self._endpoints.describe()

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
        self.simulator.stop()
        self._admission.stop_reaping()
        self._transports.close()
        self._endpoints.close()
        self._admission.close_all()
        deadline = time.monotonic() + _CLOSE_GRACE
        while (self._admission.connections or not self._transports.serial_closed()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._admission.abort_rest(_CLOSE_GRACE)
        for downstream in self.downstreams.values():  # its clients' connections are closed: nobody waits
            await downstream.stop()
        await self._transports.wait_closed()
        await self._endpoints.wait_closed()
        await self._hub.stop()  # the last writes' events are delivered, or dropped after a grace
        if self.state is not None:
            self.state.stop()

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
        self._runner.start(self.start, self.serve_forever, timeout)

    def stop_thread(self, *, timeout: float = 10.0) -> None:
        self._runner.stop(self._loop, self._stopped, timeout)
