"""Typed access to data points for the program that owns the server: find a point by name or address, read, write.

No I/O, no clock: what `Server.locate`, `read`, `write` and `data_points` do, over the server's devices. The owner
may write every table, the read-only ones (discrete inputs, input registers) included: they are read-only for
clients only, as in HSYCO's Modbus server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from modbusd.model.device import Device
from modbusd.model.names import Location, parse_address
from modbusd.model.points import NAME, Point, UnknownPoint, default_type, read_at, width, write_at
from modbusd.model.values import InvalidType, Kind, Order, Value, ValueType

Span = list[tuple[Location, bytes, Value]]
"""A range's values: where each one is, its raw content (register bytes, or one 0/1 byte for a bit), its value."""


def split_devices(devices: Device | Mapping[int, Device] | None) -> tuple[Device | None, dict[int, Device]]:
    """`Server`'s devices → (the device answering every unit id, or None; unit id → device, empty for one)."""
    if devices is None:
        devices = Device()
    if isinstance(devices, Device):
        return devices, {}
    for unit in devices:
        if not 0 <= unit <= 255:
            raise ValueError(f"unit id {unit} outside 0..255")
    return None, dict(devices)


COUNTERS = ("bus_message", "bus_communication_error", "bus_exception_error", "server_message", "server_no_response",
            "server_nak", "server_busy", "bus_character_overrun", "event_count")  # fmt: skip
"""The FC08 counters (MODBUS Application Protocol §6.8) of each device that `Server.counters` shows."""


class PointAccess:
    """The data points of one device answering every unit id (`single`), or of one device per unit id."""

    def __init__(self, single: Device | None, devices: dict[int, Device],
                 device_for: Callable[[int], Device | None]) -> None:  # fmt: skip
        self._single = single
        self._devices = devices  # the server's own dict: an address change on a serial line is seen here too
        self._device_for = device_for

    def _in_unit_order(self) -> list[Device]:
        """The devices a name may belong to, in unit id order (one device may serve several unit ids)."""
        return [self._single] if self._single is not None else [self._devices[u] for u in sorted(self._devices)]

    def data_points(self) -> list[Point]:
        """Every named data point of every device, in unit id order then address order."""
        devices = self._in_unit_order()
        seen: set[int] = set()
        points: list[Point] = []
        for device in devices:
            if id(device) not in seen:  # one device may serve several unit ids
                seen.add(id(device))
                points.extend(sorted(device.points.values(), key=lambda p: (p.location.table, p.location.address)))
        return points

    def locate(self, point: str) -> tuple[Device, Point]:
        """A data point's name, or an address in any notation (`modbusd.model.names`) → (device, point).

        An address that is no named point gives an unnamed Point of the address's default type. Raises
        UnknownPoint for an unknown name or a unit id without a device, InvalidName for a malformed address.
        """
        text = point.strip()
        if NAME.fullmatch(text):  # a dict look-up per device, in unit id order: listing every point stays linear
            devices = self._in_unit_order()
            for candidate in (d.points.get(text) for d in devices):
                if candidate is not None:
                    unit_id = candidate.location.unit_id
                    device = self._single if unit_id is None else self._device_for(unit_id)
                    assert device is not None
                    return device, candidate
            raise UnknownPoint(f"no data point named {text!r}")
        location = parse_address(text)
        if self._single is not None:
            device = self._single
        elif location.unit_id is None:
            if len(self._devices) != 1:
                raise UnknownPoint(f"{text!r}: which device? name the unit id, as in 1.{text}")
            device = next(iter(self._devices.values()))
        else:
            found = self._devices.get(location.unit_id)
            if found is None:
                raise UnknownPoint(f"{text!r}: no device has unit id {location.unit_id}")
            device = found
        where = (location.table, location.address, location.bit)
        for candidate in device.points.values():
            if (candidate.location.table, candidate.location.address, candidate.location.bit) == where:
                return device, candidate
        return device, Point("", location, default_type(location))

    def device_counters(self) -> dict[str, dict[str, object]]:
        """Each device's FC08 counters and listen-only mode, by unit id ("*": the device answering every one)."""
        units: dict[str, Device] = {"*": self._single} if self._single is not None else {
            str(u): d for u, d in sorted(self._devices.items())}  # fmt: skip
        return {
            unit: {name: getattr(device.diagnostics, name) for name in COUNTERS} | {
                "listen_only": device.diagnostics.listen_only}
            for unit, device in units.items()
        }  # fmt: skip

    def read(self, point: str, vtype: ValueType | str | None = None, order: Order | str | None = None) -> Value:
        """The value of a data point (by name) or of any address, as its own type (or `vtype`) and order."""
        device, found = self.locate(point)
        return read_at(device, found.location, _chosen(found, vtype), order or found.order)

    def read_range(self, point: str, count: int, vtype: ValueType | str | None = None,
                   order: Order | str | None = None) -> Span:  # fmt: skip
        """`count` values of the point's type (or `vtype`) laid end to end from a point or address on, each read
        in the first point's byte order (or `order`); IllegalDataAddress, and nothing read, when the range leaves
        the table."""
        device, found = self.locate(point)
        chosen = _chosen(found, vtype)
        where = found.location
        if where.bit is not None:
            raise InvalidType(f"{where} is one bit of a register: a range starts at a whole register")
        if where.table.is_bits and chosen.kind is not Kind.BIT:
            raise InvalidType(f"a range of {where.table.value} reads bit by bit: its type is bit, not {chosen}")
        step = width(where, chosen)
        table = getattr(device, where.table.value)
        raw = table.read(where.address, step * count)  # the whole range checked at once, before anything is read
        if where.table.is_bits:
            raw = bytes(raw)  # [False, True, …] → one 0/1 byte per bit
        span: Span = []
        for i in range(count):
            location = Location(where.table, where.address + i * step, where.unit_id)
            part = raw[i * step : (i + 1) * step] if where.table.is_bits else raw[2 * i * step : 2 * (i + 1) * step]
            span.append((location, part, read_at(device, location, chosen, order or found.order)))
        return span

    def write(self, point: str, value: Value, vtype: ValueType | str | None = None,
              order: Order | str | None = None) -> None:  # fmt: skip
        """Store a value (or its text) at a data point or any address, every table included."""
        device, found = self.locate(point)
        write_at(device, found.location, _chosen(found, vtype), value, order or found.order)


def _chosen(found: Point, vtype: ValueType | str | None) -> ValueType:
    return found.type if vtype is None else ValueType.parse(vtype) if isinstance(vtype, str) else vtype
