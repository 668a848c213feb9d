"""What the console's grid shows: the devices and their tables (``GET /devices``), and one window of a table as
typed texts (``GET /window``), which the page asks for up to ten times a second while it is open and visible.

The page polls and compares the texts it gets with the ones it had, rather than listening to write events: values
change through clients, through the owner (`Server.write`, the control API) and through anything else that writes
the tables without making events, and a poll of the visible window sees them all. With no page open, nothing here
runs, and the Modbus request path carries no trace of the console.

Values are read with `Server.read_range` and formatted with `format_value`, the codecs `modbusd get` uses, so
the grid shows exactly the texts that `get` prints and `set` takes back.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from modbusd import Device, Order, Server, Table, UnknownPoint, ValueType, format_value

MAX_WINDOW = 2000  # registers or bits one window may cover: a tall screen of string:30 values, bounded work
SUFFIXES = {table.suffix: table for table in Table}


def units(server: Server) -> Mapping[int | None, Device]:
    """The default endpoint's devices by unit id (None: one device answering every unit id)."""
    try:
        return {None: server.device}
    except AttributeError:  # one device per unit id
        return dict(sorted(server.devices.items()))


def devices(server: Server) -> dict[str, object]:
    """Each unit id (None: one device answering every unit id) with its layout and tables' sizes."""
    listed = []
    for unit_id, device in units(server).items():
        tables = {}
        for table in Table:
            held = getattr(device, table.value)
            tables[table.suffix] = {"table": table.value, "label": table.label, "size": held.size,
                                    "sparse": held.sparse, "bits": table.is_bits}  # fmt: skip
        listed.append({"unit_id": unit_id, "layout": str(device.layout), "tables": tables})
    return {"devices": listed}


@dataclass(frozen=True, slots=True)
class Window:
    """``?unit=&table=&start=&count=&type=&order=`` checked: `count` values of `vtype` from `start` on."""

    unit_id: int | None
    table: Table
    start: int
    count: int
    vtype: ValueType
    order: Order | None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> "Window":
        """ValueError (or InvalidType) with what is wrong, for the API's 400."""
        unit_text = query.get("unit", "")
        unit_id = _whole("unit", unit_text, 255) if unit_text not in ("", "*") else None
        suffix = query.get("table", "").lower()
        if suffix not in SUFFIXES:
            raise ValueError(f"table must be co, di, ir or hr, not {suffix[:20]!r}")
        table = SUFFIXES[suffix]
        vtype = ValueType.parse(query.get("type") or ("bit" if table.is_bits else "ushort"))
        step = 1 if table.is_bits else vtype.registers
        count = _whole("count", query.get("count", ""), MAX_WINDOW // step)
        return cls(unit_id, table, _whole("start", query.get("start", ""), 65535), count, vtype,
                   parse_order(query.get("order")))  # fmt: skip

    @property
    def step(self) -> int:
        return 1 if self.table.is_bits else self.vtype.registers

    def name(self, address: int) -> str:
        where = f"{address}.{self.table.suffix}"
        return where if self.unit_id is None else f"{self.unit_id}.{where}"


def parse_order(text: str | None) -> Order | None:
    if not text:
        return None
    try:
        return Order(text.strip().upper())
    except ValueError:
        raise ValueError(f"order must be ABCD, CDAB, BADC or DCBA, not {text[:20]!r}") from None


def _whole(name: str, text: str, most: int) -> int:
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else -1
    if not 0 <= value <= most or (name == "count" and value == 0):
        raise ValueError(f"{name} must be a whole number {1 if name == 'count' else 0}..{most}, not {text[:20]!r}")
    return value


def read_window(server: Server, window: Window) -> dict[str, object]:
    """The window's values as texts; None for a value that runs past the table or into a sparse table's gap.

    Consecutive values that exist are read with one `read_range` each: one run for a dense table."""
    device = server.device_for(window.unit_id) if window.unit_id is not None else _only(server)
    if device is None:
        raise UnknownPoint(f"no device has unit id {window.unit_id}")
    held = getattr(device, window.table.value)
    step = window.step
    texts: list[str | None] = [None] * window.count
    run: list[int] = []
    for i in range(window.count + 1):
        address = window.start + i * step
        whole = i < window.count and all(held.implemented(address + k) for k in range(step))
        if whole:
            run.append(i)
        elif run:
            span = server.read_range(window.name(window.start + run[0] * step), len(run), window.vtype, window.order)
            for j, (_, _, value) in zip(run, span, strict=True):
                texts[j] = format_value(window.vtype, value)
            run = []
    return {"unit_id": window.unit_id, "table": window.table.suffix, "start": window.start, "step": step,
            "type": str(window.vtype), "order": window.order.value if window.order else None, "size": held.size,
            "values": texts}  # fmt: skip


def _only(server: Server) -> Device:
    try:
        return server.device
    except AttributeError:
        if len(server.devices) == 1:
            return next(iter(server.devices.values()))
        raise UnknownPoint("which device? this server has one device per unit id: give unit=") from None
