"""The ends of float and double through every reader a person uses: the HTTP control API, `modbusd get` and the
MQTT bridge, with a pymodbus client writing the registers and a real mosquitto broker, all on 127.0.0.1.

A client may write any bits to a float point (7F 7F FF FF is FLT_MAX); no reader may fail on them.
"""

from __future__ import annotations

import asyncio
import math
import struct

import aiohttp
import aiomqtt

from modbusd import Device, Server
from modbusd.model.values import DOUBLE, FLOAT, ValueType
from modbusd.mqtt import MqttBridge
from modbusd.web import HttpApi
from tests.conftest import Mosquitto, free_port
from tests.model.test_values import TEXTS
from tests.test_cli_config import modbusd_cli
from tests.test_mqtt import HOST, TIMEOUT, Watcher, modbus, until

ENDS: list[tuple[ValueType, str, str]] = [p.values for p in TEXTS if p.values[0] in (FLOAT, DOUBLE)]  # type: ignore[misc]  # (type, registers hex, text)
ADDRESS = {FLOAT: 100, DOUBLE: 200}  # where a client writes each type; the bridge publishes both
SET_ADDRESS = 300  # where MQTT sets land


def as_json(vtype: ValueType, hex_text: str, text: str) -> object:
    """What the JSON "value" holds: the number the registers hold (a float widened exactly), or the text where
    JSON has no number (NaN, infinities)."""
    number = struct.unpack(">f" if vtype == FLOAT else ">d", bytes.fromhex(hex_text))[0]
    return number if math.isfinite(number) else text


def same(a: object, b: object) -> bool:
    """Equal, and for floats equal to the bit (so 0.0 is not -0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return type(a) is type(b) and a == b


def registers(hex_text: str) -> list[int]:
    raw = bytes.fromhex(hex_text)
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def test_float_and_double_ends_are_shown_by_the_control_api_get_and_mqtt(broker: Mosquitto) -> None:
    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port())
        await server.start()
        api = await HttpApi.start(server, host=HOST, port=0)
        bridge = await MqttBridge.start(server, HOST, broker.port, points=["100.hr:float", "200.hr:double"],
                                        min_backoff=0.1)  # fmt: skip
        client = await modbus(server.port)
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            async with Watcher(broker.port, "modbusd/#") as watcher, \
                    aiomqtt.Client(HOST, broker.port, timeout=5) as publisher, \
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:  # fmt: skip
                for vtype, hex_text, text in ENDS:
                    topic, value = f"modbusd/1/hr/{ADDRESS[vtype]}", as_json(vtype, hex_text, text)
                    seen = len(watcher.on(topic))
                    written = await client.write_registers(ADDRESS[vtype], registers(hex_text), device_id=1)
                    assert not written.isError()
                    url = f"http://{HOST}:{api.port}/points/1.{ADDRESS[vtype]}.hr?type={vtype}"
                    async with http.get(url) as response:
                        assert response.status == 200, (text, await response.text())
                        answer = await response.json()
                    assert answer["text"] == text and same(answer["value"], value), (hex_text, answer)
                    await until(lambda: any(same(e["value"], value) for e in watcher.on(topic)[seen:]),  # noqa: B023  # awaited here
                                what=f"the event for {hex_text}")  # fmt: skip

                    seen = len(watcher.on(f"modbusd/1/hr/{SET_ADDRESS}"))
                    await publisher.publish(f"modbusd/1/hr/{SET_ADDRESS}/set", f"{vtype}:{text}", qos=1)
                    await until(lambda: len(watcher.on(f"modbusd/1/hr/{SET_ADDRESS}")) > seen,  # noqa: B023  # awaited here
                                what=f"the state after setting {text}")  # fmt: skip
                    state = watcher.on(f"modbusd/1/hr/{SET_ADDRESS}")[seen]
                    assert same(state["value"], value) and state["type"] == str(vtype), state
                    got = await client.read_holding_registers(SET_ADDRESS, count=vtype.registers, device_id=1)
                    assert got.registers == registers(hex_text), text
                assert bridge.errors == 0

                await client.write_registers(ADDRESS[FLOAT], registers("7F7FFFFF"), device_id=1)
                await client.write_registers(ADDRESS[DOUBLE], registers("4034000000000000"), device_id=1)  # 20.0
                for point, vtype, shown in (("1.100.hr", "float", "3.4028235e+38"), ("1.200.hr", "double", "20.0")):
                    result = await asyncio.to_thread(modbusd_cli, "get", "--http", str(api.port), point, vtype)
                    assert (result.returncode, result.stdout, result.stderr) == (0, f"{shown}\n", "")
        finally:
            client.close()
            await bridge.stop()
            await api.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))
