"""The Server: owns the devices, wires sessions to transports, and starts and stops everything.

It is the one module that knows all the others. Unit-id dispatch, connection limits, idle time-outs and
the remote quit command live here because they need the clock, the devices or the set of connections.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from enum import StrEnum

from modbusd import handler
from modbusd.config import Config
from modbusd.model.device import Device
from modbusd.model.names import parse_address
from modbusd.model.points import NAME, Point, UnknownPoint, default_type, read_at, write_at
from modbusd.model.values import Value, ValueType
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.pdu import exception_pdu
from modbusd.session import Answer, Session
from modbusd.transport.tcp import TcpConnection, read_buffer

log = logging.getLogger(__name__)

_CLOSE_GRACE = 2.0  # seconds a closing connection gets to flush its responses before it is aborted


class UnknownUnit(StrEnum):
    """What a request for a unit id without a device gets, in multi-device mode."""

    EXCEPTION = "exception"  # exception 0x0B, Gateway Target Device Failed to Respond: the client learns at once
    IGNORE = "ignore"  # no response, as a serial device that is not there; the client times out


class Server:
    """A Modbus/TCP server for one device (answering every unit id) or several (one per unit id).

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
    ) -> None:
        if devices is None:
            devices = Device()
        if isinstance(devices, Device):
            self._single: Device | None = devices
            self.devices: dict[int, Device] = {}
        else:
            for unit_id in devices:
                if not 0 <= unit_id <= 255:
                    raise ValueError(f"unit id {unit_id} outside 0..255")
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
        self._answer = self._make_answer()
        self._connections: set[TcpConnection] = set()
        self._listener: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: Config) -> "Server":
        """A server as a device file describes it, every data point holding its initial value."""
        s = config.server
        return cls(
            config.build_devices(), host=s.host, port=s.port, unknown_unit=s.unknown_unit,
            max_connections=s.max_connections, idle_timeout=s.idle_timeout, quit_word=s.quit_command,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------ devices

    @property
    def device(self) -> Device:
        """The device in single-device mode."""
        if self._single is None:
            raise AttributeError("this server has one device per unit id: use server.devices[unit_id]")
        return self._single

    def device_for(self, unit_id: int) -> Device | None:
        return self._single if self._single is not None else self.devices.get(unit_id)

    def _make_answer(self) -> Answer:
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
        if NAME.fullmatch(text):
            for candidate in self.data_points():
                if candidate.name == text:
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
        """Open connections and each device's FC08 counters, for monitoring."""
        units: dict[str, Device] = {"*": self._single} if self._single is not None else {
            str(u): d for u, d in sorted(self.devices.items())}  # fmt: skip
        names = ("bus_message", "bus_communication_error", "bus_exception_error", "server_message",
                 "server_no_response", "server_nak", "server_busy", "bus_character_overrun", "event_count")  # fmt: skip
        return {
            "connections": self.connection_count,
            "devices": {
                unit: {name: getattr(device.diagnostics, name) for name in names} | {
                    "listen_only": device.diagnostics.listen_only}
                for unit, device in units.items()
            },
        }  # fmt: skip

    def _discarded(self, unit_id: int) -> None:
        device = self.device_for(unit_id)
        if device is not None:
            handler.discarded(device)

    # -------------------------------------------------------------------------------------- connections

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def open_session(self, connection: TcpConnection) -> Session:
        if self.max_connections is not None and len(self._connections) >= self.max_connections:
            oldest = min(self._connections, key=lambda c: c.last_active)
            log.warning(
                "connection limit %d reached: closing the longest unused connection, from %s",
                self.max_connections, oldest.peer,
            )  # fmt: skip
            self._connections.discard(oldest)  # TCP guide §4.2.1: close the oldest unused connection
            oldest.close()
        self._connections.add(connection)
        return Session(
            self._answer, peer=connection.peer, discard=self._discarded,
            quit_word=self.quit_word, on_quit=self._remote_quit,
        )  # fmt: skip

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
        """Listen. Raises OSError when the address cannot be bound (port in use, no privilege)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopped = asyncio.Event()
        buffer = read_buffer()
        self._listener = await loop.create_server(
            lambda: TcpConnection(self, buffer), self.host or None, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._listener.sockets[0].getsockname()[1]
        if self.idle_timeout:
            self._reaper = loop.create_task(self._reap_idle(self.idle_timeout))
        log.info("listening on %s port %d", self.host or "*", self.port)

    async def serve_forever(self) -> None:
        """Start (if not started) and serve until `stop()` or the quit command."""
        if self._listener is None:
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
        if self._listener is not None:
            self._listener.close()
        for connection in list(self._connections):
            connection.close()
        deadline = time.monotonic() + _CLOSE_GRACE
        while self._connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self._connections):  # a peer that never reads its responses cannot hold us up
            log.warning("%s did not take its last responses in %g s; dropping the connection", connection.peer,
                        _CLOSE_GRACE)  # fmt: skip
            connection.abort()
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None

    async def __aenter__(self) -> "Server":
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
