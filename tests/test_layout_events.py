"""Events follow the memory a write changes, not its function code: the overlaid and packed layouts.

In the packed layout coil n is bit n % 16 of holding register n // 16, so a coil write (FC05/FC15) changes a
holding register and a register write (FC06/16/22/23) changes 16 coils; a subscription on either sees both. In
the overlaid layout coils and holding registers stay apart (the coils share memory with the discrete inputs, the
registers with the input registers, neither of which a client writes), so events are those of the separate layout.
The hub is driven with request PDUs in a real event loop; one test goes end to end with pymodbus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from modbusd import Device, Server
from modbusd.hooks import WriteEvent
from modbusd.hub import EventsHub
from modbusd.model.device import Layout, same_memory
from modbusd.model.names import Table
from modbusd.model.values import register_bit

if TYPE_CHECKING:
    from pymodbus.client import ModbusTcpClient

CO, DI, HR, IR = Table.COILS, Table.DISCRETE_INPUTS, Table.HOLDING_REGISTERS, Table.INPUT_REGISTERS


def bit_number(shift: int) -> int:
    """HSYCO's 1 … 16 for the register bit worth 1 << shift (the packed layout's coil 16r + shift)."""
    return next(n for n in range(1, 17) if register_bit(n) == shift)


# ------------------------------------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("layout", "table", "address", "quantity", "expected"),
    [
        pytest.param(Layout.SEPARATE, CO, 5, 3, ((CO, 5, 3),), id="separate coils"),
        pytest.param(Layout.SEPARATE, HR, 5, 3, ((HR, 5, 3),), id="separate registers"),
        pytest.param(Layout.OVERLAID, CO, 5, 3, ((CO, 5, 3), (DI, 5, 3)), id="overlaid coils"),
        pytest.param(Layout.OVERLAID, HR, 5, 3, ((HR, 5, 3), (IR, 5, 3)), id="overlaid registers"),
        pytest.param(Layout.PACKED, CO, 3, 1, ((CO, 3, 1), (DI, 3, 1), (HR, 0, 1), (IR, 0, 1)), id="packed coil"),
        pytest.param(
            Layout.PACKED,
            CO,
            15,
            2,
            ((CO, 15, 2), (DI, 15, 2), (HR, 0, 2), (IR, 0, 2)),
            id="packed coils across two registers",
        ),
        pytest.param(
            Layout.PACKED,
            CO,
            16,
            16,
            ((CO, 16, 16), (DI, 16, 16), (HR, 1, 1), (IR, 1, 1)),
            id="packed coils filling one register",
        ),
        pytest.param(
            Layout.PACKED, HR, 2, 3, ((HR, 2, 3), (IR, 2, 3), (CO, 32, 48), (DI, 32, 48)), id="packed registers"
        ),
    ],
)
def test_same_memory_names_every_table_a_write_changes(
    layout: Layout, table: Table, address: int, quantity: int, expected: tuple[object, ...]
) -> None:
    assert same_memory(layout, table, address, quantity) == expected


def test_same_memory_matches_what_the_packed_tables_really_share() -> None:
    """Each coil written is found inside the registers same_memory names, and nowhere else."""
    for coil in (0, 1, 15, 16, 17, 100, 65535):
        device = Device(Layout.PACKED)
        device.coils[coil] = True
        changed = [r for r in range(4096) if device.holding_registers[r]]
        (_, first, count) = next(r for r in same_memory(Layout.PACKED, CO, coil, 1) if r[0] is HR)
        assert changed == list(range(first, first + count)), coil


# ----------------------------------------------------------------------------------------------- the hub


def run_writes(device: Device, subscribe: Callable[[EventsHub], object], *pdus: str) -> list[WriteEvent]:
    """Subscribe on a hub of its own, carry out `pdus` (unit id 1) as client writes; the events, in order."""

    async def main() -> list[WriteEvent]:
        hub = EventsHub("plant", None)
        subscribe(hub)
        events: list[WriteEvent] = []
        hub.add_listener(events.append, 100, "test")
        hub.start(asyncio.get_running_loop(), asyncio.Event())
        for pdu in pdus:
            reply = hub.write(device, 1, bytes.fromhex(pdu), "test", False)
            assert reply is not None and not reply[0] & 0x80, reply
        await hub.stop()  # delivers what is queued
        assert hub.published == len(events)
        return events

    return asyncio.run(asyncio.wait_for(main(), 10))


def on(device: Device, where: str, vtype: str | None = None, count: int = 1) -> Callable[[EventsHub], object]:
    server = Server(device, port=None, udp=0)  # only to locate points by name or notation, as subscribe does
    return lambda hub: hub.subscribe(device, server.locate(where)[1], vtype, count, None)


@pytest.mark.parametrize(
    ("pdu", "function"),
    [pytest.param("05 0013 FF00", 5, id="FC05 coil 19"), pytest.param("0F 0012 0002 01 02", 15, id="FC15 coils 18-19")],
)
def test_packed_coil_write_makes_the_subscribed_holding_registers_events(pdu: str, function: int) -> None:
    device = Device(Layout.PACKED)
    device.holding_registers[1] = 0x8000  # coil 31 already on: its bit is unchanged and off in no event
    events = run_writes(device, on(device, "1.hr", "bits"), pdu)
    assert [e.name for e in events] == [f"plant.1.1.hr.{n}" for n in range(1, 17)]
    assert {e.bit for e in events if e.value} == {bit_number(3), bit_number(15)}  # coil 19 = register 1, bit 3
    assert {e.bit for e in events if e.previous} == {bit_number(15)}
    assert {e.function for e in events} == {function}


@pytest.mark.parametrize(
    ("vtype", "address"), [("ushort", 5), ("hex", 5), ("uint", 4), ("float", 4), ("double", 2), ("long", 5)]
)
def test_packed_coil_write_reaches_a_typed_value_covering_its_register(vtype: str, address: int) -> None:
    device = Device(Layout.PACKED)
    events = run_writes(device, on(device, f"{address}.hr", vtype), "05 0050 FF00")  # coil 80: register 5, bit 0
    (event,) = events
    assert event.name == f"plant.1.{address}.hr" and event.function == 5 and event.value != event.previous
    assert device.holding_registers[5] == 1


def test_packed_coil_write_outside_the_subscribed_registers_makes_no_event() -> None:
    device = Device(Layout.PACKED)
    assert (
        run_writes(device, on(device, "1.hr", "bits"), "05 0020 FF00", "0F 0000 0010 02 FFFF") == []
    )  # coils 32, 0-15


@pytest.mark.parametrize(
    ("pdu", "function"),
    [
        pytest.param("06 0002 0028", 6, id="FC06"),
        pytest.param("10 0002 0001 02 0028", 16, id="FC16"),
        pytest.param("16 0002 0000 0028", 22, id="FC22"),
        pytest.param("17 0000 0001 0002 0001 02 0028", 23, id="FC23"),
    ],
)
def test_packed_register_write_makes_the_subscribed_coils_events(pdu: str, function: int) -> None:
    device = Device(Layout.PACKED)
    events = run_writes(device, on(device, "35.co", count=3), pdu)  # register 2 = coils 32..47; 0x28: 35 and 37
    assert [(e.name, e.value, e.previous, e.function) for e in events] == [
        ("plant.1.35.co", True, False, function), ("plant.1.36.co", False, False, function),
        ("plant.1.37.co", True, False, function)]  # fmt: skip


def test_packed_register_write_elsewhere_makes_no_coil_event() -> None:
    device = Device(Layout.PACKED)
    assert run_writes(device, on(device, "35.co", count=3), "06 0003 FFFF", "10 0000 0002 04 FFFF FFFF") == []


def test_packed_one_write_makes_the_events_of_both_tables_once_each() -> None:
    device = Device(Layout.PACKED)

    def both(hub: EventsHub) -> None:
        on(device, "0.hr", "ushort")(hub)
        on(device, "2.co")(hub)

    events = run_writes(device, both, "05 0002 FF00", "06 0000 0000")
    assert [(e.name, e.value, e.previous) for e in events] == [
        ("plant.1.2.co", True, False), ("plant.1.0.hr", 4, 0),  # the coil write: coils first, then registers
        ("plant.1.2.co", False, True), ("plant.1.0.hr", 0, 4)]  # fmt: skip


def test_overlaid_layout_keeps_coil_and_register_events_apart() -> None:
    device = Device(Layout.OVERLAID)

    def both(hub: EventsHub) -> None:
        on(device, "0.hr", "bits")(hub)
        on(device, "0.co", count=16)(hub)

    events = run_writes(device, both, "05 0003 FF00", "06 0000 0001")
    assert [(e.name, e.value) for e in events] == [("plant.1.3.co", True)] + [
        (f"plant.1.0.hr.{n}", n == bit_number(0)) for n in range(1, 17)]  # fmt: skip
    assert device.discrete_inputs[3] and device.input_registers[0] == 1  # the memory they share, not subscribable


# ----------------------------------------------------------------------------------------------- end to end


def test_packed_layout_events_over_modbus_tcp_with_pymodbus(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient],
    eventually: Callable[..., bool],
) -> None:  # fmt: skip
    server = start_server(Device(Layout.PACKED), name="plant")
    server.subscribe("1.hr", "bits")
    server.subscribe("40.co", count=2)
    events: list[WriteEvent] = []
    server.add_listener(events.append)
    client = connect_client(server)
    assert not client.write_coil(17, True, device_id=1).isError()  # register 1, bit 1
    assert not client.write_register(2, 0x0300, device_id=1).isError()  # coils 40 and 41
    assert server.counters()["events"]["published"] == 18  # made before each answer went out
    assert eventually(lambda: len(events) == 18)
    assert [e.name for e in events if e.value] == [f"plant.1.1.hr.{bit_number(1)}", "plant.1.40.co", "plant.1.41.co"]
    assert [e.function for e in events] == [5] * 16 + [6] * 2
