"""The MqttBridge: a listener publishing write events, the connection to the broker (reconnection with back-off,
the state published at each connection) and ``…/set`` messages carried out as local writes.

The class is one job (one broker connection and what flows over it) at about 280 lines, under the ~300 of issue 9.
"""

import asyncio
import contextlib
import json
import logging
import os
import ssl
import time
from collections.abc import Iterable
from typing import Any

from modbusd import (
    IllegalDataAddress,
    InvalidName,
    InvalidType,
    InvalidValue,
    Server,
    ServerDeviceFailure,
    Table,
    UnknownPoint,
    ValueType,
    format_value,
)
from modbusd.mqtt.client import _aiomqtt, _PahoLog
from modbusd.mqtt.payloads import ALL_UNITS, SET_TABLES, BadPayload, _json_value, _parse_set, _point, _text

log = logging.getLogger("modbusd.mqtt")  # the bridge's one logger, as when it was one module: users filter by it

DEFAULT_PORT = 1883
DEFAULT_PREFIX = "modbusd"
EVENT_QUEUE = 1000  # events the bridge may fall behind by (a broker away) before new ones are dropped and counted
MIN_BACKOFF = 0.5  # seconds before the first reconnection attempt; doubled after each failure …
MAX_BACKOFF = 30.0  # … up to this
PUBLISH_TIMEOUT = 5.0  # seconds a QoS 1 or 2 publish waits for the broker's acknowledgement, then it is retried
CONNECT_TIMEOUT = 10.0  # seconds a connection (TLS handshake and CONNACK included) may take before it is retried


class MqttBridge:
    """Publish the server's write events to an MQTT broker and carry out ``…/set`` messages.

    `await MqttBridge.start(server, host, ...)` (in the server's loop, after or before `server.start()`), then
    `await bridge.stop()`. `points`: data points to subscribe to (``Server.subscribe``), each a name or address,
    optionally ``:TYPE`` (``100.hr:float``); events of subscriptions made elsewhere are published too.
    """

    def __init__(self, server: Server, host: str, port: int = DEFAULT_PORT, *, username: str | None = None,
                 password: str | None = None, prefix: str = DEFAULT_PREFIX, retain: bool = True, qos: int = 1,
                 queue: int = EVENT_QUEUE, min_backoff: float = MIN_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 tls: ssl.SSLContext | None = None, connect_timeout: float = CONNECT_TIMEOUT) -> None:  # fmt: skip
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        prefix = prefix.strip("/")
        if not prefix or any(c in prefix for c in "+#"):
            raise ValueError(f"the MQTT prefix must be a topic without + or #, not {prefix!r}")
        self.server = server
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.prefix, self.retain, self.qos = prefix, retain, qos
        self.queue = queue
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.tls, self.connect_timeout = tls, connect_timeout
        self.published = 0  # events (and set results) the broker took
        self.states = 0  # points' values published at a connection (the state before any client write)
        self.errors = 0  # bad set messages
        self.connections = 0  # successful connections so far
        self._client: Any = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._subscriptions: list[Any] = []

    def __repr__(self) -> str:
        return f"<MqttBridge {self.where} prefix={self.prefix!r} connected={self.connected}>"

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @classmethod
    async def start(cls, server: Server, host: str, port: int = DEFAULT_PORT, *, points: Iterable[str] = (),
                    named_points: bool = False, **options: Any) -> "MqttBridge":  # fmt: skip
        """Subscribe `points` (and with `named_points` every named coil and holding register data point of its own
        type, skipping those whose type cannot be subscribed, such as strings), register the listener and start
        connecting (in the background: an unreachable broker is logged and retried). MissingDependency without
        aiomqtt; ValueError, UnknownPoint or InvalidName for a bad point in `points`."""
        _aiomqtt()
        bridge = cls(server, host, port, **options)
        try:
            if named_points:
                for point in server.data_points():
                    if point.location.table in (Table.COILS, Table.HOLDING_REGISTERS):
                        try:
                            bridge._subscriptions.append(server.subscribe(point.name))
                        except ValueError as exc:
                            log.info("MQTT: %s is not published: %s", point.name, exc)
            for text in points:
                point, _, type_text = text.partition(":")
                bridge._subscriptions.append(server.subscribe(point, type_text or None))
        except BaseException:
            bridge._unsubscribe()
            raise
        bridge._listener = server.add_listener(bridge._publish_event, queue=bridge.queue, name="mqtt")
        bridge._task = asyncio.get_running_loop().create_task(bridge._run(), name="modbusd mqtt")
        return bridge

    async def stop(self) -> None:
        """Stop publishing and disconnect; what is still queued is not published."""
        if self._listener is not None:
            self.server.remove_listener(self._listener)
            self._listener = None
        self._unsubscribe()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._connected.clear()
        self._client = None

    def _unsubscribe(self) -> None:
        for subscription in self._subscriptions:
            self.server.unsubscribe(subscription)
        self._subscriptions = []

    def counters(self) -> dict[str, object]:
        listener = self._listener
        return {"connected": self.connected, "connections": self.connections, "published": self.published,
                "states": self.states, "errors": self.errors, "queued": len(listener.queue) if listener else 0,
                "dropped": listener.dropped if listener else 0}  # fmt: skip

    # ---------------------------------------------------------------------------------------- connection

    async def _run(self) -> None:
        """Connect, and again whenever the broker goes, until stopped; meanwhile one race of aiomqtt is silenced.

        A broker that closes the connection right after the TLS handshake (TLS 1.3 refusing a missing client
        certificate) closes the socket before aiomqtt's connecting thread has the loop watch it for writing: the
        loop then logs an ERROR with a traceback for ``add_writer`` on a closed socket, at every retry. While the
        bridge is not connected, exactly that (an OSError or ValueError from a handle calling ``add_writer``) goes
        to DEBUG; everything else goes on to the loop's own handler, which is put back when the bridge stops."""
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def on_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            error = context.get("exception")
            if not self.connected and isinstance(error, OSError | ValueError) and "add_writer" in repr(
                    context.get("handle")):  # fmt: skip
                log.debug("MQTT: the connecting socket was closed already: %s", error)
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(on_loop_exception)
        try:
            await self._connect_forever()
        finally:
            if loop.get_exception_handler() is on_loop_exception:
                loop.set_exception_handler(previous)

    async def _connect_forever(self) -> None:
        aiomqtt = _aiomqtt()
        delay = self.min_backoff
        identifier = f"modbusd-{self.server.name}-{os.getpid()}-{id(self):x}"
        paho = _PahoLog()
        failures = 0
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, username=self.username, password=self.password,
                                          identifier=identifier, timeout=self.connect_timeout,
                                          tls_context=self.tls, logger=paho.logger) as client:  # fmt: skip
                    await client.subscribe(f"{self.prefix}/+/+/+/set", qos=self.qos)
                    if self.server.endpoints:  # <prefix>/<endpoint>/<unit>/<table>/<address>/set
                        await client.subscribe(f"{self.prefix}/+/+/+/+/set", qos=self.qos)
                    await self._publish_states(client)
                    self.connections += 1
                    log.info("MQTT: connected to %s%s, publishing under %s/", self.where,
                             " again" if self.connections > 1 else "", self.prefix)  # fmt: skip
                    delay = self.min_backoff
                    self._client = client
                    self._connected.set()
                    async for message in client.messages:
                        await self._on_message(client, message)
            except aiomqtt.MqttError as exc:
                was = self._connected.is_set()
                self._connected.clear()
                self._client = None
                failures = 1 if was else failures + 1  # one warning per outage, then quieter
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "MQTT: %s %s: %s; retrying in %g s (events wait in the queue, up to %d)",
                        "lost the broker at" if was else "cannot reach the broker at", self.where, paho.reason(exc),
                        delay, self.queue)  # fmt: skip
            finally:
                self._connected.clear()
                self._client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def _publish(self, topic: str, payload: str, *, retain: bool) -> None:
        """Publish once the broker is there; a publish the broker did not take is retried after reconnecting."""
        aiomqtt = _aiomqtt()
        while True:
            client = self._client
            if client is None:
                await self._connected.wait()
                continue
            try:
                await client.publish(topic, payload, qos=self.qos, retain=retain, timeout=PUBLISH_TIMEOUT)
            except aiomqtt.MqttError as exc:
                log.debug("MQTT: publishing to %s failed (%s); again once reconnected", topic, exc)
                await asyncio.sleep(self.min_backoff)
                continue
            self.published += 1
            return

    # ------------------------------------------------------------------------------------------- events

    def topic(self, unit: int | str, table: str, address: int, bit: int | None = None,
              endpoint: str | None = None) -> str:  # fmt: skip
        """``<prefix>/<unit>/<table>/<address>``, with ``<endpoint>/`` before the unit for an endpoint's point."""
        where = f"{unit}/{table}/{address}" + ("" if bit is None else f".{bit}")
        return f"{self.prefix}/{where}" if endpoint is None else f"{self.prefix}/{endpoint}/{where}"

    def unit_level(self, device: object, unit_id: int, endpoint: str | None = None) -> str:
        """The ``<unit>`` topic level of `device`, reached by a request for `unit_id`: one topic per register.

        A device answering every unit id is ``all``, the level its set topics always took; with one device per
        unit id, a device answering several (``unit_ids = [1, 2]``) is its lowest one. So a retained value
        is never split over aliases that name the same register. `endpoint`: the device's (None: the default)."""
        devices = self.server.devices if endpoint is None else self.server.endpoints[endpoint].devices
        if not devices:
            return ALL_UNITS
        units = [u for u, d in devices.items() if d is device]
        return str(min(units)) if units else str(unit_id)  # not served any more (an address change): as reached

    def _payload(self, name: str, vtype: ValueType, value: object, previous: object, *, client: str | None,
                 when: float, request_id: int | None = None, function: int | None = None) -> str:  # fmt: skip
        return json.dumps({"name": name, "value": _json_value(vtype, value), "previous": _json_value(vtype, previous),
                           "type": str(vtype), "client": client, "time": when, "request_id": request_id,
                           "function": function})  # fmt: skip

    async def _publish_event(self, event: Any) -> None:
        endpoint = event.endpoint
        device = (self.server.device_for(event.unit_id) if endpoint is None
                  else self.server.endpoints[endpoint].device_for(event.unit_id))  # fmt: skip
        unit = self.unit_level(device, event.unit_id, endpoint)
        topic = self.topic(unit, event.table.suffix, event.address, event.bit, endpoint)
        payload = self._payload(event.name, event.type, event.value, event.previous, client=event.client,
                                when=event.time, request_id=event.request_id, function=event.function)  # fmt: skip
        await self._publish(topic, payload, retain=self.retain)

    async def _publish_states(self, client: Any) -> None:
        """Every subscribed point's value now, retained, before the queued events: a dashboard connecting to the
        broker gets the state at once, not only after the first client write. ``client`` null marks it (no client
        wrote it), as do ``previous``, ``request_id`` and ``function`` null.

        Each subscription's own decoding (type, word order, one value per bit of a ``bits`` register) is reused by
        asking it for the events of a write that changed nothing."""
        now = time.time()
        states: dict[str, str] = {}
        for subscription in self.server.subscriptions:
            endpoint = subscription.endpoint
            unit = self.unit_level(subscription.device, subscription.unit_id or 0, endpoint)
            qualifier = "" if endpoint is None else f"{endpoint}/"
            held = subscription.capture()
            for event in subscription.events(held, held, (subscription.address, subscription.count),
                                             server=self.server.name, unit_id=0, client="", time=now, request_id=0,
                                             function=0):  # fmt: skip
                name = f"{self.server.name}.{qualifier}{_point(unit, event.table.suffix, event.address, event.bit)}"
                topic = self.topic(unit, event.table.suffix, event.address, event.bit, endpoint)
                states[topic] = self._payload(name, event.type, event.value, None, client=None, when=now)
        results = await asyncio.gather(*(client.publish(topic, payload, qos=self.qos, retain=self.retain,
                                                        timeout=PUBLISH_TIMEOUT)
                                         for topic, payload in states.items()), return_exceptions=True)  # fmt: skip
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.states += len(states)

    # ---------------------------------------------------------------------------------------------- set

    async def _on_message(self, client: Any, message: Any) -> None:
        topic = str(message.topic)
        try:
            await self._set(topic, message.payload)
        except BadPayload as exc:
            self.errors += 1
            log.warning("MQTT: ignored %s: %s", topic, exc)
            error = json.dumps({"topic": topic, "payload": _text(message.payload, lenient=True), "error": str(exc)})
            with contextlib.suppress(Exception):
                await client.publish(f"{self.prefix}/error", error, qos=0, retain=False, timeout=PUBLISH_TIMEOUT)

    async def _set(self, topic: str, raw: object) -> None:
        parts = topic[len(self.prefix) + 1:].split("/")  # fmt: skip
        endpoint = parts.pop(0) if len(parts) == 5 else None  # <endpoint>/<unit>/<table>/<address>/set
        unit, table, address = parts[0], parts[1], parts[2]
        if table not in SET_TABLES:
            raise BadPayload(f"unknown table {table!r}: expected co, di, hr or ir")
        number, _, bit = address.partition(".")
        if not number.isdecimal() or (bit and not bit.isdecimal()):
            raise BadPayload(f"{address!r} is not an address (100, or 100.3 for bit 3 of a register)")
        if unit != ALL_UNITS and not unit.isdecimal():
            raise BadPayload(f"{unit!r} is not a unit id (0..255) nor all")
        where = (table, int(number), int(bit) if bit else None)
        qualifier = "" if endpoint is None else f"{endpoint}/"
        point = qualifier + _point(unit, *where)
        vtype, value = _parse_set(_text(raw))
        try:
            device, located = self.server.locate(point)
            chosen = vtype or located.type
            if isinstance(value, bool) and chosen.kind.value != "bit":
                raise BadPayload(f"{chosen} takes a number or a text, not {json.dumps(value)}")
            if isinstance(value, float) and value.is_integer() and chosen.kind.value not in ("float", "double"):
                value = int(value)
            previous = self.server.read(point, chosen)
            self.server.write(point, value, chosen)
            now = self.server.read(point, chosen)
        except (UnknownPoint, IllegalDataAddress, InvalidName, InvalidType, InvalidValue, ValueError,
                TypeError) as exc:  # fmt: skip
            raise BadPayload(f"{type(exc).__name__}: {exc}") from None
        except ServerDeviceFailure as exc:  # --state on a full disk: undone, and logged once by the state file
            raise BadPayload(f"the state file could not store the write: {exc}") from None
        log.info("MQTT: %s set to %s", point, format_value(chosen, now))
        level = self.unit_level(device, int(unit) if unit.isdecimal() else 0, endpoint)  # the register's one topic
        state = self._payload(f"{self.server.name}.{qualifier}{_point(level, *where)}", chosen, now, previous,
                              client="mqtt", when=time.time())  # fmt: skip
        await self._publish(self.topic(level, *where, endpoint), state, retain=self.retain)
