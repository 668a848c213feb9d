"""Typed values over a real socket, checked against pymodbus's own converters (an implementation we did not write).

What pymodbus 3.16 can express: `convert_from_registers` / `convert_to_registers` take `word_order="big"` (our ABCD)
or `"little"` (registers reversed: our CDAB, for 2- and 4-register values and for strings alike). They always read
the bytes within a register high byte first, so BADC and DCBA have no pymodbus spelling. For those two the test swaps
the two bytes of every register itself (BADC = ABCD byte-swapped, DCBA = CDAB byte-swapped) and then lets pymodbus
decode with big/little word order: pymodbus still does the arithmetic, only the byte swap is ours.

pymodbus's DATATYPE.BITS lists a register's bits from the LSB of its first byte, so its index i is HSYCO's
``hr.<n>`` with n = i + 1: an independent check of our bit numbering.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from modbusd import Server
from modbusd.model.values import (
    BITS,
    DOUBLE,
    FLOAT,
    INT,
    LONG,
    SHORT,
    UINT,
    ULONG,
    USHORT,
    Kind,
    Order,
    ValueType,
    integer_range,
    read_bit_of_register,
    read_value,
    write_bit_of_register,
    write_value,
)

if TYPE_CHECKING:
    StartServer = Callable[..., Server]
    ConnectClient = Callable[..., ModbusTcpClient]

DATATYPE = ModbusTcpClient.DATATYPE
PYMODBUS_TYPES: dict[Kind, Any] = {  # Any: DATATYPE is an enum nested in pymodbus's mixin
    Kind.USHORT: DATATYPE.UINT16,
    Kind.SHORT: DATATYPE.INT16,
    Kind.UINT: DATATYPE.UINT32,
    Kind.INT: DATATYPE.INT32,
    Kind.ULONG: DATATYPE.UINT64,
    Kind.LONG: DATATYPE.INT64,
    Kind.FLOAT: DATATYPE.FLOAT32,
    Kind.DOUBLE: DATATYPE.FLOAT64,
    Kind.STRING: DATATYPE.STRING,
}
# our order -> (pymodbus word order, whether the test swaps the bytes of each register around pymodbus)
PYMODBUS_ORDERS = {
    Order.ABCD: ("big", False),
    Order.CDAB: ("little", False),
    Order.BADC: ("big", True),
    Order.DCBA: ("little", True),
}
NUMBER_TYPES = [USHORT, SHORT, UINT, INT, ULONG, LONG, FLOAT, DOUBLE]
STRING_10 = ValueType(Kind.STRING, 10)
FLOAT_MAX = 3.4028234663852886e38  # the largest finite binary32


def single(value: float) -> float:
    """`value` rounded to binary32, as a float register holds it."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def swap_bytes(registers: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in registers]


def pymodbus_decode(vtype: ValueType, registers: list[int], order: Order) -> Any:
    word_order, swapped = PYMODBUS_ORDERS[order]
    regs = swap_bytes(registers) if swapped else registers
    return ModbusTcpClient.convert_from_registers(
        regs, PYMODBUS_TYPES[vtype.kind], word_order=word_order, string_encoding="latin-1"
    )


def pymodbus_encode(vtype: ValueType, value: Any, order: Order) -> list[int]:
    word_order, swapped = PYMODBUS_ORDERS[order]
    if vtype.kind is Kind.STRING:  # pymodbus sends only the registers the text needs: pad it to string:N as we do
        value = value.ljust(2 * vtype.registers, "\x00")
    regs = ModbusTcpClient.convert_to_registers(
        value, PYMODBUS_TYPES[vtype.kind], word_order=word_order, string_encoding="latin-1"
    )
    return swap_bytes(regs) if swapped else regs


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def samples(vtype: ValueType) -> list[Any]:
    if vtype.kind is Kind.FLOAT:
        return [21.5, single(-0.1), 0.0, FLOAT_MAX, -FLOAT_MAX, 2.0**-149, math.inf, -math.inf, math.nan]
    if vtype.kind is Kind.DOUBLE:
        return [21.5, -0.1, 0.0, 1.7976931348623157e308, 5e-324, -math.inf, math.nan]
    low, high = integer_range(vtype)
    return [low, high, 0, 1, high // 3, low // 7]


def read_registers(client: ModbusTcpClient, address: int, count: int) -> list[int]:
    response = client.read_holding_registers(address, count=count)
    assert not response.isError(), response
    return list(response.registers)


# ------------------------------------------------------------------------------------------ ours -> pymodbus


@pytest.mark.parametrize("order", list(Order))
@pytest.mark.parametrize("vtype", NUMBER_TYPES, ids=str)
def test_pymodbus_decodes_what_write_value_stored(
    server: Server, client: ModbusTcpClient, vtype: ValueType, order: Order
) -> None:
    values = samples(vtype)
    for i, value in enumerate(values):
        write_value(server.device.holding_registers, 10 + i * vtype.registers, vtype, value, order)
    registers = read_registers(client, 10, len(values) * vtype.registers)
    for i, value in enumerate(values):
        regs = registers[i * vtype.registers : (i + 1) * vtype.registers]
        assert same(pymodbus_decode(vtype, regs, order), value), f"{vtype} {value!r} {order}: {regs}"


@pytest.mark.parametrize("order", list(Order))
def test_pymodbus_decodes_strings_write_value_stored(server: Server, client: ModbusTcpClient, order: Order) -> None:
    for text in ("Pump 1", "", "exactly twenty chars", "été"):
        write_value(server.device.holding_registers, 0, STRING_10, text, order)
        assert pymodbus_decode(STRING_10, read_registers(client, 0, 10), order) == text


def test_pymodbus_reads_typed_input_registers(server: Server, client: ModbusTcpClient) -> None:
    write_value(server.device.input_registers, 30, FLOAT, 21.5, Order.CDAB)
    response = client.read_input_registers(30, count=2)
    assert not response.isError(), response
    assert response.registers == [0x0000, 0x41AC]
    assert client.convert_from_registers(response.registers, DATATYPE.FLOAT32, word_order="little") == 21.5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pymodbus_agrees_on_arbitrary_values(server: Server, client: ModbusTcpClient, data: st.DataObject) -> None:
    vtype = data.draw(st.sampled_from([*NUMBER_TYPES, STRING_10]))
    order = data.draw(st.sampled_from(list(Order)))
    if vtype.kind in (Kind.FLOAT, Kind.DOUBLE):
        value = data.draw(st.floats(width=32 if vtype.kind is Kind.FLOAT else 64))
    elif vtype.kind is Kind.STRING:
        value = data.draw(st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=20))
    else:
        value = data.draw(st.integers(*integer_range(vtype)))
    write_value(server.device.holding_registers, 100, vtype, value, order)
    assert same(pymodbus_decode(vtype, read_registers(client, 100, vtype.registers), order), value)
    regs = pymodbus_encode(vtype, value, order)
    assert not client.write_registers(200, regs).isError()
    assert same(read_value(server.device.holding_registers, 200, vtype, order), value)


# ------------------------------------------------------------------------------------------ pymodbus -> ours


@pytest.mark.parametrize("order", list(Order))
@pytest.mark.parametrize("vtype", NUMBER_TYPES, ids=str)
def test_read_value_decodes_what_pymodbus_wrote(
    server: Server, client: ModbusTcpClient, vtype: ValueType, order: Order
) -> None:
    for value in samples(vtype):
        response = client.write_registers(50, pymodbus_encode(vtype, value, order))
        assert not response.isError(), response
        assert same(read_value(server.device.holding_registers, 50, vtype, order), value), f"{vtype} {value!r}"


def test_read_value_decodes_a_string_pymodbus_wrote(server: Server, client: ModbusTcpClient) -> None:
    regs = client.convert_to_registers("Pump 1", DATATYPE.STRING)  # 3 registers: pymodbus does not pad
    assert not client.write_registers(0, [*regs, *[0] * 7]).isError()
    assert read_value(server.device.holding_registers, 0, STRING_10) == "Pump 1"


def test_known_pattern_float_21_5_in_every_order(server: Server, client: ModbusTcpClient) -> None:
    expected = {Order.ABCD: [0x41AC, 0], Order.CDAB: [0, 0x41AC], Order.BADC: [0xAC41, 0], Order.DCBA: [0, 0xAC41]}
    for i, order in enumerate(Order):
        write_value(server.device.holding_registers, 2 * i, FLOAT, 21.5, order)
    registers = read_registers(client, 0, 8)
    assert [registers[2 * i : 2 * i + 2] for i in range(4)] == list(expected.values())


# -------------------------------------------------------------------------------------------------- bits


@pytest.mark.parametrize("n", range(1, 17))
def test_register_bit_n_is_pymodbus_bits_index_n_minus_1(server: Server, client: ModbusTcpClient, n: int) -> None:
    write_bit_of_register(server.device.holding_registers, 7, n, True)
    bits = client.convert_from_registers(read_registers(client, 7, 1), DATATYPE.BITS)
    assert [i for i, bit in enumerate(bits) if bit] == [n - 1]
    regs = client.convert_to_registers([i == n - 1 for i in range(16)], DATATYPE.BITS)
    assert not client.write_registers(8, regs).isError()
    assert [m for m in range(1, 17) if read_bit_of_register(server.device.holding_registers, 8, m)] == [n]


def test_bits_value_leftmost_is_the_msb_pymodbus_reads(server: Server, client: ModbusTcpClient) -> None:
    write_value(server.device.holding_registers, 0, BITS, "1010-0000-1111-0000")
    assert read_registers(client, 0, 1) == [0xA0F0]
    assert not client.write_registers(1, [0x8001]).isError()
    assert read_value(server.device.holding_registers, 1, BITS) == "1000000000000001"
