"""The device file's ``[[device]]`` tables: unit ids, layout, sizes, sparse tables, identification, points."""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from modbusd.config.generators import GeneratorTables
from modbusd.config.points import Found, PointTables
from modbusd.config.reader import Path_
from modbusd.config.schema import DeviceConfig, Subscribe, shared_table
from modbusd.model.device import TABLES, Layout
from modbusd.model.identification import MAX_OBJECT_LENGTH, OBJECT_NAMES
from modbusd.model.names import MAX_UNIT_ID
from modbusd.model.values import Order
from modbusd.protocol.codes import ADDRESS_SPACE, MIN_UNIT_ID
from modbusd.protocol.codes import MAX_UNIT_ID as MAX_SERIAL_UNIT_ID


class DeviceTables(PointTables, GeneratorTables):
    """Reads ``[[device]]`` tables, each with its points, and checks the devices of a file together."""

    def device(self, data: object, path: Path_, layout: Layout) -> DeviceConfig:
        raw = self.table(data, path, ("unit_id", "unit_ids", "serial_unit_id", "address_register", "layout",
                                      "order", "sparse", "size", "identification", "points_csv", "point",
                                      "generator"))  # fmt: skip
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
            serial_unit_id=serial_unit_id, subscribe=tuple(subscribe),
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

    def identification(self, data: object, path: Path_) -> dict[int, str]:
        raw = self.table(data, path, tuple(OBJECT_NAMES))
        objects: dict[int, str] = {}
        for key in raw:
            text = self.typed(raw, path, key, str, "a text")
            if len(text.encode()) > MAX_OBJECT_LENGTH:
                raise self.error((*path, key), f"at most {MAX_OBJECT_LENGTH} bytes fit one FC43 response")
            objects[OBJECT_NAMES[key]] = text
        return objects

    def check_devices(self, devices: Sequence[DeviceConfig], raw: Sequence[Any]) -> None:
        if len(devices) > 1:
            for i, device in enumerate(devices):
                if not device.unit_ids:
                    raise self.error(
                        ("device", i),
                        "with several devices each needs unit_id or unit_ids "
                        "(leave them out only for one device answering every unit id)",
                    )
        seen: dict[int, int] = {}
        names: dict[str, int] = {}
        for i, device in enumerate(devices):
            for unit_id in device.unit_ids:
                if unit_id in seen:
                    key = "unit_id" if "unit_id" in raw[i] else "unit_ids"
                    raise self.error(("device", i, key), f"unit id {unit_id} already belongs to device "
                                                         f"{seen[unit_id] + 1} of the file")  # fmt: skip
                seen[unit_id] = i
            for point in device.points:
                if point.name in names:
                    raise self.error(
                        ("device", i),
                        f"data point name {point.name!r} is used by device "
                        f"{names[point.name] + 1} too: names must be unique in the file",
                    )
                names[point.name] = i

    def check_serial_unit_ids(self, devices: Sequence[DeviceConfig], raw: Sequence[Any]) -> None:
        """With serial lines or RTU over TCP every device's unit ids are serial unit ids too: 1..247."""
        for i, device in enumerate(devices):
            bad = [u for u in device.unit_ids if not MIN_UNIT_ID <= u <= MAX_SERIAL_UNIT_ID]
            if bad:
                key = "unit_id" if "unit_id" in raw[i] else "unit_ids"
                raise self.error(("device", i, key), f"unit id {bad[0]} is outside {MIN_UNIT_ID}.."
                                                     f"{MAX_SERIAL_UNIT_ID}, the unit ids of serial lines and RTU "
                                                     "over TCP, which this file serves")  # fmt: skip
