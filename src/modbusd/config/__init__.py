"""The device file: TOML (read with the standard library's tomllib) → frozen dataclasses → devices.

Imports the protocol and the model only; `Server.from_config` and the command line put it to use. The rooms:
`reader.py` (reading tables, errors as ``FILE:LINE: key: message``), `schema.py` (the settings and their defaults,
and building devices from them), `service_settings.py` (those of [http], [metrics] and [mqtt]), `services.py`,
`devices.py`, `points.py`, `ranges.py` (each table's reader), `loader.py` (`load`, `loads`), `writer.py` (devices
→ the text of a device file), `summary.py` (what `modbusd check` prints), and `example.toml` (`EXAMPLE`).

The file's shape (``modbusd init`` writes a commented example, `EXAMPLE`):

- ``[server]``: host, port (``false``: no Modbus/TCP), layout (the default for devices), max_connections,
  idle_timeout, quit_command, unknown_unit, listen_only (``false``: FC08/04 refused with exception 01). The other
  transports are sub-tables, each off unless present:
  ``[server.udp]`` and ``[server.rtu_over_tcp]`` (port), ``[[server.serial]]`` (one per serial port: device,
  framing, baudrate, bytesize, parity, stopbits).
- ``[server]`` also: name (the server name, the first word of event names, as in HSYCO's Modbus server), hook
  (a request hook, ``"package.module:function"``, imported when the file is loaded), hook_timeout, hook_forwarded
  (the hook sees the gateway's forwarded unit ids too), eventslog (a
  file for every client write and event, one JSON line each; relative to the file's folder; ``false``: none),
  eventslog_max_bytes and eventslog_files (its rotation).
- ``[server.tls]``: Modbus/TCP Security (port, cert, key, ca, no_role, allow); ``[server] allow`` and each
  endpoint's ``allow``: the client networks it accepts (docs/security.md).
- ``[roles.NAME]``: the roles-to-rights rules of Modbus/TCP Security (functions, read, write).
- ``[http]``: the control API (port, host, token); absent means off.
- ``[metrics]``: ``GET /metrics`` on a port of its own (port, host); absent means off.
- ``[mqtt]``: the MQTT bridge (url, prefix, retain, qos, subscribe, queue; ca, cert, key for ``mqtts://``,
  relative to the file's folder, loaded when the file is read); absent means off. Its subscribe is deprecated: the
  same list as [events] subscribe.
- ``[events]``: subscribe, the points whose client writes make events (``"POINT[:TYPE]"``), as a point's
  ``subscribe = true`` does.
- ``[[device]]`` (any number): unit_id or unit_ids (leave both out for one device answering every unit id),
  serial_unit_id (that one device's unit id on serial lines and RTU over TCP), address_register (the address
  change), layout, order (the default word order of its points), sparse, points_csv, ``[device.size]``,
  read_only, read_only_exception and allow (access rules), ``[device.identification]`` (FC43),
  ``[device.server_id]`` (FC17: id, running, additional_data), ``[device.values]`` (initial values of address
  ranges, `ranges.py`) and ``[[device.point]]`` (name, address, type, order, value, unit, comment, subscribe,
  generate) and ``[[device.generator]]`` (point, type, order, generate: `generators.py`).
- ``[[fault]]`` (any number): fault rules, tried in order (`faults.py`; docs/faults.md).
- ``[gateway]``: timeout, queue, in_flight, and ``[[gateway.forward]]`` (any number: units, target), the routes of
  ``--forward`` (`gateway.py`; docs/gateway.md).
"""

from importlib.resources import files

from modbusd.authorize import parse_network  # the allow lists' addresses, for the command line's --allow
from modbusd.config.faults import FaultSpec, parse_fault
from modbusd.config.gateway import GatewayConfig, Route, add_routes, parse_forward, parse_target, unit_id_list
from modbusd.config.loader import load, loads
from modbusd.config.reader import ConfigError
from modbusd.config.schema import (
    CSV_COLUMNS,
    DEFAULT_TLS_PORT,
    ENDPOINT_NAME,
    EVENTS_LOG_FILES,
    EVENTS_LOG_MAX_BYTES,
    HOOK_TIMEOUT,
    KEY_PASSWORD_ENV,
    SERIAL_KEYS,
    TRANSPORTS,
    UNKNOWN_UNIT_POLICIES,
    Config,
    DeviceConfig,
    EndpointConfig,
    GeneratorConfig,
    ServerConfig,
    Subscribe,
    TlsConfig,
    build_devices,
    import_hook,
    parse_simulate,
    parse_subscribe,
)
from modbusd.config.service_settings import (
    DEFAULT_HTTP_PORT,
    DEFAULT_MQTT_PORT,
    LOOPBACK,
    HttpAccessError,
    HttpConfig,
    MetricsConfig,
    MqttConfig,
    check_host_name,
    check_http_access,
    check_mqtt_prefix,
    parse_mqtt_url,
)
from modbusd.config.summary import summary
from modbusd.config.tls import TlsSettingError, mqtt_tls_context, server_tls_context

EXAMPLE = files(__name__).joinpath("example.toml").read_text(encoding="utf-8")
"""The commented device file `modbusd init` writes (and the README shows): a data file of this package."""

__all__ = [
    "CSV_COLUMNS", "DEFAULT_HTTP_PORT", "DEFAULT_MQTT_PORT", "DEFAULT_TLS_PORT", "ENDPOINT_NAME", "EVENTS_LOG_FILES",
    "EVENTS_LOG_MAX_BYTES", "EXAMPLE", "HOOK_TIMEOUT", "KEY_PASSWORD_ENV", "LOOPBACK", "SERIAL_KEYS",
    "TRANSPORTS", "UNKNOWN_UNIT_POLICIES", "Config", "ConfigError", "DeviceConfig", "EndpointConfig", "FaultSpec",
    "GatewayConfig", "GeneratorConfig", "HttpAccessError", "HttpConfig", "MetricsConfig", "MqttConfig", "Route",
    "ServerConfig", "Subscribe", "TlsConfig", "TlsSettingError", "add_routes", "build_devices", "check_host_name",
    "check_http_access", "check_mqtt_prefix", "import_hook", "load", "loads", "mqtt_tls_context", "parse_fault",
    "parse_forward", "parse_mqtt_url", "parse_network", "parse_simulate", "parse_subscribe", "parse_target",
    "server_tls_context", "summary", "unit_id_list",
]  # fmt: skip
