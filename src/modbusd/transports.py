"""The listeners of one server: Modbus/TCP, RTU over TCP, UDP and serial lines, opened and closed together.

What a listener does with the bytes is its session's (`sessions.py` makes them); this module only binds ports and
opens serial lines, reports what could not be started (`StartError`), and says what is served, for the banner.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from modbusd.protocol.rtu import silent_intervals
from modbusd.protocol.serial_line import Framing, SerialLine
from modbusd.ratelimit import RateLimitedLog
from modbusd.session import Session
from modbusd.transport.listen import Gate, TcpListener, bind
from modbusd.transport.tcp import ConnectionOwner, OpenSession, TcpConnection, read_buffer
from modbusd.transport.udp import UdpEndpoint

if TYPE_CHECKING:  # imported when a serial line is opened: pyserial is an optional dependency
    from modbusd.transport.serial import SerialConnection

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own

ASCII_TIMEOUT = 1.0  # Serial Line §2.5.2.1: the inter-character time-out, 1 s by default


class StartError(OSError):
    """A transport could not be started. `kind`: tcp, rtu-over-tcp, udp or serial; `target`: port or device;
    `endpoint` and `host`: the endpoint's name and address when it is one of a server's endpoints (`endpoints.py`)."""

    endpoint: str | None = None
    host: str | None = None

    def __init__(self, kind: str, target: int | str, cause: OSError) -> None:
        # uvloop's "could not bind to local_addr" has no errno: the OSError it was raised from has
        inner = cause.__cause__ if cause.errno is None and isinstance(cause.__cause__, OSError) else cause
        super().__init__(inner.errno, inner.strerror or str(cause))
        self.kind = kind
        self.target = target
        self.cause = cause


class Transports:
    """Every transport a server serves. Ports given as 0 are replaced by the ones bound, once started."""

    def __init__(
        self,
        host: str | None,
        port: int | None,
        *,
        rtu_over_tcp: int | None,
        udp: int | None,
        serial_lines: Sequence[SerialLine],
        serving: Callable[[], bool],
        tls: tuple[int, ssl.SSLContext] | None = None,
    ) -> None:
        """`serving`: whether the server still serves, so that a serial port lost while it does is reported.
        `tls`: Modbus/TCP Security's (port, server context)."""
        self.host = host
        self.tls_port, self._tls_context = (None, None) if tls is None else tls
        self.port = port
        self.rtu_over_tcp_port = rtu_over_tcp
        self.udp_port = udp
        self.serial_lines = tuple(serial_lines)
        self._serving = serving
        self._listener: TcpListener | None = None
        self._rtu_listener: TcpListener | None = None
        self._tls_listener: TcpListener | None = None
        self._udp: UdpEndpoint | None = None
        self._serial: list[SerialConnection] = []
        self._closing_serial: list[SerialConnection] = []
        self._closing: list[TcpListener] = []

    async def start(
        self,
        loop: asyncio.AbstractEventLoop,
        owner: ConnectionOwner,
        *,
        rtu_session: OpenSession,
        udp_session: Callable[[str], Session],
        serial_session: Callable[[SerialLine], Session],
        gate: Gate,
        warnings: RateLimitedLog,
        tls_session: OpenSession | None = None,
        refuser: Callable[[str], Callable[[str], bool] | None] = lambda endpoint: None,
        handshake_failed: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        """Bind and open everything; StartError naming the first transport that could not start. `gate`: whether
        the TCP listeners accept (the connection limits); `warnings`: where UDP's repeated warnings go.
        `refuser(endpoint)`: the address check of an endpoint (tcp, tls, udp, rtu-over-tcp), None for none;
        `tls_session` and `handshake_failed`: Modbus/TCP Security's sessions and failed handshakes."""
        buffer = read_buffer()
        host = self.host or None
        if self.port is not None:
            self._listener = await _listen("tcp", host, self.port, lambda: TcpConnection(owner, buffer), gate,
                                           refuse=refuser("tcp"))  # fmt: skip
            self.port = self._listener.port
            log.info("listening on %s port %d (Modbus/TCP)", self.host or "*", self.port)
        if self.rtu_over_tcp_port is not None:
            self._rtu_listener = await _listen("rtu-over-tcp", host, self.rtu_over_tcp_port,
                                               lambda: TcpConnection(owner, buffer, rtu_session), gate,
                                               refuse=refuser("rtu-over-tcp"))  # fmt: skip
            self.rtu_over_tcp_port = self._rtu_listener.port
            log.info("listening on %s port %d (RTU over TCP)", self.host or "*", self.rtu_over_tcp_port)
        if self.tls_port is not None:
            self._tls_listener = await _listen("tls", host, self.tls_port,
                                               lambda: TcpConnection(owner, buffer, tls_session), gate,
                                               tls=self._tls_context, refuse=refuser("tls"),
                                               handshake_failed=handshake_failed)  # fmt: skip
            self.tls_port = self._tls_listener.port
            log.info("listening on %s port %d (Modbus/TCP Security, TLS)", self.host or "*", self.tls_port)
        if self.udp_port is not None:
            try:
                transport, endpoint = await loop.create_datagram_endpoint(
                    lambda: UdpEndpoint(udp_session, warnings, refuse=refuser("udp")),
                    local_addr=(host or "0.0.0.0", self.udp_port),
                )
            except OSError as exc:
                raise StartError("udp", self.udp_port, exc) from exc
            self._udp = endpoint
            self.udp_port = transport.get_extra_info("sockname")[1]
            log.info("listening on %s port %d (Modbus over UDP)", self.host or "*", self.udp_port)
        for line in self.serial_lines:
            await self._open_serial(line, serial_session(line))

    async def _open_serial(self, line: SerialLine, session: Session) -> None:
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
        connection = serial.SerialConnection(session, on_lost=self._serial_lost, **timing)
        try:
            await serial.open_port(connection, line.device, baudrate=line.baudrate, bytesize=line.bytesize,
                                   parity=line.parity, stopbits=line.effective_stopbits)  # fmt: skip
        except OSError as exc:
            raise StartError("serial", line.device, exc) from exc
        self._serial.append(connection)
        log.info("serving %s", line)

    def _serial_lost(self, connection: SerialConnection, exc: Exception | None) -> None:
        if connection in self._serial and self._serving():
            log.error("serial port %s closed: %s; no longer served", connection, exc or "end of file")

    def close(self) -> None:
        """Stop accepting: close the listeners, the UDP endpoint and the serial lines (each sends what it owes)."""
        self._closing = [x for x in (self._listener, self._rtu_listener, self._tls_listener) if x is not None]
        for listener in self._closing:
            listener.close()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        self._closing_serial, self._serial = self._serial, []
        for line in self._closing_serial:
            line.close()

    def serial_closed(self) -> bool:
        return all(c.closed for c in self._closing_serial)

    async def wait_closed(self) -> None:
        for listener in self._closing:
            await listener.wait_closed()
        self._listener = self._rtu_listener = self._tls_listener = None
        self._closing = []

    def describe(self, units: Collection[int] | None) -> list[str]:
        """One banner item per transport: `0.0.0.0 port 502` for Modbus/TCP, then `RTU on /dev/ttyUSB0 (19200 8E1,
        unit 1)`, `UDP on 0.0.0.0 port 5021` … `units`: the serial bus's unit ids (None: no bus)."""
        host = self.host or "*"
        items = []
        if self.port is not None:
            items.append(f"{host} port {self.port}")
        if self.tls_port is not None:
            items.append(f"TLS on {host} port {self.tls_port}")
        if units is not None:
            which = f"unit{'s' if len(units) > 1 else ''} {', '.join(str(unit) for unit in sorted(units))}"
            for line in self.serial_lines:
                items.append(f"{line.framing.upper()} on {line.device} ({line.settings}, {which})")
            if self.rtu_over_tcp_port is not None:
                items.append(f"RTU over TCP on {host} port {self.rtu_over_tcp_port} ({which})")
        if self.udp_port is not None:
            items.append(f"UDP on {host} port {self.udp_port}")
        return items


async def _listen(
    kind: str, host: str | None, port: int, factory: Callable[[], TcpConnection], gate: Gate, **options: Any
) -> TcpListener:  # fmt: skip
    """`options`: TcpListener's (tls, refuse, handshake_failed)."""
    try:
        listener = TcpListener(await bind(host, port), factory, gate, **options)
    except OSError as exc:
        raise StartError(kind, port, exc) from exc
    listener.start()
    return listener
