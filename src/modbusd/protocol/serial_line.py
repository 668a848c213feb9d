"""One serial line's settings and their rules (Modbus over Serial Line V1.02 §2.5.1), checked on construction.

Plain data: the server opens the port (`transport.serial`), the device file and the command line describe it.
"""

from dataclasses import dataclass
from enum import StrEnum


class Framing(StrEnum):
    RTU = "rtu"
    ASCII = "ascii"


PARITY_NAMES = {"even": "E", "odd": "O", "none": "N"}  # as other tools spell it (pyserial, mbpoll, stty)


def parse_parity(text: str) -> str:
    """E, O or N from any spelling a user types: e, even, Even, N, none …; ValueError otherwise."""
    parity = PARITY_NAMES.get(text.strip().lower(), text.strip().upper())
    if parity not in ("E", "O", "N"):
        raise ValueError(f"parity {text!r} is none of E, O, N (even, odd, none)")
    return parity


@dataclass(frozen=True, slots=True)
class SerialLine:
    """One serial port to serve. Defaults are Serial Line §2.5.1's: 19200 baud, 8 data bits, even parity
    (required of every device, and the default), 1 stop bit; without parity, 2 stop bits, so that every
    character keeps its 11 bits. ASCII may use 7 data bits."""

    device: str
    framing: Framing | str = Framing.RTU
    baudrate: int = 19200
    bytesize: int = 8
    parity: str = "E"
    stopbits: int | None = None  # None: 1, or 2 when parity is N

    def __post_init__(self) -> None:
        object.__setattr__(self, "framing", Framing(self.framing))
        object.__setattr__(self, "parity", parse_parity(self.parity))
        if self.bytesize not in (7, 8) or (self.framing is Framing.RTU and self.bytesize != 8):
            raise ValueError(f"{self.bytesize} data bits: RTU needs 8, ASCII 7 or 8")
        if self.stopbits not in (None, 1, 2):
            raise ValueError(f"{self.stopbits} stop bits: 1 or 2")
        if self.baudrate <= 0:
            raise ValueError(f"baud rate {self.baudrate} must be positive")

    @property
    def effective_stopbits(self) -> int:
        if self.stopbits is not None:
            return self.stopbits
        return 2 if self.parity == "N" else 1

    @property
    def settings(self) -> str:
        """`19200 8E1`, as serial settings are usually written."""
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.effective_stopbits}"

    def __str__(self) -> str:
        return f"{self.framing.upper()} on {self.device} ({self.settings})"
