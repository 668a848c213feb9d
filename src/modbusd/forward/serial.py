"""Devices on a serial line (RTU or ASCII), modbusd the line's one master: one transaction at a time.

Serial Line §2.1/§2.4: a master sends one request and waits for its answer (or the time-out) before the next, so
this downstream has one worker that takes the queue's requests in turn. A request whose client has gone (its
future cancelled) is dropped from the queue; one already on the line runs to its end, so that its late response
can never be taken for the next request's.
"""

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from modbusd.forward.downstream import Downstream, log
from modbusd.protocol.adu import Adu
from modbusd.protocol.ascii import AsciiFramer
from modbusd.protocol.codes import BROADCAST_UNIT_ID
from modbusd.protocol.errors import (
    GatewayPathUnavailable,
    GatewayTargetDeviceFailedToRespond,
    ModbusError,
)
from modbusd.protocol.rtu import RtuFramer, response_length, silent_intervals, with_crc

TURNAROUND = 0.1  # Serial Line §2.4.1: after a broadcast the master waits a turnaround delay (typ. 100–200 ms)


class _Link(asyncio.Protocol):
    """The byte stream of one open port: frames found by `framer` queue up until taken."""

    def __init__(self, framer: RtuFramer | AsciiFramer, silence: float | None = None) -> None:
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
        self.transport = transport  # type: ignore[assignment]  # a serial transport

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        self._frames.extend(self.framer.feed(data))  # the serial framers resync: they never raise FrameError
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

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


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
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._link: _Link | None = None
        self._on_line = False  # a transaction is under way

    @property
    def in_flight(self) -> int:
        return int(self._on_line)

    def _wake(self) -> None:
        assert self._wakeup is not None
        self._wakeup.set()

    async def start(self) -> None:
        await super().start()
        self._wakeup = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"forward {self.name}")
        with contextlib.suppress(GatewayPathUnavailable):  # said in the log; tried again on every request
            await self._open()

    async def _halt(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._link is not None:
            self._link.close()
            self._link = None

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
                self._fail(future, exc)
            except Exception as exc:  # our bug: the session answers 04 and logs it
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(reply)
            finally:
                self._on_line = False

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
