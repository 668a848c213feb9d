"""ASCII framing (Modbus over Serial Line V1.02 §2.5.2): ':' then hex pairs, LRC, CR and LF.

Each byte travels as two hexadecimal characters; the LRC is the two's complement of the 8-bit sum of the
address and PDU bytes. A ':' always starts a new frame, dropping whatever partial frame came before it.
The end is CR followed by the delimiter, LF unless FC08/03 changed it.
"""

from typing import Final

from modbusd.protocol.adu import Adu
from modbusd.protocol.rtu import Discard

START: Final = 0x3A  # ':'
CR: Final = 0x0D
LF: Final = 0x0A
MAX_CHARACTERS: Final = 513  # ':' + 2 × (1 + 253 + 1) + CR LF


def lrc(data: bytes | bytearray) -> int:
    """§6.2.1: two's complement of the sum of the bytes, modulo 256."""
    return -sum(data) & 0xFF


class AsciiFramer:
    __slots__ = ("_buf", "_in_frame", "_next_delimiter", "_on_discard", "delimiter")

    def __init__(self, *, on_discard: Discard | None = None, delimiter: int = LF) -> None:
        self._buf = bytearray()
        self._in_frame = False
        self._on_discard = on_discard
        self._next_delimiter: int | None = None
        self.delimiter = delimiter

    def change_delimiter(self, delimiter: int) -> None:
        """FC08/03: `delimiter` ends the frames that follow the response being framed now.

        The response to the request that changed it still ends in the delimiter that request came with,
        which is what the client that sent it is waiting for.
        """
        self._next_delimiter = None if delimiter == self.delimiter else delimiter

    @property
    def pending(self) -> bytes:
        return (b":" + bytes(self._buf)) if self._in_frame else b""

    def feed(self, data: bytes) -> list[Adu]:
        adus: list[Adu] = []
        for char in data:
            if char == START:
                if self._in_frame and self._buf:
                    self._discard("a new ':' before the end of the frame")
                self._in_frame = True
                self._buf.clear()
            elif not self._in_frame:
                continue  # noise between frames
            elif char == self.delimiter and self._buf[-1:] == b"\r":
                adu = self._decode(bytes(self._buf[:-1]))
                self._in_frame = False
                self._buf.clear()
                if adu is not None:
                    adus.append(adu)
            else:
                self._buf.append(char)
                if len(self._buf) > MAX_CHARACTERS - 2:  # the buffer holds what lies between ':' and LF
                    self._in_frame = False
                    self._discard(f"frame longer than {MAX_CHARACTERS} characters")
        return adus

    def _decode(self, text: bytes) -> Adu | None:
        try:
            raw = bytes.fromhex(text.decode("ascii"))
        except ValueError:
            self._discard(f"not hexadecimal: {text[:32]!r}")
            return None
        if len(raw) < 3:
            self._discard(f"frame too short: {text!r}")
            return None
        if lrc(raw[:-1]) != raw[-1]:
            self._discard(f"bad LRC in {text[:32]!r}")
            return None
        return Adu(0, 0, raw[0], raw[1:-1])

    def end_of_frame(self) -> list[Adu]:
        """The inter-character time-out (1 s by default, §2.5.2.1) expired: a partial frame is dropped."""
        if self._in_frame:
            self._in_frame = False
            self._discard("inter-character time-out inside a frame")
        return []

    def _discard(self, reason: str) -> None:
        self._buf.clear()
        if self._on_discard is not None:
            self._on_discard(reason)

    def frame(self, request: Adu, pdu: bytes) -> bytes:
        raw = bytes((request[2],)) + pdu
        text = b":" + (raw + bytes((lrc(raw),))).hex().upper().encode("ascii") + b"\r" + bytes((self.delimiter,))
        if self._next_delimiter is not None:
            self.delimiter, self._next_delimiter = self._next_delimiter, None
        return text
