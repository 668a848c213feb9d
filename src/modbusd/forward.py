"""The gateway's downstream side: modbusd as the client (master) of a serial line or of a Modbus/TCP server.

MBLogic's message forwarding: a request that arrived over Modbus/TCP for a forwarded unit id is sent on
to the device that has that id, and the device's response PDU is what the TCP client gets (its transaction
id is the session's business, not ours). Each `Downstream` carries one transaction at a time: a serial
line is one bus with one master, and one at a time keeps a Modbus/TCP device that handles one request at
a time just as safe. Requests wait their turn in a first-come queue; when `queue_limit` already wait, a
request is refused at once with exception 06 (Server Device Busy).

What goes wrong is answered as the Application Protocol §7 says a gateway answers it:
- 0x0A Gateway Path Unavailable: the path is down: the serial port is missing or cannot be opened (it is
  tried again on every request, so a USB adapter plugged in later is picked up), the TCP server refuses
  the connection or drops it;
- 0x0B Gateway Target Device Failed to Respond: the request went out, and no matching response came back
  within `timeout` seconds (also a TCP connect that times out: nothing there answers).

A request whose client has gone (its future cancelled) is dropped from the queue; one already on the line
runs to its end, so that its late response can never be taken for the next request's.

Framing comes from `protocol` (RTU with `response_length`, ASCII, MBAP); this module adds the clock and the
I/O, as `transport` does for the serving side.
"""

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable

from modbusd.protocol.adu import Adu
from modbusd.protocol.ascii import AsciiFramer
from modbusd.protocol.codes import BROADCAST_UNIT_ID, ExceptionCode
from modbusd.protocol.errors import (
    FrameError,
    GatewayPathUnavailable,
    GatewayTargetDeviceFailedToRespond,
    ModbusError,
    ServerDeviceBusy,
)
from modbusd.protocol.mbap import MbapFramer
from modbusd.protocol.mbap import frame as mbap_frame
from modbusd.protocol.rtu import RtuFramer, response_length, silent_intervals, with_crc

log = logging.getLogger(__name__)

TURNAROUND = 0.1  # Serial Line §2.4.1: after a broadcast the master waits a turnaround delay (typ. 100–200 ms)


class _Link(asyncio.Protocol):
    """The byte stream of one open port or connection: frames found by `framer` queue up until taken."""

    def __init__(self, framer: RtuFramer | AsciiFramer | MbapFramer, silence: float | None = None) -> None:
        self.framer = framer
        self._silence = silence  # RTU: t3.5 ends a frame whose length the function code does not give
        self._timer: asyncio.TimerHandle | None = None
        self._frames: deque[Adu] = deque()
        self._arrived: asyncio.Event = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.closed = False
        self.last_activity = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream or serial transport

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        try:
            self._frames.extend(self.framer.feed(data))
        except FrameError as exc:  # MBAP: the stream can no longer be framed
            self.lost = exc
            self._close()
        if self._silence is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_later(self._silence, self._end_of_frame)
        self._arrived.set()

    def _end_of_frame(self) -> None:
        self._timer = None
        end_of_frame: Callable[[], list[Adu]] = self.framer.end_of_frame  # type: ignore[union-attr]  # RTU only
        self._frames.extend(end_of_frame())
        self._arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = self.lost or exc
        if self._timer is not None:
            self._timer.cancel()
        self._arrived.set()

    def write(self, data: bytes) -> None:
        self._frames.clear()  # whatever came in before the request (a late answer to the last one) is stale
        if self._silence is not None and self.framer.pending:  # RTU: and so is a stale part of a frame
            self.framer.end_of_frame()  # type: ignore[union-attr]  # RTU only
        assert self.transport is not None
        self.transport.write(data)

    async def next_frame(self, deadline: float) -> Adu:
        """The next frame received; TimeoutError at `deadline` (loop time), ConnectionError if the link goes."""
        loop = asyncio.get_running_loop()
        while not self._frames:
            if self.closed:
                raise ConnectionError(f"closed: {self.lost or 'end of file'}")
            self._arrived.clear()
            async with asyncio.timeout_at(deadline):
                await self._arrived.wait()
            if loop.time() >= deadline and not self._frames:
                raise TimeoutError
        return self._frames.popleft()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self.closed = True
        self._close()


class Downstream:
    """One forwarding target, one transaction at a time, with a bounded queue of requests waiting."""

    def __init__(self, name: str, *, timeout: float, queue_limit: int) -> None:
        if timeout <= 0:
            raise ValueError(f"forward time-out {timeout} must be positive")
        if queue_limit < 0:
            raise ValueError(f"forward queue bound {queue_limit} must not be negative")
        self.name = name
        self.timeout = timeout
        self.queue_limit = queue_limit
        self._waiting: deque[tuple[int, bytes, asyncio.Future[bytes | None]]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._link: _Link | None = None
        self._down: str | None = None  # why the path is down, while it is; for logging changes only
        self._on_line = False  # a transaction is under way
        # For monitoring (GET /metrics): requests handed to forward(), those refused with exception 06 (the queue was
        # full), those answered with 0x0B (no response in time) and with 0x0A (the path is down).
        self.requests = 0
        self.busy_refusals = 0
        self.timeouts = 0
        self.unavailable = 0

    def __str__(self) -> str:
        return self.name

    @property
    def queued(self) -> int:
        """Requests waiting for the line (not counting the one on it)."""
        return len(self._waiting)

    def forward(self, unit_id: int, pdu: bytes) -> "asyncio.Future[bytes | None]":
        """Queue the request; the future gives the response PDU (None for a broadcast) or raises a ModbusError.

        Raises ServerDeviceBusy at once when `queue_limit` requests already wait.
        """
        self.requests += 1
        if self._wakeup is None:
            raise GatewayPathUnavailable(f"{self.name}: gateway not started")
        if len(self._waiting) + self._on_line > self.queue_limit:  # one on the line, queue_limit waiting
            self.busy_refusals += 1
            log.debug("%s: %d requests waiting; exception 06 for unit %d", self.name, len(self._waiting), unit_id)
            raise ServerDeviceBusy(f"{self.name}: queue full")
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        entry = (unit_id, pdu, future)
        self._waiting.append(entry)
        future.add_done_callback(lambda done: self._forget(entry) if done.cancelled() else None)
        self._wakeup.set()
        return future

    def _forget(self, entry: tuple[int, bytes, "asyncio.Future[bytes | None]"]) -> None:
        """A client went away: its request leaves the queue (if it still waits there)."""
        with contextlib.suppress(ValueError):
            self._waiting.remove(entry)

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"forward {self.name}")

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        while self._waiting:
            self._waiting.popleft()[2].cancel()
        if self._link is not None:
            self._link.close()
            self._link = None
        self._wakeup = None

    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            while not self._waiting:
                wakeup.clear()
                await wakeup.wait()
            unit_id, pdu, future = self._waiting.popleft()
            if future.done():
                continue
            self._on_line = True
            try:
                reply = await self._exchange(unit_id, pdu)
            except ModbusError as exc:
                self._count(exc)
                if not future.done():
                    future.set_exception(exc)
            except Exception as exc:  # our bug: the session answers 04 and logs it
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(reply)
            finally:
                self._on_line = False

    def _count(self, exc: ModbusError) -> None:
        if exc.code == ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND:
            self.timeouts += 1
        elif exc.code == ExceptionCode.GATEWAY_PATH_UNAVAILABLE:
            self.unavailable += 1

    async def _exchange(self, unit_id: int, pdu: bytes) -> bytes | None:
        raise NotImplementedError

    def _path_down(self, why: str) -> GatewayPathUnavailable:
        if self._down != why:
            log.warning("%s: gateway path unavailable (%s): exception 0x0A until it is back", self.name, why)
        self._down = why
        return GatewayPathUnavailable(f"{self.name}: {why}")

    def _path_up(self) -> None:
        if self._down is not None:
            log.info("%s: gateway path available again", self.name)
        self._down = None

    async def _response(self, link: _Link, deadline: float, matches: Callable[[Adu], bool]) -> bytes:
        """The PDU of the first frame that `matches`, before `deadline`; others are logged and dropped."""
        while True:
            try:
                adu = await link.next_frame(deadline)
            except TimeoutError:
                log.debug("%s: no response in %g s: exception 0x0B", self.name, self.timeout)
                raise GatewayTargetDeviceFailedToRespond(f"{self.name}: no response") from None
            except ConnectionError as exc:
                if self._link is link:
                    self._link = None
                raise self._path_down(str(exc)) from None
            if matches(adu):
                return adu.pdu
            log.debug("%s: dropped a frame that answers no request of ours: %s", self.name, adu)


def _answers(unit_id: int, function: int) -> Callable[[Adu], bool]:
    """A response from `unit_id` to `function`: the function code itself, or it with the exception bit."""
    return lambda adu: adu.unit_id == unit_id and bool(adu.pdu) and adu.pdu[0] & 0x7F == function


class SerialDownstream(Downstream):
    """Devices on a serial line (RTU or ASCII); modbusd is the line's one master."""

    def __init__(
        self, device: str, *, framing: str, baudrate: int, bytesize: int, parity: str, stopbits: int,
        timeout: float, queue_limit: int, turnaround: float = TURNAROUND,
    ) -> None:  # fmt: skip
        super().__init__(f"{framing.upper()} {device}", timeout=timeout, queue_limit=queue_limit)
        self.device = device
        self.framing = framing
        self._settings = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity, "stopbits": stopbits}
        self.turnaround = turnaround
        self._t35 = silent_intervals(baudrate)[1] if framing == "rtu" else 0.0

    async def start(self) -> None:
        await super().start()
        with contextlib.suppress(GatewayPathUnavailable):  # said in the log; tried again on every request
            await self._open()

    async def _open(self) -> _Link:
        if self._link is not None and not self._link.closed:
            return self._link
        try:
            from modbusd.transport import serial
        except ImportError as exc:
            raise self._path_down(f"pyserial-asyncio-fast is not installed ({exc.name})") from None
        if self.framing == "rtu":
            link = _Link(RtuFramer(length=response_length), silence=self._t35)
        else:
            link = _Link(AsciiFramer())
        try:
            await serial.open_serial(link, self.device, **self._settings)  # type: ignore[arg-type]  # str and ints
        except OSError as exc:
            raise self._path_down(f"cannot open {self.device}: {exc.strerror or exc}") from None
        self._link = link
        self._path_up()
        return link

    def _frame(self, unit_id: int, pdu: bytes) -> bytes:
        if self.framing == "rtu":
            return with_crc(bytes((unit_id,)) + pdu)
        return AsciiFramer().frame(Adu(0, 0, unit_id, pdu), pdu)

    async def _exchange(self, unit_id: int, pdu: bytes) -> bytes | None:
        link = await self._open()
        loop = asyncio.get_running_loop()
        quiet = link.last_activity + self._t35 - loop.time()  # frames on the bus keep t3.5 apart (§2.5.1.1)
        if quiet > 0:
            await asyncio.sleep(quiet)
        link.write(self._frame(unit_id, pdu))
        if unit_id == BROADCAST_UNIT_ID:  # §2.1: no response; every device needs the turnaround to act on it
            await asyncio.sleep(self.turnaround)
            return None
        reply = await self._response(link, loop.time() + self.timeout, _answers(unit_id, pdu[0]))
        link.last_activity = loop.time()
        return reply


class TcpDownstream(Downstream):
    """A Modbus/TCP server (another gateway, a PLC); one connection, opened on the first request and kept."""

    def __init__(self, host: str, port: int, *, timeout: float, queue_limit: int) -> None:
        super().__init__(f"TCP {host}:{port}", timeout=timeout, queue_limit=queue_limit)
        self.host = host
        self.port = port
        self._transaction_ids = itertools.count(1)

    async def _connect(self, deadline: float) -> _Link:
        if self._link is not None and not self._link.closed:
            return self._link
        loop = asyncio.get_running_loop()
        link = _Link(MbapFramer())
        try:
            async with asyncio.timeout_at(deadline):
                await loop.create_connection(lambda: link, self.host, self.port)
        except TimeoutError:
            log.debug("%s: no connection in %g s: exception 0x0B", self.name, self.timeout)
            raise GatewayTargetDeviceFailedToRespond(f"{self.name}: connect timed out") from None
        except OSError as exc:
            raise self._path_down(f"cannot connect: {exc.strerror or exc}") from None
        self._link = link
        self._path_up()
        return link

    async def _exchange(self, unit_id: int, pdu: bytes) -> bytes | None:
        deadline = asyncio.get_running_loop().time() + self.timeout
        link = await self._connect(deadline)
        transaction_id = next(self._transaction_ids) & 0xFFFF
        link.write(mbap_frame(transaction_id, unit_id, pdu))
        # Our own transaction id: a late response to a request that timed out is never taken for this one.
        answered = _answers(unit_id, pdu[0])
        return await self._response(link, deadline, lambda adu: adu.transaction_id == transaction_id and answered(adu))
