"""The MQTT bridge against a real mosquitto broker on a free loopback port, with pymodbus as the Modbus client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pymodbus.client import AsyncModbusTcpClient

from modbusd import Device, Server
from modbusd.config import ConfigError, loads, parse_mqtt_url, summary
from modbusd.mqtt import MqttBridge, _parse_set
from tests.conftest import Mosquitto, free_port

HOST = "127.0.0.1"
TIMEOUT = 10.0  # seconds any one wait may take


async def until(condition: Any, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class Watcher:
    """An aiomqtt client collecting every message under a prefix."""

    def __init__(self, port: int, topic: str, tls: ssl.SSLContext | None = None) -> None:
        self.port, self.topic, self.tls = port, topic, tls
        self.messages: list[tuple[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:  # the broker may be restarted under it: connect again
            try:
                async with aiomqtt.Client(HOST, self.port, timeout=5, tls_context=self.tls) as client:
                    await client.subscribe(self.topic, qos=1)
                    self._ready.set()
                    async for message in client.messages:
                        if str(message.topic).endswith("/set"):
                            continue  # what the test itself sends
                        self.messages.append((str(message.topic), json.loads(bytes(message.payload))))  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def on(self, topic: str) -> list[Any]:
        return [payload for t, payload in self.messages if t == topic]

    def written(self, topic: str) -> list[Any]:
        """What clients and sets wrote, without the state published at each connection (``client`` null)."""
        return [payload for payload in self.on(topic) if payload["client"] is not None]


async def modbus(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(HOST, port=port, timeout=5, retries=0)
    assert await client.connect()
    return client


def test_mqtt_client_write_is_published_retained_with_the_event(broker: Mosquitto) -> None:
    async def main() -> None:
        device = Device()
        server = Server(device, host=HOST, port=free_port(), name="plant")
        await server.start()
        bridge = await MqttBridge.start(server, HOST, broker.port, points=["100.hr:float", "5.co", "7.hr:bits"],
                                        min_backoff=0.1)  # fmt: skip
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            client = await modbus(server.port)
            try:
                async with Watcher(broker.port, "modbusd/#") as watcher:
                    assert not (await client.write_registers(100, [0x41AC, 0x0000], device_id=3)).isError()  # 21.5
                    assert not (await client.write_coil(5, True, device_id=3)).isError()
                    assert not (await client.write_register(7, 0x0400, device_id=3)).isError()  # HSYCO's bit 3
                    await until(lambda: watcher.written("modbusd/all/hr/7.3"), what="the bit's event")
                    event = watcher.written("modbusd/all/hr/100")[0]
                    assert event["value"] == 21.5 and event["previous"] == 0.0 and event["type"] == "float"
                    assert event["name"] == "plant.3.100.hr" and event["function"] == 16
                    assert event["client"].startswith("127.0.0.1") and isinstance(event["request_id"], int)
                    assert abs(event["time"] - time.time()) < 30
                    assert watcher.written("modbusd/all/co/5")[0]["value"] is True
                    bit = watcher.written("modbusd/all/hr/7.3")[0]
                    assert bit | {"time": 0, "client": ""} == {
                        "name": "plant.3.7.hr.3", "value": True, "previous": False, "type": "bits",
                        "client": "", "time": 0, "request_id": bit["request_id"], "function": 6}  # fmt: skip
                # retained: a newcomer gets the last value at once
                async with Watcher(broker.port, "modbusd/all/hr/100") as late:
                    await until(lambda: late.on("modbusd/all/hr/100"), what="the retained value")
                    assert late.on("modbusd/all/hr/100")[0]["value"] == 21.5
            finally:
                client.close()
        finally:
            await bridge.stop()
            await server.stop()
        assert bridge.published >= 3

    asyncio.run(asyncio.wait_for(main(), 40))


def test_mqtt_set_is_read_back_by_a_modbus_client(broker: Mosquitto) -> None:
    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port())
        await server.start()
        bridge = await MqttBridge.start(server, HOST, broker.port, min_backoff=0.1)
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            client = await modbus(server.port)
            try:
                async with Watcher(broker.port, "modbusd/#") as watcher, \
                        aiomqtt.Client(HOST, broker.port, timeout=5) as publisher:  # fmt: skip
                    await publisher.publish("modbusd/1/hr/10/set", "float:21.5", qos=1)
                    await publisher.publish("modbusd/all/ir/4/set", '{"type": "ushort", "value": 1234}', qos=1)
                    await publisher.publish("modbusd/all/co/3/set", "1", qos=1)
                    await publisher.publish("modbusd/all/di/2/set", '{"value": true}', qos=1)
                    await publisher.publish("modbusd/all/hr/20.2/set", "bit:1", qos=1)
                    await publisher.publish("modbusd/all/hr/11/set", "float:warm", qos=1)  # bad: logged, ignored
                    await until(lambda: watcher.on("modbusd/error"), what="the error")
                    await until(lambda: watcher.written("modbusd/all/hr/20.2"), what="the last set's state")
                    regs = await client.read_holding_registers(10, count=2, device_id=1)
                    assert regs.registers == [0x41AC, 0x0000]
                    assert (await client.read_input_registers(4, count=1, device_id=1)).registers == [1234]
                    assert (await client.read_coils(3, count=1, device_id=1)).bits[0] is True
                    assert (await client.read_discrete_inputs(2, count=1, device_id=1)).bits[0] is True
                    assert (await client.read_holding_registers(20, count=1, device_id=1)).registers == [
                        0x0200
                    ]  # bit 2
                    assert (await client.read_holding_registers(11, count=1, device_id=1)).registers == [0]
                    state = watcher.written("modbusd/all/hr/10")[0]  # set through unit 1: the register's one topic
                    assert state["value"] == 21.5 and state["client"] == "mqtt" and state["type"] == "float"
                    assert state["name"] == "modbusd.10.hr" and state["previous"] == 0.0
                    error = watcher.on("modbusd/error")[0]
                    assert error["topic"] == "modbusd/all/hr/11/set" and error["payload"] == "float:warm"
                    assert bridge.errors == 1
            finally:
                client.close()
        finally:
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 40))


def test_mqtt_events_queued_while_the_broker_is_away_are_delivered_after_reconnecting(broker: Mosquitto) -> None:
    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port())
        await server.start()
        bridge = await MqttBridge.start(server, HOST, broker.port, points=["0.hr"], min_backoff=0.1,
                                        max_backoff=0.5, queue=50)  # fmt: skip
        client = await modbus(server.port)
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            for value in range(1, 6):
                assert not (await client.write_register(0, value, device_id=1)).isError()
            await until(lambda: bridge.published >= 5, what="the first events")
            await asyncio.to_thread(broker.stop)
            await until(lambda: not bridge.connected, what="the bridge to notice")
            for value in range(6, 31):  # the Modbus side goes on; these wait in the bridge's queue
                assert not (await client.write_register(0, value, device_id=1)).isError()
            await asyncio.sleep(0.3)
            await asyncio.to_thread(broker.start)  # the same port
            async with Watcher(broker.port, "modbusd/#") as watcher:
                await until(lambda: any(p["value"] == 30 for p in watcher.written("modbusd/all/hr/0")),
                            what="event 30")  # fmt: skip
                await until(lambda: bridge.connections >= 2, what="a reconnection")
            await until(lambda: bridge.published >= 30, what="every queued event")
            assert bridge.counters()["dropped"] == 0
            # beyond the bound: dropped and counted, as for any listener
            await asyncio.to_thread(broker.stop)
            await until(lambda: not bridge.connected, what="the bridge to notice")
            for value in range(100, 180):
                assert not (await client.write_register(0, value, device_id=1)).isError()
            await until(lambda: bridge.counters()["dropped"] > 0, what="drops")
            assert server.counters()["events"]["dropped"] == bridge.counters()["dropped"]  # type: ignore[index]
        finally:
            client.close()
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 50))


def test_mqtt_an_unreachable_broker_at_start_is_not_fatal() -> None:
    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port())
        await server.start()
        bridge = await MqttBridge.start(server, HOST, free_port(), points=["0.hr"], min_backoff=0.05,
                                        max_backoff=0.1)  # fmt: skip
        try:
            client = await modbus(server.port)
            assert not (await client.write_register(0, 7, device_id=1)).isError()
            client.close()
            await asyncio.sleep(0.5)
            assert not bridge.connected and bridge.published == 0
            assert server.counters()["events"]["published"] == 1  # type: ignore[index]  # waiting in the bridge
        finally:
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_mqtt_set_payloads() -> None:
    assert _parse_set("float:21.5")[1] == 21.5
    assert _parse_set('{"type": "int", "value": -3}')[1] == -3
    assert _parse_set("  12 ") == (None, "12")
    for bad in ("", "{", '{"value": [1]}', '{"typo": 1}', "nosuchtype:1", '{"type": 3, "value": 1}'):
        with pytest.raises(ValueError):
            _parse_set(bad)


def test_mqtt_url_and_device_file_table() -> None:
    assert parse_mqtt_url("mqtt://bob:s%40cret@broker:1900") == {
        "host": "broker", "port": 1900, "username": "bob", "password": "s@cret", "tls": False}  # fmt: skip
    assert parse_mqtt_url("localhost")["port"] == 1883
    assert parse_mqtt_url("mqtts://broker") | {"host": ""} == {
        "host": "", "port": 8883, "username": None, "password": None, "tls": True}  # fmt: skip
    for bad in ("http://x", "mqtt://", "mqtt://h:99999", "mqtt://h/path"):
        with pytest.raises(ValueError):
            parse_mqtt_url(bad)
    config = loads('[mqtt]\nurl = "mqtt://h:1900"\nprefix = "plant/a"\nretain = false\nqos = 0\n'
                   'subscribe = ["100.hr:float"]\n', "f.toml")  # fmt: skip
    assert config.mqtt is not None
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.prefix, config.mqtt.retain, config.mqtt.qos) == (
        "h", 1900, "plant/a", False, 0)  # fmt: skip
    assert "mqtt bridge: mqtt://h:1900 prefix plant/a, qos 0; also 100.hr:float" in summary(config)
    cases = {
        '[mqtt]\nprefix = "x"\n': "f.toml:1: mqtt: the broker's url is missing",
        '[mqtt]\nurl = "mqtt://h"\nqos = 3\n': "f.toml:3: mqtt.qos: 3 is outside 0..2",
        '[mqtt]\nurl = "ftp://h"\n': "f.toml:2: mqtt.url:",
        '[mqtt]\nurl = "h"\nprefix = "a/#"\n': "f.toml:3: mqtt.prefix:",
        '[mqtt]\nurl = "h"\nsubscribe = ["100.hr:nosuch"]\n': "f.toml:3: mqtt.subscribe:",
        '[mqtt]\nurl = "h"\nretain = 1\n': "f.toml:3: mqtt.retain: expected true or false",
        '[mqtt]\nurl = "h"\nport = 1\n': "f.toml:3: mqtt.port: unknown key",
    }
    for text, message in cases.items():
        with pytest.raises(ConfigError) as caught:
            loads(text, "f.toml")
        assert str(caught.value).startswith(message), str(caught.value)


def retained(port: int, topic: str, settle: float = 0.5, tls: ssl.SSLContext | None = None) -> dict[str, Any]:
    """The retained messages under `topic` a newcomer gets, topic → payload (the last one of each topic)."""

    async def collect() -> dict[str, Any]:
        async with Watcher(port, topic, tls) as watcher:
            await asyncio.sleep(settle)  # retained messages come right after subscribing, before anything else
            return dict(watcher.messages)

    return asyncio.run(asyncio.wait_for(collect(), TIMEOUT + settle + 5))


def test_mqtt_one_topic_per_register_whatever_unit_id_reached_it(broker: Mosquitto) -> None:
    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port())
        await server.start()
        bridge = await MqttBridge.start(server, HOST, broker.port, points=["0.hr"], min_backoff=0.1)
        client = await modbus(server.port)
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            async with Watcher(broker.port, "modbusd/#") as watcher, \
                    aiomqtt.Client(HOST, broker.port, timeout=5) as publisher:  # fmt: skip
                assert not (await client.write_register(0, 11, device_id=1)).isError()
                assert not (await client.write_register(0, 77, device_id=7)).isError()
                await until(lambda: len(watcher.written("modbusd/all/hr/0")) == 2, what="both writes")
                assert [(p["value"], p["name"]) for p in watcher.written("modbusd/all/hr/0")] == [
                    (11, "modbusd.1.0.hr"), (77, "modbusd.7.0.hr")]  # fmt: skip  # the name keeps the unit id used
                await publisher.publish("modbusd/9/hr/0/set", "99", qos=1)  # a set through an alias
                await until(lambda: len(watcher.written("modbusd/all/hr/0")) == 3, what="the set's state")
                assert watcher.written("modbusd/all/hr/0")[2] | {"time": 0} == {
                    "name": "modbusd.0.hr", "value": 99, "previous": 77, "type": "ushort", "client": "mqtt",
                    "time": 0, "request_id": None, "function": None}  # fmt: skip
        finally:
            client.close()
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 40))
    held = retained(broker.port, "modbusd/#")
    assert {topic: payload["value"] for topic, payload in held.items()} == {"modbusd/all/hr/0": 99}


def test_mqtt_a_device_with_several_unit_ids_publishes_under_its_lowest(broker: Mosquitto) -> None:
    async def main() -> None:
        shared, other = Device(), Device()
        server = Server({2: shared, 1: shared, 5: other}, host=HOST, port=free_port())
        await server.start()
        bridge = await MqttBridge.start(server, HOST, broker.port, points=["2.0.hr", "5.0.hr"], min_backoff=0.1)
        client = await modbus(server.port)
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            async with Watcher(broker.port, "modbusd/#") as watcher, \
                    aiomqtt.Client(HOST, broker.port, timeout=5) as publisher:  # fmt: skip
                assert not (await client.write_register(0, 22, device_id=2)).isError()
                assert not (await client.write_register(0, 55, device_id=5)).isError()
                await until(lambda: watcher.written("modbusd/5/hr/0"), what="unit 5's write")
                await until(lambda: watcher.written("modbusd/1/hr/0"), what="unit 2's write, under 1")
                await publisher.publish("modbusd/2/hr/0/set", "23", qos=1)
                await until(lambda: len(watcher.written("modbusd/1/hr/0")) == 2, what="the set's state")
                assert [p["value"] for p in watcher.written("modbusd/1/hr/0")] == [22, 23]
                assert (await client.read_holding_registers(0, count=1, device_id=1)).registers == [23]
        finally:
            client.close()
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 40))
    held = retained(broker.port, "modbusd/#")
    assert {topic: payload["value"] for topic, payload in held.items()} == {"modbusd/1/hr/0": 23, "modbusd/5/hr/0": 55}


STATE_FILE = """
[server]
host = "127.0.0.1"
name = "plant"

[[device]]
[[device.point]]
name = "setpoint"
address = "100.hr"
type = "float"
order = "CDAB"
value = 21.5

[[device.point]]
name = "pump"
address = "5.co"
value = true

[[device.point]]
name = "label"
address = "200.hr"
type = "string:4"
value = "ab"
"""


def test_mqtt_state_is_published_at_connection_and_again_after_the_broker_restarts(broker: Mosquitto) -> None:
    """No client write at all: the device file's initial values, and a value its owner wrote, reach the broker."""
    config = loads(STATE_FILE, "plant.toml")

    async def main() -> None:
        server = Server.from_config(config, port=free_port())
        server.write("7.hr", 0x0400)  # bit 3 (HSYCO's numbering) of a bits register
        await server.start()
        bridge = await MqttBridge.start(server, HOST, broker.port, points=["7.hr:bits"], named_points=True,
                                        min_backoff=0.1, max_backoff=0.5)  # fmt: skip
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            first = await asyncio.to_thread(retained, broker.port, "modbusd/#")
            assert first["modbusd/all/hr/100"] == {
                "name": "plant.100.hr", "value": 21.5, "previous": None, "type": "float", "client": None,
                "time": first["modbusd/all/hr/100"]["time"], "request_id": None, "function": None}  # fmt: skip
            assert first["modbusd/all/co/5"]["value"] is True
            assert first["modbusd/all/hr/7.3"]["value"] is True and first["modbusd/all/hr/7.2"]["value"] is False
            assert len(first) == 2 + 16  # the string is not subscribable; a bits register is 16 topics
            assert bridge.states == 18 and bridge.published == 0  # no event was published
            await asyncio.to_thread(broker.stop)
            await until(lambda: not bridge.connected, what="the bridge to notice")
            server.write("setpoint", 30.5)  # while the broker is away: no event, the state at reconnection says it
            await asyncio.to_thread(broker.start)  # no persistence: what is retained now was published again
            await until(lambda: bridge.connections >= 2, what="a reconnection")
            again = await asyncio.to_thread(retained, broker.port, "modbusd/#")
            assert again.keys() == first.keys()
            assert again["modbusd/all/hr/100"]["value"] == 30.5 and again["modbusd/all/hr/100"]["client"] is None
            assert bridge.states == 36
        finally:
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_mqtt_migration_note_clears_an_old_retained_topic_with_its_mosquitto_pub_command(broker: Mosquitto) -> None:
    """docs/mqtt.md tells users of the old per-request topics to clear each with mosquitto_pub; its command, as
    printed there (pointed at the test's broker), leaves no retained message behind."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "mqtt.md").read_text(encoding="utf-8")
    command = re.search(r"`(mosquitto_pub -t (\S+) -r -n)`", page)
    assert command is not None, "docs/mqtt.md no longer shows the mosquitto_pub command"
    topic = command.group(2)

    async def retained() -> list[bytes]:
        """What a new subscriber gets at once on `topic`: the retained message, if any."""
        got: list[bytes] = []
        async with aiomqtt.Client(HOST, broker.port, timeout=5) as client:
            await client.subscribe(topic, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    async for message in client.messages:
                        got.append(bytes(message.payload))  # type: ignore[arg-type]  # bytes from the broker
        return got

    async def publish_old() -> None:
        async with aiomqtt.Client(HOST, broker.port, timeout=5) as client:
            await client.publish(topic, json.dumps({"value": 1}), qos=1, retain=True)

    asyncio.run(publish_old())
    assert asyncio.run(retained()) == [b'{"value": 1}']
    args = [*shlex.split(command.group(1)), "-h", HOST, "-p", str(broker.port)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 0, done.stderr
    assert asyncio.run(retained()) == []


def test_mqtt_set_the_state_file_cannot_store_is_an_error_message_and_the_value_stays(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """With --state on a disk that cannot take the write, a set is refused as a bad one is: on <prefix>/error, one
    warning, the value unchanged, and the bridge goes on (the state file logs its own error once)."""

    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port(), state=tmp_path / "s.state")
        await server.start()
        bridge = await MqttBridge.start(server, HOST, broker.port, min_backoff=0.1)
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            assert server.state is not None
            async with Watcher(broker.port, "modbusd/#") as watcher, \
                    aiomqtt.Client(HOST, broker.port, timeout=5) as publisher:  # fmt: skip
                server.state.store.connection.execute("PRAGMA query_only = ON")  # a file gone read-only
                await publisher.publish("modbusd/all/hr/10/set", "7", qos=1)
                await until(lambda: watcher.on("modbusd/error"), what="the error")
                error = watcher.on("modbusd/error")[0]
                assert error["topic"] == "modbusd/all/hr/10/set" and "the value is undone" in error["error"]
                assert server.read("10.hr") == 0 and bridge.errors == 1
                server.state.store.connection.execute("PRAGMA query_only = OFF")
                await publisher.publish("modbusd/all/hr/10/set", "8", qos=1)  # the bridge still sets
                await until(lambda: watcher.written("modbusd/all/hr/10"), what="the set's state")
                assert server.read("10.hr") == 8
        finally:
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 40))
