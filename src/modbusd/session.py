"""One connection's conversation, sans-I/O: bytes from the peer in, bytes for the peer out.

The session finds requests with an injected framer (MBAP by default; RTU or ASCII on serial lines), hands
each request PDU to an injected `answer` function and frames what comes back. It knows neither sockets nor
devices, so a test drives it with plain bytes. Time comes from the transport too: a serial transport calls
`end_of_frame()` after the silence that ends a frame and `gap()` after one that breaks a frame apart.
"""

import logging
from collections.abc import Callable
from typing import Final, cast

from modbusd.protocol.adu import Adu, Framer
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.errors import FrameError
from modbusd.protocol.mbap import MbapFramer
from modbusd.protocol.pdu import exception_pdu, summary

# FrameError: what receive() raises, for the transport
__all__ = ["AddressedAnswer", "Answer", "Discard", "FrameError", "Session"]

log = logging.getLogger(__name__)

Answer = Callable[[int, bytes], bytes | None]
"""(unit id, request PDU) → response PDU, or None for no response."""

AddressedAnswer = Callable[[int, bytes], tuple[int, bytes] | None]
"""(unit id, request PDU) → (unit id the response comes from, response PDU), or None for no response.

For serial lines, where the answering device says which address it answers from: seed 002's address change
is sent to 0xFF and answered from the device's own (old) address.
"""

Discard = Callable[[int], None]
"""Told the unit id of each frame discarded for a protocol id other than 0."""

_QUIT_STRIP: Final = b"\r\n "


class Session:
    __slots__ = (
        "_addressed", "_answer", "_debug", "_discard", "_discards", "_end_of_frame", "_framer", "_gap", "_on_quit",
        "_quit_word", "peer",
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
    ) -> None:
        """`addressed`: `answer` is an AddressedAnswer, and responses are framed from the unit id it returns."""
        self._answer = cast(Answer, answer)
        self._addressed = cast(AddressedAnswer, answer) if addressed else None
        self._discard = discard
        self._framer: Framer = MbapFramer() if framer is None else framer
        # Only the serial framers know silences; a framer without them (MBAP) is never told about time.
        self._end_of_frame: Callable[[], list[Adu]] | None = getattr(self._framer, "end_of_frame", None)
        self._gap: Callable[[], None] | None = getattr(self._framer, "gap", None)
        self._quit_word = quit_word
        self._on_quit = on_quit
        self._discards = 0
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.peer = peer

    def receive(self, data: bytes) -> bytes:
        """Everything to send back for `data`: the responses to every complete request, in order.

        Raises FrameError when the stream can no longer be framed; the caller closes the connection.
        """
        if self._quit_word is not None and self._is_quit(data):
            return b""
        try:
            adus = self._framer.feed(data)
        except FrameError as exc:  # answer the good requests before the bad frame; the caller then closes
            exc.reply = b"".join([self._reply(adu) for adu in exc.frames])  # type: ignore[arg-type]  # Adus
            raise
        if len(adus) == 1:  # the usual case
            return self._reply(adus[0])
        return b"".join([self._reply(adu) for adu in adus])

    def end_of_frame(self) -> bytes:
        """The silence that ends a frame has passed (t3.5 on RTU, the inter-character time-out on ASCII).

        Returns what to send: the response to the frame this silence completed, if it was whole and good.
        """
        if self._end_of_frame is None:
            return b""
        return b"".join([self._reply(adu) for adu in self._end_of_frame()])

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
        except Exception:  # the answer function's bug must not take the connection down
            log.exception("%s: failed on request %s", self.peer, pdu.hex(" "))
            reply = exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)
        if self._debug:
            log.debug("%s unit=%d %s -> %s", self.peer, unit, summary(pdu), _outcome(reply))
        if reply is None:
            return b""
        return self._framer.frame(adu, reply)

    def _addressed_reply(self, adu: Adu, answer: AddressedAnswer) -> bytes:
        """As `_reply`, for an AddressedAnswer: framed from the unit id the answer names."""
        unit, pdu = adu[2], adu[3]
        try:
            addressed = answer(unit, pdu)
        except Exception:
            log.exception("%s: failed on request %s", self.peer, pdu.hex(" "))
            addressed = None if unit == 0 else (unit, exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE))
        reply = None if addressed is None else addressed[1]
        if self._debug:
            log.debug("%s unit=%d %s -> %s", self.peer, unit, summary(pdu), _outcome(reply))
        if addressed is None:
            return b""
        from_unit, reply = addressed
        return self._framer.frame(adu if from_unit == unit else adu._replace(unit_id=from_unit), reply)

    def _discarded(self, proto: int, unit: int) -> None:
        """TCP guide §4.4.1.1: a protocol id other than 0 is not Modbus; drop the frame, keep the connection."""
        self._discards += 1
        level = logging.WARNING if self._discards == 1 else logging.DEBUG
        log.log(level, "%s: discarding frame with protocol id %d (any more: debug level)", self.peer, proto)
        if self._discard is not None:
            self._discard(unit)

    def _is_quit(self, data: bytes) -> bool:
        """Seed 000's remote shutdown: the connection sent exactly the quit word (a line ending is allowed)."""
        pending = self._framer.pending + data
        if pending.rstrip(_QUIT_STRIP) != self._quit_word:
            return False
        log.warning("%s sent the quit command; shutting down", self.peer)
        if self._on_quit is not None:
            self._on_quit()
        return True


def _outcome(reply: bytes | None) -> str:
    if reply is None:
        return "no response"
    if reply[0] & 0x80:
        return f"exception {reply[1]}"
    return "ok"
