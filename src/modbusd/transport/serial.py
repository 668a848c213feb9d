"""A serial port (RS-232/RS-485) through pyserial-asyncio-fast: bytes in, responses out, and the clock.

The serial line has no envelope that tells where a frame ends: silence does. This module measures it and
tells the session: bytes that arrive more than `gap_after` but less than `end_after` seconds after the
previous ones → `session.gap()` (RTU: t1.5 < silence < t3.5, the frame is broken); `end_after` seconds with
nothing received → `session.end_of_frame()` (RTU: t3.5; ASCII: the 1 s inter-character time-out). Which
silences those are is the caller's business (they follow from the framing and the baud rate).

An answer that takes time (a coroutine request hook) is awaited in a task, as on TCP; its response goes out when
it comes, in request order (a master waits for it anyway: one transaction at a time). Closing cancels it.

What it measures is the time between chunks handed over by the operating system, not between characters
on the wire: a UART's receive FIFO or a USB adapter's latency timer can hold bytes back (docs/transports.md).
"""

import asyncio
import logging
import termios
import time
from collections.abc import Callable

import serial  # pyserial: the port settings and SerialException
import serial_asyncio_fast

from modbusd.session import Session  # the transport knows the session, not the protocol
from modbusd.transport.tcp import cancel_all, start_awaiting

log = logging.getLogger(__name__)

PARITIES = {"E": serial.PARITY_EVEN, "O": serial.PARITY_ODD, "N": serial.PARITY_NONE}


class SerialConnection(asyncio.Protocol):
    """One serial port and its session. `gap_after` None: the framing has no gap rule (ASCII)."""

    def __init__(
        self,
        session: Session,
        *,
        end_after: float,
        gap_after: float | None = None,
        on_lost: Callable[["SerialConnection", Exception | None], None] | None = None,
    ) -> None:
        self._session = session
        self._end_after = end_after
        self._gap_after = gap_after
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.device = "?"
        self._last = 0.0  # monotonic time the last bytes arrived; 0: none since the last end of frame
        self._tasks: set[asyncio.Future[bytes | None]] = set()  # answers being awaited
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a SerialTransport is an asyncio.Transport
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        session = self._session
        if self._last:
            silence = now - self._last
            if silence >= self._end_after:  # the timer is late (a busy loop): the silence still ended the frame
                self._end_of_frame()
            elif self._gap_after is not None and silence > self._gap_after:
                session.gap()
        self._last = now
        self._send(session.receive(data))
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self._end_after, self._silence)  # type: ignore[union-attr]  # set in connection_made

    def _silence(self) -> None:
        self._timer = None
        self._end_of_frame()

    def _end_of_frame(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last = 0.0
        self._send(self._session.end_of_frame())

    def _send(self, out: bytes) -> None:
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(out)
        if self._session.awaiting:
            start_awaiting(self._session, self._tasks, self._send)

    def __str__(self) -> str:
        return self.device

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        cancel_all(self._tasks)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        cancel_all(self._tasks)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_lost is not None:
            self._on_lost(self, exc)


async def open_port(
    connection: SerialConnection, device: str, *, baudrate: int, bytesize: int, parity: str, stopbits: int
) -> None:
    """Open `device` (parity E, O or N) and serve it with `connection`; exclusive, as a bus has one owner.

    Raises OSError (pyserial's SerialException is one) when the port is missing or not ours to open.
    """
    await open_serial(connection, device, baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits)
    connection.device = device


async def open_serial(
    protocol: asyncio.Protocol, device: str, *, baudrate: int, bytesize: int, parity: str, stopbits: int
) -> asyncio.Transport:
    """Open `device` for any asyncio protocol (the gateway's master side uses its own); as `open_port`."""
    try:
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            asyncio.get_running_loop(), lambda: protocol, device, baudrate=baudrate, bytesize=bytesize,
            parity=PARITIES[parity], stopbits=stopbits, exclusive=True,
        )  # fmt: skip
    except termios.error as exc:  # the driver refused the settings; not an OSError subclass
        code, message = exc.args if len(exc.args) == 2 else (None, str(exc))
        raise OSError(code, f"the driver refuses {baudrate} {bytesize}{parity}{stopbits}: {message}") from exc
    return transport  # type: ignore[no-any-return]  # a SerialTransport
