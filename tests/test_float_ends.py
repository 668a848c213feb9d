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
FIRST = 100  # case i is written by a client at FIRST + 4 i, and set over MQTT at SET + 4 i
SET = 300


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
    cases = [(vtype, hex_text, text, as_json(vtype, hex_text, text), 4 * i) for i, (vtype, hex_text, text) in
             enumerate(ENDS)]  # fmt: skip

    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port())
        await server.start()
        api = await HttpApi.start(server, host=HOST, port=0)
        points = [f"{FIRST + offset}.hr:{vtype}" for vtype, *_, offset in cases]
        bridge = await MqttBridge.start(server, HOST, broker.port, points=points, min_backoff=0.1)
        client = await modbus(server.port)
        try:
            await until(lambda: bridge.connected, what="the bridge's connection")
            async with Watcher(broker.port, "modbusd/#") as watcher, \
                    aiomqtt.Client(HOST, broker.port, timeout=5) as publisher, \
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:  # fmt: skip
                for _, hex_text, _, _, offset in cases:  # a client writes the bits
                    assert not (
                        await client.write_registers(FIRST + offset, registers(hex_text), device_id=1)
                    ).isError()
                for vtype, hex_text, text, value, offset in cases:  # the control API shows them
                    url = f"http://{HOST}:{api.port}/points/1.{FIRST + offset}.hr?type={vtype}"
                    async with http.get(url) as response:
                        assert response.status == 200, (text, await response.text())
                        answer = await response.json()
                    assert answer["text"] == text and same(answer["value"], value), (hex_text, answer)
                await until(
                    lambda: all(watcher.written(f"modbusd/all/hr/{FIRST + c[4]}") for c in cases), what="the events"
                )
                for vtype, hex_text, _, value, offset in cases:  # the bridge publishes them
                    (event,) = watcher.written(f"modbusd/all/hr/{FIRST + offset}")
                    assert same(event["value"], value) and event["type"] == str(vtype), (hex_text, event)

                for vtype, _, text, _, offset in cases:  # and takes their text back in a set
                    await publisher.publish(f"modbusd/1/hr/{SET + offset}/set", f"{vtype}:{text}", qos=1)
                await until(
                    lambda: all(watcher.written(f"modbusd/all/hr/{SET + c[4]}") for c in cases), what="the sets"
                )
                for vtype, hex_text, text, value, offset in cases:
                    (state,) = watcher.written(f"modbusd/all/hr/{SET + offset}")
                    assert same(state["value"], value) and state["type"] == str(vtype), (text, state)
                    got = await client.read_holding_registers(SET + offset, count=vtype.registers, device_id=1)
                    assert got.registers == registers(hex_text), text
                assert bridge.errors == 0

                shown_by_get = [
                    c for c in cases if c[2] in ("3.4028235e+38", "20.0")
                ]  # float FLT_MAX, 20.0, double 20.0
                for vtype, _, text, _, offset in shown_by_get:
                    point = f"1.{FIRST + offset}.hr"
                    result = await asyncio.to_thread(modbusd_cli, "get", "--http", str(api.port), point, str(vtype))
                    assert (result.returncode, result.stdout, result.stderr) == (0, f"{text}\n", "")
        finally:
            client.close()
            await bridge.stop()
            await api.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 90))
