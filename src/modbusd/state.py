"""Durable written values, sans-I/O: which memory a write changed, what to store, and how to undo it.

A device's tables may share memory (`model/device.py`: overlaid, packed), so what is kept is each *memory* once,
named by the table that owns it, never each view of it: in the separate layout the four tables; overlaid, the
coils (discrete inputs are the same bits) and the holding registers (input registers are the same words); packed,
the holding registers alone (the coils are their bits). Registers are stored one row per register, bits one row
per bit, and only the items written since the state file began: an item never written keeps the device file's
initial value, so a new initial value in the file still shows where nobody wrote.

`Journal` is what the tables call on every write (`tables.Journal`) while the server keeps state: it makes the
change and notes (memory, items, the bytes they held before). The owner of the store takes the notes a turn of
the loop at a time (`take`), reads the values they name from memory (`rows`) and commits them in one
transaction; if the commit fails it puts the old bytes back (`rollback`), so memory never holds a value that was
refused. No SQL, no files, no clock here: `state_store.py` does the I/O, `durable.py` the timing.
"""

from collections import deque
from collections.abc import Callable, Iterable, Mapping

from modbusd.model.device import TABLES, Device, Layout
from modbusd.model.tables import BitTable, WordTable

ANY_UNIT = "*"
"""The key of the one device answering every unit id."""

Row = tuple[str, str, int, int]
"""(device key, memory, address, value): one register or one bit as the state file holds it."""

Fingerprint = tuple[str, int, int, int, int]
"""(layout, sizes of the coils, discrete inputs, input registers, holding registers): what a state file was made
for; another device file's memory would put values at the wrong addresses."""


def memories(device: Device) -> dict[str, WordTable | BitTable]:
    """The device's memories, each once, by the name of the table that owns it."""
    if device.layout is Layout.SEPARATE:
        return {name: getattr(device, name) for name in TABLES}
    if device.layout is Layout.OVERLAID:
        return {"coils": device.coils, "holding_registers": device.holding_registers}
    return {"holding_registers": device.holding_registers}


def fingerprint(device: Device) -> Fingerprint:
    return (device.layout.value, device.coils.size, device.discrete_inputs.size, device.input_registers.size,
            device.holding_registers.size)  # fmt: skip


SEPARATOR = "/"
"""Between an endpoint's name and its device's key: ``meter7/*``, ``meter7/3`` (no endpoint name holds one)."""

Devices = tuple[Device | None, Mapping[int, Device]]
"""One endpoint's devices as a server holds them: the device answering every unit id, or unit id → device."""


def device_keys(default: Devices | None, endpoints: Mapping[str, Devices] | None = None) -> dict[str, Device]:
    """Each device once, keyed as the state file knows it: the default endpoint's "*" for one device answering
    every unit id, else its lowest unit id at start (a device may answer several; the address change moves it
    later, its key stays); an endpoint's the same behind its name, ``meter7/*``. The default endpoint's keys are
    those of the files made before endpoints were kept, so those files still open. `default` None: a server
    serving only its endpoints."""
    keyed: dict[str, Device] = {}
    groups: list[tuple[str, Devices]] = [] if default is None else [("", default)]
    groups += [(f"{name}{SEPARATOR}", devices) for name, devices in (endpoints or {}).items()]
    for prefix, (single, devices) in groups:
        if single is not None:
            keyed[prefix + ANY_UNIT] = single
            continue
        seen: set[int] = set()
        for unit in sorted(devices):
            if id(devices[unit]) not in seen:
                seen.add(id(devices[unit]))
                keyed[f"{prefix}{unit}"] = devices[unit]
    return keyed


def endpoint_of(key: str) -> str | None:
    """The endpoint a device key belongs to (None: the default endpoint's)."""
    name, slash, _ = key.partition(SEPARATOR)
    return name if slash else None


def unit_of(key: str) -> str:
    """The key within its endpoint: "*" or a unit id."""
    return key.rpartition(SEPARATOR)[2]


class _Memory:
    """One memory of one device: the `tables.Journal` of the tables that write it."""

    __slots__ = ("_journal", "buffer", "device", "name", "words")

    def __init__(self, journal: "Journal", device: str, name: str, buffer: bytearray, words: bool) -> None:
        self._journal = journal
        self.device = device
        self.name = name
        self.buffer = buffer
        self.words = words  # registers (2 bytes each), or bits packed 8 to a byte, LSB first

    def replace(self, buffer: bytearray, start: int, data: bytes | bytearray, address: int, quantity: int) -> None:
        journal = self._journal
        end = start + len(data)
        old = buffer[start:end]
        buffer[start:end] = data
        journal.entries.append((self, address, quantity, start, old))  # after the change: the value is there
        journal.writes += 1
        if not journal.waiting:
            journal.waiting = True
            journal.wake()


Entry = tuple[_Memory, int, int, int, bytearray]
"""(memory, first item written, items, first byte changed, the bytes there before)."""


class Journal:
    """The writes since the last commit, over every device's memories.

    `writes` counts every write ever noted, so a caller learns whether a request wrote by comparing it before and
    after. `wake` is called once at the first write after each `take`: the owner schedules a commit then.
    """

    def __init__(self, wake: Callable[[], object]) -> None:
        self.entries: deque[Entry] = deque()  # appends and pops are atomic: an owner's thread may write too
        self.writes = 0
        self.waiting = False
        self.wake = wake
        self._tables: list[WordTable | BitTable] = []

    def attach(self, key: str, device: Device) -> None:
        """Journal every write to the device's tables from now on (the views sharing a memory note that memory)."""
        found = memories(device)
        for name, table in found.items():
            words = isinstance(table, WordTable)
            memory = _Memory(self, key, name, table.buffer, words)
            table.journal = memory
            self._tables.append(table)
            if words and device.layout is Layout.PACKED:
                device.coils.journal = memory  # coil n is a bit of register n // 16: the register is what is stored
                self._tables.append(device.coils)

    def detach(self) -> None:
        for table in self._tables:
            table.journal = None
        self._tables.clear()

    def take(self) -> list[Entry]:
        """The writes noted so far, for one commit; later writes wake the owner again."""
        self.waiting = False
        entries = self.entries
        return [entries.popleft() for _ in range(len(entries))]


def rows(entries: Iterable[Entry]) -> list[Row]:
    """What to store for `entries`: each item's value as memory holds it now, once per item."""
    found: dict[tuple[str, str, int], int] = {}
    for memory, address, quantity, start, old in entries:
        buffer = memory.buffer
        if memory.words:  # the registers the changed bytes belong to (a packed coil write changes whole registers)
            for register in range(start >> 1, (start + len(old) + 1) >> 1):
                found[memory.device, memory.name, register] = (buffer[2 * register] << 8) | buffer[2 * register + 1]
        else:
            for bit in range(address, address + quantity):
                found[memory.device, memory.name, bit] = (buffer[bit >> 3] >> (bit & 7)) & 1
    return [(device, name, address, value) for (device, name, address), value in found.items()]


def rollback(entries: list[Entry]) -> None:
    """Put back what `entries` overwrote, newest first: memory is as it was before the first of them."""
    for memory, _address, _quantity, start, old in reversed(entries):
        memory.buffer[start : start + len(old)] = old


def restore(device: Device, memory: str, stored: Iterable[tuple[int, int]]) -> None:
    """Put stored (address, value) pairs of one memory back into the device; ValueError for one it cannot hold."""
    table = memories(device).get(memory)
    if table is None:
        raise ValueError(f"the {device.layout} layout has no memory named {memory!r}")
    words = isinstance(table, WordTable)
    buffer = table.buffer
    limit, top = (table.size, 0xFFFF) if words else (table.size, 1)
    for address, value in stored:
        if not (0 <= address < limit and 0 <= value <= top):
            raise ValueError(f"{memory} {address} = {value} does not fit the device (0..{limit - 1}, 0..{top})")
        if words:
            buffer[2 * address] = value >> 8
            buffer[2 * address + 1] = value & 0xFF
        elif value:
            buffer[address >> 3] |= 1 << (address & 7)
        else:
            buffer[address >> 3] &= ~(1 << (address & 7)) & 0xFF
