"""Value types and their register bytes: HSYCO's types × the four word/byte orders. Sans-I/O: bytes in, bytes out.

Split out of `values.py` (issue 9's module size), which re-exports every public name here and adds the text
of values and their place in tables; the underscore names are shared with it only.

Register types (a value spans `ValueType.registers` consecutive registers):

=========  =========  ==================================  ==================================================
type       registers  Python value                        range / meaning
=========  =========  ==================================  ==================================================
ushort     1          int                                 0 … 65535
short      1          int                                 -32768 … 32767
uint       2          int                                 0 … 2**32 - 1
int        2          int                                 -2**31 … 2**31 - 1
ulong      4          int                                 0 … 2**64 - 1
long       4          int                                 -2**63 … 2**63 - 1
float      2          float                               IEEE 754 binary32; NaN and ±inf allowed
double     4          float                               IEEE 754 binary64; NaN and ±inf allowed
string:N   N          str                                 up to 2N characters, one byte each (Latin-1)
hex        1          bytes                               raw register bytes; writes take any whole registers
hex:N      N          bytes                               exactly 2N raw bytes
bits       1          str of 16 '0'/'1'                   the register's bits, leftmost the MSB (bit 15)
=========  =========  ==================================  ==================================================

Coil and discrete-input types (HSYCO's): ``bit`` (``0/1/false/true/off/on``) and ``bits:<0|1|-…>`` (several
consecutive bits from the address, leftmost first); see `values.read_bit_value` / `values.write_bit_value`.

Choices HSYCO's Modbus server and the specification leave open:

- Out of range is `InvalidValue` (a `ValueError`), never a wrap: a value that does not fit is the program's or the
  user's mistake, not a client's, so it is not `IllegalDataValue` (which a session would answer with exception 03).
- ``float`` rounds a finite value to the nearest binary32 (21.1 is stored as 21.100000381…); a finite value beyond
  binary32's largest (about 3.4e38) is rejected rather than turned into infinity. NaN and ±inf are accepted and
  stored as IEEE 754 spells them: a simulated device must be able to send what a failed sensor sends.
- ``string:N`` pads with NUL bytes (what C devices and pymodbus use) and decoding strips trailing NULs only; a NUL
  inside the text is rejected, so every accepted string reads back exactly. Characters are Latin-1, one byte each,
  so that any bytes a client writes decode to some text; characters past U+00FF are rejected.

Word and byte order, for a value whose big-endian bytes are A B C D … (A the most significant byte):

- ABCD: big-endian, the Modbus default (§4.2): most significant register first, high byte first in each register.
- CDAB: word-swapped: the registers in reverse order (least significant register first), high byte first in each.
- BADC: byte-swapped: registers in big-endian order, the two bytes of each register exchanged.
- DCBA: both: fully little-endian, the bytes in reverse order.

The same two rules, register order × byte order within a register, define the orders for every width:

=====  ==================  ==================  ==================================
order  1 register (A B)    2 registers         4 registers (bytes A B C D E F G H)
=====  ==================  ==================  ==================================
ABCD   AB                  AB CD               AB CD EF GH
CDAB   AB                  CD AB               GH EF CD AB
BADC   BA                  BA DC               BA DC FE HG
DCBA   BA                  DC BA               HG FE DC BA
=====  ==================  ==================  ==================================

``string:N`` follows the same rules over its 2N bytes (its first character is "A"). ``hex`` and ``bits`` are views
of the registers as they are stored, so the order does not apply to them. In pymodbus's converters, word_order="big"
is ABCD and word_order="little" is CDAB (for every width, strings too); BADC and DCBA have no pymodbus spelling.
"""

import string
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from modbusd.protocol.codes import ADDRESS_SPACE


class InvalidType(ValueError):
    """A type name that is not one of the types above, or a type used where it does not belong."""


class InvalidValue(ValueError):
    """A value that does not fit its type: out of range, malformed text, wrong length."""


class Kind(StrEnum):
    USHORT = "ushort"
    SHORT = "short"
    UINT = "uint"
    INT = "int"
    ULONG = "ulong"
    LONG = "long"
    FLOAT = "float"
    DOUBLE = "double"
    STRING = "string"
    HEX = "hex"
    BITS = "bits"
    BIT = "bit"  # coils and discrete inputs only


class Order(StrEnum):
    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


# kind -> (registers, signed) for the integer types
_INTEGERS: dict[Kind, tuple[int, bool]] = {
    Kind.USHORT: (1, False),
    Kind.SHORT: (1, True),
    Kind.UINT: (2, False),
    Kind.INT: (2, True),
    Kind.ULONG: (4, False),
    Kind.LONG: (4, True),
}
_FLOATS: dict[Kind, struct.Struct] = {Kind.FLOAT: struct.Struct(">f"), Kind.DOUBLE: struct.Struct(">d")}
_FIXED: dict[Kind, int] = {**{k: n for k, (n, _) in _INTEGERS.items()}, Kind.FLOAT: 2, Kind.DOUBLE: 4, Kind.BITS: 1}
_SIZED = (Kind.STRING, Kind.HEX)  # the kinds that take ":N"

Value = int | float | str | bytes | bool


@dataclass(frozen=True, slots=True)
class ValueType:
    """A type as the file and the command line spell it: ``float``, ``string:10``, ``hex:2``.

    `length` is N for ``string:N`` (required) and ``hex:N`` (optional), and None for every other type.
    """

    kind: Kind
    length: int | None = None

    def __post_init__(self) -> None:
        if self.length is None:
            if self.kind is Kind.STRING:
                raise InvalidType("string needs a length in registers: string:N, e.g. string:10 for 20 characters")
        elif self.kind not in _SIZED:
            raise InvalidType(f"{self.kind} takes no length (only string:N and hex:N do)")
        elif not 1 <= self.length <= ADDRESS_SPACE:
            raise InvalidType(f"{self.kind}:{self.length}: the length must be 1..{ADDRESS_SPACE} registers")

    @classmethod
    def parse(cls, text: str) -> "ValueType":
        name, colon, length = text.strip().lower().partition(":")
        try:
            kind = Kind(name)
        except ValueError:
            known = ", ".join(k if k not in _SIZED else f"{k}:N" for k in Kind)
            raise InvalidType(f"unknown type {text.strip()!r}: expected one of {known}") from None
        if not colon:
            return cls(kind)
        if kind not in _SIZED:
            raise InvalidType(f"{text.strip()!r}: {kind} takes no length (only string:N and hex:N do)")
        if not length.isdecimal():
            raise InvalidType(f"{text.strip()!r}: the length after {kind}: must be a number of registers")
        return cls(kind, int(length))

    @property
    def registers(self) -> int:
        """Registers one value occupies (what `read_value` reads); 0 for ``bit``, which lives in bit tables.

        Bare ``hex`` reads one register, as HSYCO's ``subscribe:hex`` does, but writes any whole number.
        """
        if self.kind is Kind.BIT:
            return 0
        if self.length is not None:
            return self.length
        return _FIXED.get(self.kind, 1)

    def __str__(self) -> str:
        return self.kind if self.length is None else f"{self.kind}:{self.length}"


USHORT, SHORT, UINT, INT, ULONG, LONG, FLOAT, DOUBLE, HEX, BITS, BIT = (
    ValueType(k)
    for k in (Kind.USHORT, Kind.SHORT, Kind.UINT, Kind.INT, Kind.ULONG, Kind.LONG, Kind.FLOAT, Kind.DOUBLE,
              Kind.HEX, Kind.BITS, Kind.BIT)
)  # fmt: skip


def integer_range(vtype: ValueType) -> tuple[int, int]:
    """(min, max) of an integer type."""
    registers, signed = _INTEGERS[vtype.kind]
    bits = 16 * registers
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def reorder(data: bytes, order: Order | str) -> bytes:
    """Big-endian (ABCD) register bytes ↔ `order`; each order is its own inverse, so this both encodes and decodes."""
    order = Order(order)
    if order is Order.ABCD:
        return bytes(data)
    if order is Order.DCBA:
        return bytes(data[::-1])
    swapped = bytearray(len(data))  # BADC: the two bytes of each register exchanged
    swapped[0::2] = data[1::2]
    swapped[1::2] = data[0::2]
    if order is Order.BADC:
        return bytes(swapped)
    return bytes(swapped[::-1])  # CDAB: reversing all bytes, then each pair back, reverses the registers only


def _register_type(vtype: ValueType) -> None:
    if vtype.kind is Kind.BIT:
        raise InvalidType("bit is a coil and discrete-input type; a register takes ushort, bits or hex")


def encode(vtype: ValueType, value: Value, order: Order | str = Order.ABCD) -> bytes:
    """The register bytes of `value`, big-endian on the wire as `WordTable` stores them."""
    _register_type(vtype)
    kind = vtype.kind
    if kind in _INTEGERS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidValue(f"{vtype} takes an integer, not {value!r}")
        low, high = integer_range(vtype)
        if not low <= value <= high:
            raise InvalidValue(f"{value} is outside {vtype}'s range {low}..{high}")
        raw = value.to_bytes(2 * vtype.registers, "big", signed=low < 0)
    elif kind in _FLOATS:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidValue(f"{vtype} takes a number, not {value!r}")
        try:
            raw = _FLOATS[kind].pack(float(value))
        except OverflowError:
            largest = "3.4e38" if kind is Kind.FLOAT else "1.8e308"
            shown = repr(value) if len(repr(value)) <= 24 else f"{repr(value)[:20]}…"
            raise InvalidValue(f"{shown} is beyond the largest finite {vtype} (about {largest})") from None
    elif kind is Kind.STRING:
        raw = _encode_string(vtype, value)
    elif kind is Kind.HEX:
        return _encode_hex(vtype, value)
    else:
        return _encode_bits(value)
    return reorder(raw, order)


def decode(vtype: ValueType, data: bytes, order: Order | str = Order.ABCD) -> Value:
    """The value held in `data`, register bytes as `WordTable.read` returns them."""
    _register_type(vtype)
    kind = vtype.kind
    if kind is Kind.HEX and vtype.length is None:  # bare hex: any whole number of registers
        if not data or len(data) % 2:
            raise InvalidValue(f"hex needs whole registers (an even number of bytes), got {len(data)}")
    elif len(data) != 2 * vtype.registers:
        raise InvalidValue(f"{vtype} needs {2 * vtype.registers} bytes, got {len(data)}")
    if kind is Kind.HEX:
        return bytes(data)
    if kind is Kind.BITS:
        return format(int.from_bytes(data, "big"), "016b")
    raw = reorder(data, order)
    if kind in _INTEGERS:
        return int.from_bytes(raw, "big", signed=_INTEGERS[kind][1])
    if kind in _FLOATS:
        return float(_FLOATS[kind].unpack(raw)[0])
    return raw.rstrip(b"\x00").decode("latin-1")


def _encode_string(vtype: ValueType, value: Value) -> bytes:
    if not isinstance(value, str):
        raise InvalidValue(f"{vtype} takes text, not {value!r}")
    if "\x00" in value:
        raise InvalidValue(f"{value!r}: a {vtype} cannot hold NUL characters (NUL is its padding)")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise InvalidValue(f"{value!r}: {value[exc.start]!r} is not a one-byte (Latin-1) character") from None
    size = 2 * vtype.registers
    if len(raw) > size:
        raise InvalidValue(f"{value!r} has {len(raw)} characters; {vtype} holds at most {size}")
    return raw.ljust(size, b"\x00")


def _encode_hex(vtype: ValueType, value: Value) -> bytes:
    if isinstance(value, str):
        value = _parse_hex(value)
    if not isinstance(value, bytes | bytearray):
        raise InvalidValue(f"{vtype} takes bytes or hex text, not {value!r}")
    if vtype.length is not None and len(value) != 2 * vtype.length:
        raise InvalidValue(f"{vtype} takes exactly {2 * vtype.length} bytes, got {len(value)}")
    if not value or len(value) % 2:
        raise InvalidValue(f"hex takes whole registers (an even number of bytes, at least 2), got {len(value)}")
    return bytes(value)


def _encode_bits(value: Value) -> bytes:
    if not isinstance(value, str):
        raise InvalidValue(f"bits takes a string of 16 '0'/'1' characters, not {value!r}")
    bits = parse_bit_string(value)
    if len(bits) != 16:
        raise InvalidValue(f"bits {value!r} has {len(bits)} bits after skipping '-'; a register has exactly 16")
    return int(bits, 2).to_bytes(2, "big")


def parse_bit_string(text: str) -> str:
    """``1010-0000`` → ``10100000``: '-' skipped (as HSYCO's), at least one bit, nothing but 0, 1 and '-'."""
    bits = text.strip().replace("-", "")
    bad = sorted(set(bits) - {"0", "1"})
    if bad:
        raise InvalidValue(f"bits {text!r}: {bad[0]!r} is not 0, 1 or '-'")
    if not bits:
        raise InvalidValue(f"bits {text!r} holds no bits")
    return bits


def _parse_hex(text: str) -> bytes:
    digits = "".join(text.split())
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if not digits or any(c not in string.hexdigits for c in digits):
        raise InvalidValue(f"{text!r} is not hexadecimal bytes (like 41AC0000 or 41 AC 00 00)")
    if len(digits) % 4:
        raise InvalidValue(f"hex {text!r}: registers take 4 hex digits each, got {len(digits)} digits")
    return bytes.fromhex(digits)


_PACKERS: dict[Kind, struct.Struct] = {
    Kind.USHORT: struct.Struct(">H"), Kind.SHORT: struct.Struct(">h"), Kind.UINT: struct.Struct(">I"),
    Kind.INT: struct.Struct(">i"), Kind.ULONG: struct.Struct(">Q"), Kind.LONG: struct.Struct(">q"), **_FLOATS,
}  # fmt: skip


def packer(vtype: ValueType, order: Order | str = Order.ABCD) -> Callable[[int | float], bytes]:
    """`encode` for a number already known to fit `vtype` (an integer in range, a float), without its checks: one
    struct call in ABCD order. For code that writes the same point many times a second (the value generators), where
    `encode`'s checks cost ten times the packing; `tests/model/test_packer.py` holds the two to the same bytes."""
    if vtype.kind not in _PACKERS:
        raise InvalidType(f"{vtype} is not a number type")
    pack = _PACKERS[vtype.kind].pack
    order = Order(order)
    if order is Order.ABCD:
        return pack
    return lambda value: reorder(pack(value), order)


def packer_into(vtype: ValueType, order: Order | str = Order.ABCD) -> Callable[[bytearray, int, int | float], None]:
    """`packer`, writing the bytes into a buffer at an offset (`struct.pack_into`) instead of returning them: no
    bytes object made and freed for each of the 100,000 values a second the value generators write."""
    if vtype.kind not in _PACKERS:
        raise InvalidType(f"{vtype} is not a number type")
    order = Order(order)
    if order is Order.ABCD:
        return _PACKERS[vtype.kind].pack_into
    pack, size = packer(vtype, order), _PACKERS[vtype.kind].size

    def pack_into(buffer: bytearray, offset: int, value: int | float) -> None:
        buffer[offset : offset + size] = pack(value)

    return pack_into
