"""The README's "Simulate a plant", as written: its device file is served by `modbusd --config`, and pymodbus and the
README's own mbpoll commands see a value move, the faults happen and each endpoint answer with its own devices.

The file's ports (5021, 5022, 5023) become free ones; everything else is the README's block as it stands.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from tests.conftest import free_port
from tests.test_cli import Modbusd
from tests.test_cli_config import modbusd_cli
from tests.test_docs import RUN_TIMEOUT, blocks, commands, mbpoll, only, polled

SECTION = "## Simulate a plant"
HOST = "127.0.0.1"
TIMEOUT = 15.0  # seconds to wait for what the README promises, on a loaded machine


def free_pair() -> int:
    """A port p with p + 1 free too, for the file's ``port = "N+"`` (two instances)."""
    for _ in range(100):
        port = free_port()
        if port >= 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port + 1))
            except OSError:
                continue
        return port
    pytest.fail("no two consecutive free ports")


def as_float(registers: list[int]) -> float:
    return struct.unpack(">f", struct.pack(">HH", *registers))[0]


def test_readme_plant_serves_moving_values_faults_and_three_endpoints(
    launch: Callable[..., Modbusd], tmp_path: Path
) -> None:
    toml = only(blocks("toml", "README.md", SECTION)).code
    serve, *clients = commands(only(blocks("sh", "README.md", SECTION)))
    assert serve == ["modbusd", "--config", "plant.toml"]
    assert 'port = "5021+"' in toml and "port = 5023" in toml
    first, plc = free_pair(), free_port()
    ports = {"5021": str(first), "5022": str(first + 1), "5023": str(plc)}
    file = tmp_path / "plant.toml"
    file.write_text(toml.replace('port = "5021+"', f'port = "{first}+"').replace("port = 5023", f"port = {plc}"))
    banner = "\n".join(launch("--config", str(file)).running())
    for name, port in (("tank1", first), ("tank2", first + 1), ("plc", plc)):
        assert f"endpoint {name}: {HOST} port {port} (unit 1)" in banner

    tank1, tank2, uptime = (ModbusTcpClient(HOST, port=p, timeout=5, retries=0) for p in (first, first + 1, plc))
    try:
        for client in (tank1, tank2, uptime):
            assert client.connect()
        # each endpoint its own devices: the setpoints the file gives, a write to one not seen by the other
        assert tank1.read_holding_registers(0, count=1).registers == [50]
        assert not tank1.write_register(0, 55).isError()
        assert tank2.read_holding_registers(0, count=1).registers == [80]
        assert tank1.read_holding_registers(0, count=1).registers == [55]
        # a value moves: tank1's level (a sine, every 100 ms), within 30..70
        levels = {round(as_float(tank1.read_input_registers(0, count=2).registers), 4)}
        deadline = time.monotonic() + TIMEOUT
        while len(levels) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            levels.add(round(as_float(tank1.read_input_registers(0, count=2).registers), 4))
        assert len(levels) >= 2 and all(30 <= level <= 70 for level in levels), levels
        # a fault happens: tank2's every third FC03 is exception 06; its input registers answer
        replies = [tank2.read_holding_registers(0, count=1) for _ in range(5)]  # its 2nd to 6th FC03
        assert [r.exception_code if r.isError() else r.registers for r in replies] == [[80], 6, [80], [80], 6]
        assert not tank2.read_input_registers(0, count=2).isError()
        # the other fault: the PLC answers half a second late, tank1 does not
        started = time.monotonic()
        assert not uptime.read_input_registers(0, count=1).isError()
        late = time.monotonic() - started
        started = time.monotonic()
        tank1.read_holding_registers(0, count=1)
        assert late >= 0.5 and time.monotonic() - started < late
    finally:
        for client in (tank1, tank2, uptime):
            client.close()

    # the README's mbpoll commands, as written but for the ports
    on_ports: Callable[[str], str] = lambda arg: ports.get(arg, arg)  # noqa: E731
    moving, setpoint, busy, plc_uptime = clients
    assert polled(mbpoll(setpoint, on_ports)) == ["80"]
    assert int(polled(mbpoll(plc_uptime, on_ports))[0]) >= 0
    assert len(set(poll(moving, on_ports, lambda out: len(set(polled(out))) >= 2))) >= 2
    out = poll(busy, on_ports, lambda out: "Slave device or server is busy" in out)
    assert "Slave device or server is busy" in out


def poll(args: list[str], replace: Callable[[str], str], enough: Callable[[str], bool]) -> str:
    """A polling mbpoll command (it runs until Ctrl-C), its output read line by line until `enough`; then stopped."""
    binary, stdbuf = shutil.which("mbpoll"), shutil.which("stdbuf")
    assert binary is not None and stdbuf is not None
    assert args[0] == "mbpoll" and "-1" not in args and "-l" in args
    proc = subprocess.Popen([stdbuf, "-oL", binary, *map(replace, args[1:])], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    out = ""
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        assert proc.stdout is not None
        while not enough(out) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
    finally:
        proc.kill()
        proc.wait(RUN_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()
    return out


def test_readme_plant_is_checked_as_the_readme_says(tmp_path: Path) -> None:
    """`modbusd check` on the README's file: three endpoints, three generators, two faults, as the block describes."""
    file = tmp_path / "plant.toml"
    file.write_text(only(blocks("toml", "README.md", SECTION)).code)
    done = modbusd_cli("check", str(file))
    assert done.returncode == 0, done.stderr
    listed = done.stdout.splitlines()
    assert [line.split(":")[0] for line in listed if line.startswith("endpoint ")] == [
        "endpoint tank1", "endpoint tank2", "endpoint plc"]  # fmt: skip
    assert [line for line in listed if line.startswith("fault: ")] == [
        "fault: fc=3 endpoint=tank2 every=3 action=exception:06",
        "fault: endpoint=plc action=delay:500ms",
    ]
    assert [line.split(" = ")[0] for line in listed if line.startswith("generator: ")] == [
        "generator: tank1/level", "generator: tank2/level", "generator: plc/uptime"]  # fmt: skip
