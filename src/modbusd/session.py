"""One connection's conversation, sans-I/O: bytes from the peer in, bytes for the peer out.

The session finds requests with an injected framer (MBAP by default; RTU or ASCII on serial lines), hands
each request PDU to an injected `answer` function and frames what comes back. It knows neither sockets nor
devices, so a test drives it with plain bytes. Time comes from the transport too: a serial transport calls
`end_of_frame()` after the silence that ends a frame and `gap()` after one that breaks a frame apart.

Answers that take time (a request forwarded by the gateway, a request hook that is a coroutine): the answer
function may return an awaitable instead of a response. The session never awaits it: it wraps it in a
`Pending`, lists it in `awaiting` for the transport, and holds back every later response of this
connection until the transport hands the outcome to `settle()` or `fail()`. So one connection's responses
always leave in request order, while other connections, each with its own session, go on untouched.

Fault injection (`modbusd.faults`): while the injected `FaultHook` has rules, each request is first shown to it. A
fault it picks may replace the response or change it, and may send pieces later (a delay, a split, a repeat) or
close the connection: those go to the transport as a `Schedule`, in `awaiting` too, and are not held in line, so a
delayed response never holds up the responses after it (over TCP the transaction id pairs them).

Longer than the ~400 lines a module should be (about 440): `Session` is one state machine (framing, the line of
responses owed, the faults applied within it), on the request path, where a helper called per request would cost
time; the types above it are the contracts it is handed (`Answer`, `Batch`, `FaultHook`) and the items of its line
(`Pending`, `Schedule`), which read best beside their one user.
"""

import logging
from collections.abc import Awaitable, Callable, Sized
from time import perf_counter
from typing import Final, Protocol, cast

from modbusd.protocol.adu import Adu, Framer
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.describe import outcome, summary
from modbusd.protocol.errors import FrameError, ModbusError
from modbusd.protocol.mbap import MbapFramer
from modbusd.protocol.pdu import exception_pdu
from modbusd.ratelimit import RateLimitedLog, host_of
from modbusd.stats import SAMPLE_MASK, RequestCounts

# FrameError: what receive() raises, for the transport
__all__ = ["AddressedAnswer", "Answer", "Batch", "Discard", "FaultHook", "FrameError", "Pending", "Schedule", "Session"]

log = logging.getLogger(__name__)
# At DEBUG (the command line's -vv) the request log shows the values each read answered with too; -v shows the
# values written only. A logger of its own, so that an embedding program can turn it on like any other.
values_log = logging.getLogger("modbusd.values")

Answer = Callable[[int, bytes], bytes | Awaitable[bytes | None] | None]
"""(unit id, request PDU) → response PDU, or None for no response, or an awaitable of either.

It may raise a ModbusError (answered with its code) and so may the awaitable; anything else is answered
with exception 04 and logged.
"""

AddressedAnswer = Callable[[int, bytes], tuple[int, bytes] | Awaitable[bytes | None] | None]
"""(unit id, request PDU) → (unit id the response comes from, response PDU), or None for no response.

For serial lines, where the answering device says which address it answers from: the address change
is sent to 0xFF and answered from the device's own (old) address. It may also return an awaitable of a
response PDU (a coroutine request hook), which is answered from the request's unit id, in request order.
"""

Batch = Callable[[bytes], tuple[bytes | bytearray, int, int]]
"""The common requests of a read answered at once (`batch.batch_for`, bound by `sessions.py`): bytes of an MBAP stream
→ (the framed responses to its first requests, the bytes they took, how many they were); (b"", 0, 0) to leave it
all to the reference path."""

Discard = Callable[[int], None]
"""Told the unit id of each frame discarded for a protocol id other than 0."""

_QUIT_STRIP: Final = b"\r\n "

Plan = tuple[bytes, list[tuple[float, bytes]], str | None]
"""A fault's doing: (bytes to send now, in order; (gap in seconds, bytes) pieces to send later, one after the other;
"close", "reset" or None, what to do to the connection after them)."""


class Fault(Protocol):
    replaces: bool  # the response is replaced, so the request is not carried out

    def replacement(self, pdu: bytes) -> bytes | None:
        """The response PDU a replacing fault gives the request `pdu` instead (None: no response at all)."""
        ...

    def apply(self, out: bytes | None, adu: Adu, framer: Framer) -> Plan:
        """What to send instead of `out`, the framed response (None when `replaces`)."""
        ...


class FaultHook(Protocol):
    """What a session asks about each request while fault rules are on (`modbusd.faults.FaultPoint`)."""

    rules: Sized  # the enabled rules, changed in place: while empty, the hook is never asked

    def decide(self, peer: str, adu: Adu) -> Fault | None: ...


class Schedule:
    """What a fault sends later, outside the line of responses owed: `pieces`, each (seconds after the one before,
    bytes), then `end`: "close", "reset" or None. The transport runs it (`modbusd.transport.tcp.start_awaiting`)."""

    __slots__ = ("end", "pieces")

    def __init__(self, pieces: list[tuple[float, bytes]], end: str | None = None) -> None:
        self.pieces = pieces
        self.end = end

    def __repr__(self) -> str:
        return f"<Schedule {[(round(gap, 6), piece.hex()) for gap, piece in self.pieces]} then {self.end}>"


class Pending:
    """A response not known yet: the answer function returned `awaitable` for the request `adu`.

    Opaque to the session, which only keeps it in its place in the line of responses owed. The transport
    awaits `awaitable` (in asyncio: a task), then calls `Session.settle` or `Session.fail` with it.
    """

    __slots__ = ("adu", "awaitable", "fault", "out", "started")

    def __init__(self, adu: Adu, awaitable: Awaitable[bytes | None], started: float = 0.0) -> None:
        self.adu = adu
        self.awaitable = awaitable
        self.out: bytes | None = None  # the framed response (b"" for none) once settled
        self.fault: Fault | None = None  # applied to the response once it comes
        self.started = started  # its perf_counter() on arrival, for the latency histogram (0.0: not counted)

    def __repr__(self) -> str:
        return f"<Pending tid={self.adu[0]} unit={self.adu[2]} fc={self.adu[3][:1].hex()}>"


class Session:
    __slots__ = (
        "_addressed", "_answer", "_batch", "_counts", "_debug", "_discard", "_discards", "_end_of_frame",
        "_fault_rules", "_faults", "_framer", "_gap", "_on_quit", "_owed", "_quit_word", "_read_values",
        "_sample_mask", "awaiting", "peer", "requests", "warnings",
    )  # fmt: skip

    def __init__(
        self,
        answer: Answer | AddressedAnswer,
        *,
        framer: Framer | None = None,
        addressed: bool = False,
        peer: str = "?",
        discard: Discard | None = None,
        quit_word: bytes | None = None,
        on_quit: Callable[[], None] | None = None,
        faults: FaultHook | None = None,
        counts: RequestCounts | None = None,
        time_every_read: bool = False,
        batch: Batch | None = None,
    ) -> None:
        """`addressed`: `answer` is an AddressedAnswer, and responses are framed from the unit id it returns.
        `faults`: asked about each request while it has rules (fault injection).
        `counts`: where this transport's requests, bytes and latencies are counted (`modbusd.stats`); None: not.
        `time_every_read`: every read that completes a request is timed, not one per KiB (a serial line's few).
        `batch`: answers a read's first requests at once (MBAP framing only), when nothing needs the reference path:
        no fault rules, no response owed, no partial frame, no request log at DEBUG."""
        self._answer = cast(Answer, answer)
        self._addressed = cast(AddressedAnswer, answer) if addressed else None
        self._discard = discard
        self._framer: Framer = MbapFramer() if framer is None else framer
        # Only the serial framers know silences; a framer without them (MBAP) is never told about time.
        self._end_of_frame: Callable[[], list[Adu]] | None = getattr(self._framer, "end_of_frame", None)
        self._gap: Callable[[], None] | None = getattr(self._framer, "gap", None)
        self._quit_word = quit_word
        self._on_quit = on_quit
        self._faults = faults
        self._fault_rules: Sized = () if faults is None else faults.rules  # one truthiness check per request
        self._discards = 0
        self._counts = counts
        self._sample_mask = 0 if time_every_read else SAMPLE_MASK
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._read_values = self._debug and values_log.isEnabledFor(logging.DEBUG)
        # -v's line per request is the reference path's; a batch frames MBAP only (the empty framer is MbapFramer)
        self._batch = batch if framer is None and not self._debug else None
        self.peer = peer
        # Responses owed in request order once one of them is pending: Pendings and framed bytes (never b"").
        # Empty on the fast path, where every answer is at hand: a shared empty tuple until something is owed (a list,
        # not a deque, once it is: 56 bytes instead of 600), for the memory of thousands of idle connections.
        self._owed: list[Pending | bytes] | tuple[()] = ()
        self.awaiting: list[Pending | Schedule] | tuple[()] = ()  # what the transport has not started awaiting yet
        self.requests = 0  # complete frames received: the transport's sign of activity, and its close line's count
        # Set by a transport whose peer opens many sessions (UDP: one per datagram): its warnings are rate-limited
        # per peer across them, instead of once per session.
        self.warnings: RateLimitedLog | None = None

    def receive(self, data: bytes) -> bytes:
        """Everything to send back for `data`: the responses to every complete request, in order.

        Raises FrameError when the stream can no longer be framed; the caller closes the connection.
        """
        if self._quit_word is not None and self._is_quit(data):
            return b""
        counts = self._counts
        started = 0.0
        if counts is not None:
            size = len(data)
            counts.bytes_in = received = counts.bytes_in + size
            if received & self._sample_mask <= size:  # this read starts or crosses a KiB of the transport's: timed
                started = perf_counter()
        out = b""
        batch = self._batch
        if batch is not None and not self._fault_rules and not self._owed and self._framer.empty:  # type: ignore[attr-defined]  # MBAP's
            out, used, answered = batch(data)  # the usual requests, at once; the rest (if any) as ever
            if answered:
                self.requests += answered
                if counts is not None:
                    counts.bytes_out += len(out)
                data = data[used:]
        if data:
            try:
                adus = self._framer.feed(data)
            except FrameError as exc:  # answer the good requests before the bad frame; the caller then closes
                self.requests += len(exc.frames)
                exc.reply = out + self._replies(exc.frames)  # type: ignore[arg-type]  # Adus
                raise
            self.requests += len(adus)
            if len(adus) == 1 and not self._owed:  # the usual case without a batch
                out += self._faulted(adus[0]) if self._fault_rules else self._reply(adus[0])
            else:
                out += self._replies(adus)
        if started and out and not self.awaiting:  # an answer that waits is timed when it comes (`settle`)
            counts.observe(perf_counter() - started)  # type: ignore[union-attr]  # started: counted
        return out

    def _replies(self, adus: list[Adu] | tuple[Adu, ...]) -> bytes:
        """The responses to `adus` that can be sent now; those behind a pending one wait in `_owed`."""
        ready = []
        reply = self._faulted if self._fault_rules else self._reply
        for adu in adus:
            out = reply(adu)  # a pending answer goes into _owed itself (made then) and gives b""
            if self._owed:
                if out:
                    self._owed.append(out)  # type: ignore[union-attr]  # not empty: a list
            else:
                ready.append(out)
        return b"".join(ready)

    @property
    def partial(self) -> bool:
        """A frame has begun and not ended. The transport, which has the clock, times it out."""
        return bool(self._framer.pending)

    def take_awaiting(self) -> list[Pending | Schedule] | tuple[()]:
        """The Pendings and Schedules made since the last call, for the transport to start awaiting or running."""
        awaiting, self.awaiting = self.awaiting, ()
        return awaiting

    def _await(self, item: Pending | Schedule) -> None:
        if not self.awaiting:
            self.awaiting = []
        self.awaiting.append(item)  # type: ignore[union-attr]  # a list, as just made

    def settle(self, pending: Pending, reply: bytes | None) -> bytes:
        """`pending`'s answer came: what can be sent now (its response and those held behind it), in order."""
        adu = pending.adu
        if self._debug:
            self._log_request(adu[2], adu[3], reply, " (deferred)")
        pending.out = out = b"" if reply is None else self._framer.frame(adu, reply)
        counts = self._counts
        if counts is not None:
            counts.answered(adu[3][0], reply, len(out))
            counts.observe(perf_counter() - pending.started)  # every deferred answer is timed: they take ms to s
        if pending.fault is not None and out:
            pending.out = self._apply(pending.fault, adu, out)
        return self._release()

    def fail(self, pending: Pending, exc: BaseException) -> bytes:
        """`pending`'s awaitable raised `exc`: a ModbusError is answered with its code, anything else with 04."""
        pdu = pending.adu[3]
        if isinstance(exc, ModbusError):
            reply = exception_pdu(pdu[0], exc.code)
        else:
            log.error("%s: failed on request %s", self.peer, pdu.hex(" "), exc_info=exc)
            reply = exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)
        return self.settle(pending, reply)

    def _release(self) -> bytes:
        owed = self._owed
        ready = []
        while owed:
            head = owed[0]
            if head.__class__ is Pending:
                out = head.out  # type: ignore[union-attr]  # a Pending, as checked
                if out is None:
                    break
                ready.append(out)
            else:
                ready.append(head)  # type: ignore[arg-type]  # bytes
            del owed[0]  # short: a few requests pipelined behind one awaited answer
        return b"".join(ready)

    def _defer(self, adu: Adu, reply: object) -> bytes:
        """The answer is an awaitable: hold its place in line; nothing to send for it now."""
        pending = Pending(adu, reply, 0.0 if self._counts is None else perf_counter())  # type: ignore[arg-type]  # the Answer type says what else it can be
        if not self._owed:
            self._owed = []
        self._owed.append(pending)  # type: ignore[union-attr]  # a list, as just made
        self._await(pending)
        return b""

    def end_of_frame(self) -> bytes:
        """The silence that ends a frame has passed (t3.5 on RTU, the inter-character time-out on ASCII).

        Returns what to send: the response to the frame this silence completed, if it was whole and good.
        """
        if self._end_of_frame is None:
            return b""
        counts = self._counts
        if counts is None:
            return self._replies(self._end_of_frame())
        started = perf_counter()  # only serial lines have silences, and their frames are ms apart: every one timed
        out = self._replies(self._end_of_frame())
        if out and not self.awaiting:
            counts.observe(perf_counter() - started)
        return out

    def gap(self) -> None:
        """A silence longer than t1.5 but shorter than t3.5 came before the bytes about to be received."""
        if self._gap is not None:
            self._gap()

    def _reply(self, adu: Adu) -> bytes:
        """The framed response to one request, or b"" when it gets none."""
        _, proto, unit, pdu = adu
        if proto:
            self._discarded(proto, unit)
            return b""
        if self._addressed is not None:
            return self._addressed_reply(adu, self._addressed)
        try:
            reply = self._answer(unit, pdu)
        except ModbusError as exc:  # e.g. the gateway's queue is full: exception 06
            reply = exception_pdu(pdu[0], exc.code)
        except Exception:  # the answer function's bug must not take the connection down
            log.exception("%s: failed on request %s", self.peer, pdu.hex(" "))
            reply = exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)
        if reply is None:
            out = b""
        elif reply.__class__ is bytes or isinstance(reply, (bytearray, memoryview)):
            out = self._framer.frame(adu, reply)  # type: ignore[arg-type]  # bytes-like, as checked
        else:
            return self._defer(adu, reply)
        counts = self._counts
        if counts is not None:
            if out and reply[0] < 0x80:  # type: ignore[index]  # bytes-like, as `out` says
                counts.ok[pdu[0]] += 1  # the usual outcome, inline: one list slot and one int, no call
                counts.bytes_out += len(out)
            else:
                counts.answered(pdu[0], reply, len(out))  # type: ignore[arg-type]  # bytes-like or None, as checked
        if self._debug:
            self._log_request(unit, pdu, reply)  # type: ignore[arg-type]  # bytes-like or None, as checked
        return out

    def _faulted(self, adu: Adu) -> bytes:
        """`_reply`, with the fault the rules pick for this request, if any (`modbusd.faults`).

        A replacing fault (silence, an exception, a close or reset) is decided before the request is carried out,
        and it is not; any other acts on the response: at once, or once a deferred answer settles."""
        fault = self._faults.decide(self.peer, adu)  # type: ignore[union-attr]  # rules exist, so a hook does
        if fault is None:
            return self._reply(adu)
        if self._debug:
            log.debug("%s unit=%d %s -> %s", self.peer, adu[2], summary(adu[3]), fault)
        if fault.replaces:
            return self._replaced(fault, adu)
        waiting = len(self.awaiting)
        out = self._reply(adu)
        if len(self.awaiting) > waiting:  # deferred (the gateway, a coroutine hook): faulted when it settles
            self.awaiting[-1].fault = fault  # type: ignore[union-attr]  # _defer appended a Pending
            return b""
        return self._apply(fault, adu, out) if out else b""  # no response was due: nothing to change

    def _replaced(self, fault: Fault, adu: Adu) -> bytes:
        """A replacing fault's doing, counted as the client sees it (`RequestCounts.answered`): an exception fault
        as that exception, silent, close and reset as no response. The request is never carried out, so neither
        `_reply` nor a settle counts it; without this the request metrics would miss it."""
        out = self._apply(fault, adu, None)
        counts = self._counts
        if counts is not None:
            pdu = adu[3]
            counts.answered(pdu[0], fault.replacement(pdu), len(out))
        return out

    def _apply(self, fault: Fault, adu: Adu, out: bytes | None) -> bytes:
        now, pieces, end = fault.apply(out, adu, self._framer)
        if pieces or end is not None:
            self._await(Schedule(pieces, end))
        return now

    def _addressed_reply(self, adu: Adu, answer: AddressedAnswer) -> bytes:
        """As `_reply`, for an AddressedAnswer: framed from the unit id the answer names."""
        unit, pdu = adu[2], adu[3]
        try:
            addressed = answer(unit, pdu)
        except Exception:
            log.exception("%s: failed on request %s", self.peer, pdu.hex(" "))
            addressed = None if unit == 0 else (unit, exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE))
        if addressed is not None and addressed.__class__ is not tuple:
            return self._defer(adu, addressed)  # an awaitable: its response comes from the request's unit id
        reply = None if addressed is None else addressed[1]  # type: ignore[index]  # a tuple, as checked
        if self._debug:
            self._log_request(unit, pdu, reply)
        if addressed is None:
            out = b""
        else:
            from_unit = addressed[0]  # type: ignore[index]  # a tuple, as checked
            out = self._framer.frame(adu if from_unit == unit else adu._replace(unit_id=from_unit), reply)  # type: ignore[arg-type]  # bytes
        if self._counts is not None:
            self._counts.answered(pdu[0], reply, len(out))
        return out

    def _discarded(self, proto: int, unit: int) -> None:
        """TCP guide §4.4.1.1: a protocol id other than 0 is not Modbus; drop the frame, keep the connection."""
        self._discards += 1
        if self.warnings is not None:
            self.warnings.log(log, logging.WARNING, "protocol id", host_of(self.peer),
                              "%s: discarding frame with protocol id %d", self.peer, proto)  # fmt: skip
        else:
            level = logging.WARNING if self._discards == 1 else logging.DEBUG
            log.log(level, "%s: discarding frame with protocol id %d (any more: debug level)", self.peer, proto)
        if self._discard is not None:
            self._discard(unit)

    def _log_request(self, unit: int, pdu: bytes, reply: bytes | None, note: str = "") -> None:
        """-v's line: called only when DEBUG is on, which each session reads once, so the quiet path pays nothing."""
        log.debug("%s unit=%d %s -> %s%s", self.peer, unit, summary(pdu),
                  outcome(reply, pdu if self._read_values else None), note)  # fmt: skip

    def _is_quit(self, data: bytes) -> bool:
        """MBAsyncServer's remote shutdown: the connection sent exactly the quit word (a line ending is allowed)."""
        pending = self._framer.pending + data
        if pending.rstrip(_QUIT_STRIP) != self._quit_word:
            return False
        log.warning("%s sent the quit command; shutting down", self.peer)
        if self._on_quit is not None:
            self._on_quit()
        return True
