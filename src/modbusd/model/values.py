"""Typed values in registers and bits: their text (parse and format) and their place in tables. Sans-I/O.

The types, their register bytes and the word/byte orders are in `value_types` (the table of types and the
choices HSYCO's Modbus server and the specification leave open are its docstring); every public name of it is
re-exported here, so `from modbusd.model.values import ValueType, encode` keeps working.

Single bits of a register (HSYCO's ``unitid.address.hr.<n>``, n = 1 … 16) count from the LSB of the first byte,
which is the register's high byte on the wire. In terms of the register value's bit numbers (0 = least
significant), `register_bit(n)`:

    n:      1   2   3   4   5   6   7   8  |  9  10  11  12  13  14  15  16
    bit:    8   9  10  11  12  13  14  15  |  0   1   2   3   4   5   6   7      (bit = (n - 1) XOR 8)

so n = 8 is the MSB of the value and n = 9 its LSB. In a ``bits`` string, the character at position i (0 = leftmost)
is value bit 15 - i: the leftmost character is n = 8 and the rightmost n = 9.
"""

import math

from modbusd.model.tables import BitTable, WordTable
from modbusd.model.value_types import (
    _FLOATS,
    _INTEGERS,
    _SIZED,
    BIT,
    BITS,
    DOUBLE,
    FLOAT,
    HEX,
    INT,
    LONG,
    SHORT,
    UINT,
    ULONG,
    USHORT,
    InvalidType,
    InvalidValue,
    Kind,
    Order,
    Value,
    ValueType,
    _encode_hex,
    _encode_string,
    _parse_hex,
    _register_type,
    decode,
    encode,
    integer_range,
    packer,
    packer_into,
    parse_bit_string,
    reorder,
)

__all__ = [
    "BIT", "BITS", "DOUBLE", "FLOAT", "HEX", "INT", "LONG", "SHORT", "UINT", "ULONG", "USHORT", "InvalidType",
    "InvalidValue", "Kind", "Order", "Value", "ValueType", "decode", "encode", "format_value", "integer_range",
    "packer", "packer_into", "parse_bit", "parse_bit_string", "parse_typed_value", "parse_value",
    "read_bit_of_register", "read_bit_value",
    "read_value", "register_bit", "reorder", "write_bit_of_register", "write_bit_value", "write_value",
]  # fmt: skip

_BIT_WORDS = {"0": False, "false": False, "off": False, "1": True, "true": True, "on": True}


# ----------------------------------------------------------------------------------------------- text values


def parse_bit(text: str) -> bool:
    """HSYCO's ``bit`` values: 0/1/false/true/off/on, any case."""
    try:
        return _BIT_WORDS[text.strip().lower()]
    except KeyError:
        raise InvalidValue(f"{text!r} is not a bit: expected 0, 1, false, true, off or on") from None


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
