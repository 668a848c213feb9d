"""The settings of the services beside Modbus: the control API (``[http]``, ``--http``), ``GET /metrics`` on a port
of its own (``[metrics]``) and the MQTT bridge (``[mqtt]``, ``--mqtt``), with the rules the device file and the
command line share for them (the control API's token, its Host names, an MQTT URL and prefix).

`schema.py` holds the Modbus side's settings (and `Config`, which holds these); `services.py` reads these tables.
"""

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

DEFAULT_HTTP_PORT = 8020
DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883  # MQTT over TLS (IANA's secure-mqtt)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The control API (`modbusd.web`): off unless the file has [http] or the command line --http."""

    port: int = DEFAULT_HTTP_PORT
    host: str = "127.0.0.1"
    token: str | None = None
    allow_hosts: tuple[str, ...] = ()  # Host names clients may use besides loopback's and `host` (DNS rebinding)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``GET /metrics`` on a port of its own (`modbusd.web.MetricsApi`): off unless the file has [metrics] or the
    command line --metrics-port. Read-only, so no token: see docs/metrics.md."""

    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The MQTT bridge (`modbusd.mqtt`): off unless the file has [mqtt] or the command line --mqtt."""

    host: str = "localhost"
    port: int = DEFAULT_MQTT_PORT
    username: str | None = None
    password: str | None = None
    prefix: str = "modbusd"
    retain: bool = True
    qos: int = 1
    subscribe: tuple[str, ...] = ()  # more points to publish, "POINT[:TYPE]", besides the named co/hr points
    queue: int = 1000
    tls: bool = False  # mqtts://
    ca: str | None = None  # PEM file of the CAs the broker's certificate is checked against (default: the system's)
    cert: str | None = None  # PEM file of the bridge's client certificate (and its key, unless `key` is given)
    key: str | None = None  # PEM file of the client certificate's private key

    @property
    def url(self) -> str:
        """The broker's address, without the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_mqtt_url(text: str) -> dict[str, Any]:
    """``mqtt[s]://[user[:password]@]host[:port]`` → host, port, username, password, tls; ValueError saying what is
    wrong. ``mqtts`` is MQTT over TLS, port 8883 unless given."""
    url = text.strip()
    if "://" not in url:
        url = "mqtt://" + url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{text!r}: expected mqtt://host[:port], or mqtts://host[:port] for TLS")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ValueError(f"{text!r}: expected mqtt://[user:password@]host[:port], without a path")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"{text!r}: the port must be a number 1..65535") from None
    if not parsed.hostname:
        raise ValueError(f"{text!r}: no host: expected mqtt://host[:port]")
    tls = parsed.scheme == "mqtts"
    return {"host": parsed.hostname, "port": port or (DEFAULT_MQTTS_PORT if tls else DEFAULT_MQTT_PORT), "tls": tls,
            "username": urllib.parse.unquote(parsed.username) if parsed.username else None,
            "password": urllib.parse.unquote(parsed.password) if parsed.password is not None else None}  # fmt: skip


MIN_TOKEN_LENGTH = 16  # a bearer token shorter than this is refused: the control API can write anything


class HttpAccessError(ValueError):
    """The control API's token rule broken; `key` is what to fix: "token" (too short) or "host" (none given)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def check_http_access(host: str, token: str | None, token_option: str = "a token") -> None:
    """The one rule for the device file's [http] and the command line's --http-host/--http-token.

    The control API can write anything: any address beyond loopback needs a bearer token, and a token, wherever
    it binds, needs MIN_TOKEN_LENGTH characters. `token_option`: how the caller's user gives one.
    """
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise HttpAccessError("token", f"a bearer token needs at least {MIN_TOKEN_LENGTH} characters "
                                       f"(this one has {len(token)})")  # fmt: skip
    if host not in LOOPBACK and token is None:
        raise HttpAccessError("host", f"the control API can write anything: binding it to {host} (beyond this "
                                      f"machine) needs {token_option}")  # fmt: skip


_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*|[0-9a-f:.]*:[0-9a-f:.]*")


def check_host_name(name: object) -> str:
    """A name for the control API's Host check (`modbusd.web.checks`): a host name or address, no port, no *."""
    plain = name.strip().lower().removeprefix("[").removesuffix("]") if isinstance(name, str) else ""
    if not _HOST_NAME.fullmatch(plain):
        raise ValueError(f"{name!r} is not a host name such as plant.example or an IP address (no port, no *)")
    return plain


def check_mqtt_prefix(prefix: str) -> str:
    cleaned = prefix.strip().strip("/")
    if not cleaned or any(c in cleaned for c in "+#"):
        raise ValueError(f"the MQTT prefix must be a topic without + or #, such as modbusd, not {prefix!r}")
    return cleaned
