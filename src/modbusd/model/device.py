"""A Modbus device: four tables in one of three layouts, identification, and diagnostics.

Layouts (MBAsyncServer's data tables, MBLogic's Modbus Basics):
- ``separate``: four independent tables (the default, and what most devices do).
- ``overlaid``: one address space: coil n and discrete input n are the same bit, and holding register n
  and input register n the same word (§4.3 allows it).
- ``packed``: ``overlaid``, and the bits live inside the registers, 16 per register: coil n is bit n % 16
  of holding register n // 16, bit 0 being the register's least significant bit. So coils 0..15 read as
  one register whose value is the sum of coil_i << i, the same LSB-first order in which FC01 packs coils
  into bytes; 65536 bits fill the first 4096 registers.
"""

from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum

from modbusd.model.diagnostics import Diagnostics
from modbusd.model.identification import Identification
from modbusd.model.names import Table
from modbusd.model.points import Point
from modbusd.model.tables import BitTable, WordTable
from modbusd.protocol.codes import ADDRESS_SPACE
from modbusd.version import __version__

# FC17 response: function code, byte count, then server id, run indicator and additional data within 253 bytes.
MAX_SERVER_ID = 250


TABLES = ("coils", "discrete_inputs", "input_registers", "holding_registers")  # the attribute of each table


class Layout(StrEnum):
    SEPARATE = "separate"
    OVERLAID = "overlaid"
    PACKED = "packed"


Range = tuple[Table, int, int]
"""(table, first address, quantity): addresses of one table."""

_SHARED = {Table.COILS: Table.DISCRETE_INPUTS, Table.DISCRETE_INPUTS: Table.COILS,
           Table.HOLDING_REGISTERS: Table.INPUT_REGISTERS, Table.INPUT_REGISTERS: Table.HOLDING_REGISTERS}  # fmt: skip


def same_memory(layout: Layout, table: Table, address: int, quantity: int) -> tuple[Range, ...]:
    """Every table's addresses that share memory with `quantity` items of `table` from `address`, in `layout`,
    the range itself first: what a write there changes, seen through each table.

    The events of a write follow this, not the function code: in the packed layout a coil write (FC05/FC15)
    changes the holding register that holds the coil, and a register write (FC06/16/22/23) its 16 coils.
    """
    if quantity <= 0 or layout is Layout.SEPARATE:
        return ((table, address, quantity),)
    found: list[Range] = [(table, address, quantity), (_SHARED[table], address, quantity)]
    if layout is Layout.PACKED:
        if table.is_bits:  # coil n is bit n % 16 of register n // 16
            first = address >> 4
            other = (Table.HOLDING_REGISTERS, first, ((address + quantity - 1) >> 4) - first + 1)
        else:  # register n holds coils 16n .. 16n + 15
            other = (Table.COILS, address << 4, quantity << 4)
        found += [other, (_SHARED[other[0]], *other[1:])]
    return tuple(found)


def default_identification(version: str) -> dict[int, str | bytes]:
    return {
        0x00: "modbusd",
        0x01: "modbusd",
        0x02: version,
        0x04: "modbusd Modbus server",
        0x05: "modbusd",
    }


class Device:
    """What answers one unit id. Safe to read and write from the program that owns it.

    Table sizes are the number of addresses implemented, 0..65536. In the overlaid and packed layouts the
    coil and holding-register sizes apply to the shared tables and the other two sizes must not differ.

    `addresses` makes tables sparse: it maps a table's attribute name (``"holding_registers"``, …) to the
    addresses it implements, all within its size; any other address, or a range crossing a gap, is exception
    02. Tables it does not name are dense. In the shared layouts a shared table has one set of addresses.
    """

    def __init__(
        self,
        layout: Layout | str = Layout.SEPARATE,
        *,
        coils: int = ADDRESS_SPACE,
        discrete_inputs: int | None = None,
        holding_registers: int = ADDRESS_SPACE,
        input_registers: int | None = None,
        identification: dict[int, str | bytes] | None = None,
        server_id: bytes = b"\x01",
        additional_data: bytes = b"",
        address_register: int | None = None,
        addresses: Mapping[str, Iterable[int]] | None = None,
    ) -> None:
        self.layout = Layout(layout)
        implemented = {name: sorted(set(values)) for name, values in (addresses or {}).items()}
        unknown = sorted(set(implemented) - set(TABLES))
        if unknown:
            raise ValueError(f"no table named {unknown[0]!r}: expected one of {', '.join(TABLES)}")
        if self.layout is not Layout.SEPARATE:
            for name, shared in (("input_registers", "holding_registers"), ("discrete_inputs", "coils")):
                if name in implemented:
                    if shared in implemented and implemented[shared] != implemented[name]:
                        raise ValueError(f"the {self.layout} layout shares one table: {name} cannot have other "
                                         f"addresses than {shared}")  # fmt: skip
                    implemented[shared] = implemented.pop(name)
        self.holding_registers = WordTable(holding_registers, addresses=implemented.get("holding_registers"))
        if self.layout is Layout.SEPARATE:
            self.input_registers = WordTable(
                ADDRESS_SPACE if input_registers is None else input_registers,
                addresses=implemented.get("input_registers"),
            )
            self.coils = BitTable(coils, addresses=implemented.get("coils"))
            self.discrete_inputs = BitTable(
                ADDRESS_SPACE if discrete_inputs is None else discrete_inputs,
                addresses=implemented.get("discrete_inputs"),
            )
        else:
            for name, size, shared in (
                ("input_registers", input_registers, holding_registers),
                ("discrete_inputs", discrete_inputs, coils),
            ):
                if size is not None and size != shared:
                    raise ValueError(f"the {self.layout} layout shares one table: {name} cannot differ in size")
            self.input_registers = self.holding_registers
            if self.layout is Layout.PACKED:
                bits = min(coils, 16 * holding_registers)
                self.coils = BitTable(bits, registers=self.holding_registers, addresses=implemented.get("coils"))
            else:
                self.coils = BitTable(coils, addresses=implemented.get("coils"))
            self.discrete_inputs = self.coils
        self.identification = Identification(identification or default_identification(__version__))
        self.additional_data = additional_data
        self._server_id = b""
        self.server_id = server_id
        self.running = True
        self.exception_status = 0
        self.diagnostics = Diagnostics()
        self.guard: Callable[[bytes], None] | None = None
        """Called with every client request PDU before it is carried out; raising a ModbusError refuses it (with
        that error's code) and nothing is done. None by default, and then a request costs one None check more.
        The read-only ranges are one (`modbusd.authorize.ReadOnly`); the owner's writes never meet it."""
        self.address_register: int | None = None
        """The address change, off (None) by default: the holding register that holds the device's
        unit id on serial lines. A write to it (FC06, or FC16 covering it), also accepted at unit id 0xFF, is
        answered from the old unit id, and the device answers at the new one from the next frame on."""
        if address_register is not None:
            self.set_address_register(address_register)
        self.points: dict[str, Point] = {}  # the device's named data points (the device file's), by name

    def set_address_register(self, address: int) -> None:
        """Turn the address change on, with the unit id kept in holding register `address`."""
        if not 0 <= address < self.holding_registers.size:
            raise ValueError(f"address register {address} is not a holding register of this device")
        self.address_register = address

    @property
    def server_id(self) -> bytes:
        """FC17's device-specific server id (§6.13).

        One byte and no additional data by default: the length is the device's choice, but libmodbus's
        `modbus_report_slave_id` takes the second byte for the run indicator and pymodbus the last one.
        """
        return self._server_id

    @server_id.setter
    def server_id(self, value: bytes) -> None:
        if len(value) + len(self.additional_data) > MAX_SERVER_ID:
            raise ValueError(f"server id and additional data: at most {MAX_SERVER_ID} bytes fit an FC17 response")
        self._server_id = bytes(value)
