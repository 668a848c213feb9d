"""Address notations → (unit id, table, protocol address, register bit), and back. Text in, values out; no I/O.

This is the edge where 1-based numbers become protocol addresses (0-based, 0 … 65535), the only addresses the rest
of the code knows. One holding register in every notation:

==========================  ===========  ==========================================================
notation                    example      meaning
==========================  ===========  ==========================================================
``unit.address.table``      ``1.100.hr`` unit 1, holding register at protocol address 100 (HSYCO)
``address.table``           ``100.hr``   the same without a unit id (single-device mode)
5-digit data-model number   ``40101``    holding register 101, counted from 1: protocol address 100
6-digit data-model number   ``400101``   the same, for numbers past 9999
``unit.number``             ``1.40101``  a data-model number on unit 1
==========================  ===========  ==========================================================

**Off by one** (MBLogic): data-model numbers count from 1, protocol addresses from 0. ``40001`` is holding
register 0 on the wire, and ``40101`` is ``100.hr``, not ``101.hr``. Vendor manuals use both styles; when a value
shows up one register away from where it should be, this is why.

Data-model numbers carry their table in the first digit, and the number of digits matters:

=====================  ===================  ===================  ===================
table                  5 digits             6 digits             suffix
=====================  ===================  ===================  ===================
coils                  00001 … 09999        000001 … 065536      ``.co``
discrete inputs        10001 … 19999        100001 … 165536      ``.di``
input registers        30001 … 39999        300001 … 365536      ``.ir``
holding registers      40001 … 49999        400001 … 465536      ``.hr``
=====================  ===================  ===================  ===================

Choices HSYCO's Modbus server and the specification leave open:

- A bare number without a table that is not a 5- or 6-digit data-model number (``100``, ``7``) is rejected: it
  could be a protocol address or a 1-based number of any of four tables, and guessing is how registers end up one
  off. The message suggests ``100.hr`` and ``40100`` and says how they differ.
- Unit ids 0 … 255 are accepted, every value the MBAP unit id byte carries and what `Server` accepts (HSYCO says
  1 … 247, the serial-line range; over TCP, 0 and 255 are common device addresses). Whether a device answers that
  unit id is the configuration's business.
- ``.<n>`` single-bit names (HSYCO's ``hr.<n>``, n = 1 … 16; see `modbusd.model.values.register_bit`) are accepted
  on input registers as well as holding registers; on coils and discrete inputs they are rejected.
- Suffixes and whitespace around the name are case- and space-insensitive: ``1.100.HR`` is ``1.100.hr``.
"""

from dataclasses import dataclass
from enum import Enum, StrEnum

from modbusd.protocol.codes import ADDRESS_SPACE

MAX_UNIT_ID = 255
LAST_FIVE_DIGIT = 9999  # 5-digit numbers reach x9999, that is protocol address 9998


class InvalidName(ValueError):
    """An address in none of the notations above, or one outside its range; the message says which part is wrong."""


class Table(StrEnum):
    """The four tables (§4.3). The value is the `Device` attribute that holds the table."""

    COILS = "coils"
    DISCRETE_INPUTS = "discrete_inputs"
    INPUT_REGISTERS = "input_registers"
    HOLDING_REGISTERS = "holding_registers"

    @property
    def suffix(self) -> str:
        """HSYCO's suffix: co, di, ir, hr."""
        return _SUFFIXES[self]

    @property
    def prefix(self) -> int:
        """The leading digit of its data-model numbers: 0, 1, 3, 4."""
        return _PREFIXES[self]

    @property
    def is_bits(self) -> bool:
        return self in (Table.COILS, Table.DISCRETE_INPUTS)

    @property
    def label(self) -> str:
        """Singular words for messages: "holding register"."""
        return self.value.replace("_", " ")[:-1]

    @classmethod
    def from_suffix(cls, suffix: str) -> "Table":
        try:
            return _BY_SUFFIX[suffix.lower()]
        except KeyError:
            raise InvalidName(f"unknown table {suffix!r}: expected co, di, ir or hr") from None


_SUFFIXES = {Table.COILS: "co", Table.DISCRETE_INPUTS: "di", Table.INPUT_REGISTERS: "ir", Table.HOLDING_REGISTERS: "hr"}
_PREFIXES = {Table.COILS: 0, Table.DISCRETE_INPUTS: 1, Table.INPUT_REGISTERS: 3, Table.HOLDING_REGISTERS: 4}
_BY_SUFFIX = {suffix: table for table, suffix in _SUFFIXES.items()}
_BY_PREFIX = {prefix: table for table, prefix in _PREFIXES.items()}


class Notation(Enum):
    NAME = "name"  # 1.100.hr, or 100.hr without a unit id
    FIVE_DIGIT = "5-digit"  # 40101
    SIX_DIGIT = "6-digit"  # 400101
    ONE_BASED = "1-based"  # 101: the data-model number without its table digit, for text that names the table


@dataclass(frozen=True, slots=True)
class Location:
    """Where a data point lives. `address` is the protocol address; `bit` is HSYCO's n (1 … 16) or None."""

    table: Table
    address: int
    unit_id: int | None = None
    bit: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.address < ADDRESS_SPACE:
            raise InvalidName(f"address {self.address} outside 0..{ADDRESS_SPACE - 1}")
        if self.unit_id is not None and not 0 <= self.unit_id <= MAX_UNIT_ID:
            raise InvalidName(f"unit id {self.unit_id} outside 0..{MAX_UNIT_ID}")
        if self.bit is not None:
            if self.table.is_bits:
                raise InvalidName(f"a {self.table.label} is a single bit: .{self.bit} applies to registers only")
            if not 1 <= self.bit <= 16:
                raise InvalidName(f"register bit {self.bit} outside 1..16")

    def __str__(self) -> str:
        return format_address(self.table, self.address, unit_id=self.unit_id, bit=self.bit)


def _number(text: str, what: str, name: str) -> int:
    if not text.isdecimal() or not text.isascii():
        raise InvalidName(f"{name!r}: {what} {text!r} is not a number" if text else f"{name!r}: {what} is missing")
    return int(text)


def _unit(text: str, name: str) -> int:
    unit_id = _number(text, "unit id", name)
    if unit_id > MAX_UNIT_ID:
        raise InvalidName(f"{name!r}: unit id {unit_id} outside 0..{MAX_UNIT_ID}")
    return unit_id


def _data_model(digits: str, name: str) -> tuple[Table, int]:
    """A 5- or 6-digit data-model number → (table, protocol address)."""
    if not digits.isdecimal() or not digits.isascii():
        raise InvalidName(f"{name!r} is not an address: expected 1.100.hr, 100.hr, 40101 or 400101")
    if len(digits) not in (5, 6):
        return _bare(digits, name)
    table = _BY_PREFIX.get(int(digits[0]))
    if table is None:
        raise InvalidName(
            f"{name!r}: no table has the leading digit {digits[0]} "
            "(0 coils, 1 discrete inputs, 3 input registers, 4 holding registers)"
        )
    number = int(digits[1:])
    first_text = f"{table.prefix}{1:0{len(digits) - 1}d}"
    if number < 1:
        raise InvalidName(
            f"{name!r} is below the first {table.label}, {first_text}: data-model numbers count from 1 "
            f"({first_text} is protocol address 0)"
        )
    if number > ADDRESS_SPACE:  # only 6 digits can get here: 5 digits end at x9999
        raise InvalidName(f"{name!r} is past the last {table.label}, {table.prefix}{ADDRESS_SPACE}")
    return table, number - 1


def _bare(digits: str, name: str) -> tuple[Table, int]:
    if len(digits) > 6:
        raise InvalidName(f"{name!r} has {len(digits)} digits: data-model numbers have 5 or 6 (40101, 400101)")
    number = int(digits)
    one_based = f"4{number:04d}" if number <= LAST_FIVE_DIGIT else f"4{number:05d}"
    hint = f", or {one_based} for holding register {number} counted from 1 (protocol address {number - 1})"
    raise InvalidName(
        f"{name!r} names no table: write {number}.hr for protocol address {number} of the holding registers"
        f"{hint if 1 <= number <= ADDRESS_SPACE else ''}; likewise .co/.di/.ir and 0xxxx/1xxxx/3xxxx"
    )


def parse_address(text: str) -> Location:
    """Any notation of the module docstring → Location; InvalidName with what is wrong otherwise."""
    name = text.strip()
    if not name:
        raise InvalidName("empty address: expected 1.100.hr, 100.hr, 40101 or 400101")
    parts = name.split(".")
    lowered = [p.lower() for p in parts]
    bit: int | None = None
    if lowered[-1] in _BY_SUFFIX:
        where = len(parts) - 1
    elif len(parts) >= 2 and lowered[-2] in _BY_SUFFIX:
        where = len(parts) - 2
        bit = _number(parts[-1], "register bit", name)
    elif len(parts) == 1:
        table, address = _data_model(name, name)
        return Location(table, address)
    elif len(parts) == 2 and parts[0].isdecimal() and parts[1].isdecimal():
        unit_id = _unit(parts[0], name)
        table, address = _data_model(parts[1], name)
        return Location(table, address, unit_id)
    else:
        words = [p for p in parts if not p.isdecimal()]
        if not words:
            raise InvalidName(f"{name!r} names no table: expected [unit.]address.table, e.g. 1.100.hr or 100.hr")
        raise InvalidName(f"{name!r}: unknown table {words[-1]!r}: expected co, di, ir or hr (as in 1.100.hr)")
    table = Table.from_suffix(parts[where])
    before = parts[:where]
    if len(before) not in (1, 2):
        raise InvalidName(f"{name!r}: expected [unit.]address.table[.bit], e.g. 1.100.hr, 100.hr or 1.100.hr.3")
    address = _number(before[-1], "address", name)
    if address >= ADDRESS_SPACE:
        raise InvalidName(f"{name!r}: address {address} outside 0..{ADDRESS_SPACE - 1}")
    unit_id = _unit(before[0], name) if len(before) == 2 else None
    if bit is not None and table.is_bits:
        raise InvalidName(f"{name!r}: a {table.label} is a single bit: .{bit} applies to .hr and .ir only")
    if bit is not None and not 1 <= bit <= 16:
        raise InvalidName(f"{name!r}: register bit {bit} outside 1..16 (as in 1.100.hr.3)")
    return Location(table, address, unit_id, bit)


def format_address(
    table: Table,
    address: int,
    notation: Notation = Notation.NAME,
    *,
    unit_id: int | None = None,
    bit: int | None = None,
) -> str:
    """(table, protocol address) in one notation; InvalidName when the notation cannot express it.

    Only NAME carries a unit id and a register bit. FIVE_DIGIT reaches protocol address 9998.
    """
    if not 0 <= address < ADDRESS_SPACE:
        raise InvalidName(f"address {address} outside 0..{ADDRESS_SPACE - 1}")
    if notation is Notation.NAME:
        text = f"{address}.{table.suffix}" if unit_id is None else f"{unit_id}.{address}.{table.suffix}"
        return text if bit is None else f"{text}.{bit}"
    if unit_id is not None or bit is not None:
        raise InvalidName(f"the {notation.value} notation has no unit id or register bit: use Notation.NAME")
    number = address + 1
    if notation is Notation.ONE_BASED:
        return str(number)
    if notation is Notation.FIVE_DIGIT:
        if number > LAST_FIVE_DIGIT:
            raise InvalidName(f"{table.label} {address} has no 5-digit number (they end at {table.prefix}9999)")
        return f"{table.prefix}{number:04d}"
    return f"{table.prefix}{number:05d}"


def describe(table: Table, address: int) -> str:
    """The same address in every notation, for documentation and messages.

    ``holding register 100.hr = 40101 = 400101 (number 101 counted from 1; protocol address 100)``
    """
    forms = [format_address(table, address)]
    if address + 1 <= LAST_FIVE_DIGIT:
        forms.append(format_address(table, address, Notation.FIVE_DIGIT))
    forms.append(format_address(table, address, Notation.SIX_DIGIT))
    return f"{table.label} {' = '.join(forms)} (number {address + 1} counted from 1; protocol address {address})"
