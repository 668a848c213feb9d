"""Where a generator's numbers go: a data point's registers or bit, in the point's type and word order.

Sans-I/O. The fit rule, for a number that the type cannot hold as it is:

- integer types (ushort … long): rounded to the nearest integer (halves to even, as Python's round), then clamped to
  the type's range: a sine of amplitude 40000 on a ushort flattens at 0 and 65535, as a real transmitter's reading
  saturates at the ends of its range. Refusing would freeze the point at an arbitrary earlier value instead.
- float, double: a finite number beyond the largest finite value is clamped to it; NaN and ±infinity are stored as
  they are (a failed sensor sends them).
- bit (a coil, a discrete input, one bit of a register): on for any number but 0.
- NaN on an integer type or a bit has no nearest value: that update is skipped and counted as an error.

Types that hold no number (string, hex, bits) are refused when the generator is made.

Registers are written straight into the table's buffer (`WordTable.buffer`), their range checked once when the
target is made: this is the path that runs 100,000 times a second with 10,000 points at 10 Hz. The bytes come
from `values.packer`, the same struct formats `values.encode` uses.
"""

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modbusd.model.names import Location
from modbusd.model.points import Tables, check_type, read_at
from modbusd.model.values import (
    InvalidType,
    Kind,
    Order,
    ValueType,
    integer_range,
    packer,
    packer_into,
    read_bit_of_register,
    write_bit_of_register,
)
from modbusd.protocol.errors import ModbusError
from modbusd.simulate.generators import Output
from modbusd.simulate.spec import GeneratorError

NUMBER_KINDS = (Kind.USHORT, Kind.SHORT, Kind.UINT, Kind.INT, Kind.ULONG, Kind.LONG, Kind.FLOAT, Kind.DOUBLE, Kind.BIT)
_LARGEST = {Kind.FLOAT: struct.unpack(">f", b"\x7f\x7f\xff\xff")[0], Kind.DOUBLE: 1.7976931348623157e308}


class Unfit(ValueError):
    """A number with no nearest value in the target's type (NaN for an integer or a bit): the update is skipped."""


def limits(vtype: ValueType) -> tuple[float, float]:
    """The smallest and largest number `vtype` holds: where a counter wraps by default."""
    if vtype.kind is Kind.BIT:
        return 0, 1
    if vtype.kind in _LARGEST:
        return -_LARGEST[vtype.kind], _LARGEST[vtype.kind]
    return integer_range(vtype)


def fitter(vtype: ValueType) -> Callable[[float], int | float | bool]:
    """The fit rule of the module docstring for `vtype`."""
    kind = vtype.kind
    if kind is Kind.BIT:

        def bit(x: float) -> bool:
            if math.isnan(x):
                raise Unfit("NaN is neither on nor off")
            return x != 0

        return bit
    if kind in _LARGEST:
        largest = _LARGEST[kind]

        def real(x: float) -> float:
            if -largest <= x <= largest:  # the usual case, first; NaN fails every comparison
                return x
            if math.isnan(x) or math.isinf(x):
                return x
            return largest if x > 0 else -largest

        return real
    low, high = integer_range(vtype)

    def integer(x: float) -> int:
        if low < x < high:  # the usual case, first; NaN fails every comparison
            return round(x)
        if math.isnan(x):
            raise Unfit(f"NaN has no nearest {vtype}")
        return high if x >= high else low

    return integer


def check_target(location: Location, vtype: ValueType, count: int = 1) -> None:
    """GeneratorError unless `count` values of `vtype` from a generator can live at `location`."""
    if vtype.kind not in NUMBER_KINDS:
        raise GeneratorError(f"{location} is {vtype}: a generator writes numbers, so the type must be one of "
                             "ushort, short, uint, int, ulong, long, float, double or bit")  # fmt: skip
    try:
        check_type(location, vtype)
    except InvalidType as exc:
        raise GeneratorError(str(exc)) from None
    if count > 1 and (location.table.is_bits or location.bit is not None):
        raise GeneratorError(f"{location} is one bit: a generator of {count} values needs registers")


@dataclass(slots=True)
class Target:
    """`count` consecutive values of `vtype` from `location` on, in `order`, on `device`'s tables.

    `put(number)` writes a generator's output and returns True; with `hold`, it first checks that the point still
    holds what it wrote last, and returns False, writing nothing, when someone else has written it since. `forget`
    makes the next `put` write whatever the point holds (a reset).
    """

    device: Tables
    location: Location
    vtype: ValueType
    order: Order = Order.ABCD
    count: int = 1
    hold: bool = True
    fit: Callable[[float], int | float | bool] = field(init=False, repr=False)
    put: Callable[[Output], bool] = field(init=False, repr=False)
    _forget: Callable[[], None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_target(self.location, self.vtype, self.count)
        self.fit = fitter(self.vtype)
        where = self.location
        table = getattr(self.device, where.table.value)
        try:
            table.check(where.address, 1 if where.table.is_bits or where.bit is not None else
                        self.vtype.registers * self.count)  # fmt: skip
        except ModbusError as exc:  # IllegalDataAddress: outside the table, or in a sparse table's gap
            raise GeneratorError(f"{where}: {exc}") from None
        if not where.table.is_bits and where.bit is None and self.count == 1:
            self.put, self._forget = self._one_number(table.buffer)
        else:
            self.put, self._forget = self._checked(*self._writer(table))

    def forget(self) -> None:
        self._forget()

    def _one_number(self, buf: bytearray) -> tuple[Callable[[Output], bool], Callable[[], None]]:
        """(put, forget) for one number in whole registers: `_Number`'s."""
        number = _Number(self, buf)
        return number.put_real if self.vtype.kind in _LARGEST else number.put_integer, number.forget

    def _checked(self, write: Callable[[Output], object], current: Callable[[], object]
                 ) -> tuple[Callable[[Output], bool], Callable[[], None]]:  # fmt: skip
        hold, last = self.hold, [None]

        def forget() -> None:
            last[0] = None

        def put(output: Output) -> bool:
            if hold and last[0] is not None and current() != last[0]:
                return False
            last[0] = write(output)
            return True

        return put, forget

    def _writer(self, table: Any) -> tuple[Callable[[Output], object], Callable[[], object]]:
        """(write, current) for bits, a register bit, or several numbers (clock parts): each writes and returns
        what it wrote, in the form `current` reads it back."""
        where, fit, count = self.location, self.fit, self.count
        if where.table.is_bits:

            def write_bit(output: Output) -> object:
                table[where.address] = bit = bool(fit(output))  # type: ignore[arg-type]  # one number
                return bit

            return write_bit, lambda: table[where.address]
        if where.bit is not None:

            def write_register_bit(output: Output) -> object:
                on = bool(fit(output))  # type: ignore[arg-type]  # one number
                write_bit_of_register(table, where.address, where.bit, on)  # type: ignore[arg-type]
                return on

            return write_register_bit, lambda: read_bit_of_register(table, where.address, where.bit)  # type: ignore[arg-type]
        buf = table.buffer
        start = 2 * where.address
        end = start + 2 * self.vtype.registers * count
        pack = packer(self.vtype, self.order)

        def write_numbers(output: Output) -> object:
            values = output if isinstance(output, tuple) else (output,) * count
            buf[start:end] = data = b"".join(pack(fit(v)) for v in values)
            return data

        return write_numbers, lambda: buf[start:end]

    def read(self) -> object:
        """The value the point holds now, as its type (a list of them for several values, as clock parts)."""
        if self.count == 1:
            return read_at(self.device, self.location, self.vtype, self.order)
        step = self.vtype.registers
        return [read_at(self.device, Location(self.location.table, self.location.address + i * step,
                                              self.location.unit_id), self.vtype, self.order)
                for i in range(self.count)]  # fmt: skip


class _Number:
    """`Target.put` for one number in whole registers: the path 10,000 points at 10 Hz take 100,000 times a second.

    The usual case (a number inside the type's range) is a comparison and two `struct.pack_into`: one into the
    table, one into `mine`, this target's own copy of what it wrote, allocated once (a fresh bytes object per
    update costs twice as much, in allocations and cache misses, over 10,000 targets). A class with slots rather
    than a closure: its fields sit in one object, where a closure's are a cell object each, and with 10,000 targets
    updated every 100 ms most of them are cache misses.
    """

    __slots__ = ("buf", "end", "fit", "high", "hold", "holds", "low", "mine", "pack_into", "start")

    def __init__(self, target: Target, buf: bytearray) -> None:
        self.buf, self.start = buf, 2 * target.location.address
        self.end = self.start + 2 * target.vtype.registers
        self.pack_into, self.fit, self.hold = packer_into(target.vtype, target.order), target.fit, target.hold
        self.low, self.high = limits(target.vtype)
        self.holds = buf.startswith  # compares in place: no slice made
        self.mine = bytearray(buf[self.start : self.end])  # what the last put wrote; at first what is there

    def forget(self) -> None:
        self.mine[:] = self.buf[self.start : self.end]

    def put_real(self, x: Output) -> bool:
        if self.hold and not self.holds(self.mine, self.start):
            return False
        if not self.low < x < self.high:  # type: ignore[operator]  # one number; NaN fails the comparison too
            x = self.fit(x)  # type: ignore[arg-type]
        self.pack_into(self.mine, 0, x)
        self.pack_into(self.buf, self.start, x)
        return True

    def put_integer(self, x: Output) -> bool:
        if self.hold and not self.holds(self.mine, self.start):
            return False
        n = round(x) if self.low < x < self.high else self.fit(x)  # type: ignore[operator, arg-type]
        self.pack_into(self.mine, 0, n)
        self.pack_into(self.buf, self.start, n)
        return True
