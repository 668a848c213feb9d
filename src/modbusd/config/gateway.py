"""The device file's ``[gateway]``: its settings, and one ``[[gateway.forward]]`` table per route (docs/gateway.md).

A route's ``units`` and ``target`` are read by the grammar of ``--forward UNITS=TARGET`` (`protocol.gateway`), so
that the file and the option accept the same text. The gateway is the server's, as ``--forward`` is: its
settings apply to every route, as `Server(forward_timeout=…, forward_queue=…, forward_in_flight=…)` takes them,
and only the [server]'s own Modbus/TCP and UDP forward ([[endpoint]]s answer from their own devices).
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from modbusd.config.reader import Path_, Reader
from modbusd.protocol.gateway import (
    FORWARD_QUEUE,
    FORWARD_TIMEOUT,
    IN_FLIGHT,
    MAX_FORWARDED_UNIT_ID,
    MAX_IN_FLIGHT,
    Target,
    check_route,
    parse_forward,
    parse_target,
    parse_units,
    unit_id_list,
    unit_ranges,
)
from modbusd.protocol.serial_line import SerialLine

__all__ = ["GatewayConfig", "GatewayTables", "Route", "add_routes", "parse_forward", "parse_target", "unit_id_list"]

MAX_QUEUE = 1_000_000  # requests waiting for one downstream: past any real need, short of unbounded memory


@dataclass(frozen=True, slots=True)
class Route:
    """Unit ids forwarded to one target, and where the route was given (``FILE:LINE: gateway.forward[0]``, or
    ``--forward 1-3=tcp:…``), to name it when another route claims one of its unit ids."""

    units: tuple[int, ...]
    target: Target
    where: str = ""

    def __str__(self) -> str:
        return f"unit{'s' if len(self.units) > 1 else ''} {unit_ranges(self.units)} to {self.target}"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """``[gateway]`` (``--forward-timeout``, ``--forward-queue``, ``--forward-in-flight``) and its routes, the
    file's ``[[gateway.forward]]`` then the command line's ``--forward``."""

    routes: tuple[Route, ...] = ()
    timeout: float = FORWARD_TIMEOUT
    queue: int = FORWARD_QUEUE
    in_flight: int = IN_FLIGHT

    @property
    def forward(self) -> dict[int, Target]:
        """Unit id → target, as `Server(forward=…)` takes it (`add_routes` has made sure no unit id is twice)."""
        return {unit: route.target for route in self.routes for unit in route.units}


def overlap(routes: Sequence[Route], new: Route) -> tuple[int, Route] | None:
    """The first unit id of `new` that one of `routes` forwards already, and that route."""
    for route in routes:
        shared = sorted(set(route.units) & set(new.units))
        if shared:
            return shared[0], route
    return None


def add_routes(routes: Sequence[Route], more: Iterable[Route]) -> tuple[Route, ...]:
    """`routes` then `more` (the command line's after the file's); ValueError naming both routes when a unit id is
    forwarded twice, since one of the two would silently never be used."""
    found = list(routes)
    for new in more:
        clash = overlap(found, new)
        if clash is not None:
            unit, route = clash
            raise ValueError(f"{new.where}: unit id {unit} is forwarded by {route.where} already: a unit id has "
                             "one route")  # fmt: skip
        found.append(new)
    return tuple(found)


class GatewayTables(Reader):
    """Reads ``[gateway]`` and its ``[[gateway.forward]]`` tables."""

    def gateway(self, data: object, serial: Sequence[SerialLine]) -> GatewayConfig:
        """`serial`: the lines the [server] serves, which cannot also be forwarded to (a line has one master)."""
        path: Path_ = ("gateway",)
        raw = self.table(data, path, ("forward", "timeout", "queue", "in_flight"))
        options: dict[str, Any] = {}
        if "timeout" in raw:
            timeout = self.typed(raw, path, "timeout", (int, float), "a number of seconds")
            if not timeout > 0 or not math.isfinite(timeout):
                raise self.error((*path, "timeout"), f"{timeout} must be a number of seconds greater than 0")
            options["timeout"] = float(timeout)
        if "queue" in raw:
            options["queue"] = self.integer(raw, path, "queue", 0, MAX_QUEUE)
        if "in_flight" in raw:
            options["in_flight"] = self.integer(raw, path, "in_flight", 1, MAX_IN_FLIGHT)
        if "forward" in raw:
            options["routes"] = self.routes(raw["forward"], (*path, "forward"), serial)
        return GatewayConfig(**options)

    def routes(self, data: object, path: Path_, serial: Sequence[SerialLine]) -> tuple[Route, ...]:
        if not isinstance(data, list):
            raise self.error(path, "routes are [[gateway.forward]] tables (double brackets), one per target")
        routes: tuple[Route, ...] = ()
        for i, item in enumerate(data):
            where: Path_ = (*path, i)
            raw = self.table(item, where, ("units", "target"))
            for key, example in (("units", '"1-10"'), ("target", '"rtu:/dev/ttyUSB0,9600,8N1"')):
                if key not in raw:
                    raise self.error(where, f"a route needs {key}, such as {key} = {example}")
            units = self.units(raw, where)
            text = self.typed(raw, where, "target", str, 'a target such as "tcp:10.0.0.5:502" or "rtu:/dev/ttyUSB0"')
            try:
                target = parse_target(text)
                check_route(units, target)
            except ValueError as exc:
                raise self.error((*where, "target"), str(exc)) from None
            for j, line in enumerate(serial):
                if isinstance(target, SerialLine) and line.device == target.device:
                    raise self.error((*where, "target"), f"{target.device} is served by server.serial[{j}]: a line "
                                                         "has one master, so it cannot be forwarded to")  # fmt: skip
            route = Route(units, target, self.where(where))
            clash = overlap(routes, route)
            if clash is not None:
                unit, other = clash
                message = f"unit id {unit} is forwarded by gateway.forward[{routes.index(other)}] already"
                raise self.error((*where, "units"), f"{message}: a unit id has one route")
            routes = (*routes, route)
        return routes

    def check_forwarded(self, gateway: GatewayConfig, local: dict[int, int]) -> None:
        """`local`: unit id → the index of the [[device]] that answers it; none of them may be forwarded too."""
        for i, route in enumerate(gateway.routes):
            for unit in route.units:
                if unit in local:
                    raise self.error(("gateway", "forward", i, "units"), f"unit id {unit} is both a local device "
                                                                         f"(device[{local[unit]}]) and forwarded: "
                                                                         "choose one")  # fmt: skip

    def units(self, raw: dict[str, Any], where: Path_) -> tuple[int, ...]:
        """``units``: a text in ``--forward``'s UNITS syntax (``"0,1-10"``), one whole number, or a list of them."""
        value = raw["units"]
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list) and all(isinstance(u, int) and not isinstance(u, bool) for u in value):
            if not value or not all(0 <= u <= MAX_FORWARDED_UNIT_ID for u in value):
                raise self.error((*where, "units"), f"forwarded unit ids must be within 0..{MAX_FORWARDED_UNIT_ID}, "
                                                    f"got {raw['units']!r}")  # fmt: skip
            units = list(value)
        else:
            text = self.typed(raw, where, "units", str, 'unit ids such as "1-10", "0,3,5-7", 7 or [1, 2]')
            try:
                units = parse_units(text)
            except ValueError as exc:
                raise self.error((*where, "units"), str(exc)) from None
        if len(set(units)) != len(units):
            raise self.error((*where, "units"), f"a unit id appears twice in {raw['units']!r}")
        return tuple(units)
