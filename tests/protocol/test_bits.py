"""Coil packing (§6.1): pinned by the specification's own example, then checked as properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modbusd.protocol.bits import byte_count, pack_bits, unpack_bits

# §6.1: coils 20..38 (address 0x13, 19 coils) read as CD 6B 05; "the status of outputs 27–20 is CD hex",
# output 20 in the LSB of the first byte; the 3 bits left over in the last byte are padded with zeros.
SPEC_PACKED = bytes.fromhex("CD6B05")
SPEC_BITS = bytes((0x056BCD >> i) & 1 for i in range(19))

bit_strings = st.binary(max_size=2000).map(lambda raw: bytes(b & 1 for b in raw))


def test_pack_bits_gives_the_spec_example() -> None:
    assert SPEC_BITS[:8] == bytes((1, 0, 1, 1, 0, 0, 1, 1))  # CD = 1100 1101, read from the LSB up
    assert pack_bits(SPEC_BITS) == SPEC_PACKED


def test_unpack_bits_gives_the_spec_example_back() -> None:
    assert unpack_bits(SPEC_PACKED, 19) == SPEC_BITS


@pytest.mark.parametrize(
    ("quantity", "count"),
    [(0, 0), (1, 1), (7, 1), (8, 1), (9, 2), (16, 2), (19, 3), (1968, 246), (2000, 250)],
)
def test_byte_count_is_quantity_over_eight_rounded_up(quantity: int, count: int) -> None:
    assert byte_count(quantity) == count


@pytest.mark.parametrize(
    ("bits", "packed"),
    [
        pytest.param(b"", b"", id="nothing"),
        pytest.param(b"\x01", b"\x01", id="first bit is the LSB"),
        pytest.param(b"\x00" * 7 + b"\x01", b"\x80", id="eighth bit is the MSB"),
        pytest.param(b"\x00" * 8 + b"\x01", b"\x00\x01", id="ninth bit starts the second byte"),
        pytest.param(b"\x01" * 10, b"\xff\x03", id="padding is zero"),
    ],
)
def test_pack_bits_puts_the_first_bit_in_the_lsb(bits: bytes, packed: bytes) -> None:
    assert pack_bits(bits) == packed


def test_unpack_bits_ignores_the_padding_bits() -> None:
    assert unpack_bits(b"\xff\xff", 10) == b"\x01" * 10


def test_unpack_bits_fills_missing_high_bits_with_zeros() -> None:
    assert unpack_bits(b"\x00\x00\x00", 19) == b"\x00" * 19


@given(bit_strings)
def test_unpack_bits_inverts_pack_bits(bits: bytes) -> None:
    assert unpack_bits(pack_bits(bits), len(bits)) == bits


@given(bit_strings)
def test_pack_bits_uses_byte_count_bytes_and_zero_padding(bits: bytes) -> None:
    packed = pack_bits(bits)
    assert len(packed) == byte_count(len(bits))
    assert int.from_bytes(packed, "little") >> len(bits) == 0


@given(bit_strings)
def test_pack_bits_agrees_with_the_bit_by_bit_definition(bits: bytes) -> None:
    expected = bytearray(byte_count(len(bits)))
    for i, bit in enumerate(bits):
        expected[i // 8] |= bit << (i % 8)
    assert pack_bits(bits) == bytes(expected)


@given(st.binary(min_size=1, max_size=250), st.data())
def test_pack_bits_inverts_unpack_bits_up_to_padding(packed: bytes, data: st.DataObject) -> None:
    quantity = data.draw(st.integers(8 * len(packed) - 7, 8 * len(packed)))
    mask = (1 << quantity) - 1
    expected = (int.from_bytes(packed, "little") & mask).to_bytes(len(packed), "little")
    assert pack_bits(unpack_bits(packed, quantity)) == expected
