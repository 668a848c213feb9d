"""Value generators in a running server: read over Modbus/TCP by pymodbus, controlled over the HTTP control API,
given on the real command line (`--simulate`) and in a device file (`generate`, `[[device.generator]]`).

Every server and child is started on 127.0.0.1 with a free port by a fixture that ends it; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Device, Server
from modbusd.config import ConfigError, loads
from tests.conftest import HOST, TIMEOUT, wait_until
from tests.test_cli import Modbusd, assert_one_line_error, free_port
from tests.test_cli_config import modbusd_cli
from tests.test_docs import blocks, commands, mbpoll, polled

pytest.importorskip("aiohttp")
from modbusd.web import HttpApi
from tests.test_web_hardening import call


def in_loop(server: Server, function: Callable[[], Any]) -> Any:
    """Call `function` in the server's loop (the simulator's methods belong there) and return what it returns."""

    async def run() -> Any:
        return function()

    assert server._loop is not None
    return asyncio.run_coroutine_threadsafe(run(), server._loop).result(TIMEOUT)


def input_register(client: ModbusTcpClient, address: int, count: int = 1) -> list[int]:
    reply = client.read_input_registers(address, count=count, device_id=1)
    assert not reply.isError(), reply
    return list(reply.registers)


def moves(read: Callable[[], object], changes: int = 3) -> bool:
    """The value read changes `changes` times within the time-out."""
    seen = [read()]

    def changed() -> bool:
        value = read()
        if value != seen[-1]:
            seen.append(value)
        return len(seen) > changes

    return wait_until(changed, TIMEOUT, interval=0.02)


# ------------------------------------------------------------------------------- Modbus clients see it move


def test_pymodbus_reads_a_generated_input_register_that_moves(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient]
) -> None:
    server = start_server()
    in_loop(server, lambda: server.simulator.add("30001", "counter(period=50ms, every=50ms)"))
    client = connect_client(server)
    assert moves(lambda: input_register(client, 0)[0])
    first, second = input_register(client, 0)[0], input_register(client, 0)[0]
    assert second >= first  # a counter: it only goes up (65535 is far away)


def test_a_client_write_to_a_generated_register_holds_until_reset(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient]
) -> None:
    server = start_server()
    server.simulator.add("40001", "counter(period=20ms, every=20ms)")
    client = connect_client(server)
    assert not client.write_register(0, 4242, device_id=1).isError()
    assert wait_until(lambda: server.simulator.get("0.hr")["state"] == "held")
    assert all(client.read_holding_registers(0, count=1, device_id=1).registers == [4242] for _ in range(10))
    server.simulator.reset("0.hr")
    assert moves(lambda: client.read_holding_registers(0, count=1, device_id=1).registers[0])


def test_a_float_sine_reads_back_through_pymodbus_within_its_bounds(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient]
) -> None:
    server = start_server()
    in_loop(server, lambda: server.simulator.add("1.ir", "sine(offset=20, amplitude=5, period=1s, every=20ms)",
                                                 "float"))  # fmt: skip
    client = connect_client(server)

    def value() -> float:
        return struct.unpack(">f", struct.pack(">HH", *input_register(client, 1, 2)))[0]

    assert moves(value)
    assert all(15 <= value() <= 25 for _ in range(20))


def test_a_program_serving_from_a_thread_controls_generators_from_its_own(start_server: Callable[..., Server]) -> None:
    server = start_server()  # serving from a thread of its own: the calls below are handed to its loop
    server.simulator.add("0.hr", "counter(period=20ms, every=20ms)")
    assert moves(lambda: server.read("0.hr"))
    assert server.simulator.pause("0.hr")["state"] == "paused"
    assert [g["state"] for g in server.simulator.list()] == ["paused"]
    server.simulator.remove("0.hr")
    assert len(server.simulator) == 0


def test_a_thousand_generators_cost_one_timer_not_a_task_each(start_server: Callable[..., Server]) -> None:
    server = start_server()

    def add_all() -> tuple[int, int]:
        before = len(asyncio.all_tasks())
        for address in range(1000):
            server.simulator.add(f"{address}.hr", "counter(period=10ms, every=10ms)")
        return before, len(asyncio.all_tasks())

    before, after = in_loop(server, add_all)
    assert after == before
    assert wait_until(lambda: server.read("999.hr") > 5 and server.read("0.hr") > 5)


# ---------------------------------------------------------------------------------------- the control API


@pytest.fixture
def api_server(start_server: Callable[..., Server]) -> Iterator[tuple[Server, HttpApi]]:
    """A server and its control API on free ports of 127.0.0.1, in the server's loop; both stopped at the end."""
    server = start_server()
    api = in_loop_await(server, HttpApi.start(server, port=0))
    yield server, api
    in_loop_await(server, api.stop())


def in_loop_await(server: Server, coroutine: Any) -> Any:
    assert server._loop is not None
    return asyncio.run_coroutine_threadsafe(coroutine, server._loop).result(TIMEOUT)


def test_http_adds_lists_pauses_resumes_resets_and_removes_a_generator(api_server: tuple[Server, HttpApi]) -> None:
    server, api = api_server
    status, added, _ = call(api.port, "POST", "/generators",
                            {"point": "30001", "type": "float", "generate": "ramp(min=0, max=1000, period=2s, "
                                                                             "every=20ms)"})  # fmt: skip
    assert status == 201 and added["id"] == "0.ir" and added["type"] == "float" and added["state"] == "running"
    assert moves(lambda: server.read("30001", "float"))
    status, listed, _ = call(api.port, "GET", "/generators")
    assert status == 200 and [g["id"] for g in listed["generators"]] == ["0.ir"]
    status, paused, _ = call(api.port, "POST", "/generators/0.ir/pause", {})
    assert status == 200 and paused["state"] == "paused"
    held = server.read("30001", "float")
    assert not wait_until(lambda: server.read("30001", "float") != held, timeout=0.3)
    assert call(api.port, "POST", "/generators/0.ir/resume", {})[1]["state"] == "running"
    assert moves(lambda: server.read("30001", "float"), changes=1)
    status, reset, _ = call(api.port, "POST", "/generators/0.ir/reset", {})
    assert status == 200 and reset["updates"] >= 1
    status, removed, _ = call(api.port, "DELETE", "/generators/0.ir", {})
    assert (status, removed) == (200, {"removed": "0.ir"})
    assert call(api.port, "GET", "/generators")[1] == {"generators": []}


@pytest.mark.parametrize(("request_", "status", "says"), [
    (("POST", "/generators", {"point": "30001", "generate": "sine(perod=1s)"}), 400, "unknown argument 'perod'"),
    (("POST", "/generators", {"point": "30001", "generate": "sine(every=1ms)"}), 400, "shorter than 10 ms"),
    (("POST", "/generators", {"point": "30001", "type": "string:2", "generate": "sine()"}), 400, "writes numbers"),
    (("POST", "/generators", {"point": "nowhere", "generate": "sine()"}), 404, "no data point named 'nowhere'"),
    (("POST", "/generators", {"point": "30001"}), 400, "expected {\"point\": P"),
    (("POST", "/generators", {"point": "30001", "order": "XYZW", "generate": "sine()"}), 400, "not a word order"),
    (("POST", "/generators", {"point": "30001", "type": "flot", "generate": "sine()"}), 400, "unknown type 'flot'"),
    (("POST", "/generators/7.hr/pause", {}), 404, "no generator '7.hr'"),
    (("POST", "/generators/7.hr/jump", {}), 404, "no action 'jump'"),
    (("DELETE", "/generators/7.hr", {}), 404, "no generator '7.hr'"),
])  # fmt: skip
def test_http_mistakes_get_a_4xx_with_one_line(
    api_server: tuple[Server, HttpApi], request_: tuple[str, str, object], status: int, says: str
) -> None:
    _, api = api_server
    got, answer, _ = call(api.port, *request_)
    assert got == status and says in answer["error"] and "\n" not in answer["error"]


def test_http_generator_writes_pass_the_write_guard(api_server: tuple[Server, HttpApi]) -> None:
    server, api = api_server
    body = {"point": "30001", "generate": "sine()"}
    assert call(api.port, "POST", "/generators", body, headers={"Content-Type": "text/plain"})[0] == 415
    assert call(api.port, "POST", "/generators", body, headers={"Origin": "http://evil.example"})[0] == 403
    assert call(api.port, "DELETE", "/generators/0.ir", headers={"Origin": "http://evil.example"})[0] == 403
    assert len(server.simulator) == 0


# -------------------------------------------------------------------------------------- the command line


def test_simulate_on_the_command_line_serves_a_moving_float(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST,
                   "--simulate", "30001:float=ramp(min=0,max=1000,period=2s,every=20ms)",
                   "--simulate", "5.co=square(period=200ms, every=20ms)")  # fmt: skip
    assert "Simulating 2 points" in child.running()
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()

        def value() -> float:
            return struct.unpack(">f", struct.pack(">HH", *input_register(client, 0, 2)))[0]

        assert moves(value)
        assert 0 <= value() < 1000
        assert moves(lambda: client.read_coils(5, count=1, device_id=1).bits[0])
    finally:
        client.close()


@pytest.mark.parametrize(("spec", "says"), [
    ("30001:float=sine(period=60)", "needs a unit"),
    ("30001=wobble()", "no generator named 'wobble'"),
    ("30001:float=sine(every=5ms)", "shorter than 10 ms"),
    ("30001", "expected POINT[:TYPE[:ORDER]]=SPEC"),
    ("100=sine()", "names no table"),
    ("30001:hex=sine()", "a generator writes numbers"),
    ("30001=expression(\"level * 2\")", "unknown name 'level'"),
])  # fmt: skip
def test_a_bad_simulate_gives_one_line_and_exit_2(launch: Callable[..., Modbusd], spec: str, says: str) -> None:
    line = assert_one_line_error(launch("-p", str(free_port()), "--host", HOST, "--simulate", spec))
    assert says in line and "--simulate" in line


# ----------------------------------------------------------------------------------------- the device file

DEVICE_FILE = """\
[server]
host = "127.0.0.1"
port = 5020

[[device]]

[[device.point]]
name = "tank_level"
address = "30001"
type = "float"
generate = "sine(offset=50, amplitude=10, period=60s, phase=90)"

[[device.point]]
name = "outflow"
address = "30003"
type = "float"

[[device.generator]]
point = "outflow"
generate = 'expression("tank_level * 0.8")'

[[device.generator]]
point = "100.hr"
generate = "clock(parts=[hour, minute, second])"

[[device.generator]]
point = "7.di"
generate = "square(period=2s)"
"""


def test_device_file_generators_are_added_with_the_server() -> None:
    server = Server.from_config(loads(DEVICE_FILE, "plant.toml"))
    listed = {g["id"]: g for g in server.simulator.list()}
    assert set(listed) == {"tank_level", "outflow", "100.hr", "7.di"}
    assert server.read("tank_level") == pytest.approx(60)  # phase 90: it starts at its top
    assert server.read("outflow") == pytest.approx(48)
    assert listed["100.hr"]["spec"] == "clock(parts=[hour, minute, second])" and len(listed["100.hr"]["value"]) == 3
    assert server.read("7.di") is True


def test_check_lists_the_generators(tmp_path: Path) -> None:
    (tmp_path / "plant.toml").write_text(DEVICE_FILE, encoding="utf-8")
    result = modbusd_cli("check", "plant.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "generator: tank_level = sine(offset=50, amplitude=10, period=60s, phase=90)" in result.stdout
    assert "generator: 7.di = square(period=2s)" in result.stdout


@pytest.mark.parametrize(("change", "line", "says"), [
    (("period=60s, phase=90", "period=60, phase=90"), 11, "period=60 needs a unit"),
    (('"tank_level * 0.8"', '"tank * 0.8"'), 20, "unknown name 'tank'"),
    (('point = "100.hr"', 'point = "100"'), 23, "names no table"),
    (('point = "outflow"', 'point = "inflow"'), 19, "'inflow' is no data point of this device"),
    (('point = "7.di"', 'point = "7.di"\ntype = "string:2"'), 28, "a generator writes numbers"),
    (('point = "100.hr"', 'point = "tank_level"'), 24, "tank_level has a generator already"),
    (("square(period=2s)", "square(period=2s, every=1ms)"), 28, "shorter than 10 ms"),
])  # fmt: skip
def test_device_file_mistakes_name_the_file_and_line(change: tuple[str, str], line: int, says: str) -> None:
    text = DEVICE_FILE.replace(*change)
    assert text != DEVICE_FILE
    with pytest.raises(ConfigError) as caught:
        loads(text, "plant.toml")
    assert caught.value.line == line and says in str(caught.value), str(caught.value)
    assert str(caught.value).startswith(f"plant.toml:{line}: ")


def test_check_of_a_bad_generator_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "plant.toml").write_text(DEVICE_FILE.replace("square(period=2s)", "square(duty=2)"), encoding="utf-8")
    result = modbusd_cli("check", "plant.toml", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "plant.toml:28: device[0].generator[2].generate" in result.stderr


def test_a_csv_file_is_found_beside_the_device_file(tmp_path: Path) -> None:
    (tmp_path / "profile.csv").write_text("time,value\n0,5\n1,6\n", encoding="utf-8")
    text = '[[device]]\n[[device.generator]]\npoint = "0.hr"\ngenerate = "csv(file=profile.csv)"\n'
    (tmp_path / "plant.toml").write_text(text, encoding="utf-8")
    server = Server.from_config(loads(text, str(tmp_path / "plant.toml"), base=tmp_path))
    assert server.read("0.hr") == 5


def test_a_generator_on_the_same_registers_as_another_is_refused_when_the_server_is_built() -> None:
    text = DEVICE_FILE + '\n[[device.generator]]\npoint = "30002"\ngenerate = "ramp()"\n'
    with pytest.raises(
        ValueError, match=r"plant\.toml:\d+: device\[0\]\.generator\[3\]\.generate: 1\.ir: .*tank_level"
    ):
        Server.from_config(loads(text, "plant.toml"))
    assert Device  # the public API's Device, used by the fixtures


def test_the_simulator_pages_first_example_does_what_its_comments_say(launch: Callable[..., Modbusd]) -> None:
    serve, read_float, read_counter = commands(blocks("sh", "docs/simulator.md")[0])  # the page's first
    port = str(free_port())
    assert serve[:3] == ["modbusd", "-p", "5020"]
    launch("-p", port, "--host", HOST, *serve[3:]).running()
    on_port: Callable[[str], str] = lambda arg: port if arg == "5020" else arg  # noqa: E731
    assert 15 <= float(polled(mbpoll(read_float, on_port))[0]) <= 25
    counts = [int(polled(mbpoll(read_counter, on_port))[0])]
    assert wait_until(lambda: counts.append(int(polled(mbpoll(read_counter, on_port))[0])) or counts[-1] > counts[0])
