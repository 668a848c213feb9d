"""Typed values in registers and bits: HSYCO's types × the four word/byte orders. Sans-I/O: bytes in, bytes out.

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
consecutive bits from the address, leftmost first); see `read_bit_value` / `write_bit_value`.

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

Single bits of a register (HSYCO's ``unitid.address.hr.<n>``, n = 1 … 16) count from the LSB of the first byte,
which is the register's high byte on the wire. In terms of the register value's bit numbers (0 = least
significant), `register_bit(n)`:

    n:      1   2   3   4   5   6   7   8  |  9  10  11  12  13  14  15  16
    bit:    8   9  10  11  12  13  14  15  |  0   1   2   3   4   5   6   7      (bit = (n - 1) XOR 8)

so n = 8 is the MSB of the value and n = 9 its LSB. In a ``bits`` string, the character at position i (0 = leftmost)
is value bit 15 - i: the leftmost character is n = 8 and the rightmost n = 9.
"""

import math
import string
import struct
from dataclasses import dataclass
from enum import StrEnum

from modbusd.model.tables import BitTable, WordTable
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
_BIT_WORDS = {"0": False, "false": False, "off": False, "1": True, "true": True, "on": True}

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


# ----------------------------------------------------------------------------------------------- text values


def parse_bit(text: str) -> bool:
    """HSYCO's ``bit`` values: 0/1/false/true/off/on, any case."""
    try:
        return _BIT_WORDS[text.strip().lower()]
    except KeyError:
        raise InvalidValue(f"{text!r} is not a bit: expected 0, 1, false, true, off or on") from None


def parse_bit_string(text: str) -> str:
    """``1010-0000`` → ``10100000``: '-' skipped (as HSYCO's), at least one bit, nothing but 0, 1 and '-'."""
    bits = text.strip().replace("-", "")
    bad = sorted(set(bits) - {"0", "1"})
    if bad:
        raise InvalidValue(f"bits {text!r}: {bad[0]!r} is not 0, 1 or '-'")
    if not bits:
        raise InvalidValue(f"bits {text!r} holds no bits")
    return bits


def _parse_int(vtype: ValueType, text: str) -> int:
    stripped = text.strip()
    try:
        value = int(stripped, 10)
    except ValueError:
        try:
            value = int(stripped, 0)  # 0x1F, 0o17, 0b101
        except ValueError:
            raise InvalidValue(f"{text!r} is not an integer (decimal, or 0x… hexadecimal) for {vtype}") from None
    low, high = integer_range(vtype)
    if not low <= value <= high:
        raise InvalidValue(f"{stripped} is outside {vtype}'s range {low}..{high}")
    return value


def _parse_hex(text: str) -> bytes:
    digits = "".join(text.split())
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if not digits or any(c not in string.hexdigits for c in digits):
        raise InvalidValue(f"{text!r} is not hexadecimal bytes (like 41AC0000 or 41 AC 00 00)")
    if len(digits) % 4:
        raise InvalidValue(f"hex {text!r}: registers take 4 hex digits each, got {len(digits)} digits")
    return bytes.fromhex(digits)


def parse_value(vtype: ValueType, text: str) -> Value:
    """A value from its text, as the device file and the command line give it (``21.5``, ``0x1F``, ``on``).

    ``bits`` gives the canonical 0/1 string with '-' removed and is not held to 16 bits here: in a register
    `encode` requires 16, in a coil table `write_bit_value` takes any number.
    """
    kind = vtype.kind
    if kind in _INTEGERS:
        return _parse_int(vtype, text)
    if kind in _FLOATS:
        try:
            value = float(text)
        except ValueError:
            raise InvalidValue(f"{text!r} is not a number for {vtype}") from None
        encode(vtype, value)  # the range check
        return value
    if kind is Kind.STRING:
        _encode_string(vtype, text)
        return text
    if kind is Kind.HEX:
        return _encode_hex(vtype, _parse_hex(text))
    if kind is Kind.BIT:
        return parse_bit(text)
    return parse_bit_string(text)


def format_value(vtype: ValueType, value: Value) -> str:
    """Text that `parse_value` reads back as `value`: what ``modbusd get``, the control API and MQTT show.

    A number is plain decimal where Python's ``repr`` writes one (0.0001 ≤ |x| < 1e16: ``20.0``, ``0.1``) and in
    exponent form outside it (``1e-07``, ``3.4028235e+38``); a ``float`` in the fewest digits that give back the
    same binary32 (21.1, not 21.100000381469727). No value a client can write makes this raise.
    """
    if vtype.kind is Kind.BIT:
        return "1" if value else "0"
    if isinstance(value, bytes):
        return value.hex().upper()
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"  # repr() drops the sign, and the sign is a bit
    if vtype.kind is Kind.FLOAT and math.isfinite(value):
        return repr(float(_shortest_binary32(value)))  # repr: the notation rule above, and the same digits
    return repr(value)


def _shortest_binary32(value: float) -> str:
    """The fewest significant digits that `parse_value` turns back into the same binary32 bits as `value`.

    A shortened text can land beyond the largest finite binary32 (FLT_MAX 3.4028234663852886e38 gives
    ``3.4e+38`` after 2 digits, which packs fine, but ``3.403e+38`` after 4 does not): such a text is simply
    not a round trip, never an error. 9 significant digits always round-trip a binary32 (IEEE 754 §5.12.2).
    """
    single = _FLOATS[Kind.FLOAT]
    try:
        bits = single.pack(value)
    except OverflowError:  # not a binary32 at all (a caller's double): show it as it is
        return repr(value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        try:
            if single.pack(float(text)) == bits:
                return text
        except OverflowError:
            continue
    return repr(value)  # only for a double that is not a binary32: 9 digits always give a binary32 back


def parse_typed_value(text: str) -> tuple[ValueType, Value]:
    """``float:21.5`` / ``string:10:Pump 1`` / ``bits:1010-0000-1111-0000`` / ``bit:on`` → (type, value)."""
    head, colon, rest = text.partition(":")
    if not colon:
        raise InvalidValue(f"{text!r}: expected TYPE:VALUE, e.g. float:21.5 or ushort:0x1F")
    if head.strip().lower() in _SIZED:
        length, colon2, tail = rest.partition(":")
        if colon2 and length.strip().isdecimal():
            return (vtype := ValueType.parse(f"{head}:{length}")), parse_value(vtype, tail)
        if head.strip().lower() == Kind.STRING:
            raise InvalidValue(f"{text!r}: expected string:N:TEXT, e.g. string:10:Pump 1")
    vtype = ValueType.parse(head)
    return vtype, parse_value(vtype, rest)


# ---------------------------------------------------------------------------------------------- on tables


def read_value(table: WordTable, address: int, vtype: ValueType, order: Order | str = Order.ABCD) -> Value:
    """The `vtype` value from `address` on; IllegalDataAddress when it runs past the table."""
    _register_type(vtype)
    return decode(vtype, table.read(address, vtype.registers), order)


def write_value(
    table: WordTable, address: int, vtype: ValueType, value: Value, order: Order | str = Order.ABCD
) -> None:
    """Store `value` from `address` on, all registers or none; IllegalDataAddress when it runs past the table."""
    table.write(address, encode(vtype, value, order))


def register_bit(n: int) -> int:
    """HSYCO's ``hr.<n>`` (1 … 16, from the LSB of the first byte) → the register value's bit number (0 = LSB)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 16:
        raise InvalidValue(
            f"register bit {n!r} outside 1..16 (1 is the LSB of the first byte, 16 the MSB of the second)"
        )
    return (n - 1) ^ 8


def read_bit_of_register(table: WordTable, address: int, n: int) -> bool:
    return bool(table[address] >> register_bit(n) & 1)


def write_bit_of_register(table: WordTable, address: int, n: int, value: bool) -> None:
    """Set or clear one bit in one step (the table's FC22 mask write), leaving the other 15 as they are."""
    mask = 1 << register_bit(n)
    table.mask_write(address, 0xFFFF ^ mask, mask if value else 0)


def read_bit_value(table: BitTable, address: int, vtype: ValueType, count: int = 1) -> bool | str:
    """``bit``: the bit at `address`; ``bits``: `count` bits from `address` as 0/1 text, leftmost at `address`."""
    if vtype.kind is Kind.BIT:
        return table[address]
    if vtype.kind is not Kind.BITS:
        raise InvalidType(f"{vtype} is a register type; coils and discrete inputs take bit or bits")
    return "".join("1" if b else "0" for b in table.read(address, count))


def write_bit_value(table: BitTable, address: int, vtype: ValueType, value: bool | str) -> None:
    """``bit``: a bool or its text (0/1/false/true/off/on); ``bits``: 0/1 text, '-' skipped, leftmost at `address`."""
    if vtype.kind is Kind.BIT:
        table[address] = parse_bit(value) if isinstance(value, str) else bool(value)
        return
    if vtype.kind is not Kind.BITS or not isinstance(value, str):
        raise InvalidType(f"{vtype}:{value!r}: coils and discrete inputs take bit:<0|1> or bits:<0|1|-…>")
    table.write(address, [c == "1" for c in parse_bit_string(value)])
