"""RTU framing (Modbus over Serial Line V1.02 §2.5.1): address, PDU, CRC-16 low byte first.

On a real line a frame ends with 3.5 character times of silence. This module never measures time: the serial
transport does, and calls `end_of_frame()` after t3.5 of silence and `gap()` when a silence longer than t1.5
but shorter than t3.5 broke a frame apart. Requests whose length follows from their function code are framed
as soon as their last byte and a good CRC arrive, so the answer does not wait for the silence. A frame whose
CRC is wrong at that length may be another device's response on a shared bus; the silence then tells where
it ends.

RTU over TCP has no silences, so there (`resync=True`) a request is framed by its length alone, the length
its function code implies (Application Protocol §6), and bytes that cannot start a frame are dropped one at
a time. Three rules keep that safe and cheap:
- a head whose function code promises more bytes than have arrived is waited for, never searched for
  frames inside it: the data of a request split across TCP segments is not a request;
- a frame's end never comes from where a CRC happens to match, except for function codes with no known
  length, whose frame is everything received by the end of a read (see `RtuFramer.feed`);
- checking a CRC at a candidate start costs the same whatever the frame's length (`_CrcChain`), so
  resynchronising costs a bounded amount of work per byte received.
"""

import struct
from array import array
from collections.abc import Callable
from functools import cache
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


# Request lengths by function code (Application Protocol §6), counting the address and the CRC; every public
# code with one, FC20, 21 and 24 included though the handler answers them with exception 01: a request framed by
# its length can be pipelined and split across TCP segments safely.
_FIXED_LENGTHS: Final = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8, 7: 4, 11: 4, 12: 4, 17: 4, 22: 10, 24: 6, 43: 7}
_BYTE_COUNT_AT: Final = {15: 6, 16: 6, 20: 2, 21: 2, 23: 10}  # index of the byte-count byte, counting the address

WAIT: Final = 0  # `stream_request_length`: too few bytes in yet to tell the length
NO_LENGTH: Final = -1  # `stream_request_length`: the function code gives no length
_MEI_READ_DEVICE_IDENTIFICATION: Final = 0x0E


def stream_request_length(buf: bytes | bytearray, start: int = 0) -> int:
    """The length of the request frame at `buf[start:]` on a link without silences (RTU over TCP).

    `request_length`'s table, with two differences that only a link without silences needs:
    - FC08 is 8 bytes, sub-function and one data word: what every sub-function but 00 takes (§6.8), the
      spec's own example of 00, and what pymodbus sends and frames. Taking the shortest run that passes
      the CRC instead would cut 1 frame in 256 one byte short: a frame whose CRC's high byte is 0x00 passes
      the check without that byte too. The rarer FC08/00 with more data is framed as having no length
      when its first 8 bytes are not a good frame (`RtuFramer.feed`).
    - FC43 is 7 bytes for Read Device Identification (MEI type 0x0E) only; other MEI types have no length.
    WAIT when the byte that tells the length has not arrived; NO_LENGTH for function codes with none.
    """
    available = len(buf) - start
    if available < 2:
        return WAIT
    function = buf[start + 1]
    fixed = _STREAM_FIXED_LENGTHS.get(function)
    if fixed is not None:
        return fixed
    counted = _BYTE_COUNT_AT.get(function)
    if counted is not None:
        return counted + 1 + buf[start + counted] + 2 if available > counted else WAIT
    if function == 43:
        if available < 3:
            return WAIT
        return 7 if buf[start + 2] == _MEI_READ_DEVICE_IDENTIFICATION else NO_LENGTH
    return NO_LENGTH


_STREAM_FIXED_LENGTHS: Final = {code: length for code, length in (_FIXED_LENGTHS | {8: 8}).items() if code != 43}


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


def _zero_byte(register: int) -> int:
    return (register >> 8) ^ _CRC_TABLE[register & 0xFF]


@cache
def _zero_bytes(count: int) -> "tuple[array[int], array[int]]":  # array is generic at run time from 3.12
    """Tables for the CRC register after `count` zero bytes, as a function of the register before them.

    That function is linear over GF(2) (the CRC is), so it is the XOR of what each set bit of the register
    becomes: one table for the low byte, one for the high byte. Made on first use, about 0.5 ms each, at
    most one per frame length (4..256): 1 KiB each, 256 KiB for them all.
    """
    columns = []
    for bit in range(16):
        register = 1 << bit
        for _ in range(count):
            register = _zero_byte(register)
        columns.append(register)
    tables = []
    for half in (columns[:8], columns[8:]):
        table = [0]
        for column in half:
            table += [entry ^ column for entry in table]
        tables.append(array("H", table))
    return tables[0], tables[1]


class _CrcChain:
    """The CRC register after each byte of a buffer, so that any window's CRC costs two table look-ups.

    Resynchronising tries a frame at every start offset; computing each candidate's CRC from scratch costs
    its length (up to 256) per byte dropped. With R[i] the register after the buffer's first i bytes, the
    CRC of bytes s..e (preset 0xFFFF) is R[e] XOR Z(e - s)(R[s] XOR 0xFFFF), where Z(n) is what n zero
    bytes do to a register (`_zero_bytes`). So each byte's register is computed once, and each candidate
    is O(1). While frames follow each other with no byte dropped, a frame's CRC is computed directly, as
    on a serial line, and no registers are kept: the chain only starts at the first bad frame.
    """

    __slots__ = ("_base", "_registers")

    def __init__(self) -> None:
        self.restart(0)

    def restart(self, base: int) -> None:
        """Nothing before buffer offset `base` is looked at again."""
        self._base = base
        self._registers = [0xFFFF]  # _registers[i]: the register after the i bytes from `base` (any preset works)

    def good(self, buf: bytearray, start: int, end: int) -> bool:
        """Whether buf[start:end] is a frame with a good CRC."""
        base, registers = self._base, self._registers
        covered = base + len(registers) - 1  # registers known for the bytes before this offset
        if start >= covered:  # in step: bytes no candidate has covered yet, so each is read once here
            if crc16(buf[start:end]) == 0:
                self.restart(end)
                return True
            self.restart(start)  # out of step: keep the registers, for the candidates that follow
            base, registers, covered = start, self._registers, start
        if end > covered:
            register = registers[-1]
            table = _CRC_TABLE
            append = registers.append
            for byte in buf[covered:end]:
                register = (register >> 8) ^ table[(register ^ byte) & 0xFF]
                append(register)
        low, high = _zero_bytes(end - start)
        before = registers[start - base] ^ 0xFFFF
        return registers[end - base] == low[before & 0xFF] ^ high[before >> 8]

    def consumed(self, count: int) -> None:
        """The buffer's first `count` bytes are gone: offsets move down by `count`."""
        base = self._base - count
        if base >= 0:
            self._base = base
        elif -base < len(self._registers):
            del self._registers[:-base]
            self._base = 0
        else:
            self.restart(0)


class RtuFramer:
    """Requests from the bytes of one serial line (or an RTU-over-TCP connection); or, given
    `length=response_length`, a slave's responses, for a master."""

    __slots__ = ("_buf", "_chain", "_length", "_on_discard")

    def __init__(
        self, *, on_discard: Discard | None = None, resync: bool = False,
        length: Callable[[bytearray], int | None] = request_length,
    ) -> None:  # fmt: skip
        """`resync`: for links without timing (RTU over TCP), where no silence will ever end a bad frame:
        requests are framed by `stream_request_length`, and bytes that cannot start one are dropped.
        `length`: tells a frame's length from its head, on a link with silences."""
        self._buf = bytearray()
        self._length = length
        self._on_discard = on_discard
        self._chain = _CrcChain() if resync else None

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[Adu]:
        """Requests whose length is known from their function code and whose CRC checks out.

        With `resync`, `data` is taken as one read from the connection: a request of a function code with no
        known length (and an FC08/00 longer than 8 bytes) is framed only if the bytes from its start to the
        end of the read pass the CRC. A client sends a request in one write, and a write that short arrives
        in one read; one that does not is dropped as garbage, never framed short.
        """
        if self._chain is not None:
            return self._feed_stream(data, self._chain)
        buf = self._buf
        buf += data
        adus: list[Adu] = []
        frame_length = self._length
        while True:
            length = frame_length(buf)
            if length is None or length > len(buf) or not crc_ok(memoryview(buf)[:length]):
                break
            adus.append(Adu(0, 0, buf[0], bytes(buf[1 : length - 2])))
            del buf[:length]
        if len(buf) > MAX_FRAME:
            self._discard(f"{len(buf)} bytes without a frame boundary")
        return adus

    def _feed_stream(self, data: bytes, chain: _CrcChain) -> list[Adu]:
        """RTU over TCP: frame by length; where no frame can start, drop one byte and look again.

        Linear: at each start offset the length is one table look-up and the CRC check O(1) (`_CrcChain`),
        so a read of n bytes costs O(n) however hostile it is. What is left in the buffer afterwards is
        shorter than the longest frame: the start of a request still arriving.
        """
        buf = self._buf
        buf += data
        end = len(buf)
        pos = dropped = 0
        first_dropped = -1
        adus: list[Adu] = []
        while end - pos >= 2:
            length = stream_request_length(buf, pos)
            if length == WAIT:
                break
            if length > MAX_FRAME:
                good = False
            elif length > 0:
                if pos + length > end:
                    break  # a request still arriving: wait for the rest, look for nothing inside it
                good = chain.good(buf, pos, pos + length)
                if not good and buf[pos + 1] == 8 and buf[pos + 2] == buf[pos + 3] == 0 and not (end - pos) & 1:
                    # FC08/00 with more than one data word (§6.8: the data is N × 2 bytes, so never an odd
                    # length, which would pass the CRC without its last byte when that byte is 0x00).
                    length = NO_LENGTH
            if length == NO_LENGTH:  # no length to go by: the frame is the rest of this read, or nothing
                length = end - pos
                good = MIN_FRAME <= length <= MAX_FRAME and chain.good(buf, pos, end)
            if good:
                adus.append(Adu(0, 0, buf[pos], bytes(buf[pos + 1 : pos + length - 2])))
                pos += length
            else:
                if first_dropped < 0:
                    first_dropped = pos
                dropped += 1
                pos += 1
        if dropped:
            self._report(f"{dropped} bytes that start no good frame dropped, the first: {_hex(buf, first_dropped)}")
        if pos:
            del buf[:pos]
            chain.consumed(pos)
        return adus

    def end_of_frame(self) -> list[Adu]:
        """t3.5 of silence: what is buffered is one whole frame, or garbage to throw away."""
        buf = self._buf
        if not buf:
            return []
        if crc_ok(buf):
            adu = Adu(0, 0, buf[0], bytes(buf[1:-2]))
            self._clear()
            return [adu]
        self._discard(f"bad CRC or frame cut short: {_hex(buf, 0)}")
        return []

    def gap(self) -> None:
        """A silence of more than t1.5 inside a frame: §2.5.1.1 says the frame is incomplete; drop it."""
        if self._buf:
            self._discard("silence longer than 1.5 characters inside a frame")

    def _discard(self, reason: str) -> None:
        self._clear()
        self._report(reason)

    def _clear(self) -> None:
        self._buf.clear()
        if self._chain is not None:
            self._chain.restart(0)

    def _report(self, reason: str) -> None:
        if self._on_discard is not None:
            self._on_discard(reason)

    def frame(self, request: Adu, pdu: bytes) -> bytes:
        """The response from the address the request was sent to (§2.5.1)."""
        return with_crc(bytes((request[2],)) + pdu)


def _hex(buf: bytearray, start: int, count: int = 16) -> str:
    """Up to `count` bytes from `start`, for a log line."""
    more = "…" if len(buf) - start > count else ""
    return bytes(buf[start : start + count]).hex(" ") + more


def character_time(baudrate: int, bits_per_character: int = 11) -> float:
    """Seconds one character takes on the line: 11 bits (start, 8 data, parity or second stop, stop)."""
    return bits_per_character / baudrate


def silent_intervals(baudrate: int) -> tuple[float, float]:
    """(t1.5, t3.5) in seconds; above 19200 baud fixed at 750 µs and 1.75 ms (§2.5.1.1)."""
    if baudrate > 19200:
        return 0.000750, 0.001750
    char = character_time(baudrate)
    return 1.5 * char, 3.5 * char
