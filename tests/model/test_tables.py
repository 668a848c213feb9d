"""WordTable and BitTable: the storage behind every layout, driven directly with plain values."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from modbusd.model.tables import BitTable, WordTable
from modbusd.protocol.bits import pack_bits
from modbusd.protocol.errors import IllegalDataAddress, IllegalDataValue

# ------------------------------------------------------------------------------------------- WordTable


def test_word_table_spans_the_whole_address_space_by_default() -> None:
    table = WordTable()
    assert len(table) == table.size == 65536
    table[65535] = 0xBEEF
    assert table[65535] == 0xBEEF


def test_word_table_starts_at_zero() -> None:
    assert WordTable(10).values(0, 10) == [0] * 10


def test_word_table_reads_big_endian_bytes() -> None:
    table = WordTable(10)
    table.set_values(2, [0x1234, 0xABCD])
    assert table.read(2, 2) == bytes.fromhex("1234 ABCD")


def test_word_table_writes_big_endian_bytes() -> None:
    table = WordTable(10)
    table.write(8, bytes.fromhex("0102 FFFE"))
    assert table.values(8, 2) == [0x0102, 0xFFFE]
    assert table[8] == 0x0102


@pytest.mark.parametrize(("address", "quantity"), [(10, 1), (9, 2), (0, 11), (-1, 1), (5, -1), (65535, 2)])
def test_word_table_raises_illegal_data_address_past_its_end(address: int, quantity: int) -> None:
    table = WordTable(10)
    with pytest.raises(IllegalDataAddress):
        table.read(address, quantity)
    with pytest.raises(IllegalDataAddress):
        table.check(address, quantity)


def test_word_table_accepts_reads_that_end_at_its_last_address() -> None:
    table = WordTable(10)
    table.check(0, 10)
    assert table.read(9, 1) == b"\x00\x00"
    assert table.read(10, 0) == b""


def test_word_table_writes_all_or_nothing() -> None:
    table = WordTable(10)
    with pytest.raises(IllegalDataAddress):
        table.write(9, bytes.fromhex("1111 2222"))
    assert table.values(0, 10) == [0] * 10


@pytest.mark.parametrize("address", [10, -1])
def test_word_table_item_access_raises_illegal_data_address_outside(address: int) -> None:
    table = WordTable(10)
    with pytest.raises(IllegalDataAddress):
        _ = table[address]
    with pytest.raises(IllegalDataAddress):
        table[address] = 1


@pytest.mark.parametrize("value", [-1, 0x10000])
def test_word_table_refuses_a_value_that_is_not_16_bits(value: int) -> None:
    table = WordTable(10)
    with pytest.raises(IllegalDataValue):
        table[0] = value
    with pytest.raises(IllegalDataValue):
        table.set_values(0, [1, value])
    assert table.values(0, 2) == [0, 0]


@pytest.mark.parametrize("size", [-1, 65537])
def test_word_table_refuses_a_size_outside_the_address_space(size: int) -> None:
    with pytest.raises(ValueError, match="table size"):
        WordTable(size)


def test_word_table_of_size_zero_has_no_address() -> None:
    with pytest.raises(IllegalDataAddress):
        WordTable(0).read(0, 1)


def test_word_table_mask_write_keeps_and_bits_and_takes_or_bits_elsewhere() -> None:
    table = WordTable(10)
    table[4] = 0x12
    assert table.mask_write(4, 0x00F2, 0x0025) == 0x17  # §6.16 example
    assert table[4] == 0x17


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_word_table_mask_write_follows_the_spec_bit_by_bit(current: int, and_mask: int, or_mask: int) -> None:
    table = WordTable(1)
    table[0] = current
    result = table.mask_write(0, and_mask, or_mask)
    for bit in range(16):  # §6.16: where And_Mask is 1 the bit is kept, where it is 0 Or_Mask's bit is taken
        source = current if and_mask >> bit & 1 else or_mask
        assert result >> bit & 1 == source >> bit & 1
    assert table[0] == result


def test_word_table_mask_write_past_its_end_raises_illegal_data_address() -> None:
    with pytest.raises(IllegalDataAddress):
        WordTable(10).mask_write(10, 0, 0)


# -------------------------------------------------------------------------------------------- BitTable


def test_bit_table_spans_the_whole_address_space_by_default() -> None:
    table = BitTable()
    assert len(table) == table.size == 65536
    table[65535] = True
    assert table[65535] is True
    assert table.read(65528, 8) == [False] * 7 + [True]


def test_bit_table_reads_packed_lsb_first() -> None:
    table = BitTable(100)
    table.write(0, [True, False, True, True, False, False, True, True])  # CD, LSB first
    assert table.read_packed(0, 8) == b"\xcd"


@pytest.mark.parametrize("offset", [0, 1, 7, 8, 13, 60])
def test_bit_table_reads_and_writes_packed_at_any_offset(offset: int) -> None:
    table = BitTable(100)
    table.write_packed(offset, 19, bytes.fromhex("CD6B05"))  # §6.1's 19 coils
    assert table.read_packed(offset, 19) == bytes.fromhex("CD6B05")
    assert table.read(offset, 19) == [bool((0x056BCD >> i) & 1) for i in range(19)]
    assert not any(table.read(0, offset)) and not any(table.read(offset + 19, 100 - offset - 19))


def test_bit_table_write_packed_ignores_the_padding_bits() -> None:
    table = BitTable(100)
    table.write_packed(3, 10, b"\xff\xff")
    assert table.read(0, 16) == [False] * 3 + [True] * 10 + [False] * 3


@pytest.mark.parametrize(("address", "quantity"), [(100, 1), (99, 2), (0, 101), (-1, 1), (5, -1)])
def test_bit_table_raises_illegal_data_address_past_its_end(address: int, quantity: int) -> None:
    table = BitTable(100)
    with pytest.raises(IllegalDataAddress):
        table.read_packed(address, quantity)
    with pytest.raises(IllegalDataAddress):
        table.write_packed(address, quantity, b"\xff" * 13)
    assert table.read(0, 100) == [False] * 100


def test_bit_table_item_access_past_its_end_raises_illegal_data_address() -> None:
    table = BitTable(100)
    with pytest.raises(IllegalDataAddress):
        _ = table[100]
    with pytest.raises(IllegalDataAddress):
        table[100] = True


@pytest.mark.parametrize("size", [-1, 65537])
def test_bit_table_refuses_a_size_outside_the_address_space(size: int) -> None:
    with pytest.raises(ValueError, match="table size"):
        BitTable(size)


def test_bit_table_in_registers_puts_bit_n_in_bit_n_mod_16_of_register_n_div_16() -> None:
    registers = WordTable(10)
    bits = BitTable(160, registers=registers)
    bits[0] = True
    bits[17] = True
    bits[31] = True
    assert registers.values(0, 2) == [0x0001, 0x8002]
    registers[5] = 0x8001
    assert bits.read(80, 16) == [True] + [False] * 14 + [True]


def test_bit_table_in_registers_refuses_more_bits_than_the_registers_hold() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        BitTable(161, registers=WordTable(10))


class BitTableMachine(RuleBasedStateMachine):
    """A BitTable, plain or inside registers, behaves like a list of bools under any mix of writes."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 300
        self.registers = WordTable(19)
        self.tables = [BitTable(self.size), BitTable(self.size, registers=self.registers)]
        self.model = [False] * self.size

    @rule(address=st.integers(0, 299), values=st.lists(st.booleans(), min_size=1, max_size=70))
    def write(self, address: int, values: list[bool]) -> None:
        values = values[: self.size - address]
        for table in self.tables:
            table.write(address, values)
        self.model[address : address + len(values)] = values

    @rule(address=st.integers(0, 299), value=st.booleans())
    def set_item(self, address: int, value: bool) -> None:
        for table in self.tables:
            table[address] = value
        self.model[address] = value

    @rule(address=st.integers(0, 299), quantity=st.integers(1, 70))
    def read_packed(self, address: int, quantity: int) -> None:
        quantity = min(quantity, self.size - address)
        expected = pack_bits(bytes(self.model[address : address + quantity]))
        for table in self.tables:
            assert table.read_packed(address, quantity) == expected

    @invariant()
    def registers_hold_the_bits_lsb_first(self) -> None:
        for n, register in enumerate(self.registers.values(0, 19)):
            chunk = self.model[16 * n : 16 * n + 16]
            assert register == sum(bit << i for i, bit in enumerate(chunk))


BitTableMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
test_bit_table_behaves_like_a_list_of_bools = BitTableMachine.TestCase


# ------------------------------------------------------------------------------------------- sparse tables


def test_sparse_word_table_implements_only_its_addresses() -> None:
    table = WordTable(100, addresses=[0, 1, 2, 10, 11])
    assert table.sparse and not WordTable(10).sparse
    assert list(table.addresses()) == [0, 1, 2, 10, 11]
    assert table.implemented(10) and not table.implemented(3) and not table.implemented(100)
    table.set_values(0, [1, 2, 3])
    table[11] = 7
    assert table.values(0, 3) == [1, 2, 3]
    assert table.values(10, 2) == [0, 7]


@pytest.mark.parametrize(("address", "quantity"), [(3, 1), (2, 2), (0, 11), (9, 2), (12, 1), (99, 1), (100, 1)])
def test_sparse_word_table_refuses_gaps_and_ranges_crossing_them(address: int, quantity: int) -> None:
    table = WordTable(100, addresses=[0, 1, 2, 10, 11])
    with pytest.raises(IllegalDataAddress):
        table.read(address, quantity)
    with pytest.raises(IllegalDataAddress):
        table.write(address, b"\x00\x01" * quantity)
    assert table.values(0, 3) == [0, 0, 0]  # nothing was written


def test_sparse_word_table_refuses_mask_writes_in_a_gap() -> None:
    table = WordTable(10, addresses=[1])
    with pytest.raises(IllegalDataAddress, match="not implemented"):
        table.mask_write(0, 0, 1)


def test_sparse_table_dense_end_is_zero_so_hot_paths_always_check() -> None:
    assert WordTable(10).dense_end == 10
    assert WordTable(10, addresses=range(10)).dense_end == 0


def test_sparse_table_refuses_addresses_outside_its_size() -> None:
    with pytest.raises(ValueError, match="outside"):
        WordTable(10, addresses=[10])
    with pytest.raises(ValueError, match="outside"):
        BitTable(10, addresses=[-1])


def test_sparse_bit_table_refuses_gaps_and_ranges_crossing_them() -> None:
    table = BitTable(64, addresses=[0, 1, 2, 3, 40])
    table.write(0, [True, False, True, True])
    table[40] = True
    assert table.read(0, 4) == [True, False, True, True]
    assert table[40]
    for address, quantity in [(4, 1), (3, 2), (39, 2), (0, 41)]:
        with pytest.raises(IllegalDataAddress):
            table.read_packed(address, quantity)
        with pytest.raises(IllegalDataAddress):
            table.write_packed(address, quantity, b"\xff" * 6)
    assert list(table.addresses()) == [0, 1, 2, 3, 40]
