"""MBAP framing (TCP guide §3.1.3): finds frame boundaries in a TCP byte stream. Knows nothing of function codes.

A frame is found by its length field alone, never by TCP segment boundaries: a request may arrive in
several segments, and several requests may arrive in one.
"""

import struct
from typing import Final

from modbusd.protocol.adu import Adu
from modbusd.protocol.errors import FrameError

MBAP: Final = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id
MIN_LENGTH: Final = 2  # unit id + function code
MAX_LENGTH: Final = 254  # unit id + 253-byte PDU


class MbapFramer:
    """Stateful: keeps the bytes of an incomplete frame until the rest arrives."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def empty(self) -> bool:
        """True when no partial frame is waiting for more bytes."""
        return not self._buf

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
                raise FrameError(f"MBAP length {length} outside {MIN_LENGTH}..{MAX_LENGTH} in header {header}", adus)
            end = pos + 6 + length
            if end > size:
                break  # a partial frame: a normal state, not an error
            adus.append(Adu(tid, proto, unit, bytes(buf[pos + 7 : end])))
            pos = end
        if pos:
            del buf[:pos]
        return adus

    def frame(self, request: Adu, pdu: bytes) -> bytes:
        """TCP guide §3.1.3: transaction id and unit id echoed, protocol id 0."""
        return MBAP.pack(request[0], 0, len(pdu) + 1, request[2]) + pdu


def frame(transaction_id: int, unit_id: int, pdu: bytes, protocol_id: int = 0) -> bytes:
    """The MBAP header for `pdu`, followed by the PDU."""
    return MBAP.pack(transaction_id, protocol_id, len(pdu) + 1, unit_id) + pdu
