"""RTU framing (Modbus over Serial Line V1.02 §2.5.1): address, PDU, CRC-16 low byte first.

On a real line a frame ends with 3.5 character times of silence. This module never measures time: the serial
transport does, and calls `end_of_frame()` after t3.5 of silence and `gap()` when a silence longer than t1.5
but shorter than t3.5 broke a frame apart. Requests whose length follows from their function code are framed
as soon as their last byte and a good CRC arrive, so the answer does not wait for the silence, and so that
links without real timing (RTU over TCP, pseudo-terminals) work too. A frame whose CRC is wrong at that
length may be another device's response on a shared bus; the silence then tells where it ends.
"""

import struct
from collections.abc import Callable
from typing import Final

from modbusd.protocol.adu import Adu

MIN_FRAME: Final = 4  # address, function code, CRC
MAX_FRAME: Final = 256  # address + 253-byte PDU + CRC

Discard = Callable[[str], None]
"""Told why each frame was thrown away (bad CRC, cut short, too long): feeds the FC08 error counters."""


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()
_CRC: Final = struct.Struct("<H")


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS: preset 0xFFFF, reflected polynomial 0xA001 (§6.2.2)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def with_crc(frame: bytes) -> bytes:
    """`frame` followed by its CRC, low byte first."""
    return frame + _CRC.pack(crc16(frame))


def crc_ok(frame: bytes | bytearray | memoryview) -> bool:
    """A frame whose CRC, computed over all its bytes including the CRC itself, leaves a zero remainder."""
    return len(frame) >= MIN_FRAME and crc16(frame) == 0


def request_length(head: bytes | bytearray) -> int | None:
    """The whole frame's length for the request starting `head` (address first), None if it needs silence.

    None when too few bytes are in to tell yet, or when the function code gives no length (unknown codes,
    FC08 whose data length depends on the sub-function): those frames end at the next silence.
    """
    if len(head) < 2:
        return None
    function = head[1]
    fixed = _FIXED_LENGTHS.get(function)
    if fixed is not None:
        return fixed
    counted = _BYTE_COUNT_AT.get(function)
    if counted is not None and len(head) > counted:
        return counted + 1 + head[counted] + 2
    return None


_FIXED_LENGTHS: Final = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8, 7: 4, 11: 4, 12: 4, 17: 4, 22: 10, 43: 7}
_BYTE_COUNT_AT: Final = {15: 6, 16: 6, 23: 10}  # index of the byte-count byte, counting the address


def response_length(head: bytes | bytearray) -> int | None:
    """The whole frame's length for the response starting `head` (address first), None if it needs silence.

    What a master (the gateway) needs to tell where a slave's response ends without waiting for t3.5: an
    exception response is 5 bytes; reads carry a byte count; writes echo a fixed-size part of the request.
    None for FC08 (its echo is as long as the request's data) and FC43 (no byte count), and unknown codes.
    """
    if len(head) < 2:
        return None
    function = head[1]
    if function & 0x80:
        return 5  # address, function | 0x80, exception code, CRC
    fixed = _RESPONSE_FIXED_LENGTHS.get(function)
    if fixed is not None:
        return fixed
    if function in _RESPONSE_BYTE_COUNTED and len(head) > 2:
        return 3 + head[2] + 2
    if function == 24 and len(head) > 3:  # FC24 Read FIFO Queue: a two-byte byte count (§6.18)
        return 4 + (head[2] << 8 | head[3]) + 2
    return None


_RESPONSE_FIXED_LENGTHS: Final = {5: 8, 6: 8, 7: 5, 11: 8, 15: 8, 16: 8, 22: 10}
_RESPONSE_BYTE_COUNTED: Final = frozenset((1, 2, 3, 4, 12, 17, 20, 21, 23))  # byte count right after the code


def _next_frame(buf: bytearray) -> tuple[int, int] | None:
    """(start, length) of the first good frame in `buf`, for links with no silences to go by.

    At the start of the buffer any length is tried (unknown function codes must still get exception 01);
    further on, only frames whose length the function code gives, which keeps the search linear.
    """
    view = memoryview(buf)
    if request_length(buf) is None:
        for end in range(MIN_FRAME, min(len(buf), MAX_FRAME) + 1):
            if crc_ok(view[:end]):
                return 0, end
    for start in range(1, len(buf) - MIN_FRAME + 1):
        length = request_length(buf[start : start + 11])
        if length is not None and start + length <= len(buf) and crc_ok(view[start : start + length]):
            return start, length
    return None


class RtuFramer:
    """Requests from the bytes of one serial line (or an RTU-over-TCP connection); or, given
    `length=response_length`, a slave's responses, for a master."""

    __slots__ = ("_buf", "_length", "_on_discard", "_resync")

    def __init__(
        self, *, on_discard: Discard | None = None, resync: bool = False,
        length: Callable[[bytearray], int | None] = request_length,
    ) -> None:  # fmt: skip
        """`resync`: for links without timing (RTU over TCP), where no silence will ever end a bad frame,
        bytes before the next good frame are dropped, and a request of unknown length is the shortest
        run of bytes with a good CRC (requests only). `length`: tells a frame's length from its head."""
        self._buf = bytearray()
        self._length = length
        self._on_discard = on_discard
        self._resync = resync

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[Adu]:
        """Requests whose length is known from their function code and whose CRC checks out."""
        buf = self._buf
        buf += data
        adus: list[Adu] = []
        frame_length = self._length
        while True:
            length = frame_length(buf)
            if length is not None and length <= len(buf) and crc_ok(memoryview(buf)[:length]):
                adus.append(Adu(0, 0, buf[0], bytes(buf[1 : length - 2])))
                del buf[:length]
            elif self._resync and (found := _next_frame(buf)) is not None:
                start, length = found
                if start:
                    self._report(f"bad CRC, skipped {bytes(buf[:start]).hex(' ')}")
                adus.append(Adu(0, 0, buf[start], bytes(buf[start + 1 : start + length - 2])))
                del buf[: start + length]
            else:
                break
        if len(buf) > MAX_FRAME:
            self._discard(f"{len(buf)} bytes without a frame boundary")
        return adus

    def end_of_frame(self) -> list[Adu]:
        """t3.5 of silence: what is buffered is one whole frame, or garbage to throw away."""
        buf = self._buf
        if not buf:
            return []
        if crc_ok(buf):
            adu = Adu(0, 0, buf[0], bytes(buf[1:-2]))
            buf.clear()
            return [adu]
        self._discard(f"bad CRC or frame cut short: {bytes(buf[:16]).hex(' ')}{'…' if len(buf) > 16 else ''}")
        return []

    def gap(self) -> None:
        """A silence of more than t1.5 inside a frame: §2.5.1.1 says the frame is incomplete; drop it."""
        if self._buf:
            self._discard("silence longer than 1.5 characters inside a frame")

    def _discard(self, reason: str) -> None:
        self._buf.clear()
        self._report(reason)

    def _report(self, reason: str) -> None:
        if self._on_discard is not None:
            self._on_discard(reason)

    def frame(self, request: Adu, pdu: bytes) -> bytes:
        """The response from the address the request was sent to (§2.5.1)."""
        return with_crc(bytes((request[2],)) + pdu)


def character_time(baudrate: int, bits_per_character: int = 11) -> float:
    """Seconds one character takes on the line: 11 bits (start, 8 data, parity or second stop, stop)."""
    return bits_per_character / baudrate


def silent_intervals(baudrate: int) -> tuple[float, float]:
    """(t1.5, t3.5) in seconds; above 19200 baud fixed at 750 µs and 1.75 ms (§2.5.1.1)."""
    if baudrate > 19200:
        return 0.000750, 0.001750
    char = character_time(baudrate)
    return 1.5 * char, 3.5 * char
