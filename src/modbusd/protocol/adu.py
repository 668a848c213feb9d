"""What every framer hands the session: one request with the envelope its response must echo.

MBAP, RTU and ASCII framing differ in how they find a frame in a byte stream and in what they wrap around a
PDU; the session needs neither detail, only this tuple and the `Framer` methods.
"""

from typing import NamedTuple, Protocol


class Adu(NamedTuple):
    transaction_id: int  # MBAP only; 0 on serial lines
    protocol_id: int  # MBAP only: anything but 0 is not Modbus and is discarded by the session
    unit_id: int
    pdu: bytes


class Framer(Protocol):
    @property
    def pending(self) -> bytes:
        """Bytes received that are not yet part of a complete frame."""
        ...

    def feed(self, data: bytes) -> list[Adu]:
        """Every complete, intact request in the bytes received so far, in order; keeps the rest."""
        ...

    def frame(self, request: Adu, pdu: bytes) -> bytes:
        """The response `pdu` wrapped in the envelope `request` came in."""
        ...
