"""The device file's ``[[template]]`` and ``[[endpoint]]`` tables: a plant of listeners, each with its own devices.

A template is a device declared once (every ``[[device]]`` key, and a name). An endpoint is one listener (``tcp``,
``udp`` or ``rtu-over-tcp``) with a host, a port and ``[[endpoint.device]]`` tables, each a device of its own or
``template = "NAME"`` with keys of its own laid over the template's. ``count = N`` makes N instances, numbered from
1: the name gets the number (``meter`` → ``meter1`` …, or where ``{n}`` stands), the port ``"5020+"`` counts up
from 5020, the host ``"127.0.0.2+"`` counts up from 127.0.0.2 (or ``"127.0.0.2-127.0.0.101"`` gives the count),
``{n}`` in an identification text becomes the number, and ``[[endpoint.override]]`` changes some instances only.
Every instance's devices are built afresh: each has its own memory.
"""

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from modbusd.config.devices import DEVICE_KEYS, DeviceTables
from modbusd.config.reader import Path_
from modbusd.config.schema import ENDPOINT_NAME, TRANSPORTS, DeviceConfig, EndpointConfig, ServerConfig
from modbusd.model.device import Layout
from modbusd.protocol.codes import ADDRESS_SPACE

MAX_INSTANCES = 10_000  # instances of one [[endpoint]]: a large plant, and a bound on what a typo can ask for
NUMBER = "{n}"  # where the instance number goes in a name or an identification text
OVERRIDE_KEYS = ("instances", "device", "values", *(k for k in DEVICE_KEYS if k not in ("point", "points_csv")))

Listening = tuple[str, str, int]  # (tcp or udp, host, port): what two listeners may not share


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over`'s keys laid over `base`'s: identification and values key by key; unit_id and unit_ids replace
    each other (an instance moved to another unit id keeps no trace of the template's)."""
    out = dict(base)
    for key, value in over.items():
        if key in ("identification", "values") and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
            continue
        if key in ("unit_id", "unit_ids"):
            out.pop("unit_id", None)
            out.pop("unit_ids", None)
        out[key] = value
    return out


class EndpointTables(DeviceTables):
    """Reads ``[[template]]`` and ``[[endpoint]]`` tables."""

    def templates(self, data: object, layout: Layout) -> dict[str, dict[str, Any]]:
        """Each template's keys by name, checked once as a device at its own lines."""
        if not isinstance(data, list):
            raise self.error(("template",), "templates are [[template]] tables (double brackets), one per device")
        found: dict[str, dict[str, Any]] = {}
        for k, item in enumerate(data):
            path: Path_ = ("template", k)
            raw = self.table(item, path, ("name", *DEVICE_KEYS))
            if "name" not in raw:
                raise self.error(path, 'a template needs a name, such as name = "meter"')
            name = self.typed(raw, path, "name", str, 'a name such as "meter"')
            if not ENDPOINT_NAME.fullmatch(name):
                raise self.error((*path, "name"), f"{name!r}: start with a letter, then letters, digits, _ or -")
            if name in found:
                raise self.error((*path, "name"), f"a template named {name!r} is declared already")
            body = {key: value for key, value in raw.items() if key != "name"}
            since = len(self.pending)
            checked = self.device(body, path, layout)
            self.scope(since, None, {p.name for p in checked.points})
            found[name] = body
        return found

    def endpoints(self, data: object, templates: Mapping[str, dict[str, Any]], layout: Layout,
                  server: ServerConfig) -> tuple[EndpointConfig, ...]:  # fmt: skip
        if not isinstance(data, list):
            raise self.error(("endpoint",), "endpoints are [[endpoint]] tables (double brackets)")
        taken: dict[Listening, str] = {}
        for kind, port in (("tcp", server.port), ("tcp", server.rtu_over_tcp), ("udp", server.udp)):
            if port:
                taken[(kind, server.host, port)] = "the [server]'s own"
        found: list[EndpointConfig] = []
        names: set[str] = set()
        for i, item in enumerate(data):
            found.extend(self.endpoint(item, ("endpoint", i), templates, layout, taken=taken, names=names))
        return tuple(found)

    def endpoint(self, data: object, path: Path_, templates: Mapping[str, dict[str, Any]], layout: Layout, *,
                 taken: dict[Listening, str], names: set[str]) -> list[EndpointConfig]:  # fmt: skip
        raw = self.table(data, path, ("name", "count", "transport", "host", "port", "device", "override"))
        if "name" not in raw:
            raise self.error(path, 'an endpoint needs a name, such as name = "meter" (ENDPOINT/POINT names its points)')
        name = self.typed(raw, path, "name", str, 'a name such as "meter"')
        if not ENDPOINT_NAME.fullmatch(name.replace(NUMBER, "1")):
            raise self.error((*path, "name"), f"{name!r}: start with a letter, then letters, digits, _ or - "
                                              "(no dots or slashes: it is part of point and event names)")  # fmt: skip
        transport = self.choice(raw, path, "transport", TRANSPORTS) if "transport" in raw else "tcp"
        hosts = self.hosts(raw, path)
        count = self.integer(raw, path, "count", 1, MAX_INSTANCES) if "count" in raw else len(hosts)
        if len(hosts) > 1 and count != len(hosts):
            raise self.error((*path, "count"), f"count = {count}, but the host range has {len(hosts)} addresses")
        if len(hosts) == 1:
            hosts = self.numbered_hosts(hosts[0], path, count)
        ports = self.ports(raw, path, count)
        if "device" not in raw:
            raise self.error(path, 'an endpoint needs its devices: [[endpoint.device]] tables (template = "NAME", '
                                   "or a device's own keys)")  # fmt: skip
        entries = raw["device"]
        if not isinstance(entries, list) or not entries:
            raise self.error(
                (*path, "device"), "an endpoint's devices are [[endpoint.device]] tables (double brackets)"
            )
        overrides = self.overrides(raw.get("override", []), path, count, len(entries))
        found = []
        for n in range(1, count + 1):
            instance = name.replace(NUMBER, str(n)) if NUMBER in name else name + (str(n) if count > 1 else "")
            if instance in names:
                raise self.error((*path, "name"), f"an endpoint named {instance!r} is declared already")
            names.add(instance)
            kind = "udp" if transport == "udp" else "tcp"
            key = (kind, hosts[n - 1], ports[n - 1])
            holder = taken.get(key) if key[2] else None  # the same address and port: overlapping ones (0.0.0.0
            # and 127.0.0.1) are the bind's to refuse, with the message for a port in use
            if holder is not None:
                raise self.error((*path, "port"), f"port {key[2]} ({kind}) on {key[1]} is {holder} already: give "
                                                  f"{instance} another port or address"
                                                  + (' (port = "N+" counts up)' if count > 1 else ""))  # fmt: skip
            if key[2]:
                taken[key] = f"endpoint {instance}'s"
            since = len(self.pending)
            devices = tuple(
                self.instance_device(entry, (*path, "device", j), templates, layout, n=n,
                                     overrides=[body for which, d, body in overrides if n in which and d == j])
                for j, entry in enumerate(entries))  # fmt: skip
            self.scope(since, instance, {p.name for d in devices for p in d.points})
            self.check_devices(devices, entries, (*path, "device"))
            if transport == "rtu-over-tcp":
                self.check_serial_unit_ids(devices, entries, (*path, "device"))
            found.append(EndpointConfig(instance, devices, hosts[n - 1], ports[n - 1], transport))
        return found

    def hosts(self, raw: Mapping[str, Any], path: Path_) -> list[str]:
        """``host``: one address; ``"A-B"``, every address from A to B (the count)."""
        if "host" not in raw:
            return ["0.0.0.0"]
        text = self.typed(raw, path, "host", str, 'an address such as "127.0.0.1", "127.0.0.2+" or a range '
                                                  '"127.0.0.2-127.0.0.101"').strip()  # fmt: skip
        if "-" not in text or text.endswith("+"):
            return [text]
        first, _, last = text.partition("-")
        try:
            low, high = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
        except ValueError:
            return [text]  # a host name with a dash, such as plc-1.local
        if low.version != high.version or int(high) < int(low):
            raise self.error((*path, "host"), f"{text!r}: the range must go up, from one address to another "
                                              "of the same kind")  # fmt: skip
        if int(high) - int(low) >= MAX_INSTANCES:
            raise self.error((*path, "host"), f"{text!r} spans more than {MAX_INSTANCES} addresses")
        return [str(low + k) for k in range(int(high) - int(low) + 1)]

    def numbered_hosts(self, text: str, path: Path_, count: int) -> list[str]:
        """``"A+"``: A for the first instance, counting up; any other host: the same for every instance."""
        if not text.endswith("+"):
            return [text] * count
        try:
            first = ipaddress.ip_address(text[:-1].strip())
        except ValueError:
            raise self.error((*path, "host"), f'{text!r}: expected an IP address before the +, as in "127.0.0.2+"'
                             ) from None  # fmt: skip
        try:
            return [str(first + k) for k in range(count)]
        except ValueError:
            raise self.error((*path, "host"), f"{text!r} numbers {count} instances past the last IPv{first.version} "
                                              "address: start lower or make fewer") from None  # fmt: skip

    def ports(self, raw: Mapping[str, Any], path: Path_, count: int) -> list[int]:
        """``port``: a number (0: any free one, for each instance), or ``"N+"``: N, N+1, … one per instance."""
        if "port" not in raw:
            return [502] * count
        port = raw["port"]
        if isinstance(port, str) and port.strip().endswith("+") and port.strip()[:-1].strip().isdecimal():
            first = int(port.strip()[:-1])
            last = first + count - 1
            if first < 1 or last >= ADDRESS_SPACE:
                raise self.error((*path, "port"), f"{port!r} numbers {count} instance{'s' if count > 1 else ''} "
                                                  f"from port {first} to {last}, past 65535: start lower or make "
                                                  "fewer")  # fmt: skip
            return list(range(first, last + 1))
        if isinstance(port, str | bool) or not isinstance(port, int):
            raise self.error((*path, "port"), f'expected a port number 0..65535, or "N+" (N, N+1, … one per '
                                              f"instance), got {port!r}")  # fmt: skip
        return [self.integer(raw, path, "port", 0, 65535)] * count

    def overrides(
        self, data: object, path: Path_, count: int, devices: int
    ) -> list[tuple[set[int], int, dict[str, Any]]]:
        """``[[endpoint.override]]``: (instances it applies to, which device (0-based), the keys it changes)."""
        if not isinstance(data, list):
            raise self.error((*path, "override"), "overrides are [[endpoint.override]] tables (double brackets)")
        found = []
        for k, item in enumerate(data):
            where: Path_ = (*path, "override", k)
            raw = self.table(item, where, OVERRIDE_KEYS)
            if "instances" not in raw:
                raise self.error(where, "an override needs instances = [N, …]: the instances it changes, from 1")
            which = raw["instances"]
            which = [which] if isinstance(which, int) and not isinstance(which, bool) else which
            if not isinstance(which, list) or not all(
                    isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= count for n in which):  # fmt: skip
                raise self.error(
                    (*where, "instances"), f"expected instance numbers 1..{count}, got {raw['instances']!r}"
                )
            device = self.integer(raw, where, "device", 1, devices) - 1 if "device" in raw else 0
            found.append((set(which), device, {key: v for key, v in raw.items() if key not in ("instances", "device")}))
        return found

    def instance_device(self, entry: object, path: Path_, templates: Mapping[str, dict[str, Any]], layout: Layout, *,
                        n: int, overrides: Sequence[dict[str, Any]]) -> DeviceConfig:  # fmt: skip
        """One instance's device: its template, its own keys, then the overrides for instance `n`."""
        raw = self.table(entry, path, ("template", "values", *DEVICE_KEYS))
        body: dict[str, Any] = {}
        if "template" in raw:
            name = self.typed(raw, path, "template", str, 'a template\'s name, such as "meter"')
            if name not in templates:
                known = f"; templates: {', '.join(templates)}" if templates else "; declare it in a [[template]] table"
                raise self.error((*path, "template"), f"no template named {name!r}{known}")
            body = templates[name]
        body = _merged(body, {key: value for key, value in raw.items() if key != "template"})
        for over in overrides:
            body = _merged(body, over)
        if isinstance(body.get("identification"), dict):
            body["identification"] = {k: v.replace(NUMBER, str(n)) if isinstance(v, str) else v
                                      for k, v in body["identification"].items()}  # fmt: skip
        values = body.pop("values", {})
        if values:
            body["point"] = self.valued(values, body.get("point", []), path)
        config = self.device(body, path, layout)
        if config.allow is not None:  # the server's per-unit allow-lists are its default endpoint's unit ids
            raise self.error((*path, "allow"), "a device's allow-list is for the top-level [[device]] tables only: "
                                               "an endpoint's clients are those of [server] allow")  # fmt: skip
        return config

    def valued(self, values: object, points: object, path: Path_) -> list[Any]:
        """The points with ``values`` (point name → initial value) laid over their own ``value``."""
        if not isinstance(values, dict):
            raise self.error((*path, "values"), "expected a table of point name = initial value, such as "
                                                "values = { power = 230.5 }")  # fmt: skip
        points = list(points) if isinstance(points, list) else []
        names = {p.get("name"): i for i, p in enumerate(points) if isinstance(p, dict)}
        for key, value in values.items():
            if key not in names:
                raise self.error((*path, "values"), f"no data point named {key!r} in this device's [[point]] tables")
            points[names[key]] = {**points[names[key]], "value": value}
        return points


def qualified(endpoints: Sequence[EndpointConfig]) -> list[Any]:
    """Every endpoint's ``subscribe = true`` points, named ``ENDPOINT/NAME``."""
    return [replace(s, point=f"{e.name}/{s.point}") for e in endpoints for d in e.devices for s in d.subscribe]
