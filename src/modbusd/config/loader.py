"""Loading a device file: TOML (the standard library's tomllib) → checked settings (`schema.py`).

Every mistake is one `ConfigError` naming the file, the line, the key and what is wrong (`reader.py`).
"""

import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from modbusd.config.endpoints import EndpointTables, qualified
from modbusd.config.faults import FaultTables
from modbusd.config.gateway import GatewayConfig, GatewayTables
from modbusd.config.reader import MAX_NESTING, ConfigError, UnreadableFile, nesting_line, read_text
from modbusd.config.schema import Config, ServerConfig
from modbusd.config.services import ServiceTables


def load(path: str | Path) -> Config:
    """Read and check a device file; ConfigError on the first mistake."""
    name = str(path)
    try:
        text = read_text(path)
    except UnreadableFile as exc:
        raise ConfigError(name, None, "", f"cannot read the file: {exc}") from None
    return loads(text, name, base=Path(path).parent)


def loads(text: str, name: str = "<config>", *, base: Path | None = None) -> Config:
    """A device file from its text; `base` is where relative CSV paths start (the file's folder)."""
    deep = nesting_line(text)
    if deep is not None:
        raise ConfigError(name, deep, "", f"arrays or inline tables nested more than {MAX_NESTING} deep")
    try:
        data = tomllib.loads(text)
    except RecursionError:  # not expected past the check above; one line all the same
        raise ConfigError(name, None, "", f"arrays or inline tables nested more than {MAX_NESTING} deep") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(found.group(1)) if found else None
        reason = re.sub(r" ?\(at line.*\)", "", message)
        raise ConfigError(name, line, "", f"not valid TOML: {reason}") from None
    if not data:  # served as it is, it would be one device on 0.0.0.0 port 502: surely not what was meant
        raise ConfigError(name, None, "", "the device file is empty: it has no [server] or [[device]] table "
                                          "(modbusd init writes a commented example to start from)")  # fmt: skip
    return Loader(name, text, base or Path.cwd()).load(data)


TABLES = ("server", "http", "metrics", "mqtt", "events", "device", "roles", "template", "endpoint", "fault", "gateway")


class Loader(ServiceTables, EndpointTables, FaultTables, GatewayTables):
    """A whole device file: its tables in order, then the checks across them."""

    def load(self, data: dict[str, Any]) -> Config:
        self.table(data, (), TABLES)
        server = self.server(data.get("server", {}))
        plant_only = "endpoint" in data and "device" not in data
        if plant_only:  # the [server]'s own transports serve the top-level [[device]] tables: there are none
            server = self.plant_server(data.get("server", {}), server)
        http = self.http(data["http"]) if "http" in data else None
        raw_devices = data.get("device", [] if plant_only else [{}])
        if not isinstance(raw_devices, list):
            raise self.error(("device",), "devices are [[device]] tables (double brackets), one per device")
        devices = tuple(self.device(raw, ("device", i), server.layout) for i, raw in enumerate(raw_devices))
        self.check_devices(devices, raw_devices)
        if server.serves_serial:
            self.check_serial_unit_ids(devices, raw_devices)
        mqtt = self.mqtt(data["mqtt"]) if "mqtt" in data else None
        templates = self.templates(data.get("template", []), server.layout)
        endpoints = self.endpoints(data["endpoint"], templates, server.layout, server) if "endpoint" in data else ()
        subscribe = (*(s for d in devices for s in d.subscribe), *qualified(endpoints),
                     *self.events(data.get("events", {})))  # fmt: skip
        roles = None
        if "roles" in data:
            roles = self.roles(data["roles"], server.tls.no_role if server.tls is not None else None)
        faults = self.faults(data["fault"]) if "fault" in data else ()
        metrics = self.metrics(data["metrics"]) if "metrics" in data else None
        generators = self.check_generators({p.name for d in devices for p in d.points})
        gateway = self.gateway(data["gateway"], server.serial) if "gateway" in data else GatewayConfig()
        self.check_forwarded(gateway, {unit: i for i, d in enumerate(devices) for unit in d.unit_ids})
        return Config(self.name, server, http, devices, mqtt, subscribe, roles, endpoints, faults, metrics,
                      generators, gateway)  # fmt: skip

    def plant_server(self, raw: dict[str, Any], server: ServerConfig) -> ServerConfig:
        """A file of endpoints only: no Modbus/TCP of the [server]'s own, and none of its other transports."""
        for key in ("port", "udp", "rtu_over_tcp", "serial"):
            if key in raw:
                raise self.error(("server", key), "the [server]'s own transports serve the top-level [[device]] "
                                                  "tables, and this file has none: give the listener to an "
                                                  "[[endpoint]], or add the [[device]]")  # fmt: skip
        return replace(server, port=None)
