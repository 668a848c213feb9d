"""Devices → the text of a device file that modbusd loads as is: the mirror of `loader.py`.

`device_file` writes what a `Device` holds and a client can see: table sizes, sparse tables (as the ranges
``[device.values]`` implements), every value, the FC43 objects and the FC17 answer. What a client cannot see
(data point names, hooks) is not written. `modbusd clone` writes a device read from a real one through it, and a
snapshot of a running server can use it the same way.

Values are written compactly (`ranges.py`): a run of one repeated value is a count, and in a dense table a run of
zeros (every register's value before anything is written) is left out.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from modbusd.config.schema import DEFAULT_SERVER_ID
from modbusd.model.device import TABLES, Device, Layout
from modbusd.model.identification import OBJECT_NAMES
from modbusd.model.tables import BitTable, WordTable
from modbusd.protocol.codes import ADDRESS_SPACE

REPEAT: Final = 8
"""A value repeated this many times or more is written as a count: shorter runs read better as a list."""
PER_LINE: Final = 16  # register values per line of a values list
BITS_PER_LINE: Final = 64  # bits per line of a bit text, in groups of 8

TomlValue = str | int | bool

_NAMES: Final = {object_id: name for name, object_id in OBJECT_NAMES.items()}


def device_file(
    devices: Device | Mapping[int, Device],
    *,
    server: Mapping[str, TomlValue] | None = None,
    serial_unit_id: int | None = None,
    comment: str = "",
) -> str:
    """A device file serving `devices` (one answering every unit id, or by unit id) as they are now.

    `server`: the keys of its ``[server]`` table (host, port, …); `serial_unit_id`: the unit id on serial lines
    of one device answering every unit id; `comment`: lines for the top of the file.
    """
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    if server:
        lines += ["", "[server]", *(f"{key} = {toml_value(value)}" for key, value in server.items())]
    if isinstance(devices, Device):
        lines += _device(devices, (), serial_unit_id)
    else:
        groups: dict[int, tuple[Device, list[int]]] = {}
        for unit_id, device in sorted(devices.items()):
            groups.setdefault(id(device), (device, []))[1].append(unit_id)
        for device, unit_ids in groups.values():
            lines += _device(device, tuple(unit_ids), None)
    return "\n".join(lines).lstrip("\n") + "\n"


def _device(device: Device, unit_ids: Sequence[int], serial_unit_id: int | None) -> list[str]:
    lines = ["", "[[device]]"]
    if len(unit_ids) == 1:
        lines.append(f"unit_id = {unit_ids[0]}")
    elif unit_ids:
        lines.append(f"unit_ids = [{', '.join(map(str, unit_ids))}]")
    if serial_unit_id is not None:
        lines.append(f"serial_unit_id = {serial_unit_id}")
    if device.layout is not Layout.SEPARATE:
        lines.append(f'layout = "{device.layout}"')
    tables = _stored_tables(device)
    sparse = [name for name, table in tables.items() if table.sparse]
    if sparse:
        lines.append(f"sparse = [{', '.join(toml_value(name) for name in sparse)}]")
    sizes = {name: len(getattr(device, name)) for name in _sized_tables(device)}
    if any(size != ADDRESS_SPACE for size in sizes.values()):
        lines += ["", "[device.size]", *(f"{name} = {size}" for name, size in sizes.items())]
    if device.identification:
        lines += ["", "[device.identification]"]
        for object_id, data in device.identification.items():
            key = _NAMES.get(object_id, f"0x{object_id:02X}")
            lines.append(f"{key} = {toml_text_or_bytes(data)}")
    if (device.server_id, device.running, device.additional_data) != (DEFAULT_SERVER_ID, True, b""):
        lines += ["", "[device.server_id]"]
        server_id = device.server_id
        lines.append(f"id = 0x{server_id[0]:02X}" if len(server_id) == 1 else f"id = {_byte_list(server_id)}")
        lines.append(f"running = {toml_value(device.running)}")
        if device.additional_data:
            lines.append(f"additional_data = {toml_text_or_bytes(device.additional_data)}")
    values = [(name, list(_ranges(table))) for name, table in tables.items()]
    if any(ranges for _, ranges in values):
        lines += ["", "[device.values]"]
        for name, ranges in values:
            if ranges:
                lines += [f"{name} = [", *ranges, "]"]
    return lines


def _stored_tables(device: Device) -> dict[str, WordTable | BitTable]:
    """The tables whose values are the device's own: in the shared layouts the inputs are the coils and holding
    registers, and in the packed one the coils are bits of the holding registers."""
    names = {Layout.SEPARATE: TABLES, Layout.OVERLAID: ("coils", "holding_registers"),
             Layout.PACKED: ("holding_registers",)}[device.layout]  # fmt: skip
    if device.layout is Layout.PACKED and device.coils.sparse:  # its own implemented addresses: say which
        names = ("coils", *names)
    return {name: getattr(device, name) for name in names}


def _sized_tables(device: Device) -> tuple[str, ...]:
    return TABLES if device.layout is Layout.SEPARATE else ("coils", "holding_registers")


def _segments(table: WordTable | BitTable) -> Iterator[tuple[int, int]]:
    """(first address, count) of each stretch of consecutive implemented addresses."""
    addresses = table.addresses()
    if isinstance(addresses, range):
        if addresses:
            yield 0, len(addresses)
        return
    start = previous = None
    for address in addresses:
        if previous is None or address != previous + 1:
            if start is not None and previous is not None:
                yield start, previous - start + 1
            start = address
        previous = address
    if start is not None and previous is not None:
        yield start, previous - start + 1


def _read(table: WordTable | BitTable, address: int, count: int) -> list[int]:
    if isinstance(table, WordTable):
        return table.values(address, count)
    return [int(bit) for bit in table.read(address, count)]


def _ranges(table: WordTable | BitTable) -> Iterator[str]:
    """The ``[device.values]`` lines of one table: runs of one value as counts, the rest as lists."""
    bits = isinstance(table, BitTable)
    for start, count in _segments(table):
        values = _read(table, start, count)
        pending: list[int] = []  # values not yet written, from address `first`
        first = start
        i = 0
        while i < count:
            j = i
            while j < count and values[j] == values[i]:
                j += 1
            if j - i >= REPEAT:
                if pending:
                    yield _values_line(first, pending, bits)
                    pending = []
                if values[i] or table.sparse:  # zeros need no line where every address exists anyway
                    value = f", value = {values[i]}" if values[i] else ""
                    yield f"    {{ address = {start + i}, count = {j - i}{value} }},"
                first = start + j
            else:
                pending.extend(values[i:j])
            i = j
        if pending:
            yield _values_line(first, pending, bits)


def _values_line(address: int, values: list[int], bits: bool) -> str:
    if bits:
        text = "".join(map(str, values))
        groups = [text[i : i + 8] for i in range(0, len(text), 8)]
        rows = [" ".join(groups[i : i + BITS_PER_LINE // 8]) for i in range(0, len(groups), BITS_PER_LINE // 8)]
        if len(rows) == 1:
            return f'    {{ address = {address}, values = "{rows[0]}" }},'
        body = "\n".join(rows)
        return f'    {{ address = {address}, values = """\n{body}""" }},'
    if len(values) <= PER_LINE:
        return f"    {{ address = {address}, values = [{', '.join(map(str, values))}] }},"
    rows = [", ".join(map(str, values[i : i + PER_LINE])) for i in range(0, len(values), PER_LINE)]
    body = "".join(f"        {row},\n" for row in rows)
    return f"    {{ address = {address}, values = [\n{body}    ] }},"


def toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return toml_string(value)


def toml_string(text: str) -> str:
    """A TOML basic string: quotes and backslashes escaped, and the control characters TOML refuses raw."""
    escaped = "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text
    )
    return f'"{escaped}"'


def toml_text_or_bytes(data: bytes) -> str:
    """Text when `data` is printable UTF-8 (what a person wrote), else its bytes as a list."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return _byte_list(data)
    return toml_string(text) if text.isprintable() else _byte_list(data)


def _byte_list(data: bytes) -> str:
    return f"[{', '.join(f'0x{b:02X}' for b in data)}]"
