"""The device file's ``[[device]]`` tables: unit ids, layout, sizes, sparse tables, identification, points."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from modbusd.config.access import AccessTables
from modbusd.config.generators import GeneratorTables
from modbusd.config.points import Found, PointTables
from modbusd.config.ranges import RangeTables
from modbusd.config.reader import Path_
from modbusd.config.schema import DEFAULT_SERVER_ID, DeviceConfig, Subscribe, shared_table
from modbusd.model.device import MAX_SERVER_ID, TABLES, Layout
from modbusd.model.identification import MAX_OBJECT_LENGTH, OBJECT_NAMES
from modbusd.model.names import MAX_UNIT_ID
from modbusd.model.values import Order
from modbusd.protocol.codes import ADDRESS_SPACE, MIN_UNIT_ID
from modbusd.protocol.codes import MAX_UNIT_ID as MAX_SERIAL_UNIT_ID

_OBJECT_ID = re.compile(r"0[xX][0-9a-fA-F]{2}")  # an identification object by id: 0x80
DEVICE_KEYS = ("unit_id", "unit_ids", "serial_unit_id", "address_register", "layout", "order", "sparse", "size",
               "identification", "server_id", "values", "points_csv", "point", "read_only", "read_only_exception",
               "allow", "generator")  # fmt: skip


class DeviceTables(PointTables, RangeTables, AccessTables, GeneratorTables):
    """Reads ``[[device]]`` tables, each with its points, and checks the devices of a file together."""

    def device(self, data: object, path: Path_, layout: Layout) -> DeviceConfig:
        raw = self.table(data, path, DEVICE_KEYS)
        if "unit_id" in raw and "unit_ids" in raw:
            raise self.error((*path, "unit_ids"), "give unit_id or unit_ids, not both")
        unit_ids: tuple[int, ...] = ()
        if "unit_id" in raw:
            unit_ids = (self.integer(raw, path, "unit_id", 0, MAX_UNIT_ID),)
        if "unit_ids" in raw:
            ids = self.typed(raw, path, "unit_ids", list, "a list of unit ids such as [1, 2]")
            if not ids or any(isinstance(u, bool) or not isinstance(u, int) or not 0 <= u <= MAX_UNIT_ID for u in ids):
                raise self.error((*path, "unit_ids"), f"expected unit ids within 0..{MAX_UNIT_ID}, got {ids!r}")
            if len(set(ids)) != len(ids):
                raise self.error((*path, "unit_ids"), f"a unit id appears twice in {ids!r}")
            unit_ids = tuple(ids)
        serial_unit_id = None
        if "serial_unit_id" in raw:
            serial_unit_id = self.integer(raw, path, "serial_unit_id", MIN_UNIT_ID, MAX_SERIAL_UNIT_ID)
            if unit_ids:
                raise self.error((*path, "serial_unit_id"), "a device with unit_id or unit_ids answers at those on "
                                                            "serial lines too: serial_unit_id is for one device "
                                                            "answering every unit id")  # fmt: skip
        if "layout" in raw:
            layout = Layout(self.choice(raw, path, "layout", [x.value for x in Layout]))
        order = Order(self.choice(raw, path, "order", [o.value for o in Order])) if "order" in raw else Order.ABCD
        sizes = self.sizes(raw.get("size", {}), (*path, "size"), layout)
        sparse = self.sparse(raw, path, layout)
        identification = self.identification(raw.get("identification", {}), (*path, "identification"))
        ranges = self.value_ranges(raw.get("values", {}), (*path, "values"), sizes, layout)
        report = self.server_id(raw["server_id"], (*path, "server_id")) if "server_id" in raw else {}
        points: list[Found] = []
        raw_points = raw.get("point", [])
        if not isinstance(raw_points, list):
            raise self.error((*path, "point"), "data points are [[device.point]] tables (double brackets)")
        subscribe: list[Subscribe] = []
        for i, item in enumerate(raw_points):
            points.append(self.point(item, (*path, "point", i), order, unit_ids))
            marked = self.subscribed(item, (*path, "point", i), points[-1][0])
            if marked is not None:
                subscribe.append(marked)
            generated = self.point_generator(item, (*path, "point", i), points[-1][0])
            if generated is not None:
                self.pending.append(generated)
        if "points_csv" in raw:
            points.extend(self.csv_points(raw, path, order, unit_ids))
        self.check_points(points, sizes, layout)
        raw_generators = raw.get("generator", [])
        if not isinstance(raw_generators, list):
            raise self.error((*path, "generator"), "generators are [[device.generator]] tables (double brackets)")
        for i, item in enumerate(raw_generators):
            self.pending.append(self.generator_table(item, (*path, "generator", i), [p for p, _, _ in points],
                                                     unit_ids))  # fmt: skip
        config = DeviceConfig(
            unit_ids=unit_ids, layout=layout, order=order, sizes=MappingProxyType(sizes), sparse=sparse,
            identification=MappingProxyType(identification), points=tuple(p for p, _, _ in points),
            values=MappingProxyType({p.name: v for p, v, _ in points if v is not None}),
            serial_unit_id=serial_unit_id, subscribe=tuple(subscribe), ranges=ranges, **report,
            **self.device_access(raw, path, unit_ids),
        )  # fmt: skip
        if "address_register" in raw:
            config = replace(config, address_register=self.address_register(raw, path, config))
        return config

    def address_register(self, raw: Mapping[str, Any], path: Path_, device: DeviceConfig) -> int:
        """The address change's register: a holding register this device implements (protocol address, e.g. 0x07D0)."""
        address = self.integer(raw, path, "address_register", 0, ADDRESS_SPACE - 1)
        size = device.sizes.get("holding_registers", ADDRESS_SPACE)
        if address >= size:
            raise self.error((*path, "address_register"), f"{address} is outside the holding registers, "
                                                          f"addresses 0..{size - 1}")  # fmt: skip
        sparse = device.addresses().get("holding_registers")
        if sparse is not None and address not in sparse:
            raise self.error((*path, "address_register"), f"holding register {address} is not implemented: the "
                                                          "table is sparse, and no data point covers it")  # fmt: skip
        return address

    def sizes(self, data: object, path: Path_, layout: Layout) -> dict[str, int]:
        raw = self.table(data, path, TABLES)
        sizes = {key: self.integer(raw, path, key, 0, ADDRESS_SPACE) for key in raw}
        if layout is not Layout.SEPARATE:
            for name, shared in (("input_registers", "holding_registers"), ("discrete_inputs", "coils")):
                if name in sizes and sizes[name] != sizes.get(shared, ADDRESS_SPACE):
                    raise self.error((*path, name), f"the {layout} layout shares one table for {name} and {shared}: "
                                                    f"give only {shared}'s size")  # fmt: skip
        return sizes

    def sparse(self, raw: Mapping[str, Any], path: Path_, layout: Layout) -> frozenset[str]:
        if "sparse" not in raw:
            return frozenset()
        value = raw["sparse"]
        if value is True:
            names = set(TABLES)
        elif value is False:
            names = set()
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            unknown = [v for v in value if v not in TABLES]
            if unknown:
                raise self.error((*path, "sparse"), f"no table named {unknown[0]!r}: expected {', '.join(TABLES)}")
            names = set(value)
        else:
            raise self.error((*path, "sparse"), f"expected true, false or a list of tables such as "
                                                f"[\"holding_registers\"], got {value!r}")  # fmt: skip
        if layout is not Layout.SEPARATE:
            names = {shared_table(layout, n) for n in names}
        return frozenset(names)

    def identification(self, data: object, path: Path_) -> dict[int, str | bytes]:
        """FC43 objects by name, or by object id (``0x80 = "serial 0042"``: the private objects 0x80..0xFF)."""
        if not isinstance(data, dict):
            raise self.error(path, f"expected a table ([device.identification]), got {type(data).__name__}")
        named = {k: v for k, v in data.items() if not _OBJECT_ID.fullmatch(k)}
        self.table(named, path, (*OBJECT_NAMES, "0x80"))
        objects: dict[int, str | bytes] = {}
        for key in data:
            object_id = int(key, 16) if _OBJECT_ID.fullmatch(key) else OBJECT_NAMES[key]
            if object_id in objects:
                name = next(n for n, i in OBJECT_NAMES.items() if i == object_id)
                raise self.error((*path, key), f"object 0x{object_id:02X} is {name}: give it once")
            if isinstance(data[key], list):  # what is not UTF-8 text (a copy of a device made by reading it)
                value: str | bytes = self.byte_list(data, path, key, "a text, or a list of bytes")
            else:
                value = self.typed(data, path, key, str, "a text, or a list of bytes")
            if len(value.encode() if isinstance(value, str) else value) > MAX_OBJECT_LENGTH:
                raise self.error((*path, key), f"at most {MAX_OBJECT_LENGTH} bytes fit one FC43 response")
            objects[object_id] = value
        return objects

    def server_id(self, data: object, path: Path_) -> dict[str, Any]:
        """``[device.server_id]``: FC17 Report Server ID's answer (§6.13), DeviceConfig's keyword arguments.

        The server id's length is the device's choice, so it is one byte (``id = 17``) or a list of them; the
        additional data is text (UTF-8) or a list of bytes, as a device's documentation gives it.
        """
        raw = self.table(data, path, ("id", "running", "additional_data"))
        found: dict[str, Any] = {}
        if "id" in raw:
            if isinstance(raw["id"], int) and not isinstance(raw["id"], bool):
                found["server_id"] = bytes((self.integer(raw, path, "id", 0, 255),))
            else:
                found["server_id"] = self.byte_list(raw, path, "id", "a byte 0..255 or a list of them, such as "
                                                    "[0x11, 0x22]")  # fmt: skip
                if not found["server_id"]:
                    raise self.error((*path, "id"), "the server id needs a byte at least")
        if "running" in raw:
            found["running"] = self.typed(raw, path, "running", bool, "true (run indicator ON) or false (OFF)")
        if "additional_data" in raw:
            if isinstance(raw["additional_data"], str):
                found["additional_data"] = raw["additional_data"].encode()
            else:
                found["additional_data"] = self.byte_list(raw, path, "additional_data", "a text or a list of "
                                                          "bytes such as [0x01, 0xFF]")  # fmt: skip
        length = len(found.get("server_id", DEFAULT_SERVER_ID)) + len(found.get("additional_data", b""))
        if length > MAX_SERVER_ID:
            key = "additional_data" if "additional_data" in raw else "id"
            raise self.error((*path, key), f"server id and additional data are {length} bytes: at most "
                                           f"{MAX_SERVER_ID} fit an FC17 response")  # fmt: skip
        return found

    def byte_list(self, raw: Mapping[str, Any], path: Path_, key: str, what: str) -> bytes:
        values = self.typed(raw, path, key, list, what)
        if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255 for v in values):
            raise self.error((*path, key), f"expected {what}, got {values!r}")
        return bytes(values)

    def check_devices(self, devices: Sequence[DeviceConfig], raw: Sequence[Any], where: Path_ = ("device",)) -> None:
        """Unit ids and point names unique among `devices`, the tables at `where` (the file's, or an endpoint's)."""
        if len(devices) > 1:
            for i, device in enumerate(devices):
                if not device.unit_ids:
                    raise self.error(
                        (*where, i),
                        "with several devices each needs unit_id or unit_ids "
                        "(leave them out only for one device answering every unit id)",
                    )
        seen: dict[int, int] = {}
        names: dict[str, int] = {}
        for i, device in enumerate(devices):
            for unit_id in device.unit_ids:
                if unit_id in seen:
                    key = "unit_id" if "unit_id" in raw[i] else "unit_ids"
                    raise self.error((*where, i, key), f"unit id {unit_id} already belongs to device "
                                                         f"{seen[unit_id] + 1} of the file")  # fmt: skip
                seen[unit_id] = i
            for point in device.points:
                if point.name in names:
                    raise self.error(
                        (*where, i),
                        f"data point name {point.name!r} is used by device "
                        f"{names[point.name] + 1} too: names must be unique in the file",
                    )
                names[point.name] = i

    def check_serial_unit_ids(self, devices: Sequence[DeviceConfig], raw: Sequence[Any],
                              where: Path_ = ("device",)) -> None:  # fmt: skip
        """With serial lines or RTU over TCP every device's unit ids are serial unit ids too: 1..247."""
        for i, device in enumerate(devices):
            bad = [u for u in device.unit_ids if not MIN_UNIT_ID <= u <= MAX_SERIAL_UNIT_ID]
            if bad:
                key = "unit_id" if "unit_id" in raw[i] else "unit_ids"
                raise self.error((*where, i, key), f"unit id {bad[0]} is outside {MIN_UNIT_ID}.."
                                                     f"{MAX_SERIAL_UNIT_ID}, the unit ids of serial lines and RTU "
                                                     "over TCP, which this file serves")  # fmt: skip
