"""The device file's generators: ``generate = "SPEC"`` on a ``[[device.point]]``, and ``[[device.generator]]``
tables (point, type, order, generate) for any address of the device, the read-only tables included.

Each spec is checked when the file is read (`modbusd check` reports it at its FILE:LINE): its syntax and
arguments, the target's type, a csv file (relative to the device file's folder), and the names in an expression,
which must be data points of the file. The server adds them when it is built (`Server.from_config`).

An ``[[endpoint]]``'s devices (and the ``[[template]]`` tables they come from) may have generators too: each instance's
generators drive its own points, named ``ENDPOINT/POINT``, and an expression there reads the points of the same
endpoint (`scope`). A template's generators are checked at the template's own lines, and made only in its instances.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modbusd.config.reader import Path_, Reader
from modbusd.config.schema import GeneratorConfig
from modbusd.model.names import InvalidName, Location, parse_address
from modbusd.model.points import NAME, Point, default_type
from modbusd.model.values import InvalidType, Order, ValueType
from modbusd.simulate import GeneratorError, check_target, limits, make
from modbusd.simulate.build import Context

GENERATOR_KEYS = ("point", "type", "order", "generate")


@dataclass(frozen=True, slots=True)
class Pending:
    """A generator read from the file, checked once every data point of the file is known."""

    config: GeneratorConfig
    location: Location
    vtype: ValueType
    path: Path_
    names: frozenset[str] | None = None  # the point names its expression may read; None: the file's top-level ones


class GeneratorTables(Reader):
    """Reads generators where the file gives them into `pending`; `check_generators` checks them against the file's
    points once all are read."""

    def __init__(self, name: str, text: str, base: Path) -> None:
        super().__init__(name, text, base)
        self.pending: list[Pending] = []

    def point_generator(self, raw: Mapping[str, Any], path: Path_, point: Point) -> Pending | None:
        if "generate" not in raw:
            return None
        spec = self.typed(raw, path, "generate", str, 'a generator such as "sine(offset=20, amplitude=5, period=60s)"')
        where = self.where((*path, "generate"))
        return Pending(GeneratorConfig(point.name, spec, None, None, where, str(self.base)), point.location,
                       point.type, (*path, "generate"))  # fmt: skip

    def generator_table(self, data: object, path: Path_, points: Collection[Point],
                        unit_ids: tuple[int, ...]) -> Pending:  # fmt: skip
        raw = self.table(data, path, GENERATOR_KEYS)
        for key in ("point", "generate"):
            if key not in raw:
                raise self.error(path, f"a [[device.generator]] needs {key}")
        text = str(self.typed(raw, path, "point", (str, int), "a data point's name or an address such as 30001"))
        spec = self.typed(raw, path, "generate", str, 'a generator such as "ramp(min=0, max=100, period=10s)"')
        named = {p.name: p for p in points}
        found = named.get(text)
        if found is None and NAME.fullmatch(text):
            raise self.error((*path, "point"), f"{text!r} is no data point of this device")
        if found is not None:
            location, point_text = found.location, found.name
        else:
            try:
                location = parse_address(text)
            except InvalidName as exc:
                raise self.error((*path, "point"), str(exc)) from None
            if location.unit_id is not None and unit_ids and location.unit_id not in unit_ids:
                raise self.error((*path, "point"), f"unit id {location.unit_id} is not this device's")
            location = Location(location.table, location.address, unit_ids[0] if unit_ids else None, location.bit)
            point_text = str(location)
        type_text = str(self.typed(raw, path, "type", str, "a type such as float")) if "type" in raw else None
        try:
            vtype = ValueType.parse(type_text) if type_text else found.type if found else default_type(location)
        except InvalidType as exc:
            raise self.error((*path, "type"), str(exc)) from None
        try:
            check_target(location, vtype)
        except GeneratorError as exc:
            raise self.error((*path, "type" if "type" in raw else "point"), str(exc)) from None
        order = None
        if "order" in raw:
            order = self.choice(raw, path, "order", [o.value for o in Order])
        where = self.where((*path, "generate"))
        config = GeneratorConfig(point_text, spec, type_text, order, where, str(self.base))
        return Pending(config, location, vtype, (*path, "generate"))

    def scope(self, since: int, endpoint: str | None, names: Collection[str]) -> None:
        """The generators read since `pending[since]` belong to one endpoint's (or, `endpoint` None, a template's)
        devices, whose data points are `names`: an endpoint's point becomes ``ENDPOINT/POINT``; a template's are
        checked now, against its own points, and dropped (each instance makes its own)."""
        found = [replace(item, names=frozenset(names)) for item in self.pending[since:]]
        del self.pending[since:]
        if endpoint is None:
            self._checked(found, set())
            return
        self.pending.extend(replace(item, config=replace(item.config, point=f"{endpoint}/{item.config.point}"))
                            for item in found)  # fmt: skip

    def check_generators(self, names: Collection[str]) -> tuple[GeneratorConfig, ...]:
        """Every generator made once (then dropped: the server makes its own), so that a mistake is found now."""
        self._checked(self.pending, names)
        return tuple(item.config for item in self.pending)

    def _checked(self, pending: list[Pending], names: Collection[str]) -> None:
        taken: dict[str, Path_] = {}
        for item in pending:
            if item.config.point in taken:
                raise self.error(item.path, f"{item.config.point} has a generator already")
            taken[item.config.point] = item.path
            known = names if item.names is None else item.names
            try:
                check_target(item.location, item.vtype)
                made = make(item.config.spec, Context(limits(item.vtype), self.base, is_point=known.__contains__))
                check_target(item.location, item.vtype, made.generator.count)
            except GeneratorError as exc:
                raise self.error(item.path, str(exc)) from None
