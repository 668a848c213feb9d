"""Data points: a name, a location and a type over a device's tables, and typed reads and writes at any location.

Sans-I/O. This is what the device file's data points become, and what the Python API, the HTTP control API and
`modbusd get`/`set` read and write through. The owning program may write every table, the read-only ones
(discrete inputs, input registers) included: they are read-only for clients only (as in HSYCO's Modbus server).

Types by table: registers take every register type of `values.py` (default ``ushort``); a single register bit
(``100.hr.3``) and a coil or discrete input take ``bit``; coils and discrete inputs also take ``bits``, which writes
as many bits as the value has (HSYCO's ``bits:<0|1|-…>``) and reads 16.
"""

import re
from dataclasses import dataclass
from typing import Protocol

from modbusd.model.names import LAST_FIVE_DIGIT, Location, Notation, format_address
from modbusd.model.tables import BitTable, WordTable
from modbusd.model.values import (
    BIT,
    USHORT,
    InvalidType,
    Kind,
    Order,
    Value,
    ValueType,
    parse_value,
    read_bit_of_register,
    read_bit_value,
    read_value,
    write_bit_of_register,
    write_bit_value,
    write_value,
)

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")  # starts with a letter, so no name can be read as an address
BITS_READ = 16  # bits that a ``bits`` read of a coil or discrete input returns


class Tables(Protocol):
    """What typed reads and writes need of a device: its four tables, by the names `Table` values give.

    A protocol rather than `Device` itself, so that a device can hold its points without the two modules
    importing each other.
    """

    coils: BitTable
    discrete_inputs: BitTable
    holding_registers: WordTable
    input_registers: WordTable


class UnknownPoint(LookupError):
    """A name that is no data point of the server."""


@dataclass(frozen=True, slots=True)
class Point:
    """A named value in a device's tables. `location.unit_id` is None for a device answering every unit id."""

    name: str
    location: Location
    type: ValueType
    order: Order = Order.ABCD
    unit: str = ""
    comment: str = ""

    def __post_init__(self) -> None:
        check_type(self.location, self.type)

    def notations(self) -> dict[str, str]:
        """The point's address in every notation that can spell it: name (``1.0.ir``), 5-digit, 6-digit."""
        where = self.location
        forms = {"name": str(where)}
        if where.bit is None:
            for notation in (Notation.FIVE_DIGIT, Notation.SIX_DIGIT):
                if notation is Notation.SIX_DIGIT or where.address < LAST_FIVE_DIGIT:
                    forms[notation.value] = format_address(where.table, where.address, notation)
        return forms

    @property
    def span(self) -> range:
        """The protocol addresses this point occupies in its table."""
        return range(self.location.address, self.location.address + width(self.location, self.type))


def default_type(location: Location) -> ValueType:
    """What an address reads as when no type is given: ``bit`` for bits, ``ushort`` for a whole register."""
    return BIT if location.table.is_bits or location.bit is not None else USHORT


def width(location: Location, vtype: ValueType) -> int:
    """Addresses a value of `vtype` covers at `location` (bits for bit tables, registers for register tables)."""
    if location.table.is_bits or location.bit is not None:
        return 1
    return vtype.registers


def check_type(location: Location, vtype: ValueType) -> None:
    """InvalidType when `vtype` cannot live at `location`."""
    if location.bit is not None and vtype.kind is not Kind.BIT:
        raise InvalidType(f"{location} is one bit of a register: its type is bit, not {vtype}")
    if location.table.is_bits and vtype.kind not in (Kind.BIT, Kind.BITS):
        raise InvalidType(f"{location} is a {location.table.label}: its type is bit or bits, not {vtype}")
    if not location.table.is_bits and location.bit is None and vtype.kind is Kind.BIT:
        raise InvalidType(f"{location} is a whole register: bit needs a register bit such as {location}.1")


def read_at(device: Tables, location: Location, vtype: ValueType, order: Order | str = Order.ABCD) -> Value:
    """The value at `location` as `vtype`; IllegalDataAddress outside the table or in a sparse table's gap."""
    check_type(location, vtype)
    table = getattr(device, location.table.value)
    if location.table.is_bits:
        return read_bit_value(table, location.address, vtype, BITS_READ)
    if location.bit is not None:
        return read_bit_of_register(table, location.address, location.bit)
    return read_value(table, location.address, vtype, order)


def write_at(
    device: Tables, location: Location, vtype: ValueType, value: Value, order: Order | str = Order.ABCD
) -> None:
    """Store `value` (or its text, parsed for `vtype`) at `location`: all of it or nothing."""
    check_type(location, vtype)
    if isinstance(value, str) and vtype.kind is not Kind.STRING:
        value = parse_value(vtype, value)
    table = getattr(device, location.table.value)
    if location.table.is_bits:
        write_bit_value(table, location.address, vtype, value if isinstance(value, str) else bool(value))
    elif location.bit is not None:
        write_bit_of_register(table, location.address, location.bit, bool(value))
    else:
        write_value(table, location.address, vtype, value, order)
