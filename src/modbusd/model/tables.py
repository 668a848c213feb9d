"""Data tables on compact byte buffers.

Registers are kept as big-endian bytes, so that reading N registers for a client is one slice. Bits are kept
packed the way Modbus sends them (LSB first), so that reading N coils is one integer shift. A table may share
its buffer with another table: that is how the overlaid and packed layouts of `device.py` are built.

A table is dense (every address 0..size-1 exists) or sparse (only the listed addresses exist, as in a real
device's memory map): any other address, or a range that crosses a gap, is exception 02. A sparse table
keeps the same storage and adds a byte mask, 1 for each implemented address, so that checking a range is one
`bytearray.find` in C. `dense_end` is what the hot paths compare against: the table's size when it is dense, 0
when it is sparse, so a dense table pays nothing for sparseness and every read of a sparse one takes the checked
path (`handler.read_registers_fast` relies on this).
"""

from collections.abc import Iterable
from typing import Protocol

from modbusd.protocol.bits import byte_count, pack_bits, unpack_bits
from modbusd.protocol.codes import ADDRESS_SPACE
from modbusd.protocol.errors import IllegalDataAddress, IllegalDataValue


class Journal(Protocol):
    """Who carries out a table's writes when its memory is kept somewhere else too (`modbusd.state`).

    None on a table (the default) costs its writes one comparison: nothing is journaled unless asked for.
    """

    def replace(self, buffer: bytearray, start: int, data: bytes | bytearray, address: int, quantity: int) -> None:
        """Store `data` at `buffer[start:]` (the bytes of `quantity` items from `address`), and note it."""
        ...


def _check_size(size: int) -> int:
    if not 0 <= size <= ADDRESS_SPACE:
        raise ValueError(f"table size {size} outside 0..{ADDRESS_SPACE}")
    return size


def _mask(size: int, addresses: Iterable[int] | None) -> bytearray | None:
    """The implemented-address mask of a sparse table, or None for a dense one."""
    if addresses is None:
        return None
    mask = bytearray(size)
    for address in addresses:
        if not 0 <= address < size:
            raise ValueError(f"implemented address {address} outside the table's 0..{size - 1}")
        mask[address] = 1
    return mask


def _gap(mask: bytearray | None, address: int, end: int) -> int:
    """The first address in address..end-1 that a sparse table does not implement, or -1."""
    return -1 if mask is None else mask.find(0, address, end)


def _swap_pairs(data: bytes | bytearray) -> bytearray:
    """Big-endian words ↔ little-endian words: turns register bytes into LSB-first bit order and back."""
    out = bytearray(len(data))
    out[0::2] = data[1::2]
    out[1::2] = data[0::2]
    return out


class _Addresses:
    """What both kinds of table share: a size, an optional sparse mask, and the range check on them."""

    __slots__ = ("_mask", "journal", "size")
    _item = "item"  # "register" or "bit", for the messages

    def __init__(self, size: int, addresses: Iterable[int] | None) -> None:
        self.size = _check_size(size)
        self._mask = _mask(size, addresses)
        self.journal: Journal | None = None  # set while the table's writes are kept (--state)

    @property
    def sparse(self) -> bool:
        return self._mask is not None

    def implemented(self, address: int) -> bool:
        """Whether one address exists in this table."""
        return 0 <= address < self.size and (self._mask is None or self._mask[address] == 1)

    def addresses(self) -> range | list[int]:
        """Every implemented address, in order."""
        if self._mask is None:
            return range(self.size)
        return [a for a, present in enumerate(self._mask) if present]

    def check(self, address: int, quantity: int) -> None:
        if address < 0 or quantity < 0 or address + quantity > self.size:
            raise IllegalDataAddress(f"{self._item}s {address}..{address + quantity - 1} outside 0..{self.size - 1}")
        gap = _gap(self._mask, address, address + quantity)
        if gap >= 0:
            raise IllegalDataAddress(f"{self._item} {gap} is not implemented (sparse table)")

    def __len__(self) -> int:
        return self.size


class WordTable(_Addresses):
    """16-bit registers, addresses 0..size-1 (or only `addresses`, when sparse); anything else is exception 02."""

    __slots__ = ("_words", "dense_end")
    _item = "register"

    def __init__(self, size: int = ADDRESS_SPACE, *, addresses: Iterable[int] | None = None) -> None:
        super().__init__(size, addresses)
        self._words = bytearray(2 * size)
        self.dense_end = size if self._mask is None else 0

    @property
    def buffer(self) -> bytearray:
        """The big-endian storage itself, for tables that overlay this one."""
        return self._words

    def read(self, address: int, quantity: int) -> bytes:
        """`quantity` registers as big-endian bytes, as a read response carries them."""
        end = address + quantity
        if address < 0 or quantity < 0 or end > self.dense_end:  # dense_end is 0 for a sparse table: always checked
            self.check(address, quantity)
        return bytes(self._words[2 * address : 2 * end])

    def write(self, address: int, data: bytes) -> None:
        """Store big-endian register bytes from `address` on; the whole write or nothing."""
        self.check(address, len(data) // 2)
        if self.journal is None:
            self._words[2 * address : 2 * address + len(data)] = data
        else:
            self.journal.replace(self._words, 2 * address, data, address, len(data) // 2)

    def mask_write(self, address: int, and_mask: int, or_mask: int) -> int:
        """FC22 (§6.16): keep the bits where and_mask is 1, take or_mask's bits where it is 0.

        Clients use it to change single bits without a read-modify-write race, so it is one step here.
        Returns the new value.
        """
        current = self[address]
        value = (current & and_mask) | (or_mask & ~and_mask & 0xFFFF)
        self[address] = value
        return value

    def __getitem__(self, address: int) -> int:
        self.check(address, 1)
        return (self._words[2 * address] << 8) | self._words[2 * address + 1]

    def __setitem__(self, address: int, value: int) -> None:
        self.check(address, 1)
        if not 0 <= value <= 0xFFFF:
            raise IllegalDataValue(f"register value {value} outside 0..65535")
        if self.journal is None:
            self._words[2 * address : 2 * address + 2] = value.to_bytes(2, "big")
        else:
            self.journal.replace(self._words, 2 * address, value.to_bytes(2, "big"), address, 1)

    def values(self, address: int, quantity: int) -> list[int]:
        data = self.read(address, quantity)
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]

    def set_values(self, address: int, values: Iterable[int]) -> None:
        values = list(values)
        if any(not 0 <= v <= 0xFFFF for v in values):
            raise IllegalDataValue("register values must be within 0..65535")
        self.write(address, b"".join(v.to_bytes(2, "big") for v in values))


class BitTable(_Addresses):
    """Single bits, addresses 0..size-1, stored packed.

    With `in_registers`, the bits live in a WordTable's buffer, 16 per register: bit n is bit n % 16 of
    register n // 16, where bit 0 is the register's least significant bit (see `device.py` for why).
    """

    __slots__ = ("_buf", "_in_registers")
    _item = "bit"

    def __init__(
        self, size: int = ADDRESS_SPACE, *, registers: WordTable | None = None, addresses: Iterable[int] | None = None
    ) -> None:
        super().__init__(size, addresses)
        self._in_registers = registers is not None
        if registers is not None:
            if size > 16 * registers.size:
                raise ValueError(f"{size} bits do not fit in {registers.size} registers")
            self._buf = registers.buffer
        else:
            self._buf = bytearray(byte_count(size))

    @property
    def buffer(self) -> bytearray:
        """The storage itself: bits packed LSB first, or the registers' bytes for bits kept in registers."""
        return self._buf

    def _span(self, address: int, quantity: int) -> tuple[int, int, int]:
        """Byte range holding the bits, and the bit offset of `address` within it."""
        end = address + quantity
        if self._in_registers:
            return (address >> 4) << 1, ((end + 15) >> 4) << 1, address & 15
        return address >> 3, (end + 7) >> 3, address & 7

    def _load(self, start: int, end: int) -> int:
        chunk = self._buf[start:end]
        return int.from_bytes(_swap_pairs(chunk) if self._in_registers else chunk, "little")

    def read_packed(self, address: int, quantity: int) -> bytes:
        """`quantity` bits from `address`, packed LSB first as a read response carries them."""
        self.check(address, quantity)
        start, end, shift = self._span(address, quantity)
        value = (self._load(start, end) >> shift) & ((1 << quantity) - 1)
        return value.to_bytes(byte_count(quantity), "little")

    def write_packed(self, address: int, quantity: int, packed: bytes) -> None:
        """Store `quantity` bits from a packed bit string; padding bits past `quantity` are ignored."""
        self.check(address, quantity)
        start, end, shift = self._span(address, quantity)
        mask = ((1 << quantity) - 1) << shift
        new = (int.from_bytes(packed, "little") << shift) & mask
        chunk = ((self._load(start, end) & ~mask) | new).to_bytes(end - start, "little")
        data = _swap_pairs(chunk) if self._in_registers else chunk
        if self.journal is None:
            self._buf[start:end] = data
        else:
            self.journal.replace(self._buf, start, data, address, quantity)

    def read(self, address: int, quantity: int) -> list[bool]:
        return [b == 1 for b in unpack_bits(self.read_packed(address, quantity), quantity)]

    def write(self, address: int, values: Iterable[bool]) -> None:
        bits = bytes(1 if v else 0 for v in values)
        self.write_packed(address, len(bits), pack_bits(bits))

    def __getitem__(self, address: int) -> bool:
        return self.read_packed(address, 1) == b"\x01"

    def __setitem__(self, address: int, value: bool) -> None:
        self.write_packed(address, 1, b"\x01" if value else b"\x00")
