"""Coil packing (§6.1): the only place where bits meet bytes.

The first addressed bit is the LSB of the first byte; the last byte is padded with zeros toward its MSB.
Bits are handled as `bytes` of 0/1 values, one byte per bit, because that is what the data tables store and
it lets `int(..., 2)` do the packing in C instead of a Python loop.
"""

_TO_DIGITS = bytes.maketrans(b"\x00\x01", b"01")
_FROM_DIGITS = bytes.maketrans(b"01", b"\x00\x01")


def byte_count(quantity: int) -> int:
    return (quantity + 7) >> 3


def pack_bits(bits: bytes | bytearray | memoryview) -> bytes:
    """0/1 bytes → Modbus bit string, LSB first."""
    n = len(bits)
    if not n:
        return b""
    return int(bytes(bits)[::-1].translate(_TO_DIGITS), 2).to_bytes(byte_count(n), "little")


def unpack_bits(packed: bytes | bytearray | memoryview, quantity: int) -> bytes:
    """Modbus bit string → `quantity` bytes of 0/1; the padding bits past `quantity` are ignored."""
    digits = format(int.from_bytes(packed, "little"), "b").encode("ascii")
    return digits[::-1].translate(_FROM_DIGITS).ljust(quantity, b"\x00")[:quantity]
