"""Many endpoints in one process: listeners of their own (TCP, UDP, RTU over TCP), each with its own devices.

Real sockets on 127.0.0.1 (and 127.0.0.2… for host ranges), pymodbus's clients, the control API over HTTP, and
`modbusd check` / `modbusd --config` as subprocesses for the one-line errors.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient, AsyncModbusUdpClient

from modbusd import Device, Endpoint, Server, UnknownPoint, config
from tests.conftest import Mosquitto
from tests.test_cli import HOST, Modbusd, free_port
from tests.test_cli_config import http, modbusd_cli

TIMEOUT = 20.0  # seconds a whole exchange with a hundred endpoints may take on a loaded machine

METER = """
[server]
name = "plant"

[[template]]
name = "meter"
unit_id = 1
[template.identification]
vendor_name = "Acme"
product_name = "Meter {n}"
[[template.point]]
name = "setpoint"
address = "40001"
value = 7
subscribe = true
[[template.point]]
name = "power"
address = "30001"
type = "float"
value = 1.5
"""


def endpoint(name: str, port: int | str, host: str = HOST, *more: str) -> str:
    """An [[endpoint]] of one meter, as a device file declares it."""
    return f'[[endpoint]]\nname = "{name}"\nhost = "{host}"\nport = {port}\n{"".join(more)}' + (
        '[[endpoint.device]]\ntemplate = "meter"\n')  # fmt: skip


def plant(text: str, tmp_path: Path | None = None) -> Server:
    return Server.from_config(config.loads(text, "plant.toml", base=tmp_path))


def run(main: Callable[[], object]) -> object:
    async def bounded() -> object:
        async with asyncio.timeout(TIMEOUT * 3):
            return await main()  # type: ignore[misc]  # a coroutine function

    return asyncio.run(bounded())


async def connected(port: int, **options: object) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(HOST, port=port, timeout=TIMEOUT, retries=0, **options)  # type: ignore[arg-type]
    assert await client.connect(), f"no connection to port {port}"
    return client


# ------------------------------------------------------------------------------------------ a hundred


def test_100_endpoints_in_one_process_each_answer_their_own_devices() -> None:
    text = METER + endpoint("meter", 0, HOST, "count = 100\n")
    server = plant(text)

    async def main() -> None:
        async with server:
            ports = [served.port for served in server.endpoints.values()]
            assert len(ports) == 100 and len(set(ports)) == 100 and 0 not in ports
            clients = await asyncio.gather(*(connected(port) for port in ports))
            try:
                await clients[0].write_register(0, 4242, device_id=1)  # one endpoint written…
                others = await asyncio.gather(*(c.read_holding_registers(0, count=1, device_id=1) for c in clients))
                assert others[0].registers == [4242]
                assert {tuple(r.registers) for r in others[1:]} == {(7,)}  # …the 99 others still hold their own
                await asyncio.gather(*(c.write_register(0, 1000 + i, device_id=1) for i, c in enumerate(clients)))
                read = await asyncio.gather(*(c.read_holding_registers(0, count=1, device_id=1) for c in clients))
            finally:
                for client in clients:
                    client.close()
            assert [r.registers[0] for r in read] == [1000 + i for i in range(100)]
            assert [server.read(f"meter{n}/setpoint") for n in range(1, 101)] == [999 + n for n in range(1, 101)]

    run(main)


def test_endpoints_from_python_each_with_its_own_device_and_port() -> None:
    endpoints = [Endpoint(f"m{i}", Device(), host=HOST, port=0) for i in range(3)]
    server = Server(endpoints=endpoints)

    async def main() -> None:
        async with server:
            assert server.port is None  # endpoints only: no Modbus/TCP of the server's own
            for i, served in enumerate(server.endpoints.values()):
                client = await connected(served.port)
                try:
                    await client.write_register(5, 100 + i, device_id=9)  # one device answers every unit id
                finally:
                    client.close()
            assert [server.read(f"m{i}/5.hr") for i in range(3)] == [100, 101, 102]
            assert server.endpoints["m1"].device.holding_registers.read(5, 1) == (101).to_bytes(2, "big")
            with pytest.raises(UnknownPoint, match="which endpoint"):
                server.read("5.hr")
            with pytest.raises(UnknownPoint, match="no endpoint named 'm9'"):
                server.read("m9/5.hr")

    run(main)


def test_endpoints_from_python_are_checked_when_the_server_is_made() -> None:
    with pytest.raises(ValueError, match="two endpoints are named a"):
        Server(endpoints=[Endpoint("a", port=0), Endpoint("a", port=0)])
    with pytest.raises(ValueError, match=r"endpoints a and b both listen on 127\.0\.0\.1 port 5020"):
        Server(endpoints=[Endpoint("a", host=HOST, port=5020), Endpoint("b", host=HOST, port=5020)])
    with pytest.raises(ValueError, match="start with a letter"):
        Endpoint("meter.7")
    with pytest.raises(ValueError, match="transport 'rtu'"):
        Endpoint("m", transport="rtu")
    with pytest.raises(ValueError, match="UDP, RTU over TCP and serial lines of the server's own"):
        Server(endpoints=[Endpoint("a", port=0)], udp=0)  # no devices of its own for its UDP to serve


def test_the_hook_is_told_the_endpoint_and_counters_list_each_endpoint() -> None:
    names: list[str] = []

    def hook(server: str, client: str, unit_id: int, pdu: bytes) -> None:
        names.append(server)

    server = Server(endpoints=[Endpoint("m1", Device(), host=HOST, port=0)], name="plant", hook=hook)

    async def main() -> None:
        async with server:
            client = await connected(server.endpoints["m1"].port)
            try:
                assert (await client.read_holding_registers(0, count=1)).registers == [0]
            finally:
                client.close()

    run(main)
    assert names == ["plant/m1"]
    counters = server.counters()
    assert counters["devices"] == {} and counters["endpoints"]["m1"]["*"]["bus_message"] == 1  # type: ignore[index]


def test_the_default_endpoint_keeps_its_unqualified_names_beside_endpoints() -> None:
    server = Server(Device(), host=HOST, port=0, endpoints=[Endpoint("side", Device(), host=HOST, port=0)])

    async def main() -> None:
        async with server:
            server.write("40001", 11)
            server.write("side/40001", 22)
            client = await connected(server.port)  # type: ignore[arg-type]  # started: bound
            side = await connected(server.endpoints["side"].port)
            try:
                assert (await client.read_holding_registers(0, count=1)).registers == [11]
                assert (await side.read_holding_registers(0, count=1)).registers == [22]
            finally:
                client.close()
                side.close()
            assert server.listening()[-1].startswith(f"side: {HOST} port ")

    run(main)


# ------------------------------------------------------------------------------------ templates


def test_a_template_instantiated_on_a_host_range_with_overrides(tmp_path: Path) -> None:
    text = (
        METER
        + """
[[endpoint]]
name = "meter"
host = "127.0.0.2-127.0.0.4"
port = 0
[[endpoint.device]]
template = "meter"
values = { power = 2.5 }
[[endpoint.override]]
instances = [2]
unit_id = 7
values = { setpoint = 99 }
identification = { vendor_name = "Spare parts" }
"""
    )
    server = plant(text, tmp_path)
    assert [(s.name, s.host) for s in server.endpoints.values()] == [
        ("meter1", "127.0.0.2"), ("meter2", "127.0.0.3"), ("meter3", "127.0.0.4")]  # fmt: skip
    second = server.endpoints["meter2"].devices[7]
    assert second.identification[0] == b"Spare parts" and second.identification[4] == b"Meter 2"
    assert server.endpoints["meter3"].devices[1].identification[0] == b"Acme"

    async def main() -> None:
        async with server:
            values = {}
            for served in server.endpoints.values():
                client = AsyncModbusTcpClient(served.host, port=served.port, timeout=TIMEOUT, retries=0)
                assert await client.connect()
                try:
                    unit = 7 if served.name == "meter2" else 1
                    values[served.name] = (await client.read_holding_registers(0, count=1, device_id=unit)).registers
                    if served.name == "meter2":  # unit 1 is not meter2's any more: exception 0x0B
                        assert (await client.read_holding_registers(0, count=1, device_id=1)).isError()
                finally:
                    client.close()
            assert values == {"meter1": [7], "meter2": [99], "meter3": [7]}
            server.write("meter1/power", 5.0)  # each instance its own memory
            assert [server.read(f"meter{n}/power") for n in (1, 2, 3)] == [5.0, 2.5, 2.5]

    run(main)


def test_a_mixed_file_serves_tcp_udp_and_rtu_over_tcp_endpoints() -> None:
    text = METER + "".join(
        f'[[endpoint]]\nname = "{name}"\ntransport = "{transport}"\nhost = "127.0.0.1"\nport = 0\n'
        '[[endpoint.device]]\ntemplate = "meter"\n'
        for name, transport in (("tcp", "tcp"), ("udp", "udp"), ("rtu", "rtu-over-tcp"))
    )
    server = plant(text)

    async def main() -> None:
        async with server:
            ports = {name: served.port for name, served in server.endpoints.items()}
            tcp = await connected(ports["tcp"])
            rtu = await connected(ports["rtu"], framer=FramerType.RTU)
            udp = AsyncModbusUdpClient(HOST, port=ports["udp"], timeout=TIMEOUT, retries=0)
            assert await udp.connect()
            try:
                for value, client in enumerate((tcp, udp, rtu), 1):
                    assert not (await client.write_register(0, value, device_id=1)).isError()
                    assert (await client.read_holding_registers(0, count=1, device_id=1)).registers == [value]
            finally:
                for client in (tcp, udp, rtu):
                    client.close()
            assert [server.read(f"{name}/setpoint") for name in ("tcp", "udp", "rtu")] == [1, 2, 3]
            banner = server.listening()
            assert banner[1].startswith("udp: UDP on 127.0.0.1 port ") and "RTU over TCP" in banner[2]

    run(main)


# ------------------------------------------------------------------------------------------- events


def test_events_and_the_events_log_name_the_endpoint(tmp_path: Path) -> None:
    text = METER.replace('name = "plant"', 'name = "plant"\neventslog = "events.jsonl"')
    text += endpoint("meter", 0, HOST, "count = 2\n")
    server = plant(text, tmp_path)

    async def main() -> list[object]:
        async with server:
            events = server.events()
            client = await connected(server.endpoints["meter2"].port)
            try:
                await client.write_register(0, 55, device_id=1)
            finally:
                client.close()
            async with asyncio.timeout(TIMEOUT):
                return [await anext(aiter(events))]

    [event] = run(main)  # type: ignore[misc]  # a list
    assert (event.name, event.endpoint, event.value) == ("plant.meter2/1.0.hr", "meter2", 55)  # type: ignore[attr-defined]
    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["endpoint"]) for r in records] == [("write", "meter2"), ("event", "meter2")]


# ---------------------------------------------------------------------------------------- control API


def test_the_control_api_lists_endpoints_and_reads_and_writes_a_point_on_one() -> None:
    web = pytest.importorskip("modbusd.web")
    text = METER + endpoint("meter", 0, HOST, "count = 2\n")
    server = plant(text)

    async def main() -> None:
        async with server:
            api = await web.HttpApi.start(server, host=HOST, port=0)
            base = f"http://{HOST}:{api.port}"
            try:
                found = await asyncio.to_thread(http, "GET", f"{base}/endpoints")
                index = await asyncio.to_thread(http, "GET", f"{base}/")
                put = await asyncio.to_thread(http, "PUT", f"{base}/points/meter2/setpoint", {"value": 123})
                quoted = urllib.parse.quote("meter2/40001", safe="")
                got = await asyncio.to_thread(http, "GET", f"{base}/points/{quoted}")
                other = await asyncio.to_thread(http, "GET", f"{base}/points/meter1/1.0.hr")
                ranged = await asyncio.to_thread(http, "GET", f"{base}/points/meter2/40001?count=2")
                listing = await asyncio.to_thread(http, "GET", f"{base}/points")
                missing = await asyncio.to_thread(http, "GET", f"{base}/points/meter9/40001")
            finally:
                await api.stop()
            assert found[0] == 200
            assert [(e["name"], e["transport"], e["devices"]) for e in found[1]["endpoints"]] == [
                (f"meter{n}", "tcp", [{"unit_ids": [1], "points": 2}]) for n in (1, 2)]  # fmt: skip
            assert found[1]["endpoints"][1]["port"] == server.endpoints["meter2"].port
            assert "GET /endpoints" in index[1]["endpoints"] and index[1]["served"] == found[1]["endpoints"]
            assert put[0] == 200 and put[1]["name"] == "meter2/setpoint" and put[1]["value"] == 123
            assert got[1]["value"] == 123 and other[1]["value"] == 7
            assert [v["address"] for v in ranged[1]["values"]] == ["meter2/40001", "meter2/40002"]
            assert [p["name"] for p in listing[1]["points"]] == [
                "meter1/setpoint", "meter1/power", "meter2/setpoint", "meter2/power"]  # fmt: skip
            assert missing[0] == 404 and "no endpoint named 'meter9'" in missing[1]["error"]

    run(main)


def test_modbusd_get_and_set_address_a_point_on_an_endpoint(tmp_path: Path, launch: Callable[..., Modbusd]) -> None:
    pytest.importorskip("aiohttp")
    port, other, api = free_port(), free_port(), free_port()
    file = tmp_path / "plant.toml"
    file.write_text(METER + f"[http]\nport = {api}\n" + endpoint("a", port) + endpoint("b", other))
    child = launch("--config", str(file))
    banner = child.running()
    assert f"  endpoint a: {HOST} port {port} (unit 1)" in banner
    assert f"  endpoint b: {HOST} port {other} (unit 1)" in banner
    assert banner[1].startswith("Starting server with 2 endpoints. ")
    written = modbusd_cli("set", "--http", str(api), "b/1.0.hr", "321")
    assert written.returncode == 0 and written.stdout.strip() == "321", written.stderr
    assert modbusd_cli("get", "--http", str(api), "b/setpoint").stdout.strip() == "321"
    assert modbusd_cli("get", "--http", str(api), "a/setpoint").stdout.strip() == "7"
    wrong = modbusd_cli("get", "--http", str(api), "setpoint")
    assert wrong.returncode == 2 and "which endpoint?" in wrong.stderr


def test_a_port_of_its_own_for_a_file_of_endpoints_only_is_one_line(
    tmp_path: Path, launch: Callable[..., Modbusd]
) -> None:
    file = tmp_path / "plant.toml"
    file.write_text(METER + endpoint("a", 0))
    child = launch("--config", str(file), "-p", "5020")
    assert child.finish() == 2 and child.stdout == []
    assert child.stderr == [f"modbusd: -p 5020: {file} serves only its [[endpoint]] tables (it has no top-level "
                            "[[device]] for the port to serve): give the port to an endpoint in the file"]  # fmt: skip


# --------------------------------------------------------------------------------- bad declarations


BAD = [
    pytest.param(
        '[[endpoint]]\nname = "a"\nport = 5020\n[[endpoint.device]]\ntemplate = "meter"\n'
        '[[endpoint]]\nname = "b"\nport = 5020\n[[endpoint.device]]\ntemplate = "meter"\n',
        "endpoint[1].port: port 5020 (tcp) on 0.0.0.0 is endpoint a's already: give b another port or address",
        28,
        id="duplicate port",
    ),
    pytest.param(
        '[[endpoint]]\nname = "m"\ncount = 20\nport = "65530+"\n[[endpoint.device]]\ntemplate = "meter"\n',
        "endpoint[0].port: '65530+' numbers 20 instances from port 65530 to 65549, past 65535: start lower or make "
        "fewer",
        24,
        id="port pattern past 65535",
    ),
    pytest.param(
        '[[endpoint]]\nname = "m"\nport = 5020\n[[endpoint.device]]\ntemplate = "pump"\n',
        "endpoint[0].device[0].template: no template named 'pump'; templates: meter",
        25,
        id="unknown template",
    ),
    pytest.param(
        '[[endpoint]]\nname = "m"\nhost = "255.255.255.254+"\ncount = 3\n[[endpoint.device]]\ntemplate = "meter"\n',
        "endpoint[0].host: '255.255.255.254+' numbers 3 instances past the last IPv4 address: start lower or make "
        "fewer",
        23,
        id="host pattern",
    ),
    pytest.param(
        '[[endpoint]]\nname = "m"\n[[endpoint.device]]\ntemplate = "meter"\nvalues = { voltage = 1 }\n',
        "endpoint[0].device[0].values: no data point named 'voltage' in this device's [[point]] tables",
        25,
        id="unknown point in values",
    ),
]


@pytest.mark.parametrize(("tail", "message", "line"), BAD)
def test_a_bad_endpoint_gives_one_line_with_file_and_line_and_exit_2(
    tmp_path: Path, tail: str, message: str, line: int
) -> None:
    file = tmp_path / "plant.toml"
    file.write_text(METER + tail)
    checked = modbusd_cli("check", str(file))
    assert checked.returncode == 2 and checked.stdout == ""
    assert checked.stderr.splitlines() == [f"modbusd: {file}:{line}: {message}"]


def test_two_endpoints_on_one_port_give_the_port_in_use_line(tmp_path: Path, launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    file = tmp_path / "plant.toml"
    file.write_text(METER + endpoint("a", port) + endpoint("b", port, "0.0.0.0"))  # overlapping: for the bind to say
    child = launch("--config", str(file))
    assert child.finish() == 2 and child.stdout == []
    *logged, line = child.stderr  # endpoint a logged that it listens before b failed
    assert all(" INFO modbusd.server: listening on " in entry for entry in logged)
    assert line.startswith(f"modbusd: port {port} on 0.0.0.0 is already in use by another program: stop it, or "
                           "choose another port: port = ")  # fmt: skip
    assert line.endswith(" in the device file's [[endpoint]] b is free.")


# ------------------------------------------------------------------------------------------------ MQTT


def test_mqtt_topics_put_the_endpoint_before_the_unit(broker: Mosquitto) -> None:
    aiomqtt = pytest.importorskip("aiomqtt")
    from modbusd.mqtt import MqttBridge
    from tests.test_mqtt import Watcher, until

    server = plant(METER + endpoint("meter", 0, HOST, "count = 2\n"))

    async def main() -> None:
        async with server:
            bridge = await MqttBridge.start(server, HOST, broker.port, named_points=True, min_backoff=0.1)
            try:
                await until(lambda: bridge.connected, what="the bridge's connection")
                async with Watcher(broker.port, "modbusd/#") as watcher, \
                        aiomqtt.Client(HOST, broker.port, timeout=5) as publisher:  # fmt: skip
                    await until(lambda: watcher.on("modbusd/meter2/1/hr/0"), what="meter2's state")
                    client = await connected(server.endpoints["meter2"].port)
                    try:
                        await client.write_register(0, 31, device_id=1)
                    finally:
                        client.close()
                    await until(lambda: watcher.written("modbusd/meter2/1/hr/0"), what="meter2's event")
                    event = watcher.written("modbusd/meter2/1/hr/0")[0]
                    assert (event["name"], event["value"]) == ("plant.meter2/1.0.hr", 31)
                    await publisher.publish("modbusd/meter1/1/hr/0/set", "64", qos=1)
                    await until(lambda: watcher.written("modbusd/meter1/1/hr/0"), what="meter1's set")
                    assert watcher.written("modbusd/meter1/1/hr/0")[0]["name"] == "plant.meter1/1.0.hr"
                assert (server.read("meter1/setpoint"), server.read("meter2/setpoint")) == (64, 31)
            finally:
                await bridge.stop()

    run(main)
