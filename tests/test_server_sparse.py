"""Sparse tables over real sockets: pymodbus's client gets exception 02 in the gaps and the values elsewhere."""

from __future__ import annotations

from collections.abc import Callable

from pymodbus.client import ModbusTcpClient

from modbusd import Device, Server

ILLEGAL_DATA_ADDRESS = 2


def test_sparse_tables_answer_exception_2_in_the_gaps_to_a_pymodbus_client(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient]
) -> None:
    device = Device(addresses={"holding_registers": [0, 1, 2, 100], "input_registers": [7], "coils": [0, 1],
                               "discrete_inputs": [4]})  # fmt: skip
    device.holding_registers.set_values(0, [11, 22, 33])
    device.input_registers[7] = 77
    client = connect_client(start_server(device))

    assert client.read_holding_registers(0, count=3).registers == [11, 22, 33]
    assert client.read_input_registers(7, count=1).registers == [77]
    for reply in (
        client.read_holding_registers(3, count=1),  # a gap
        client.read_holding_registers(2, count=2),  # a range crossing a gap
        client.read_holding_registers(0, count=101),  # crossing 3..99
        client.read_input_registers(6, count=2),
        client.write_register(50, 1),
        client.write_registers(99, [1, 2]),
        client.read_coils(1, count=2),
        client.write_coil(2, True),
        client.read_discrete_inputs(3, count=1),
    ):
        assert reply.isError() and reply.exception_code == ILLEGAL_DATA_ADDRESS, reply
    assert client.write_registers(100, [5]).isError() is False
    assert device.holding_registers[100] == 5
    assert client.read_coils(0, count=2).bits[:2] == [False, False]
