"""A plant's parts together: generators, fault rules, access rules, state and the control API on endpoints.

Each part was built with the default endpoint in mind; these tests serve them on `[[endpoint]]` listeners, with real
sockets on 127.0.0.1 and pymodbus's client, and check the combinations that are refused give one line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import struct
import time
from pathlib import Path

import pytest
from pymodbus import FramerType

from modbusd import Device, Endpoint, Server, config
from modbusd.config import ConfigError
from modbusd.protocol.errors import ServerDeviceFailure
from tests.conftest import Mosquitto, RawClient
from tests.test_cli import HOST
from tests.test_cli_config import http
from tests.test_endpoints import METER, connected, endpoint, plant, run

TANK = """
[[template]]
name = "tank"
unit_id = 1
[[template.point]]
name = "level"
address = "30001"
type = "float"
value = 10.0
[[template.point]]
name = "flow"
address = "30003"
type = "float"
generate = "expression('level * 2', every=10ms)"
[[template.generator]]
point = "30010"
generate = "counter(start=5, step=1, period=1s)"

[[endpoint]]
name = "tank"
count = 2
host = "127.0.0.1"
port = 0
[[endpoint.device]]
template = "tank"
[[endpoint.override]]
instances = [2]
values = { level = 20.0 }
"""


def floats(registers: list[int]) -> float:
    """A float from two registers, big-endian (ABCD), as the device file's points hold it."""
    return struct.unpack(">f", struct.pack(">HH", *registers))[0]


# ------------------------------------------------------------------------------------------ generators


def test_a_templates_generators_run_on_each_instance_over_its_own_points() -> None:
    server = plant(TANK)
    assert [g["id"] for g in server.simulator.list()] == [
        "tank1/flow", "tank1/1.9.ir", "tank2/flow", "tank2/1.9.ir"]  # fmt: skip

    async def main() -> list[tuple[float, list[int]]]:
        async with server:
            found = []
            for name in ("tank1", "tank2"):
                client = await connected(server.endpoints[name].port)
                try:
                    flow = await client.read_input_registers(2, count=2, device_id=1)
                    counter = await client.read_input_registers(9, count=1, device_id=1)
                finally:
                    client.close()
                found.append((floats(flow.registers), counter.registers))
            return found

    # each expression reads its own endpoint's level: 10 × 2 on tank1, 20 × 2 on tank2
    assert run(main) == [(20.0, [5]), (40.0, [5])]


def test_generators_on_endpoints_at_simulated_times_each_with_its_own_id() -> None:
    now = [0.0]
    server = Server(endpoints=[Endpoint("a", Device(), host=HOST, port=0), Endpoint("b", Device(), host=HOST, port=0)])
    server.simulator.clock = lambda: now[0]
    server.simulator.add("a/30001", "counter(start=100, step=1, period=1s)")
    server.simulator.add("b/30001", "counter(start=200, step=10, period=1s)")
    assert [g["id"] for g in server.simulator.list()] == ["a/0.ir", "b/0.ir"]  # one id each, not one for both
    now[0] = 3.0
    server.simulator.run_due()
    assert (server.read("a/30001"), server.read("b/30001")) == (103, 230)
    server.simulator.pause(server.simulator.list()[1]["id"])
    now[0] = 5.0
    server.simulator.run_due()
    assert (server.read("a/30001"), server.read("b/30001")) == (105, 230)


def test_an_endpoints_expression_reads_names_of_its_own_endpoint_only() -> None:
    text = TANK.replace("'level * 2'", "'missing * 2'")
    with pytest.raises(ConfigError, match=r"template\[0\]\.point\[1\]\.generate: .*unknown name 'missing'"):
        config.loads(text, "plant.toml")
    server = Server(Device(), port=0, endpoints=[Endpoint("a", Device(), host=HOST, port=0)])
    server.device.points["level"] = server.locate("30001")[1]  # the default endpoint's level is not a's
    with pytest.raises(ValueError, match="unknown name 'level'"):
        server.simulator.add("a/30001", "expression('level + 1')", "float")


def test_simulate_names_an_endpoints_point(tmp_path: Path) -> None:
    made = config.parse_simulate("tank2/30020:float=sine(offset=5, amplitude=0, period=60s)")
    loaded = config.loads(TANK, "plant.toml", base=tmp_path)
    server = Server.from_config(dataclasses.replace(loaded, generators=(*loaded.generators, made)))
    assert server.read("tank2/1.19.ir", "float") == 5.0
    assert server.read("tank1/1.19.ir", "float") == 0.0
    assert "tank2/19.ir" in [g["id"] for g in server.simulator.list()]


def test_the_control_api_lists_and_pauses_an_endpoints_generator() -> None:
    web = pytest.importorskip("modbusd.web")
    server = plant(TANK)

    async def main() -> None:
        async with server:
            api = await web.HttpApi.start(server, host=HOST, port=0)
            base = f"http://{HOST}:{api.port}"
            try:
                listed = await asyncio.to_thread(http, "GET", f"{base}/generators")
                one = await asyncio.to_thread(http, "GET", f"{base}/generators/tank2/flow")
                paused = await asyncio.to_thread(http, "POST", f"{base}/generators/tank2/flow/pause")
                added = await asyncio.to_thread(http, "POST", f"{base}/generators",
                                                {"point": "tank1/40001", "generate": "counter(start=7)"})  # fmt: skip
                removed = await asyncio.to_thread(http, "DELETE", f"{base}/generators/tank1/0.hr")
            finally:
                await api.stop()
            assert [g["id"] for g in listed[1]["generators"]][:2] == ["tank1/flow", "tank1/1.9.ir"]
            assert one[0] == 200 and one[1]["value"] == 40.0
            assert paused[0] == 200 and paused[1]["state"] == "paused"
            assert added[0] == 201 and added[1]["id"] == "tank1/0.hr" and server.read("tank1/40001") == 7
            assert removed == (200, {"removed": "tank1/0.hr"})

    run(main)


# ------------------------------------------------------------------------------------------ faults


def test_fault_rules_apply_on_endpoints_and_endpoint_picks_one(tmp_path: Path) -> None:
    log_file = tmp_path / "events.jsonl"
    text = METER.replace('name = "plant"', f'name = "plant"\neventslog = "{log_file}"') + endpoint(
        "meter", 0, HOST, "count = 3\n")  # fmt: skip
    server = plant(text)
    server.faults.add("endpoint=meter2 fc=3 action=exception:06")
    server.faults.add("endpoint=meter3,nothing* fc=4 action=exception:04")
    everywhere = server.faults.add("fc=6 action=exception:0A")

    async def main() -> list[object]:
        async with server:
            found: list[object] = []
            for n in (1, 2, 3):
                client = await connected(server.endpoints[f"meter{n}"].port)
                try:
                    read = await client.read_holding_registers(0, count=1, device_id=1)
                    inputs = await client.read_input_registers(0, count=1, device_id=1)
                    write = await client.write_register(0, 1, device_id=1)
                finally:
                    client.close()
                found.append((getattr(read, "exception_code", None) if read.isError() else read.registers,
                              getattr(inputs, "exception_code", 0) if inputs.isError() else 0,
                              write.exception_code if write.isError() else None))  # fmt: skip
            return found

    assert run(main) == [([7], 0, 0x0A), (6, 0, 0x0A), ([7], 4, 0x0A)]
    assert everywhere.applied == 3
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    faults = [(r.get("endpoint"), r["action"]) for r in records if r["kind"] == "fault"]
    assert ("meter2", "exception:06") in faults and ("meter3", "exception:04") in faults


def test_a_rule_for_an_endpoint_never_matches_the_default_one() -> None:
    server = Server(Device(), host=HOST, port=0, endpoints=[Endpoint("plc", Device(), host=HOST, port=0)])
    rule = server.faults.add("endpoint=plc action=exception:06")

    async def main() -> tuple[object, object]:
        async with server:
            own, other = await connected(server.port), await connected(server.endpoints["plc"].port)
            try:
                return ((await own.read_holding_registers(0, count=1)).registers,
                        (await other.read_holding_registers(0, count=1)).exception_code)  # fmt: skip
            finally:
                own.close()
                other.close()

    assert run(main) == ([0], 6)
    assert rule.applied == 1
    assert "endpoint=plc" in server.faults.counters()[0]["rule"]


def test_a_delayed_endpoint_does_not_hold_up_another() -> None:
    server = plant(METER + endpoint("meter", 0, HOST, "count = 2\n"))
    server.faults.add("endpoint=meter1 action=delay:3s")

    async def main() -> tuple[float, list[int], float]:
        async with server:
            slow, fast = await connected(server.endpoints["meter1"].port), await connected(
                server.endpoints["meter2"].port)  # fmt: skip
            try:
                started = time.monotonic()
                late = asyncio.ensure_future(slow.read_holding_registers(0, count=1, device_id=1))
                await asyncio.sleep(0.05)
                answered = await fast.read_holding_registers(0, count=1, device_id=1)
                quick = time.monotonic() - started
                await late
                return quick, answered.registers, time.monotonic() - started
            finally:
                slow.close()
                fast.close()

    quick, registers, slow = run(main)  # type: ignore[misc]  # a tuple
    assert registers == [7] and quick < 2.0 <= slow


def test_endpoint_in_a_fault_rule_is_checked() -> None:
    with pytest.raises(ValueError, match="endpoint: 'me/ter' is not an endpoint's name"):
        Server(Device(), port=0).faults.add("endpoint=me/ter action=silent")


# ------------------------------------------------------------------------------------------ access rules


def test_the_servers_allow_list_guards_every_endpoints_listener() -> None:
    meters = [Endpoint(f"m{n}", Device(), host=HOST, port=0) for n in (1, 2)]
    server = Server(endpoints=meters, allow=["192.0.2.0/24"])
    server.start_thread()
    try:
        client = RawClient(server.endpoints["m2"].port)
        try:
            client.send(RawClient.frame(1, 1, "03 0000 0001"))
            assert client.closed_by_peer(10.0)  # closed as it was accepted: no answer
        finally:
            client.close()
    finally:
        server.stop_thread()
    assert server.counters()["security"]["refused_clients"] == 1


def test_an_allow_list_that_holds_the_client_lets_it_in_on_an_endpoint() -> None:
    server = Server(endpoints=[Endpoint("m", Device(), host=HOST, port=0)], allow=["127.0.0.0/8"])

    async def main() -> list[int]:
        async with server:
            client = await connected(server.endpoints["m"].port)
            try:
                return (await client.read_holding_registers(0, count=1)).registers
            finally:
                client.close()

    assert run(main) == [0]


def test_read_only_ranges_of_an_endpoints_device_refuse_client_writes() -> None:
    text = METER.replace("unit_id = 1\n", 'unit_id = 1\nread_only = ["0-9.hr"]\n', 1) + endpoint("m", 0)
    server = plant(text)

    async def main() -> tuple[int, list[int]]:
        async with server:
            client = await connected(server.endpoints["m"].port)
            try:
                refused = await client.write_register(0, 99, device_id=1)
                allowed = await client.write_register(10, 99, device_id=1)
                assert not allowed.isError()
                return refused.exception_code, (await client.read_holding_registers(0, count=1, device_id=1)).registers
            finally:
                client.close()

    assert run(main) == (2, [7])
    server.write("m/setpoint", 8)  # the owner still writes it
    assert server.read("m/setpoint") == 8


def test_a_devices_allow_list_on_an_endpoint_is_one_line() -> None:
    text = METER + endpoint("m", 0) + 'allow = ["127.0.0.1"]\n'
    with pytest.raises(ConfigError) as caught:
        config.loads(text, "plant.toml")
    assert str(caught.value).startswith("plant.toml:")
    assert "endpoint[0].device[0].allow: a device's allow-list is for the top-level [[device]] tables only" in str(
        caught.value)  # fmt: skip


# ------------------------------------------------------------------------------------------ state


STATEFUL = METER.replace('name = "plant"', 'name = "plant"\nstate = "plant.state"') + endpoint(
    "meter", 0, HOST, "count = 2\n") + endpoint("line", 0, HOST, 'transport = "rtu-over-tcp"\n')  # fmt: skip


def test_state_keeps_each_endpoints_writes_and_gives_them_back_to_that_endpoint(tmp_path: Path) -> None:
    """Over Modbus/TCP, RTU over TCP (held answers of a serial line's kind) and the owner's `Server.write`: each
    endpoint's value at the same address, back on that endpoint alone after a restart."""
    server = plant(STATEFUL, tmp_path)

    async def main() -> None:
        async with server:
            for n, name in enumerate(("meter1", "meter2", "line"), 1):
                framer = {"framer": FramerType.RTU} if name == "line" else {}
                client = await connected(server.endpoints[name].port, **framer)
                try:
                    assert not (await client.write_register(0, 10 * n, device_id=1)).isError()
                    assert not (await client.write_coils(3, [True, bool(n & 1)], device_id=1)).isError()
                finally:
                    client.close()
            server.write("meter2/power", 9.5)  # stored before it returns

    run(main)
    again = plant(STATEFUL, tmp_path)
    assert [again.read(f"{name}/setpoint") for name in ("meter1", "meter2", "line")] == [10, 20, 30]
    assert [again.read(f"{name}/4.co") for name in ("meter1", "meter2", "line")] == [True, False, True]
    assert (again.read("meter1/power"), again.read("meter2/power")) == (1.5, 9.5)
    assert again.state is not None
    again.state.stop()
    with sqlite3.connect(tmp_path / "plant.state") as db:
        keys = sorted(key for (key,) in db.execute("SELECT DISTINCT device FROM written"))
    db.close()
    assert keys == ["line/1", "meter1/1", "meter2/1"]


def test_a_write_on_an_endpoint_the_state_file_cannot_store_is_undone_and_refused_with_04(tmp_path: Path) -> None:
    """Exception 04 (Server Device Failure) over the endpoint's Modbus/TCP and RTU over TCP, the owner told too,
    the write undone, and the events log's second record naming the endpoint (docs/state.md)."""
    log_file = tmp_path / "events.jsonl"
    server = plant(STATEFUL.replace('name = "plant"', f'name = "plant"\neventslog = "{log_file}"'), tmp_path)
    assert server.state is not None

    async def main() -> None:
        async with server:
            server.state.store.connection.execute("PRAGMA query_only = ON")  # SQLITE_READONLY from now on
            tcp = await connected(server.endpoints["meter2"].port)
            rtu = await connected(server.endpoints["line"].port, framer=FramerType.RTU)
            try:
                for client in (tcp, rtu):
                    refused = await client.write_register(0, 99, device_id=1)
                    assert refused.isError() and refused.exception_code == 4, refused
                with pytest.raises(ServerDeviceFailure):
                    server.write("meter1/setpoint", 98)
                assert [server.read(f"{n}/setpoint") for n in ("meter1", "meter2", "line")] == [7, 7, 7]  # undone
                server.state.store.connection.execute("PRAGMA query_only = OFF")
                assert not (await tcp.write_register(0, 55, device_id=1)).isError()  # stored again
            finally:
                tcp.close()
                rtu.close()

    run(main)
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    refusals = [r for r in records if r.get("by") == "state" and r.get("outcome") == "exception"]
    undone = [(r.get("endpoint"), r["exception"]) for r in refusals]
    assert sorted(undone) == [("line", 4), ("meter2", 4)]
    again = plant(STATEFUL, tmp_path)
    assert [again.read(f"{n}/setpoint") for n in ("meter1", "meter2", "line")] == [7, 55, 7]
    assert again.state is not None
    again.state.stop()


def test_an_mqtt_set_on_an_endpoint_is_stored(tmp_path: Path, broker: Mosquitto) -> None:
    from modbusd.mqtt import MqttBridge
    from tests.test_mqtt import Watcher, until

    aiomqtt = pytest.importorskip("aiomqtt")
    server = plant(STATEFUL, tmp_path)

    async def main() -> None:
        async with server:
            bridge = await MqttBridge.start(server, HOST, broker.port, named_points=True, min_backoff=0.1)
            try:
                await until(lambda: bridge.connected, what="the bridge's connection")
                async with Watcher(broker.port, "modbusd/#") as watcher, \
                        aiomqtt.Client(HOST, broker.port, timeout=5) as publisher:  # fmt: skip
                    await until(lambda: watcher.on("modbusd/meter2/1/hr/0"), what="meter2's state")
                    await publisher.publish("modbusd/meter2/1/hr/0/set", "64", qos=1)
                    await until(lambda: watcher.written("modbusd/meter2/1/hr/0"), what="meter2's set")
            finally:
                await bridge.stop()

    run(main)
    again = plant(STATEFUL, tmp_path)
    assert (again.read("meter1/setpoint"), again.read("meter2/setpoint")) == (7, 64)
    assert again.state is not None
    again.state.stop()


# ------------------------------------------------------------------------------------------ counts


def test_an_endpoints_requests_are_counted_with_the_servers() -> None:
    server = Server(endpoints=[Endpoint("m", Device(), host=HOST, port=0)])

    async def main() -> None:
        async with server:
            client = await connected(server.endpoints["m"].port)
            try:
                await client.read_holding_registers(0, count=1)
            finally:
                client.close()

    run(main)
    assert server.stats.requests["tcp"].ok[3] == 1


def test_subscribe_and_simulate_take_endpoint_slash_point_and_check_the_endpoints_name() -> None:
    assert config.parse_subscribe("meter7/1.0.hr:float").point == "meter7/1.0.hr"
    assert config.parse_simulate("meter7/power=sine(period=60s)").point == "meter7/power"
    with pytest.raises(ValueError, match="'7meter' is not an endpoint's name"):
        config.parse_subscribe("7meter/setpoint")
