"""A Modbus/TCP server as the downstream (another gateway, a PLC): several requests in flight, paired by transaction id.

TCP guide §3.1.3 and §4.2: a client may send several requests on one connection without waiting, and the
transaction id it chose pairs each response with its request, in whatever order they come back. So up to
`in_flight_limit` requests are on the connection at once, each with a transaction id of ours (the TCP client's
own is the session's business), and every frame received is matched by that id. A server that takes one request
at a time simply answers them in turn; `in_flight_limit = 1` sends one at a time, as a serial line does, for a
device that drops what arrives while it is busy.

Each request keeps its own time-out, from the moment it goes out: when it passes, that request alone is answered
0x0B and its transaction id is forgotten, so a late response to it is dropped (and logged at DEBUG) and can never
be taken for another's. The connection is opened by the first request that finds it closed (its time-out covers
the connect), and kept; when it drops, or its bytes can no longer be framed, every request in flight is answered
0x0A and the next request opens a new one.

A request whose client has gone (its future cancelled) stays in flight until its response or its time-out: it
holds its place under the bound, so the server never has more than `in_flight_limit` requests of ours.
"""

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

from modbusd.forward.downstream import Downstream, Waiting, log
from modbusd.protocol.adu import Adu
from modbusd.protocol.errors import FrameError, GatewayTargetDeviceFailedToRespond, ModbusError
from modbusd.protocol.gateway import IN_FLIGHT, MAX_IN_FLIGHT  # shared with the device file and the command line
from modbusd.protocol.mbap import MbapFramer
from modbusd.protocol.mbap import frame as mbap_frame


class _Pending:
    """A request on the connection, waiting for the response with its transaction id."""

    __slots__ = ("deadline", "function", "future", "unit_id")

    def __init__(self, unit_id: int, function: int, future: "asyncio.Future[bytes | None]", deadline: float) -> None:
        self.unit_id = unit_id
        self.function = function
        self.future = future
        self.deadline = deadline

    def answered_by(self, adu: Adu) -> bool:
        """A Modbus frame (§4.4.1.1: protocol id 0) from the same unit, to the same function (or its exception)."""
        return (
            not adu.protocol_id and adu.unit_id == self.unit_id and bool(adu.pdu) and adu.pdu[0] & 0x7F == self.function
        )


class _Connection(asyncio.Protocol):
    """One connection to the server: the frames it sends and its end go to the downstream that opened it."""

    def __init__(self, downstream: "TcpDownstream") -> None:
        self._downstream = downstream
        self._framer = MbapFramer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        try:
            adus = self._framer.feed(data)
        except FrameError as exc:  # the stream has lost its boundaries: what came before the bad frame still counts
            self._downstream._received(exc.frames)  # type: ignore[arg-type]  # the framer's Adus
            self.close()
            self._downstream._lost(self, exc)
            return
        self._downstream._received(adus)

    def connection_lost(self, exc: Exception | None) -> None:
        self._downstream._lost(self, exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpDownstream(Downstream):
    """A Modbus/TCP server; one connection, opened on the first request and kept, `in_flight_limit` requests on it."""

    def __init__(
        self, host: str, port: int, *, timeout: float, queue_limit: int, in_flight_limit: int = IN_FLIGHT
    ) -> None:
        if in_flight_limit > MAX_IN_FLIGHT:
            raise ValueError(f"forward in-flight bound {in_flight_limit} is more than {MAX_IN_FLIGHT}")
        super().__init__(f"TCP {host}:{port}", timeout=timeout, queue_limit=queue_limit,
                         in_flight_limit=in_flight_limit)  # fmt: skip
        self.host = host
        self.port = port
        self._transaction_ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}  # transaction id → request, in the order sent (so by deadline)
        self._connection: _Connection | None = None  # open, or None
        self._connecting: asyncio.Task[None] | None = None
        self._dialing: Waiting | None = None  # the request whose turn opens the connection
        self._timer: asyncio.TimerHandle | None = None  # at the oldest pending request's deadline

    @property
    def in_flight(self) -> int:
        return len(self._pending) + (self._dialing is not None)

    def _send_now(self, unit_id: int, pdu: bytes, future: "asyncio.Future[bytes | None]") -> bool:
        connection = self._connection
        if connection is None or len(self._pending) >= self.in_flight_limit:
            return False
        deadline = asyncio.get_running_loop().time() + self.timeout
        connection.transport.write(self._enter(unit_id, pdu, future, deadline))  # type: ignore[union-attr]  # open
        self._arm()
        return True

    def _wake(self) -> None:
        self._send_waiting()

    def _send_waiting(self) -> None:
        """Send the waiting requests while there is room in flight, opening the connection first if it is closed."""
        waiting = self._waiting
        if not waiting or not self._started:
            return
        connection = self._connection
        if connection is None:
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect(), name=f"connect {self}")
            return
        frames = []
        deadline = asyncio.get_running_loop().time() + self.timeout
        room = self.in_flight_limit - len(self._pending)
        while waiting and room > 0:
            unit_id, pdu, future = waiting.popleft()
            if not future.done():
                frames.append(self._enter(unit_id, pdu, future, deadline))
                room -= 1
        if frames:
            assert connection.transport is not None
            connection.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
            self._arm()

    def _enter(self, unit_id: int, pdu: bytes, future: "asyncio.Future[bytes | None]", deadline: float) -> bytes:
        """The request framed with a transaction id of ours, which from now on awaits its response."""
        pending = self._pending
        transaction_id = next(self._transaction_ids) & 0xFFFF
        while transaction_id in pending:  # after 65,536 requests: never two awaited under one id
            transaction_id = next(self._transaction_ids) & 0xFFFF
        pending[transaction_id] = _Pending(unit_id, pdu[0], future, deadline)
        return mbap_frame(transaction_id, unit_id, pdu)

    async def _connect(self) -> None:
        """Open the connection for the request at the head of the queue, within its time-out; if that fails, it
        alone is answered (0x0A refused, 0x0B no answer) and the next request tries in its turn."""
        loop = asyncio.get_running_loop()
        try:
            while self._waiting and self._connection is None:
                unit_id, pdu, future = entry = self._waiting.popleft()
                if future.done():
                    continue
                self._dialing = entry
                deadline = loop.time() + self.timeout
                try:
                    connection = await self._open(deadline)
                except ModbusError as exc:
                    self._fail(future, exc)
                    continue
                except Exception as exc:  # our bug: the session answers 04 and logs it; the next request tries
                    if not future.done():
                        future.set_exception(exc)
                    continue
                finally:
                    self._dialing = None
                if connection.transport is None or connection.transport.is_closing():  # closed at once
                    self._fail(future, self._path_down("closed: end of file"))
                    continue
                self._connection = connection
                if not future.done():
                    connection.transport.write(self._enter(unit_id, pdu, future, deadline))
                    self._arm()
        finally:
            self._connecting = None
        self._send_waiting()

    async def _open(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(self)
        try:
            async with asyncio.timeout_at(deadline):
                await loop.create_connection(lambda: connection, self.host, self.port)
        except TimeoutError:
            log.debug("%s: no connection in %g s: exception 0x0B", self.name, self.timeout)
            raise GatewayTargetDeviceFailedToRespond(f"{self.name}: connect timed out") from None
        except OSError as exc:
            raise self._path_down(f"cannot connect: {exc.strerror or exc}") from None
        self._path_up()
        return connection

    def _received(self, adus: Sequence[Adu]) -> None:
        """Each frame answers the request with its transaction id; one that answers none awaited is dropped.

        Only the open connection receives: one given up is closed at once, and a closed transport reads no more."""
        pending = self._pending
        answered = False
        for adu in adus:
            request = pending.get(adu.transaction_id)
            if request is None or not request.answered_by(adu):
                # a late response (its request timed out) or a stray frame: its request, if any, waits on
                log.debug("%s: dropped a frame that answers no request awaiting one: %s", self.name, adu)
                continue
            del pending[adu.transaction_id]
            answered = True
            if not request.future.done():
                request.future.set_result(adu.pdu)
        if answered and self._waiting:
            self._send_waiting()

    def _lost(self, connection: _Connection, exc: Exception | None) -> None:
        """The connection closed (or could not be framed): everything in flight is answered 0x0A."""
        if connection is not self._connection:  # one given up already (its bytes could not be framed)
            return
        self._connection = None
        if self._pending:
            why = f"closed: {exc or 'end of file'}"
            for request in self._pending.values():
                self._fail(request.future, self._path_down(why))
            self._pending.clear()
        self._send_waiting()  # the next request opens a new connection

    def _arm(self) -> None:
        """The timer at the oldest request's deadline: the order sent is the order of deadlines, so one suffices."""
        if self._timer is None and self._pending:
            oldest = next(iter(self._pending.values()))
            self._timer = asyncio.get_running_loop().call_at(oldest.deadline, self._expire)

    def _expire(self) -> None:
        """Every request whose time-out has passed is answered 0x0B; the others keep waiting."""
        self._timer = None
        now = asyncio.get_running_loop().time()
        pending = self._pending
        expired = False
        while pending:
            transaction_id, request = next(iter(pending.items()))
            if request.deadline > now:
                break
            del pending[transaction_id]
            expired = True
            log.debug("%s: no response in %g s: exception 0x0B", self.name, self.timeout)
            self._fail(request.future, GatewayTargetDeviceFailedToRespond(f"{self.name}: no response"))
        self._arm()
        if expired:
            self._send_waiting()

    async def _halt(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
        if self._dialing is not None:
            self._dialing[2].cancel()
            self._dialing = None
        for request in self._pending.values():
            request.future.cancel()
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
