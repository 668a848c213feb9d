"""The gateway in the device file: ``[gateway]`` and ``[[gateway.forward]]`` (docs/gateway.md), alone and with
``--forward``.

Mistakes are one line naming FILE:LINE: key, read in-process and through `python -m modbusd`; the routes are
served end to end by two modbusd children, the gateway forwarding some unit ids to the other, read by pymodbus.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd.cli.parser import build_parser
from modbusd.cli.serve import _settings
from modbusd.config import GatewayConfig, loads
from modbusd.protocol.gateway import FORWARD_QUEUE, FORWARD_TIMEOUT, IN_FLIGHT, TcpTarget
from modbusd.protocol.serial_line import SerialLine
from tests.conftest import assert_config_mistake
from tests.test_cli import HOST, SRC, Modbusd, assert_one_line_error, free_port, read_register

Launch = Callable[..., Modbusd]


def modbusd_check(path: Path) -> subprocess.CompletedProcess:
    """`python -m modbusd check FILE`, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "modbusd", "check", str(path)], capture_output=True, text=True,
                          timeout=30, check=False, cwd="/", env=env)  # fmt: skip


GATEWAY = """\
[gateway]
timeout = 0.5
queue = 4
in_flight = 2

[[gateway.forward]]
units = "10-12,15"
target = "tcp:127.0.0.1:1502"

[[gateway.forward]]
units = [20, 21]
target = "rtu:/dev/ttyUSB0,9600,8N1"

[[gateway.forward]]
units = 30
target = "ascii:/dev/ttyS1"
"""


def test_gateway_table_gives_the_routes_and_settings_the_server_takes() -> None:
    gateway = loads(GATEWAY, "gw.toml").gateway
    assert (gateway.timeout, gateway.queue, gateway.in_flight) == (0.5, 4, 2)
    assert gateway.forward == {
        **dict.fromkeys((10, 11, 12, 15), TcpTarget("127.0.0.1", 1502)),
        **dict.fromkeys((20, 21), SerialLine("/dev/ttyUSB0", "rtu", 9600, 8, "N", 1)),
        30: SerialLine("/dev/ttyS1", "ascii"),
    }
    assert [r.where for r in gateway.routes] == ["gw.toml:6: gateway.forward[0]", "gw.toml:10: gateway.forward[1]",
                                                 "gw.toml:14: gateway.forward[2]"]  # fmt: skip


def test_a_file_without_gateway_forwards_nothing_with_the_defaults() -> None:
    gateway = loads("[server]\nport = 5020\n", "plain.toml").gateway
    assert gateway == GatewayConfig((), FORWARD_TIMEOUT, FORWARD_QUEUE, IN_FLIGHT)
    assert gateway.forward == {}


ROUTE = '[[gateway.forward]]\nunits = "1-3"\ntarget = "tcp:127.0.0.1"\n'


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        pytest.param("[gateway]\ntimeout = 0\n", 2, "gateway.timeout", "0 must be a number of seconds greater than 0",
                     id="timeout zero"),
        pytest.param('[gateway]\ntimeout = "1s"\n', 2, "gateway.timeout", "expected a number of seconds",
                     id="timeout text"),
        pytest.param("[gateway]\nqueue = -1\n", 2, "gateway.queue", "-1 is outside 0..1000000", id="queue"),
        pytest.param("[gateway]\nin_flight = 300\n", 2, "gateway.in_flight", "300 is outside 1..256",
                     id="in flight"),
        pytest.param("[gateway]\ntmeout = 1\n", 2, "gateway.tmeout", "did you mean 'timeout'?", id="typo"),
        pytest.param("[gateway]\nforward = 3\n", 2, "gateway.forward", "[[gateway.forward]] tables (double brackets)",
                     id="not tables"),
        pytest.param('[[gateway.forward]]\ntarget = "tcp:h"\n', 1, "gateway.forward[0]", "a route needs units",
                     id="no units"),
        pytest.param("[[gateway.forward]]\nunits = 3\n", 1, "gateway.forward[0]", "a route needs target",
                     id="no target"),
        pytest.param('[[gateway.forward]]\nunits = "a-b"\ntarget = "tcp:h"\n', 2, "gateway.forward[0].units",
                     "'a-b' is not a list of unit ids such as 0,1-10", id="units text"),
        pytest.param('[[gateway.forward]]\nunits = [1, 256]\ntarget = "tcp:h"\n', 2, "gateway.forward[0].units",
                     "forwarded unit ids must be within 0..255", id="units range"),
        pytest.param('[[gateway.forward]]\nunits = [1, 1]\ntarget = "tcp:h"\n', 2, "gateway.forward[0].units",
                     "a unit id appears twice", id="units twice"),
        pytest.param('[[gateway.forward]]\nunits = true\ntarget = "tcp:h"\n', 2, "gateway.forward[0].units",
                     'unit ids such as "1-10"', id="units bool"),
        pytest.param('[[gateway.forward]]\nunits = 1\ntarget = "udp:h"\n', 3, "gateway.forward[0].target",
                     "'udp:h' is not rtu:DEVICE[,BAUD[,8E1]], ascii:… or tcp:HOST[:PORT]", id="target kind"),
        pytest.param('[[gateway.forward]]\nunits = 1\ntarget = "tcp:h:port"\n', 3, "gateway.forward[0].target",
                     "'port' is not a port number", id="target port"),
        pytest.param('[[gateway.forward]]\nunits = 1\ntarget = "rtu:/dev/ttyS0,fast"\n', 3,
                     "gateway.forward[0].target", "'fast' is not a baud rate", id="baud rate"),
        pytest.param('[[gateway.forward]]\nunits = 1\ntarget = "rtu:/dev/ttyS0,9600,9X1"\n', 3,
                     "gateway.forward[0].target", "'9X1' is not serial settings", id="settings"),
        pytest.param('[[gateway.forward]]\nunits = "248"\ntarget = "rtu:/dev/ttyS0"\n', 3,
                     "gateway.forward[0].target", "unit id 248 forwarded to /dev/ttyS0: slave ids are 0..247",
                     id="slave id"),
        pytest.param(ROUTE + '[[gateway.forward]]\nunits = "3-5"\ntarget = "tcp:127.0.0.2"\n', 5,
                     "gateway.forward[1].units", "unit id 3 is forwarded by gateway.forward[0] already",
                     id="overlap in the file"),
        pytest.param("[[device]]\nunit_ids = [2, 7]\n\n" + ROUTE, 5, "gateway.forward[0].units",
                     "unit id 2 is both a local device (device[0]) and forwarded: choose one", id="local too"),
        pytest.param('[server]\nport = 5020\n[[server.serial]]\ndevice = "/dev/ttyS0"\n[[gateway.forward]]\n'
                     'units = 5\ntarget = "rtu:/dev/ttyS0"\n', 7, "gateway.forward[0].target",
                     "/dev/ttyS0 is served by server.serial[0]: a line has one master", id="served line"),
    ],
)  # fmt: skip
def test_gateway_mistakes_name_the_file_line_and_key(text: str, line: int, key: str, words: str) -> None:
    assert_config_mistake(text, line, key, words)


def test_check_and_config_refuse_a_bad_route_with_one_line_and_exit_2(launch: Launch, tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(f'[server]\nhost = "{HOST}"\nport = {free_port()}\n\n' + ROUTE
                    + '\n[[gateway.forward]]\nunits = "3,9"\ntarget = "tcp:127.0.0.2"\n')  # fmt: skip
    expected = (f"modbusd: {path}:10: gateway.forward[1].units: unit id 3 is forwarded by gateway.forward[0] "
                "already: a unit id has one route")  # fmt: skip
    checked = modbusd_check(path)
    assert (checked.returncode, checked.stdout, checked.stderr.splitlines()) == (2, "", [expected])
    assert assert_one_line_error(launch("--config", str(path))) == expected


def test_check_lists_the_routes_and_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("[server]\nport = 5020\n\n" + GATEWAY)
    checked = modbusd_check(path)
    assert checked.returncode == 0, checked.stderr
    assert [line for line in checked.stdout.splitlines() if line.startswith("gateway:")] == [
        "gateway: units 10-12, 15 to TCP 127.0.0.1:1502",
        "gateway: units 20-21 to RTU on /dev/ttyUSB0 (9600 8N1)",
        "gateway: unit 30 to ASCII on /dev/ttyS1 (19200 8E1)",
        "gateway: time-out 0.5 s, queue 4 per downstream, 2 in flight to a Modbus/TCP server",
    ]


# ------------------------------------------------------------------------------ the command line and the file


def settings(*argv: str) -> GatewayConfig:
    return _settings(build_parser().parse_args(list(argv)))[0].gateway


def test_forward_adds_routes_to_the_files_and_the_options_override_its_settings(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("[server]\nport = 5020\n\n" + GATEWAY)
    both = settings("--config", str(path), "--forward", "40-41=tcp:127.0.0.2", "--forward-timeout", "0.25")
    assert [route.units for route in both.routes] == [(10, 11, 12, 15), (20, 21), (30,), (40, 41)]
    assert both.forward[40] == TcpTarget("127.0.0.2")
    assert (both.timeout, both.queue, both.in_flight) == (0.25, 4, 2)  # the option's time-out, the file's others
    options = settings("--config", str(path), "--forward-queue", "0", "--forward-in-flight", "1")
    assert (options.timeout, options.queue, options.in_flight) == (0.5, 0, 1)
    alone = settings("--forward", "3=tcp:127.0.0.2")  # no file: the built-in defaults
    assert (alone.forward, alone.timeout, alone.queue, alone.in_flight) == (
        {3: TcpTarget("127.0.0.2")}, FORWARD_TIMEOUT, FORWARD_QUEUE, IN_FLIGHT)  # fmt: skip


def test_forward_overlapping_the_files_route_is_one_line_naming_both(launch: Launch, tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(f'[server]\nhost = "{HOST}"\nport = {free_port()}\n\n' + GATEWAY)
    line = assert_one_line_error(launch("--config", str(path), "--forward", "13-15=tcp:127.0.0.2"))
    assert line == (f"modbusd: --forward 13-15=tcp:127.0.0.2: unit id 15 is forwarded by {path}:10: "
                    "gateway.forward[0] already: a unit id has one route")  # fmt: skip


def test_two_forward_options_for_one_unit_id_are_one_line(launch: Launch) -> None:
    """Before the device file took routes, the later option silently won; now both are named, as in the file."""
    line = assert_one_line_error(launch("-p", str(free_port()), "--host", HOST, "--forward", "1-5=tcp:127.0.0.2",
                                        "--forward", "5=tcp:127.0.0.3"))  # fmt: skip
    assert line == ("modbusd: --forward 5=tcp:127.0.0.3: unit id 5 is forwarded by --forward 1-5=tcp:127.0.0.2 "
                    "already: a unit id has one route")  # fmt: skip


# ------------------------------------------------------------------------------------------------ end to end


def downstream_file(tmp_path: Path, port: int) -> Path:
    """The device behind the gateway: a second modbusd whose holding registers 0..1 hold 4321, 1234."""
    path = tmp_path / "downstream.toml"
    path.write_text(f'[server]\nhost = "{HOST}"\nport = {port}\n\n[[device]]\n\n[device.values]\n'
                    "holding_registers = [{ address = 0, values = [4321, 1234] }]\n")  # fmt: skip
    return path


def read_registers(port: int, unit_id: int, count: int = 2) -> list[int]:
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        reply = client.read_holding_registers(0, count=count, device_id=unit_id)
        assert not reply.isError(), reply
        return list(reply.registers)
    finally:
        client.close()


def test_device_file_gateway_forwards_to_a_second_modbusd(launch: Launch, tmp_path: Path) -> None:
    behind = free_port()
    downstream = launch("--config", str(downstream_file(tmp_path, behind)))
    downstream.running()
    port = free_port()
    gateway = tmp_path / "gateway.toml"
    gateway.write_text(f'[server]\nhost = "{HOST}"\nport = {port}\n\n[[device]]\n\n[device.values]\n'
                       "holding_registers = [{ address = 0, values = [7, 8] }]\n\n"
                       f'[gateway]\ntimeout = 2\n\n[[gateway.forward]]\nunits = "10-19"\n'
                       f'target = "tcp:{HOST}:{behind}"\n')  # fmt: skip
    child = launch("--config", str(gateway))
    assert f"gateway for units 10-19 to TCP {HOST}:{behind}" in child.running()[1]
    assert read_registers(port, unit_id=12) == [4321, 1234]  # through the gateway: the second modbusd's values
    assert read_registers(port, unit_id=19) == [4321, 1234]
    assert read_registers(port, unit_id=9) == [7, 8]  # not forwarded: the gateway's own device
    assert child.stop(signal.SIGTERM) == 0
    assert downstream.stop(signal.SIGTERM) == 0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that takes connections and requests and never answers: the gateway's time-out decides."""
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    taken: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                taken.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for connection in taken:
        connection.close()
    listener.close()


def test_forward_and_forward_timeout_on_the_command_line_join_the_files_gateway(
    launch: Launch, tmp_path: Path, silent_server: int
) -> None:
    """The file forwards 10-19 and waits 5 s; --forward adds unit 30 (a server that never answers) and
    --forward-timeout 0.3 replaces the 5 s, so unit 30 gets exception 0x0B well before the file's time-out."""
    behind = free_port()
    downstream = launch("--config", str(downstream_file(tmp_path, behind)))
    downstream.running()
    port = free_port()
    gateway = tmp_path / "gateway.toml"
    gateway.write_text(f'[server]\nhost = "{HOST}"\nport = {port}\n\n[gateway]\ntimeout = 5\n\n'
                       f'[[gateway.forward]]\nunits = "10-19"\ntarget = "tcp:{HOST}:{behind}"\n')  # fmt: skip
    child = launch("--config", str(gateway), "--forward", f"30=tcp:{HOST}:{silent_server}", "--forward-timeout", "0.3")
    banner = child.running()
    assert f"gateway for units 10-19 to TCP {HOST}:{behind}" in banner[1]
    assert f"gateway for unit 30 to TCP {HOST}:{silent_server}" in banner[1]
    assert read_register(port, unit_id=10) == 4321  # the file's route
    client = ModbusTcpClient(HOST, port=port, timeout=4, retries=0)
    try:
        assert client.connect()
        started = time.monotonic()
        reply = client.read_holding_registers(0, count=1, device_id=30)  # the option's route
        elapsed = time.monotonic() - started
    finally:
        client.close()
    assert reply.isError() and reply.exception_code == 0x0B, reply
    assert elapsed < 2.0, f"answered after {elapsed:.2f} s: the file's 5 s time-out, not --forward-timeout's 0.3 s"
    assert child.stop(signal.SIGTERM) == 0
    assert downstream.stop(signal.SIGTERM) == 0
