"""Typed values: every type × every order through a real WordTable, range ends, known byte patterns, HSYCO's bits."""

import math
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from modbusd.model.tables import BitTable, WordTable
from modbusd.model.values import (
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
    ValueType,
    decode,
    encode,
    format_value,
    integer_range,
    parse_typed_value,
    parse_value,
    read_bit_of_register,
    read_bit_value,
    read_value,
    register_bit,
    reorder,
    write_bit_of_register,
    write_bit_value,
    write_value,
)
from modbusd.protocol.errors import IllegalDataAddress

ORDERS = list(Order)
INTEGER_TYPES = [USHORT, SHORT, UINT, INT, ULONG, LONG]


def same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def values_of(vtype: ValueType) -> st.SearchStrategy[object]:
    if vtype.kind in (Kind.USHORT, Kind.SHORT, Kind.UINT, Kind.INT, Kind.ULONG, Kind.LONG):
        low, high = integer_range(vtype)
        return st.integers(low, high)
    if vtype.kind is Kind.FLOAT:
        return st.floats(width=32)
    if vtype.kind is Kind.DOUBLE:
        return st.floats()
    if vtype.kind is Kind.STRING:
        chars = st.characters(min_codepoint=1, max_codepoint=0xFF)
        return st.text(chars, max_size=2 * vtype.registers)
    if vtype.kind is Kind.HEX:
        size = 2 * vtype.registers
        return st.binary(min_size=size, max_size=size)
    return st.text("01", min_size=16, max_size=16)


ROUND_TRIP_TYPES = [*INTEGER_TYPES, FLOAT, DOUBLE, ValueType(Kind.STRING, 1), ValueType(Kind.STRING, 10), HEX,
                    ValueType(Kind.HEX, 3), BITS]  # fmt: skip


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[ValueType, object, Order, int]:
    vtype = draw(st.sampled_from(ROUND_TRIP_TYPES))
    return vtype, draw(values_of(vtype)), draw(st.sampled_from(ORDERS)), draw(st.integers(0, 64 - vtype.registers))


# ------------------------------------------------------------------------------------------------ round trips


@given(typed_values())
def test_every_type_and_order_round_trips_through_a_word_table(case: tuple[ValueType, object, Order, int]) -> None:
    vtype, value, order, address = case
    table = WordTable(64)
    write_value(table, address, vtype, value, order)
    assert same(read_value(table, address, vtype, order), value)
    untouched = [a for a in range(64) if not address <= a < address + vtype.registers]
    assert all(table[a] == 0 for a in untouched)


@given(typed_values())
def test_encode_gives_whole_registers_and_decode_inverts_it(case: tuple[ValueType, object, Order, int]) -> None:
    vtype, value, order, _ = case
    data = encode(vtype, value, order)
    assert len(data) == 2 * vtype.registers
    assert same(decode(vtype, data, order), value)


@given(st.binary(min_size=8, max_size=8), st.sampled_from(ORDERS))
def test_every_order_is_its_own_inverse(data: bytes, order: Order) -> None:
    assert reorder(reorder(data, order), order) == data


@given(typed_values())
def test_format_value_reads_back_as_the_same_registers(case: tuple[ValueType, object, Order, int]) -> None:
    """Exactly the same registers, except for NaN: its sign and payload bits have no text form ("nan")."""
    vtype, value, order, _ = case
    text = format_value(vtype, value)
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(parse_value(vtype, text))  # type: ignore[arg-type]  # a float for float types
        return
    assert encode(vtype, parse_value(vtype, text), order) == encode(vtype, value, order)


# ---------------------------------------------------------------------------- every type in every order, by hand

# Each row: a value whose big-endian bytes are all different, and its registers in each order, written out from the
# orders' definition (module docstring of modbusd.model.value_types: ABCD as is; CDAB the registers reversed; BADC
# the two bytes of each register exchanged; DCBA all bytes reversed), not computed by the code under test. "Every
# order is its own inverse" holds for wrong orders too (swapping the two halves of a long is an involution); these do
# not.
PI_SINGLE = float.fromhex("0x1.921fb6p+1")  # binary32 40 49 0F DB: sign 0, exponent 0x80, fraction 0x490FDB
ORDER_PATTERNS = [  # (type, value, ABCD, CDAB, BADC, DCBA)
    (USHORT, 0x1234, "1234", "1234", "3412", "3412"),
    (SHORT, -0x1235, "EDCB", "EDCB", "CBED", "CBED"),  # two's complement of 0x1235 is 0xEDCB
    (UINT, 0x12345678, "1234 5678", "5678 1234", "3412 7856", "7856 3412"),
    (INT, -0x12345679, "EDCB A987", "A987 EDCB", "CBED 87A9", "87A9 CBED"),  # ~0x12345678
    (ULONG, 0x0102030405060708, "0102 0304 0506 0708", "0708 0506 0304 0102", "0201 0403 0605 0807",
     "0807 0605 0403 0201"),
    (LONG, -0x0102030405060709, "FEFD FCFB FAF9 F8F7", "F8F7 FAF9 FCFB FEFD", "FDFE FBFC F9FA F7F8",
     "F7F8 F9FA FBFC FDFE"),  # ~0x0102030405060708
    (FLOAT, PI_SINGLE, "4049 0FDB", "0FDB 4049", "4940 DB0F", "DB0F 4940"),
    (DOUBLE, math.pi, "4009 21FB 5444 2D18", "2D18 5444 21FB 4009", "0940 FB21 4454 182D",
     "182D 4454 FB21 0940"),  # binary64 pi, as every IEEE 754 table gives it
    (ValueType(Kind.STRING, 2), "ABCD", "4142 4344", "4344 4142", "4241 4443", "4443 4241"),
    (ValueType(Kind.STRING, 3), "ABCDEF", "4142 4344 4546", "4546 4344 4142", "4241 4443 4645", "4645 4443 4241"),
    (ValueType(Kind.STRING, 4), "ABCDEFGH", "4142 4344 4546 4748", "4748 4546 4344 4142", "4241 4443 4645 4847",
     "4847 4645 4443 4241"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("vtype", "value", "order", "registers_hex"),
    [
        pytest.param(vtype, value, order, row[i], id=f"{vtype} {order}")
        for vtype, value, *row in ORDER_PATTERNS
        for i, order in enumerate(("ABCD", "CDAB", "BADC", "DCBA"))
    ],
)
def test_every_type_in_every_order_gives_the_registers_the_definition_gives(
    vtype: ValueType, value: object, order: str, registers_hex: str
) -> None:
    expected = bytes.fromhex(registers_hex)
    assert encode(vtype, value, order) == expected
    assert decode(vtype, expected, order) == value
    table = WordTable(8)
    write_value(table, 1, vtype, value, order)
    assert table.read(1, vtype.registers) == expected


# ------------------------------------------------------------------------------------------ known byte patterns

KNOWN = [
    pytest.param(FLOAT, 21.5, "ABCD", "41AC 0000", id="float 21.5 ABCD"),
    pytest.param(FLOAT, 21.5, "CDAB", "0000 41AC", id="float 21.5 CDAB"),
    pytest.param(FLOAT, 21.5, "BADC", "AC41 0000", id="float 21.5 BADC"),
    pytest.param(FLOAT, 21.5, "DCBA", "0000 AC41", id="float 21.5 DCBA"),
    pytest.param(UINT, 0x12345678, "ABCD", "1234 5678", id="uint ABCD"),
    pytest.param(UINT, 0x12345678, "CDAB", "5678 1234", id="uint CDAB"),
    pytest.param(UINT, 0x12345678, "BADC", "3412 7856", id="uint BADC"),
    pytest.param(UINT, 0x12345678, "DCBA", "7856 3412", id="uint DCBA"),
    pytest.param(ULONG, 0x0102030405060708, "ABCD", "0102 0304 0506 0708", id="ulong ABCD"),
    pytest.param(ULONG, 0x0102030405060708, "CDAB", "0708 0506 0304 0102", id="ulong CDAB: registers reversed"),
    pytest.param(ULONG, 0x0102030405060708, "BADC", "0201 0403 0605 0807", id="ulong BADC: bytes swapped"),
    pytest.param(ULONG, 0x0102030405060708, "DCBA", "0807 0605 0403 0201", id="ulong DCBA: little-endian"),
    pytest.param(DOUBLE, 1.0, "ABCD", "3FF0 0000 0000 0000", id="double 1.0 ABCD"),
    pytest.param(DOUBLE, 1.0, "CDAB", "0000 0000 0000 3FF0", id="double 1.0 CDAB"),
    pytest.param(DOUBLE, 1.0, "BADC", "F03F 0000 0000 0000", id="double 1.0 BADC"),
    pytest.param(DOUBLE, 1.0, "DCBA", "0000 0000 0000 F03F", id="double 1.0 DCBA"),
    pytest.param(USHORT, 0x1234, "CDAB", "1234", id="ushort CDAB: one register, nothing to swap"),
    pytest.param(USHORT, 0x1234, "BADC", "3412", id="ushort BADC"),
    pytest.param(SHORT, -2, "ABCD", "FFFE", id="short -2"),
    pytest.param(INT, -2, "CDAB", "FFFE FFFF", id="int -2 CDAB"),
    pytest.param(LONG, -1, "ABCD", "FFFF FFFF FFFF FFFF", id="long -1"),
    pytest.param(ValueType(Kind.STRING, 3), "ABCD", "ABCD", "4142 4344 0000", id="string:3 NUL padded"),
    pytest.param(ValueType(Kind.STRING, 2), "ABC", "BADC", "4241 0043", id="string:2 BADC"),
    pytest.param(ValueType(Kind.STRING, 2), "ABCD", "CDAB", "4344 4142", id="string:2 CDAB"),
    pytest.param(FLOAT, math.inf, "ABCD", "7F80 0000", id="float inf"),
    pytest.param(FLOAT, -math.inf, "ABCD", "FF80 0000", id="float -inf"),
    pytest.param(BITS, "1010-0000-1111-0000", "ABCD", "A0F0", id="bits, leftmost the MSB"),
    pytest.param(BITS, "1010000011110000", "DCBA", "A0F0", id="bits ignore the order"),
    pytest.param(HEX, "41AC 0000", "DCBA", "41AC 0000", id="hex is raw: order ignored"),
]


@pytest.mark.parametrize(("vtype", "value", "order", "registers_hex"), KNOWN)
def test_known_byte_patterns(vtype: ValueType, value: object, order: str, registers_hex: str) -> None:
    table = WordTable(8)
    write_value(table, 2, vtype, value, order)
    expected = bytes.fromhex(registers_hex)
    assert table.read(2, len(expected) // 2) == expected
    assert same(decode(vtype, expected, order), parse_value(vtype, value) if isinstance(value, str) else value)


def test_float_nan_is_stored_and_read_as_nan() -> None:
    table = WordTable(4)
    write_value(table, 0, FLOAT, math.nan, Order.CDAB)
    assert math.isnan(read_value(table, 0, FLOAT, Order.CDAB))
    table.write(0, bytes.fromhex("7FC0 0001"))  # a NaN with a payload, as a device might send it
    assert math.isnan(read_value(table, 0, FLOAT))


def test_float_rounds_to_the_nearest_single_and_prints_shortest() -> None:
    stored = decode(FLOAT, encode(FLOAT, 21.1))
    assert stored == struct.unpack(">f", struct.pack(">f", 21.1))[0] != 21.1
    assert format_value(FLOAT, stored) == "21.1"


# ------------------------------------------------------------------------------------------ values as text

FLOAT_EDGES = [0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x80000001, 0x00000000, 0x80000000, 0x7F800000, 0xFF800000,
               0x7FC00000, 0xFFC00000, 0x00800000, 0x007FFFFF, 0x7F7FFFFE, 0x7F800001, 0xFFFFFFFF]  # fmt: skip

# (type, registers as a client writes them, the text every reader shows): the ends of both IEEE 754 formats
# (FLT_MAX, -FLT_MAX, the smallest subnormal, ±0, ±inf, NaN of either sign) and plain numbers.
TEXTS = [
    pytest.param(FLOAT, "7F7FFFFF", "3.4028235e+38", id="float FLT_MAX"),
    pytest.param(FLOAT, "FF7FFFFF", "-3.4028235e+38", id="float -FLT_MAX"),
    pytest.param(FLOAT, "00000001", "1e-45", id="float smallest subnormal"),
    pytest.param(FLOAT, "80000001", "-1e-45", id="float -smallest subnormal"),
    pytest.param(FLOAT, "00000000", "0.0", id="float 0"),
    pytest.param(FLOAT, "80000000", "-0.0", id="float -0"),
    pytest.param(FLOAT, "7F800000", "inf", id="float inf"),
    pytest.param(FLOAT, "FF800000", "-inf", id="float -inf"),
    pytest.param(FLOAT, "7FC00000", "nan", id="float nan"),
    pytest.param(FLOAT, "FFC00000", "-nan", id="float -nan"),
    pytest.param(FLOAT, "41A00000", "20.0", id="float 20: plain, not 2e+01"),
    pytest.param(FLOAT, "42C80000", "100.0", id="float 100: plain, not 1e+02"),
    pytest.param(FLOAT, "3DCCCCCD", "0.1", id="float 0.1: the fewest digits"),
    pytest.param(FLOAT, "33D6BF95", "1e-07", id="float 1e-7: exponent below 0.0001"),
    pytest.param(FLOAT, "38D1B717", "0.0001", id="float 0.0001: plain from here up"),
    pytest.param(FLOAT, "4B3C614E", "12345678.0", id="float 12345678"),
    pytest.param(FLOAT, "5A0E1BCA", "1e+16", id="float 1e16: exponent from here up"),
    pytest.param(DOUBLE, "7FEFFFFFFFFFFFFF", "1.7976931348623157e+308", id="double DBL_MAX"),
    pytest.param(DOUBLE, "FFEFFFFFFFFFFFFF", "-1.7976931348623157e+308", id="double -DBL_MAX"),
    pytest.param(DOUBLE, "0000000000000001", "5e-324", id="double smallest subnormal"),
    pytest.param(DOUBLE, "8000000000000001", "-5e-324", id="double -smallest subnormal"),
    pytest.param(DOUBLE, "0000000000000000", "0.0", id="double 0"),
    pytest.param(DOUBLE, "8000000000000000", "-0.0", id="double -0"),
    pytest.param(DOUBLE, "7FF0000000000000", "inf", id="double inf"),
    pytest.param(DOUBLE, "FFF0000000000000", "-inf", id="double -inf"),
    pytest.param(DOUBLE, "7FF8000000000000", "nan", id="double nan"),
    pytest.param(DOUBLE, "FFF8000000000000", "-nan", id="double -nan"),
    pytest.param(DOUBLE, "47EFFFFFE0000000", "3.4028234663852886e+38", id="double FLT_MAX: all its digits"),
    pytest.param(DOUBLE, "4034000000000000", "20.0", id="double 20"),
    pytest.param(DOUBLE, "4340000000000000", "9007199254740992.0", id="double 2**53: plain below 1e16"),
    pytest.param(USHORT, "0064", "100", id="ushort 100"),
    pytest.param(LONG, "8000000000000000", "-9223372036854775808", id="long min"),
]


@pytest.mark.parametrize(("vtype", "registers_hex", "text"), TEXTS)
def test_format_value_shows_each_value_as_the_readme_says(vtype: ValueType, registers_hex: str, text: str) -> None:
    registers = bytes.fromhex(registers_hex)
    assert format_value(vtype, decode(vtype, registers)) == text
    assert encode(vtype, parse_value(vtype, text)) == registers, "the text reads back as the same registers"


def sign_bit(registers: bytes, order: Order) -> int:
    """The IEEE 754 sign: the top bit of byte A, wherever `order` puts it."""
    return reorder(registers, order)[0] >> 7


@given(st.integers(0, 2**32 - 1) | st.sampled_from(FLOAT_EDGES), st.sampled_from(ORDERS))
@example(0x7F7FFFFF, Order.ABCD)
@example(0xFF7FFFFF, Order.CDAB)
def test_any_float_registers_a_client_writes_read_back_through_their_text(bits: int, order: Order) -> None:
    """Whatever 32 bits a client writes to a float point, every reader (get, the control API, MQTT) can show them."""
    registers = bits.to_bytes(4, "big")
    table = WordTable(2)
    table.write(0, registers)
    value = read_value(table, 0, FLOAT, order)
    text = format_value(FLOAT, value)
    back = encode(FLOAT, parse_value(FLOAT, text), order)
    if math.isnan(value):  # NaN's payload bits have no text form; its sign has ("-nan")
        assert text == ("-nan" if sign_bit(registers, order) else "nan")
        assert math.isnan(decode(FLOAT, back, order)) and sign_bit(back, order) == sign_bit(registers, order)
        return
    assert back == registers


@given(st.integers(0, 2**64 - 1), st.sampled_from(ORDERS))
@example(0x7FEFFFFFFFFFFFFF, Order.DCBA)
def test_any_double_registers_a_client_writes_read_back_through_their_text(bits: int, order: Order) -> None:
    table = WordTable(4)
    table.write(0, bits.to_bytes(8, "big"))
    value = read_value(table, 0, DOUBLE, order)
    text = format_value(DOUBLE, value)
    back = encode(DOUBLE, parse_value(DOUBLE, text), order)
    if math.isnan(value):
        assert text == ("-nan" if sign_bit(table.read(0, 4), order) else "nan")
        assert math.isnan(decode(DOUBLE, back, order)) and sign_bit(back, order) == sign_bit(table.read(0, 4), order)
        return
    assert back == table.read(0, 4)


def test_string_strips_trailing_nuls_only() -> None:
    vtype = ValueType.parse("string:4")
    assert decode(vtype, b"AB\x00C\x00\x00\x00\x00") == "AB\x00C"
    assert decode(vtype, b"AB  \x00\x00\x00\x00") == "AB  "
    assert decode(vtype, bytes(8)) == ""
    assert decode(vtype, b"\xe9t\xe9\x00\x00\x00\x00\x00") == "été"  # Latin-1: any byte is a character


def test_bare_hex_writes_any_whole_registers_and_reads_one() -> None:
    table = WordTable(8)
    write_value(table, 1, HEX, bytes.fromhex("0102 0304 0506"))
    assert table.values(0, 5) == [0, 0x0102, 0x0304, 0x0506, 0]
    assert read_value(table, 1, HEX) == bytes.fromhex("0102")
    assert read_value(table, 1, ValueType.parse("hex:3")) == bytes.fromhex("0102 0304 0506")


# ------------------------------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize("vtype", INTEGER_TYPES, ids=str)
def test_integer_range_ends_are_accepted_and_one_past_is_rejected(vtype: ValueType) -> None:
    low, high = integer_range(vtype)
    table = WordTable(4)
    for value in (low, high):
        for order in ORDERS:
            write_value(table, 0, vtype, value, order)
            assert read_value(table, 0, vtype, order) == value
    table.write(0, bytes(8))
    for value in (low - 1, high + 1):
        with pytest.raises(InvalidValue, match=f"{value} is outside {vtype}'s range {low}..{high}"):
            write_value(table, 0, vtype, value)
        with pytest.raises(InvalidValue, match="outside"):
            parse_value(vtype, str(value))
    assert table.read(0, 4) == bytes(8), "a rejected value writes nothing"


@pytest.mark.parametrize(
    ("vtype", "low", "high"),
    [
        (USHORT, 0, 65535),
        (SHORT, -32768, 32767),
        (UINT, 0, 2**32 - 1),
        (INT, -(2**31), 2**31 - 1),
        (ULONG, 0, 2**64 - 1),
        (LONG, -(2**63), 2**63 - 1),
    ],
    ids=str,
)
def test_integer_ranges_are_hsycos(vtype: ValueType, low: int, high: int) -> None:
    assert integer_range(vtype) == (low, high)


def test_float_ends_are_accepted_and_beyond_them_rejected() -> None:
    largest = struct.unpack(">f", bytes.fromhex("7F7FFFFF"))[0]
    smallest = struct.unpack(">f", bytes.fromhex("00000001"))[0]  # 2**-149, HSYCO's lower end
    for value in (largest, -largest, smallest, -smallest):
        assert decode(FLOAT, encode(FLOAT, value)) == value
    assert encode(FLOAT, largest).hex().upper() == "7F7FFFFF"
    with pytest.raises(InvalidValue, match="beyond the largest finite float"):
        encode(FLOAT, 3.5e38)
    with pytest.raises(InvalidValue, match="beyond the largest finite float"):
        parse_value(FLOAT, "-1e39")
    assert decode(DOUBLE, encode(DOUBLE, 1.7976931348623157e308)) == 1.7976931348623157e308
    with pytest.raises(InvalidValue, match="beyond the largest finite double"):
        encode(DOUBLE, 10**400)


def test_string_length_end_is_accepted_and_one_more_rejected() -> None:
    vtype = ValueType.parse("string:2")
    assert decode(vtype, encode(vtype, "ABCD")) == "ABCD"
    with pytest.raises(InvalidValue, match="'ABCDE' has 5 characters; string:2 holds at most 4"):
        encode(vtype, "ABCDE")


@pytest.mark.parametrize(
    ("vtype", "value", "message"),
    [
        (USHORT, 1.0, "ushort takes an integer"),
        (USHORT, True, "ushort takes an integer"),
        (FLOAT, "1", "float takes a number"),
        (ValueType(Kind.STRING, 2), "a\x00", "cannot hold NUL"),
        (ValueType(Kind.STRING, 2), "€", "not a one-byte"),
        (ValueType(Kind.HEX, 2), b"\x01\x02", "exactly 4 bytes"),
        (HEX, b"\x01", "whole registers"),
        (HEX, b"", "whole registers"),
        (BITS, "1010", "has 4 bits after skipping '-'; a register has exactly 16"),
        (BITS, "1010-0000-1111-00002", "'2' is not 0, 1 or '-'"),
    ],
)
def test_bad_values_are_rejected_with_what_is_wrong(vtype: ValueType, value: object, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        encode(vtype, value)


def test_decode_requires_the_types_width() -> None:
    with pytest.raises(InvalidValue, match="float needs 4 bytes, got 2"):
        decode(FLOAT, b"\x00\x00")


def test_a_value_past_the_table_is_illegal_data_address_and_writes_nothing() -> None:
    table = WordTable(4)
    with pytest.raises(IllegalDataAddress):
        write_value(table, 3, UINT, 1)
    with pytest.raises(IllegalDataAddress):
        read_value(table, 1, DOUBLE)
    assert table.read(0, 4) == bytes(8)


# ------------------------------------------------------------------------------------------------ type names


@pytest.mark.parametrize(
    ("text", "kind", "registers"),
    [
        ("ushort", Kind.USHORT, 1), ("short", Kind.SHORT, 1), ("uint", Kind.UINT, 2), ("int", Kind.INT, 2),
        ("ulong", Kind.ULONG, 4), ("long", Kind.LONG, 4), ("float", Kind.FLOAT, 2), ("double", Kind.DOUBLE, 4),
        ("string:10", Kind.STRING, 10), (" Float ", Kind.FLOAT, 2), ("hex", Kind.HEX, 1), ("hex:4", Kind.HEX, 4),
        ("bits", Kind.BITS, 1), ("bit", Kind.BIT, 0),
    ],
)  # fmt: skip
def test_type_names_parse_with_their_register_counts(text: str, kind: Kind, registers: int) -> None:
    vtype = ValueType.parse(text)
    assert (vtype.kind, vtype.registers) == (kind, registers)
    assert ValueType.parse(str(vtype)) == vtype


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("uint16", "unknown type 'uint16': expected one of ushort, .*string:N"),
        ("string", "string needs a length"),
        ("string:", "the length after string: must be a number"),
        ("string:x", "the length after string: must be a number"),
        ("string:0", "the length must be 1..65536"),
        ("float:2", "float takes no length"),
    ],
)
def test_bad_type_names_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidType, match=message):
        ValueType.parse(text)


def test_bit_is_not_a_register_type() -> None:
    with pytest.raises(InvalidType, match="bit is a coil and discrete-input type"):
        write_value(WordTable(2), 0, BIT, True)


# ------------------------------------------------------------------------------------------------ text values


@pytest.mark.parametrize(
    ("vtype", "text", "value"),
    [
        (FLOAT, "21.5", 21.5), (FLOAT, " -0.25 ", -0.25), (DOUBLE, "1e300", 1e300),
        (USHORT, "31", 31), (USHORT, "0x1F", 31), (USHORT, "0X1f", 31), (USHORT, "0031", 31), (SHORT, "-0x10", -16),
        (USHORT, "0b101", 5), (ULONG, "0xFFFFFFFFFFFFFFFF", 2**64 - 1),
        (BITS, "1010-0000-1111-0000", "1010000011110000"),
        (HEX, "0x41AC", b"\x41\xac"), (HEX, "41 ac 00 00", b"\x41\xac\x00\x00"),
        (ValueType(Kind.STRING, 5), "Pump 1", "Pump 1"),
        (BIT, "on", True), (BIT, "OFF", False), (BIT, "true", True), (BIT, "0", False),
    ],
)  # fmt: skip
def test_parse_value(vtype: ValueType, text: str, value: object) -> None:
    assert parse_value(vtype, text) == value


def test_parse_value_accepts_nan_and_infinity_for_floats() -> None:
    assert math.isnan(parse_value(FLOAT, "nan"))
    assert parse_value(DOUBLE, "-inf") == -math.inf


@pytest.mark.parametrize(
    ("vtype", "text", "message"),
    [
        (USHORT, "twelve", "'twelve' is not an integer"),
        (USHORT, "1.5", "'1.5' is not an integer"),
        (USHORT, "0x10000", "outside ushort's range 0..65535"),
        (SHORT, "0xFFFF", "outside short's range -32768..32767"),
        (USHORT, "-1", "outside ushort's range"),
        (FLOAT, "21,5", "'21,5' is not a number for float"),
        (HEX, "41AC0", "registers take 4 hex digits each"),
        (HEX, "41AG", "not hexadecimal bytes"),
        (BIT, "yes", "'yes' is not a bit"),
        (BITS, "---", "holds no bits"),
    ],
)
def test_parse_value_rejects_bad_text(vtype: ValueType, text: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_value(vtype, text)


@pytest.mark.parametrize(
    ("text", "vtype", "value"),
    [
        ("float:21.5", FLOAT, 21.5),
        ("ushort:0x1F", USHORT, 31),
        ("string:10:Pump: 1", ValueType(Kind.STRING, 10), "Pump: 1"),
        ("hex:41AC0000", HEX, b"\x41\xac\x00\x00"),
        ("hex:2:41AC0000", ValueType(Kind.HEX, 2), b"\x41\xac\x00\x00"),
        ("bits:1010-0000-1111-0000", BITS, "1010000011110000"),
        ("bit:on", BIT, True),
    ],
)
def test_parse_typed_value(text: str, vtype: ValueType, value: object) -> None:
    assert parse_typed_value(text) == (vtype, value)


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("21.5", InvalidValue, "expected TYPE:VALUE"),
        ("string:abc", InvalidValue, "expected string:N:TEXT"),
        ("quad:1", InvalidType, "unknown type 'quad'"),
    ],
)
def test_parse_typed_value_rejects(text: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_typed_value(text)


# -------------------------------------------------------------------------------------------- bits (HSYCO)

# n -> the register value with only that bit set: n=1 is the LSB of the first (high) byte, n=16 the MSB of the second
HSYCO_BITS = [
    (1, 0x0100), (2, 0x0200), (7, 0x4000), (8, 0x8000), (9, 0x0001), (10, 0x0002), (15, 0x0040), (16, 0x0080),
]  # fmt: skip


@pytest.mark.parametrize(("n", "register"), HSYCO_BITS)
def test_register_bit_n_follows_hsyco(n: int, register: int) -> None:
    assert 1 << register_bit(n) == register
    table = WordTable(2)
    write_bit_of_register(table, 1, n, True)
    assert table[1] == register
    assert table.read(1, 1) == register.to_bytes(2, "big")
    assert read_bit_of_register(table, 1, n)
    assert [m for m in range(1, 17) if read_bit_of_register(table, 1, m)] == [n]
    write_bit_of_register(table, 1, n, False)
    assert table[1] == 0


def test_register_bits_map_one_to_one_onto_value_bits() -> None:
    assert [register_bit(n) for n in range(1, 17)] == [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]


def test_register_bit_write_leaves_the_other_bits() -> None:
    table = WordTable(1)
    table[0] = 0xFFFF
    write_bit_of_register(table, 0, 8, False)
    assert table[0] == 0x7FFF
    write_bit_of_register(table, 0, 8, True)
    assert table[0] == 0xFFFF


def test_bits_string_and_register_bit_numbers_agree() -> None:
    """In a bits string, the leftmost character is n=8 (the MSB) and the rightmost n=9 (the LSB)."""
    table = WordTable(1)
    write_value(table, 0, BITS, "1000-0000-0000-0000")
    assert [n for n in range(1, 17) if read_bit_of_register(table, 0, n)] == [8]
    write_value(table, 0, BITS, "0000-0000-0000-0001")
    assert [n for n in range(1, 17) if read_bit_of_register(table, 0, n)] == [9]
    write_bit_of_register(table, 0, 16, True)
    assert read_value(table, 0, BITS) == "0000000010000001"


@pytest.mark.parametrize("n", [0, 17, -1, True])
def test_register_bit_outside_1_to_16_is_rejected(n: int) -> None:
    with pytest.raises(InvalidValue, match=r"outside 1\.\.16"):
        read_bit_of_register(WordTable(1), 0, n)


def test_coil_bit_values() -> None:
    coils = BitTable(16)
    write_bit_value(coils, 3, BIT, "on")
    write_bit_value(coils, 4, BIT, True)
    assert read_bit_value(coils, 3, BIT) is True
    write_bit_value(coils, 3, BIT, "off")
    assert coils.read(0, 6) == [False, False, False, False, True, False]


def test_coil_bits_value_puts_the_leftmost_at_the_address() -> None:
    coils = BitTable(16)
    write_bit_value(coils, 2, BITS, "110-1")
    assert coils.read(0, 7) == [False, False, True, True, False, True, False]
    assert read_bit_value(coils, 2, BITS, 4) == "1101"


def test_coil_values_reject_register_types_and_bad_bits() -> None:
    coils = BitTable(4)
    with pytest.raises(InvalidType, match="coils and discrete inputs take"):
        write_bit_value(coils, 0, USHORT, "1")
    with pytest.raises(InvalidValue, match="'2' is not 0, 1 or '-'"):
        write_bit_value(coils, 0, BITS, "102")
    with pytest.raises(IllegalDataAddress):
        write_bit_value(coils, 2, BITS, "111")
