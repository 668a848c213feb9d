"""Address notations: both ends of every range, the reverse formatting, and one clear message per malformed name."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modbusd.model.names import InvalidName, Location, Notation, Table, describe, format_address, parse_address

CO, DI, IR, HR = Table.COILS, Table.DISCRETE_INPUTS, Table.INPUT_REGISTERS, Table.HOLDING_REGISTERS

DATA_MODEL_ENDS = [
    ("00001", CO, 0), ("09999", CO, 9998), ("10001", DI, 0), ("19999", DI, 9998),
    ("30001", IR, 0), ("39999", IR, 9998), ("40001", HR, 0), ("49999", HR, 9998),
    ("000001", CO, 0), ("065536", CO, 65535), ("100001", DI, 0), ("165536", DI, 65535),
    ("300001", IR, 0), ("365536", IR, 65535), ("400001", HR, 0), ("465536", HR, 65535),
    ("40101", HR, 100), ("400101", HR, 100), ("040001", CO, 40000), ("010001", CO, 10000),
]  # fmt: skip


@pytest.mark.parametrize(("text", "table", "address"), DATA_MODEL_ENDS)
def test_data_model_numbers_at_both_ends_of_each_range(text: str, table: Table, address: int) -> None:
    assert parse_address(text) == Location(table, address)


NAMES = [
    ("1.100.hr", Location(HR, 100, 1)),
    ("1.7.co", Location(CO, 7, 1)),
    ("1.7.di", Location(DI, 7, 1)),
    ("1.7.ir", Location(IR, 7, 1)),
    ("100.hr", Location(HR, 100)),
    ("1.100.hr.3", Location(HR, 100, 1, 3)),
    ("100.ir.16", Location(IR, 100, None, 16)),
    ("0.0.co", Location(CO, 0, 0)),
    ("255.65535.hr", Location(HR, 65535, 255)),
    ("247.65535.di", Location(DI, 65535, 247)),
    ("1.100.hr.1", Location(HR, 100, 1, 1)),
    ("1.100.hr.16", Location(HR, 100, 1, 16)),
    (" 1.100.HR ", Location(HR, 100, 1)),
    ("1.40101", Location(HR, 100, 1)),
    ("2.000001", Location(CO, 0, 2)),
]


@pytest.mark.parametrize(("text", "location"), NAMES)
def test_hsyco_names(text: str, location: Location) -> None:
    assert parse_address(text) == location


MALFORMED = [
    ("40000", "'40000' is below the first holding register, 40001: data-model numbers count from 1"),
    ("30000", "'30000' is below the first input register, 30001"),
    ("10000", "'10000' is below the first discrete input, 10001"),
    ("00000", "'00000' is below the first coil, 00001"),
    ("400000", "'400000' is below the first holding register, 400001"),
    ("465537", "'465537' is past the last holding register, 465536"),
    ("065537", "'065537' is past the last coil, 065536"),
    ("20001", "'20001': no table has the leading digit 2"),
    ("50001", "'50001': no table has the leading digit 5"),
    ("100", "'100' names no table: write 100.hr for protocol address 100 .* or 40100 for holding register 100"),
    ("9999", "'9999' names no table: write 9999.hr"),
    ("1234567", "'1234567' has 7 digits: data-model numbers have 5 or 6"),
    ("1.100.xx", "'1.100.xx': unknown table 'xx': expected co, di, ir or hr"),
    ("1.100.xx.3", "'1.100.xx.3': unknown table 'xx'"),
    ("1.70000.hr", "'1.70000.hr': address 70000 outside 0..65535"),
    ("65536.hr", "'65536.hr': address 65536 outside 0..65535"),
    ("256.1.hr", "'256.1.hr': unit id 256 outside 0..255"),
    ("x.1.hr", "'x.1.hr': unit id 'x' is not a number"),
    ("1.-5.hr", "'1.-5.hr': address '-5' is not a number"),
    ("1..hr", "'1..hr': address is missing"),
    ("1.7.co.3", "'1.7.co.3': a coil is a single bit: .3 applies to .hr and .ir only"),
    ("1.7.di.1", "'1.7.di.1': a discrete input is a single bit"),
    ("1.100.hr.0", "'1.100.hr.0': register bit 0 outside 1..16"),
    ("1.100.hr.17", "'1.100.hr.17': register bit 17 outside 1..16"),
    ("1.100.hr.x", "'1.100.hr.x': register bit 'x' is not a number"),
    ("1.2.3", "'1.2.3' names no table: expected \\[unit.\\]address.table"),
    ("1.2.3.hr", "'1.2.3.hr': expected \\[unit.\\]address.table\\[.bit\\]"),
    ("hr", "'hr': expected \\[unit.\\]address.table"),
    ("abc", "'abc' is not an address: expected 1.100.hr, 100.hr, 40101 or 400101"),
    ("", "empty address"),
    ("300.40101", "'300.40101': unit id 300 outside 0..255"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_addresses_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidName, match=f"^{message}"):
        parse_address(text)


def test_each_malformed_address_has_its_own_message() -> None:
    messages = []
    for text, _ in MALFORMED:
        with pytest.raises(InvalidName) as info:
            parse_address(text)
        messages.append(str(info.value))
    assert len(set(messages)) == len(messages)


def test_a_bare_number_names_both_readings_and_the_off_by_one() -> None:
    with pytest.raises(InvalidName) as info:
        parse_address("100")
    message = str(info.value)
    assert "100.hr" in message and "40100" in message and "protocol address 99" in message
    assert parse_address("100.hr").address == 100 and parse_address("40100").address == 99


# --------------------------------------------------------------------------------------------- formatting


FORMS = [  # table, address, then the name, 5-digit, 6-digit and 1-based forms
    (HR, 0, ("0.hr", "40001", "400001", "1")),
    (HR, 100, ("100.hr", "40101", "400101", "101")),
    (HR, 9998, ("9998.hr", "49999", "409999", "9999")),
    (IR, 0, ("0.ir", "30001", "300001", "1")),
    (DI, 9998, ("9998.di", "19999", "109999", "9999")),
    (CO, 0, ("0.co", "00001", "000001", "1")),
]


@pytest.mark.parametrize(("table", "address", "forms"), FORMS)
def test_format_in_each_notation(table: Table, address: int, forms: tuple[str, str, str, str]) -> None:
    notations = (Notation.NAME, Notation.FIVE_DIGIT, Notation.SIX_DIGIT, Notation.ONE_BASED)
    assert tuple(format_address(table, address, n) for n in notations) == forms
    assert {parse_address(text) for text in forms[:3]} == {Location(table, address)}


def test_format_with_unit_and_bit() -> None:
    assert format_address(HR, 100, unit_id=1) == "1.100.hr"
    assert format_address(HR, 100, unit_id=1, bit=3) == "1.100.hr.3"
    assert str(Location(HR, 100, 1, 3)) == "1.100.hr.3"


def test_five_digits_end_at_9999() -> None:
    assert format_address(HR, 65535, Notation.SIX_DIGIT) == "465536"
    with pytest.raises(InvalidName, match="holding register 9999 has no 5-digit number"):
        format_address(HR, 9999, Notation.FIVE_DIGIT)
    with pytest.raises(InvalidName, match="has no unit id or register bit"):
        format_address(HR, 1, Notation.SIX_DIGIT, unit_id=1)
    with pytest.raises(InvalidName, match=re.escape("address 65536 outside 0..65535")):
        format_address(HR, 65536)


def test_describe_shows_one_register_in_every_notation() -> None:
    assert (
        describe(HR, 100)
        == "holding register 100.hr = 40101 = 400101 (number 101 counted from 1; protocol address 100)"
    )
    assert describe(CO, 65535) == "coil 65535.co = 065536 (number 65536 counted from 1; protocol address 65535)"


@given(st.sampled_from(list(Table)), st.integers(0, 65535), st.none() | st.integers(0, 255))
def test_every_notation_parses_back_to_the_same_location(table: Table, address: int, unit_id: int | None) -> None:
    location = Location(table, address, unit_id)
    assert parse_address(str(location)) == location
    assert parse_address(format_address(table, address, Notation.SIX_DIGIT)) == Location(table, address)
    if address <= 9998:
        assert parse_address(format_address(table, address, Notation.FIVE_DIGIT)) == Location(table, address)


def test_table_suffixes_prefixes_and_device_attributes() -> None:
    assert [t.suffix for t in Table] == ["co", "di", "ir", "hr"]
    assert [t.prefix for t in Table] == [0, 1, 3, 4]
    assert [t.value for t in Table] == ["coils", "discrete_inputs", "input_registers", "holding_registers"]
    assert [t.is_bits for t in Table] == [True, True, False, False]
    assert Table.from_suffix("HR") is HR
    with pytest.raises(InvalidName, match="unknown table 'xx'"):
        Table.from_suffix("xx")


def test_location_checks_its_own_fields() -> None:
    with pytest.raises(InvalidName, match="single bit"):
        Location(CO, 1, bit=1)
    with pytest.raises(InvalidName, match="unit id 256"):
        Location(HR, 1, unit_id=256)
    with pytest.raises(InvalidName, match="address -1"):
        Location(HR, -1)
