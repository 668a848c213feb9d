"""MBAP framing (TCP guide §3.1.3): finds frame boundaries in a TCP byte stream. Knows nothing of function codes.

A frame is found by its length field alone, never by TCP segment boundaries: a request may arrive in
several segments, and several requests may arrive in one.
"""

import struct
from collections.abc import Callable
from typing import Final

from modbusd.protocol.adu import Adu
from modbusd.protocol.errors import FrameError

MBAP: Final = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
MIN_LENGTH: Final = 2  # unit id + function code
MAX_LENGTH: Final = 254  # unit id + 253-byte PDU


class MbapFramer:
    """Stateful: keeps the bytes of an incomplete frame until the rest arrives."""

    __slots__ = ("_buf", "empty")

    def __init__(self) -> None:
        self._buf = bytearray()
        # True when no partial frame is waiting for more bytes. An attribute kept by `feed`, not a property: the
        # session asks before every read whether the fast path may take it.
        self.empty = True

    @property
    def pending(self) -> bytes:
        """The bytes received but not yet framed."""
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[Adu]:
        """Return every complete frame, in order; keep the rest.

        Frames with a protocol id other than 0 are returned too: it is the receiver's job to discard them
        (TCP guide §4.4.1.1), and it needs to know they happened to count them.
        Raises FrameError when a length field is outside 2..254: the stream has lost its boundaries. The
        frames found before the bad one travel in the error, so that they can still be answered.
        """
        buf = self._buf
        if not buf and len(data) > 7:  # the usual case, exactly one whole frame: no buffering at all
            tid, proto, length, unit = MBAP.unpack_from(data)
            if len(data) == 6 + length and MIN_LENGTH <= length <= MAX_LENGTH:
                return [Adu(tid, proto, unit, data[7:])]
        buf += data
        size = len(buf)
        pos = 0
        adus: list[Adu] = []
        unpack = MBAP.unpack_from
        while size - pos >= 7:
            tid, proto, length, unit = unpack(buf, pos)
            if not MIN_LENGTH <= length <= MAX_LENGTH:
                header = bytes(buf[pos : pos + 7]).hex(" ")
                buf.clear()
                self.empty = True
                raise FrameError(f"MBAP length {length} outside {MIN_LENGTH}..{MAX_LENGTH} in header {header}", adus)
            end = pos + 6 + length
            if end > size:
                break  # a partial frame: a normal state, not an error
            adus.append(Adu(tid, proto, unit, bytes(buf[pos + 7 : end])))
            pos = end
        if pos:
            del buf[:pos]
        self.empty = not buf
        return adus

    def frame(self, request: Adu, pdu: bytes) -> bytes:
        """TCP guide §3.1.3: transaction id and unit id echoed, protocol id 0."""
        return MBAP.pack(request[0], 0, len(pdu) + 1, request[2]) + pdu


def frame(transaction_id: int, unit_id: int, pdu: bytes, protocol_id: int = 0) -> bytes:
    """The MBAP header for `pdu`, followed by the PDU."""
    return MBAP.pack(transaction_id, protocol_id, len(pdu) + 1, unit_id) + pdu


Dropped = Callable[[list[Adu], int], None]
"""Told of a datagram's whole requests after its first, and of the number of bytes dropped with them."""


class DatagramFramer:
    """Modbus over UDP: a datagram is one request, whatever else it holds.

    A TCP stream may carry several requests in one segment, and MbapFramer answers them all. Over UDP that
    would let one spoofed datagram of 250 requests (3 kB) draw 64,750 bytes of responses at the address it
    claims to come from. So the first request is the datagram's only one: the response to a datagram is one
    ADU, at most 260 bytes, and never more than the protocol's own read ratio (FC03 asks 125 registers in
    12 bytes and gets 259) times what came in. What follows the first request is handed to `on_dropped`.
    """

    __slots__ = ("_on_dropped",)

    pending = b""  # a datagram never continues in the next one

    def __init__(self, on_dropped: Dropped) -> None:
        self._on_dropped = on_dropped

    def feed(self, data: bytes) -> list[Adu]:
        """The datagram's first request (none if it is cut short). FrameError when its own header is bad."""
        try:
            adus = MbapFramer().feed(data)
        except FrameError as exc:  # a bad header after the first request is only more to drop
            if not exc.frames:
                raise
            adus = list(exc.frames)  # type: ignore[arg-type]  # MbapFramer puts Adus there
        if not adus:
            return adus
        extra = len(data) - MBAP.size - len(adus[0].pdu)
        if extra:
            self._on_dropped(adus[1:], extra)
        return adus[:1]

    frame = MbapFramer.frame  # the response is framed as over TCP
