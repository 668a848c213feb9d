"""The device file's ``[server]`` (and its transports, hook and events log), ``[http]``, ``[metrics]`` and ``[mqtt]``
tables."""

import math
from collections.abc import Mapping
from typing import Any

from modbusd.config.access import AccessTables
from modbusd.config.reader import Path_
from modbusd.config.schema import (
    SERIAL_KEYS,
    UNKNOWN_UNIT_POLICIES,
    ServerConfig,
    Subscribe,
    TlsConfig,
    import_hook,
    parse_subscribe,
)
from modbusd.config.service_settings import (
    HttpAccessError,
    HttpConfig,
    MetricsConfig,
    MqttConfig,
    check_host_name,
    check_http_access,
    check_mqtt_prefix,
    parse_mqtt_url,
)
from modbusd.config.tls import TlsSettingError, mqtt_tls_context, server_tls_context
from modbusd.model.device import Layout
from modbusd.model.points import NAME
from modbusd.protocol.serial_line import Framing, SerialLine


class ServiceTables(AccessTables):
    """Reads ``[server]``, ``[http]`` and ``[mqtt]``."""

    def server(self, data: object) -> ServerConfig:
        path: Path_ = ("server",)
        raw = self.table(data, path, ("host", "port", "layout", "max_connections", "idle_timeout", "quit_command",
                                      "max_connections_per_client",
                                      "unknown_unit", "udp", "rtu_over_tcp", "serial", "name", "hook",
                                      "hook_timeout", "hook_forwarded", "eventslog", "eventslog_max_bytes",
                                      "eventslog_files", "listen_only", "tls", "allow", "state",
                                      "state_sync"))  # fmt: skip
        options: dict[str, Any] = self.hooks(raw, path)
        allow: dict[str, tuple[str, ...]] = {}
        if "allow" in raw:
            allow["*"] = self.networks(raw, path)
        if "tls" in raw:
            options["tls"], found = self.tls(raw["tls"], (*path, "tls"))
            allow.update({"tls": found} if found is not None else {})
        if "host" in raw:
            options["host"] = self.typed(raw, path, "host", str, "an address such as 127.0.0.1 or 0.0.0.0")
        if "port" in raw:
            port = raw["port"]
            if port is False:
                options["port"] = None
            elif isinstance(port, int) and not isinstance(port, bool):
                options["port"] = self.integer(raw, path, "port", 0, 65535)
            else:
                raise self.error((*path, "port"), f"expected a port number 0..65535, or false for no Modbus/TCP, "
                                                  f"got {port!r}")  # fmt: skip
        for key, what in (("udp", "Modbus over UDP"), ("rtu_over_tcp", "RTU over TCP")):
            if key in raw:
                options[key], found = self.listener(raw[key], (*path, key), what)
                allow.update({key.replace("_", "-"): found} if found is not None else {})
        options["allow"] = allow
        if "serial" in raw:
            options["serial"] = self.serial(raw["serial"], (*path, "serial"))
        if "layout" in raw:
            options["layout"] = Layout(self.choice(raw, path, "layout", [x.value for x in Layout]))
        if "max_connections" in raw:
            options["max_connections"] = self.integer(raw, path, "max_connections", 1, 1_000_000)
        if "max_connections_per_client" in raw:
            options["max_connections_per_client"] = self.integer(raw, path, "max_connections_per_client", 1, 1_000_000)
        if "idle_timeout" in raw:
            timeout = self.typed(raw, path, "idle_timeout", (int, float), "a number of seconds")
            if not timeout > 0 or not math.isfinite(timeout):
                raise self.error((*path, "idle_timeout"), f"{timeout} must be a number of seconds greater than 0")
            options["idle_timeout"] = float(timeout)
        if "quit_command" in raw:
            word = self.typed(raw, path, "quit_command", str, "a word")
            if not word:
                raise self.error((*path, "quit_command"), "the quit command cannot be empty")
            options["quit_command"] = word
        if "listen_only" in raw:
            options["listen_only"] = self.typed(raw, path, "listen_only", bool, "true or false (false: FC08/04 "
                                                "Force Listen Only Mode is refused with exception 01)")  # fmt: skip
        if "unknown_unit" in raw:
            options["unknown_unit"] = self.choice(raw, path, "unknown_unit", UNKNOWN_UNIT_POLICIES)
        if "state" in raw:  # docs/state.md
            text = self.typed(raw, path, "state", str, 'a file such as "modbusd.state"')
            if not text.strip():
                raise self.error((*path, "state"), "the file name cannot be empty: leave state out to keep no state")
            options["state"] = str(self.base / text)
        if "state_sync" in raw:
            options["state_sync"] = self.choice(raw, path, "state_sync", ["full", "normal"])
        config = ServerConfig(**options)
        if config.port is None and not config.serves_serial and config.udp is None and config.tls is None:
            raise self.error((*path, "port"), "Modbus/TCP is off and no other transport is given "
                                              "([server.tls], [server.udp], [server.rtu_over_tcp], [[server.serial]]): "
                                              "nothing would be served")  # fmt: skip
        if config.rtu_over_tcp is not None and config.rtu_over_tcp == config.port != 0:
            raise self.error((*path, "rtu_over_tcp", "port"), f"port {config.port} is Modbus/TCP's already "
                                                              "([server] port): give RTU over TCP another "
                                                              "one")  # fmt: skip
        return config

    def hooks(self, raw: Mapping[str, Any], path: Path_) -> dict[str, Any]:
        """[server] name, hook, hook_timeout, eventslog and its rotation (HSYCO's Modbus server's options)."""
        options: dict[str, Any] = {}
        if "name" in raw:
            name = self.typed(raw, path, "name", str, 'a name such as "plant"')
            if not NAME.fullmatch(name) or "." in name:
                raise self.error((*path, "name"), f"{name!r}: start with a letter, then letters, digits, _ or - "
                                                  "(no dots: the name is the first part of event names)")  # fmt: skip
            options["name"] = name
        if "hook" in raw:
            spec = self.typed(raw, path, "hook", str, 'a function to import, "package.module:function"')
            try:
                import_hook(spec, str(self.base.absolute()))
            except ValueError as exc:
                raise self.error((*path, "hook"), str(exc)) from None
            options["hook"] = spec
        if "hook_timeout" in raw:
            timeout = self.typed(raw, path, "hook_timeout", (int, float), "a number of seconds")
            if not timeout > 0 or not math.isfinite(timeout):
                raise self.error((*path, "hook_timeout"), f"{timeout} must be a number of seconds greater than 0")
            options["hook_timeout"] = float(timeout)
        if "hook_forwarded" in raw:
            options["hook_forwarded"] = self.typed(raw, path, "hook_forwarded", bool, "true or false (true: the "
                                                   "hook sees the gateway's forwarded unit ids too)")  # fmt: skip
        if "eventslog" in raw:
            value = raw["eventslog"]
            if value is True:
                raise self.error((*path, "eventslog"), 'give the file to write, e.g. eventslog = "events.jsonl" '
                                                       "(false: no events log)")  # fmt: skip
            if value is not False:
                text = self.typed(raw, path, "eventslog", str, 'a file such as "events.jsonl", or false')
                if not text.strip():
                    raise self.error((*path, "eventslog"), "the file name cannot be empty (false: no events log)")
                options["eventslog"] = str(self.base / text)
        if "eventslog_max_bytes" in raw:
            options["eventslog_max_bytes"] = self.integer(raw, path, "eventslog_max_bytes", 1024, 1 << 40)
        if "eventslog_files" in raw:
            options["eventslog_files"] = self.integer(raw, path, "eventslog_files", 1, 1000)
        return options

    def events(self, data: object) -> tuple[Subscribe, ...]:
        """[events] subscribe: points whose client writes make events, ``"POINT[:TYPE]"`` each."""
        path: Path_ = ("events",)
        raw = self.table(data, path, ("subscribe",))
        return self.subscriptions(raw, path) if "subscribe" in raw else ()

    def subscriptions(self, raw: dict[str, Any], path: Path_) -> tuple[Subscribe, ...]:
        """A table's ``subscribe`` list ([events], and [mqtt]'s deprecated one), each ``"POINT[:TYPE]"`` checked."""
        where = (*path, "subscribe")
        points = raw["subscribe"]
        if not isinstance(points, list) or not all(isinstance(p, str) for p in points):
            raise self.error(where, f'expected a list of points such as ["100.hr:float", "setpoint"], got {points!r}')
        found: list[Subscribe] = []
        for text in points:
            try:
                found.append(parse_subscribe(text, self.where(where)))
            except ValueError as exc:
                raise self.error(where, str(exc)) from None
        return tuple(found)

    def listener(self, data: object, path: Path_, what: str) -> tuple[int, tuple[str, ...] | None]:
        """[server.udp] or [server.rtu_over_tcp]: the port, and its own allow-list (None: [server] allow's)."""
        raw = self.table(data, path, ("port", "allow"))
        if "port" not in raw:
            raise self.error(path, f"{what} needs a port (0: any free one)")
        return self.integer(raw, path, "port", 0, 65535), self.networks(raw, path) if "allow" in raw else None

    def tls(self, data: object, path: Path_) -> tuple[TlsConfig, tuple[str, ...] | None]:
        """[server.tls]: Modbus/TCP Security's port, files (relative to the device file's folder), the role of a
        certificate without one, and its own allow-list. The context is built now: a bad file is one line."""
        raw = self.table(data, path, ("port", "cert", "key", "ca", "no_role", "allow"))
        options: dict[str, Any] = {}
        if "port" in raw:
            options["port"] = self.integer(raw, path, "port", 0, 65535)
        for key, what in (("cert", "the server's certificate and chain"), ("key", "its key"),
                          ("ca", "the CA certificates of the clients")):  # fmt: skip
            if key in raw:
                text = self.typed(raw, path, key, str, f'a PEM file of {what}, such as "{key}.pem"')
                if not text.strip():
                    raise self.error((*path, key), "the file name cannot be empty")
                options[key] = str(self.base / text)
        if "no_role" in raw:
            options["no_role"] = self.typed(raw, path, "no_role", str, "a role's name, as in [roles.NAME]")
        config = TlsConfig(**options)
        try:
            server_tls_context(config)
        except TlsSettingError as exc:
            raise self.error((*path, exc.key) if exc.key in raw else path, str(exc)) from None
        return config, self.networks(raw, path) if "allow" in raw else None

    def serial(self, data: object, path: Path_) -> tuple[SerialLine, ...]:
        """[[server.serial]]: each line checked by `SerialLine`'s own rules, one key at a time, then together."""
        if not isinstance(data, list):
            raise self.error(path, "serial lines are [[server.serial]] tables (double brackets), one per port")
        lines: list[SerialLine] = []
        for i, item in enumerate(data):
            where: Path_ = (*path, i)
            raw = self.table(item, where, SERIAL_KEYS)
            if "device" not in raw:
                raise self.error(where, 'a serial line needs a device, such as "/dev/ttyUSB0"')
            device = self.typed(raw, where, "device", str, 'a serial port such as "/dev/ttyUSB0"')
            if not device:
                raise self.error((*where, "device"), 'the device cannot be empty: a serial port such as "/dev/ttyUSB0"')
            framing = self.choice(raw, where, "framing", [f.value for f in Framing]) if "framing" in raw else "rtu"
            settings: dict[str, Any] = {}
            for key in ("baudrate", "bytesize", "stopbits"):
                if key in raw:
                    settings[key] = self.typed(raw, where, key, int, "a whole number")
            if "parity" in raw:
                settings["parity"] = self.typed(raw, where, "parity", str, 'one of "E", "O", "N"')
            for key, value in settings.items():  # one at a time, so that the message names the key
                try:
                    SerialLine(device, framing, **{key: value})
                except ValueError as exc:
                    raise self.error((*where, key), str(exc)) from None
            try:
                line = SerialLine(device, framing, **settings)
            except ValueError as exc:  # a rule about several keys together
                raise self.error(where, str(exc)) from None
            for j, other in enumerate(lines):
                if other.device == device:
                    raise self.error((*where, "device"), f"{device} is served by server.serial[{j}] already")
            lines.append(line)
        return tuple(lines)

    def http(self, data: object) -> HttpConfig:
        path: Path_ = ("http",)
        raw = self.table(data, path, ("host", "port", "token", "allow_hosts"))
        options: dict[str, Any] = {}
        if "allow_hosts" in raw:
            names = self.typed(raw, path, "allow_hosts", list, 'a list of host names, such as ["plant.example"]')
            try:
                options["allow_hosts"] = tuple(check_host_name(name) for name in names)
            except ValueError as exc:
                raise self.error((*path, "allow_hosts"), str(exc)) from None
        if "host" in raw:
            options["host"] = self.typed(raw, path, "host", str, "an address such as 127.0.0.1")
        if "port" in raw:
            options["port"] = self.integer(raw, path, "port", 0, 65535)
        if "token" in raw:
            options["token"] = self.typed(raw, path, "token", str, "a text")
        config = HttpConfig(**options)
        try:
            check_http_access(config.host, config.token, "a token in [http]")
        except HttpAccessError as exc:
            raise self.error((*path, exc.key), str(exc)) from None
        return config

    def metrics(self, data: object) -> MetricsConfig:
        path: Path_ = ("metrics",)
        raw = self.table(data, path, ("port", "host"))
        if "port" not in raw:
            raise self.error(path, "the port is missing: port = 9502")
        options: dict[str, Any] = {"port": self.integer(raw, path, "port", 0, 65535)}
        if "host" in raw:
            options["host"] = self.typed(raw, path, "host", str, "an address such as 127.0.0.1")
        return MetricsConfig(**options)

    def mqtt(self, data: object) -> MqttConfig:
        path: Path_ = ("mqtt",)
        raw = self.table(data, path, ("url", "prefix", "retain", "qos", "subscribe", "queue", "ca", "cert", "key"))
        options: dict[str, Any] = {}
        if "url" not in raw:
            raise self.error(path, 'the broker\'s url is missing: url = "mqtt://localhost:1883"')
        try:
            options.update(parse_mqtt_url(self.typed(raw, path, "url", str, "a text such as mqtt://localhost:1883")))
        except ValueError as exc:
            raise self.error((*path, "url"), str(exc)) from None
        if "prefix" in raw:
            try:
                options["prefix"] = check_mqtt_prefix(self.typed(raw, path, "prefix", str, "a topic such as modbusd"))
            except ValueError as exc:
                raise self.error((*path, "prefix"), str(exc)) from None
        if "retain" in raw:
            options["retain"] = self.typed(raw, path, "retain", bool, "true or false")
        if "qos" in raw:
            options["qos"] = self.integer(raw, path, "qos", 0, 2)
        if "queue" in raw:
            options["queue"] = self.integer(raw, path, "queue", 1, 10_000_000)
        if "subscribe" in raw:  # checked now, with its line; read as [events] subscribe (`Config.subscriptions`)
            self.subscriptions(raw, path)
            options["subscribe"] = tuple(raw["subscribe"])
        for key, what in (("ca", "the CA certificates"), ("cert", "the client certificate"), ("key", "its key")):
            if key in raw:  # relative to the device file's folder, as the events log is
                text = self.typed(raw, path, key, str, f'a PEM file of {what}, such as "{key}.pem"')
                if not text.strip():
                    raise self.error((*path, key), "the file name cannot be empty")
                options[key] = str(self.base / text)
        config = MqttConfig(**options)
        try:
            mqtt_tls_context(config)  # a missing file or a key not matching its certificate: now, with its line
        except TlsSettingError as exc:
            raise self.error((*path, exc.key), str(exc)) from None
        return config

    # -------------------------------------------------------------------------------------------- device
