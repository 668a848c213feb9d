"""The MQTT bridge: write events out to a broker, ``…/set`` messages in as local writes, in the server's own loop.

It uses only the public API (`modbusd`), as any program embedding modbusd could. aiomqtt (an asyncio client on
paho-mqtt) is an optional extra (``pip install 'modbusd[mqtt]'``): the server core needs nothing beyond the
standard library.

Topics, with the prefix ``modbusd`` (``--mqtt-prefix``):

- ``modbusd/<unit>/<table>/<address>``: one per data point, whatever unit id a client's request reached it by:
  ``<unit>`` is ``all`` for the device answering every unit id, and with one device per unit id the lowest unit
  id of the device; ``<table>`` ``co`` or ``hr``, ``<address>`` the protocol address (``100``), or ``100.3`` for
  bit 3 of a ``bits`` register. The payload is JSON:
  ``{"name", "value", "previous", "type", "client", "time", "request_id", "function"}``. Retained (by default), so
  that a newcomer subscribing later gets the last value at once. On every connection (the first and each
  reconnection) the bridge publishes every subscribed point's value as it is, with ``client`` null: a dashboard
  shows the state before any client writes.
- ``modbusd/<unit>/<table>/<address>/set``: a local write (``Server.write``), any table (``co``, ``di``, ``hr``,
  ``ir``). ``<unit>`` is a unit id the device answers, or ``all`` for the device answering every unit id. The
  payload is ``TYPE:VALUE`` (``float:21.5``), JSON ``{"type": T, "value": V}`` (``type`` optional), or a bare value
  in the address's default type (``1`` for a coil, ``1234`` for a register). The new value is then published on
  the point's topic (``client`` ``"mqtt"``). A bad payload is logged (one line) and published to ``modbusd/error``.

The bridge is a listener with its own bounded queue (`Server.add_listener`): while the broker is away, events wait
there (beyond the bound they are dropped and counted, as for any listener) and go out once it is back. It
reconnects with exponential back-off (0.5 s doubling to 30 s); a broker unreachable at start is not fatal. With
QoS 1 (the default) an event is published again after a reconnection when its acknowledgement did not come: at
least once. With an `ssl.SSLContext` (`tls`) it speaks MQTT over TLS (mqtts, port 8883).

Modules: `bridge` (the MqttBridge: connection, reconnection, publishing, carrying out sets), `payloads` (topic
levels, the JSON payloads, parsing ``…/set`` messages), `client` (the optional aiomqtt dependency and paho's log).
They log as ``modbusd.mqtt``, the one logger of the bridge.
"""

from modbusd.mqtt.bridge import (
    CONNECT_TIMEOUT,
    DEFAULT_PORT,
    DEFAULT_PREFIX,
    EVENT_QUEUE,
    MAX_BACKOFF,
    MIN_BACKOFF,
    PUBLISH_TIMEOUT,
    MqttBridge,
)
from modbusd.mqtt.client import MissingDependency
from modbusd.mqtt.payloads import ALL_UNITS, SET_TABLES, BadPayload, _parse_set

__all__ = [
    "ALL_UNITS",
    "CONNECT_TIMEOUT",
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "EVENT_QUEUE",
    "MAX_BACKOFF",
    "MIN_BACKOFF",
    "PUBLISH_TIMEOUT",
    "SET_TABLES",
    "BadPayload",
    "MissingDependency",
    "MqttBridge",
    "_parse_set",
]
