"""`python -m modbusd` as a subprocess: the banner, remote shutdown, signals, one-line errors, exit codes, options.

Each test starts its own modbusd on a free port of 127.0.0.1, waits a bounded time for "Server running...", and
ends only the process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import aiomqtt
import pytest
from pymodbus import FramerType
from pymodbus.client import (
    AsyncModbusTcpClient,
    ModbusSerialClient,
    ModbusTcpClient,
    ModbusUdpClient,
)

import modbusd
from modbusd import Device, Server
from tests.conftest import Mosquitto, PtyPair, free_port

HOST = "127.0.0.1"
START_TIMEOUT = 15.0  # seconds for the interpreter to start and print the banner
EXIT_TIMEOUT = 10.0
SRC = Path(modbusd.__file__).resolve().parents[1]  # the sources this test run imported, for the child too
STAMP = "%a %b %d %H:%M:%S %Y"


class Modbusd:
    """One `python -m modbusd` child; its stdout and stderr are drained by threads so neither pipe can fill."""

    def __init__(self, args: list[str], prefix: list[str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "modbusd", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd="/",
        )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout, self._lines), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr, None), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(stream: IO[str], lines: list[str], notify: queue.Queue[str | None] | None) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if notify is not None:
                notify.put(line.rstrip("\n"))
        if notify is not None:
            notify.put(None)

    def wait_for(self, text: str, timeout: float = START_TIMEOUT) -> str:
        """The first stdout line containing `text`; fails if it does not come in time or the process exits."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self.finish()
                pytest.fail(f"modbusd exited before {text!r}; stdout {self.stdout}, stderr {self.stderr}")
            if text in line:
                return line
        pytest.fail(f"no {text!r} within {timeout} s; stdout {self.stdout}, stderr {self.stderr}")

    def running(self) -> list[str]:
        """Wait for the banner; return its lines."""
        self.wait_for("Server running...")
        return list(self.stdout)

    def finish(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Wait for the process to exit (it fails the test if it does not) and for its output to be read."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            pytest.fail(f"modbusd did not exit within {timeout} s; stdout {self.stdout}, stderr {self.stderr}")
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        return self.finish()


@pytest.fixture
def launch() -> Iterator[Callable[..., Modbusd]]:
    """launch(*args) → a running-or-exiting modbusd child; killed at the end of the test if it is still alive."""
    children: list[Modbusd] = []

    def start(*args: str, prefix: list[str] | None = None) -> Modbusd:
        child = Modbusd(list(args), prefix)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.wait(EXIT_TIMEOUT)
        for stream in (child.proc.stdout, child.proc.stderr):
            if stream is not None:
                stream.close()


def read_register(port: int, address: int = 0, unit_id: int = 1) -> int:
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        reply = client.read_holding_registers(address, count=1, device_id=unit_id)
        assert not reply.isError(), reply
        return reply.registers[0]
    finally:
        client.close()


def assert_one_line_error(child: Modbusd) -> str:
    assert child.finish() == 2
    assert child.stdout == []
    assert len(child.stderr) == 1, child.stderr
    assert "Traceback" not in child.stderr[0]
    return child.stderr[0]


# ------------------------------------------------------------------------------------------- start, stop


def test_modbusd_prints_its_banner_and_serves_until_sigint(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST)
    version, starting, running = child.running()
    assert version.split() == ["modbusd", "version", modbusd.__version__]
    prefix = f"Starting server on {HOST} port {port}. "
    assert starting.startswith(prefix)
    time.strptime(starting.removeprefix(prefix), STAMP)  # the time it started
    assert running == "Server running..."
    assert read_register(port) == 0
    assert child.stop(signal.SIGINT) == 0
    last = child.stdout[-1]
    assert last.startswith("Operator terminated server at ")
    time.strptime(last.removeprefix("Operator terminated server at "), STAMP)
    assert not any("unit=" in line for line in child.stderr)  # no per-request log without -v
    assert not any("Traceback" in line for line in child.stderr)


def test_modbusd_closes_every_connection_and_exits_0_on_sigterm(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST)
    child.running()
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(bytes.fromhex("0001 0000 0006 01 03 0000 0001"))
        assert sock.recv(64) == bytes.fromhex("0001 0000 0005 01 03 02 0000")
        assert child.stop(signal.SIGTERM) == 0
        assert sock.recv(64) == b""  # the server closed the connection on its way out
    assert child.stdout[-1].startswith("Operator terminated server at ")


def test_client_sending_the_quit_word_makes_modbusd_exit_0(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "-q", "shutdown")
    child.running()
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"shutdownx")  # not exactly the word: that connection is dropped, the server stays
        assert sock.recv(64) == b""
    assert read_register(port) == 0
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"shutdown")
        assert child.finish() == 0
    assert child.stdout[-1].startswith("Remote shutdown command received")
    time.strptime(child.stdout[-1].rsplit(" at ", 1)[1], STAMP)


def test_modbusd_warns_when_the_quit_word_is_enabled_beyond_loopback(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", "0.0.0.0", "-q", "stop")
    child.running()
    assert child.stop(signal.SIGTERM) == 0
    warnings = [line for line in child.stderr if "WARNING" in line and "quit" in line]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


def closed_pipe() -> int:
    """The writing end of a pipe whose reader is already gone, as for `modbusd … | head` once head has quit."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"modbusd exited with {proc.returncode}"
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    pytest.fail(f"nothing listening on port {port} within {timeout} s")


@pytest.mark.parametrize("args", [["check", "EXAMPLE"], ["init"], ["--help"]], ids=["check", "init", "help"])
def test_a_command_whose_reader_left_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """`modbusd check FILE | head`: the output nobody reads is dropped, with no traceback."""
    example = tmp_path / "modbusd.toml"
    example.write_text(modbusd.config.EXAMPLE)
    write_end = closed_pipe()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "modbusd", *(str(example) if a == "EXAMPLE" else a for a in args)],
            stdout=write_end, stderr=subprocess.PIPE, text=True, env=child_env(), timeout=30, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_server_whose_output_pipe_closed_goes_on_serving_and_stops_on_sigterm() -> None:
    """A server whose terminal or log reader went away: the banner is lost, the Modbus server is not."""
    port = free_port()
    write_end = closed_pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modbusd", "-p", str(port), "--host", HOST], stdin=subprocess.DEVNULL,
            stdout=write_end, stderr=subprocess.PIPE, text=True, env=child_env(), cwd="/",
        )  # fmt: skip
    finally:
        os.close(write_end)
    try:
        wait_for_port(port, proc)
        time.sleep(0.2)  # past the banner's write, which comes right after the listener opens
        assert read_register(port) == 0
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=EXIT_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=EXIT_TIMEOUT)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


HELP_GROUPS = [
    "server",
    "security",
    "data",
    "serial lines",
    "gateway",
    "fault injection",
    "control API",
    "MQTT",
    "events and logging",
]


def test_help_groups_every_option_and_ends_with_two_examples() -> None:
    done = subprocess.run([sys.executable, "-m", "modbusd", "--help"], capture_output=True, text=True,
                          env={**child_env(), "COLUMNS": "80"}, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    sections: dict[str, list[str]] = {}
    section = ""
    for line in done.stdout.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            section = line[:-1]
        elif line.startswith("  -") and section:
            sections.setdefault(section, []).append(line.split()[0].rstrip(","))
    assert list(sections) == ["options", *HELP_GROUPS], list(sections)
    assert sections["options"] == ["-h", "--version"]  # every other option sits in a group
    assert "--baudrate" in sections["serial lines"] and "--http-token" in sections["control API"]
    examples = done.stdout.split("\nexamples:\n", 1)[1]
    assert "  modbusd -p 5020\n" in examples
    assert "  modbusd init modbusd.toml && modbusd --config modbusd.toml\n" in examples


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "option", "suggestion"),
    [
        pytest.param("tcp", "-p", "-p {}", id="Modbus/TCP"),
        pytest.param("udp", "--udp", "--udp {}", id="UDP"),
        pytest.param("tcp", "--rtu-over-tcp", "--rtu-over-tcp {}", id="RTU over TCP"),
        pytest.param("tcp", "--http", "--http {}", id="control API"),
        pytest.param("udp", "[server.udp]", "port = {} in the device file's [server.udp]", id="device file UDP"),
        pytest.param("tcp", "[http]", "port = {} in the device file's [http]", id="device file [http]"),
    ],
)
def test_modbusd_refuses_a_port_in_use_naming_the_option_and_a_free_port(
    launch: Callable[..., Modbusd], tmp_path: Path, kind: str, option: str, suggestion: str
) -> None:
    with socket.socket(type=socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        if kind == "tcp":
            taken.listen()
        port = taken.getsockname()[1]
        if option.startswith("["):  # the port comes from the device file
            table = option.strip("[]")
            path = tmp_path / "modbusd.toml"
            path.write_text(f'[server]\nhost = "{HOST}"\nport = {free_port()}\n[{table}]\nport = {port}\n')
            args = ["--config", str(path)]
        else:
            args = ["--host", HOST, *(["-p", str(free_port())] if option != "-p" else []), option, str(port)]
        child = launch(*args)
        assert child.finish() == 2
    line = child.stderr[-1]  # after, for --http, the log line of the Modbus/TCP listener it opened and closed
    assert not any("Traceback" in line for line in child.stderr), child.stderr
    assert f"port {port} on {HOST} is already in use" in line, line
    offered = [p for p in range(port + 1, port + 11) if suggestion.format(p) + " is free" in line]
    assert len(offered) == 1, line  # one of the next ports, never the busy one (nor always 5020)
    assert "-p" not in line or option == "-p", line


def _without_bind_privilege() -> list[str]:
    """A command prefix that starts the child without CAP_NET_BIND_SERVICE (nothing when we lack it anyway).

    setpriv (util-linux, always on Debian) drops the capability from the bounding set, so the exec'd interpreter
    never gets it even as root. Switching to 'nobody' instead would not do here: the interpreter may live under a
    directory only root may enter (/root/.pyenv on this machine).
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to run modbusd without privilege as root"
    return [setpriv, "--bounding-set", "-net_bind_service"]


def _free_privileged_port() -> int:
    for port in range(1023, 900, -1):
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind((HOST, port))
            return port
    pytest.fail("no free port in 901..1023 to test with")


def test_modbusd_without_privilege_refuses_a_low_port_and_suggests_5020(launch: Callable[..., Modbusd]) -> None:
    prefix = _without_bind_privilege()
    port = _free_privileged_port() if prefix else 502
    unprivileged_start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    child = launch("-p", str(port), "--host", HOST, prefix=prefix)
    if port >= unprivileged_start:  # this machine lets anyone bind the port: then modbusd simply starts
        child.running()
        assert child.stop(signal.SIGTERM) == 0
        return
    line = assert_one_line_error(child)
    assert str(port) in line and "permission" in line and "-p 5020" in line


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--bogus"], id="unknown flag"),
        pytest.param(["-d", "sideways"], id="unknown layout"),
        pytest.param(["-p", "70000"], id="port out of range"),
        pytest.param(["--unit-ids", "0,1"], id="unit id 0"),
        pytest.param(["--max-connections", "0"], id="max connections 0"),
        pytest.param(["--idle-timeout", "soon"], id="idle timeout not a number"),
    ],
)
def test_modbusd_rejects_a_wrong_option_with_one_line_and_exit_2(
    launch: Callable[..., Modbusd], args: list[str]
) -> None:
    line = assert_one_line_error(launch(*args))
    assert line.startswith("modbusd: ")


# ---------------------------------------------------------------------------------------------- options


def test_modbusd_packed_layout_with_two_unit_ids(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "-d", "packed", "--unit-ids", "1,2")
    child.running()
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        assert not client.write_coil(17, True, device_id=1).isError()
        assert client.read_holding_registers(1, count=1, device_id=1).registers == [0b10]
        assert client.read_holding_registers(1, count=1, device_id=2).registers == [0]
        assert client.read_holding_registers(0, count=1, device_id=3).exception_code == 0x0B
    finally:
        client.close()
    assert child.stop(signal.SIGTERM) == 0


def test_modbusd_max_connections_and_idle_timeout(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "--max-connections", "2", "--idle-timeout", "0.5")
    child.running()
    request = bytes.fromhex("0001 0000 0006 01 03 0000 0001")
    with (
        socket.create_connection((HOST, port), timeout=5) as oldest,
        socket.create_connection((HOST, port), timeout=5) as b,
    ):
        oldest.sendall(request)
        assert len(oldest.recv(64)) == 11
        time.sleep(0.05)
        b.sendall(request)
        assert len(b.recv(64)) == 11
        with socket.create_connection((HOST, port), timeout=5) as c:
            assert oldest.recv(64) == b""  # the limit closed the longest unused connection
            c.sendall(request)
            assert len(c.recv(64)) == 11
            c.settimeout(5)
            assert c.recv(64) == b""  # and after half a second of silence the idle time-out closed this one
    assert child.stop(signal.SIGTERM) == 0


def test_modbusd_verbose_logs_one_line_per_request(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "-v")
    child.running()
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        client_port = client.socket.getsockname()[1]
        assert not client.read_holding_registers(5, count=2, device_id=7).isError()
        assert client.read_coils(65535, count=2).exception_code == 2
    finally:
        client.close()
    assert child.stop(signal.SIGINT) == 0
    requests = [line for line in child.stderr if "unit=" in line]
    assert len(requests) == 2, requests
    for line, needed in zip(
        requests,
        [("unit=7", "fc=3", "address=5", "quantity=2", "ok"), ("unit=1", "fc=1", "address=65535", "exception 2")],
        strict=True,
    ):
        assert f"127.0.0.1:{client_port}" in line
        assert all(part in line for part in needed), line


def write_ten_then_read_two(port: int) -> None:
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        assert not client.write_registers(0, list(range(1, 11)), device_id=1).isError()
        assert client.read_holding_registers(8, count=2, device_id=1).registers == [9, 10]
    finally:
        client.close()


def test_modbusd_verbose_shows_the_values_written_and_twice_verbose_the_values_read_too(
    launch: Callable[..., Modbusd],
) -> None:
    for flags, read_line in ((["-v"], "-> ok"), (["-vv"], "-> ok values=[9, 10]")):
        port = free_port()
        child = launch("-p", str(port), "--host", HOST, *flags)
        child.running()
        write_ten_then_read_two(port)
        assert child.stop(signal.SIGTERM) == 0
        write, read = [line for line in child.stderr if "unit=" in line]
        assert write.endswith("fc=16 address=0 quantity=10 values=[1, 2, 3, 4, 5, 6, 7, 8, … (+2)] -> ok"), write
        assert read.endswith(f"fc=3 address=8 quantity=2 {read_line}"), (flags, read)


def test_modbusd_logs_to_a_rotating_file_at_the_level_asked(launch: Callable[..., Modbusd], tmp_path: Path) -> None:
    """A service without a terminal: --log-file; --log-level warning keeps the connection lines out."""
    log_file = tmp_path / "modbusd.log"
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "-vv", "--log-file", str(log_file))
    child.running()
    write_ten_then_read_two(port)
    assert child.stop(signal.SIGTERM) == 0
    assert child.stderr == []  # all of it went to the file
    logged = log_file.read_text(encoding="utf-8")
    assert "listening on" in logged and "-> ok values=[9, 10]" in logged

    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "--log-level", "warning")
    child.running()
    write_ten_then_read_two(port)
    assert child.stop(signal.SIGTERM) == 0
    assert child.stderr == []  # INFO's listening and connection lines are below the level asked

    line = assert_one_line_error(launch("--log-file", str(tmp_path / "no-such-folder" / "x.log")))
    assert line.startswith("modbusd: cannot write the log file ") and "No such file" in line, line


# ------------------------------------------------------------------------------ serial lines, UDP, RTU over TCP


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on, from /proc: its socket inodes, matched in /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_modbusd_rtu_alone_serves_the_serial_line_and_opens_no_tcp_port(
    pty_pair: Callable[[], PtyPair], launch: Callable[..., Modbusd]
) -> None:
    pair = pty_pair()
    child = launch("--rtu", pair.server_end, "--parity", "N", "--unit", "5")
    starting = child.running()[1]
    assert starting.startswith(f"Starting server with RTU on {pair.server_end} (19200 8N2, unit 5). ")
    assert listening_tcp_ports(child.proc.pid) == set()
    client = ModbusSerialClient(pair.client_end, framer=FramerType.RTU, baudrate=19200, parity="N", stopbits=2,
                                timeout=3, retries=0)  # fmt: skip
    try:
        assert client.connect()
        assert not client.write_register(3, 33, device_id=5).isError()
        assert client.read_holding_registers(3, count=1, device_id=5).registers == [33]
    finally:
        client.close()
    assert child.stop(signal.SIGTERM) == 0


def test_modbusd_serves_every_transport_named_on_one_data_model(
    pty_pair: Callable[[], PtyPair], launch: Callable[..., Modbusd]
) -> None:
    pair = pty_pair()
    port, rtu_port, udp_port = free_port(), free_port(), free_port()
    child = launch("--host", HOST, "-p", str(port), "--ascii", pair.server_end, "--parity", "n",
                   "--rtu-over-tcp", str(rtu_port), "--udp", str(udp_port))  # fmt: skip
    starting = child.running()[1]
    assert starting.startswith(
        f"Starting server on {HOST} port {port}, ASCII on {pair.server_end} (19200 8N2, unit 1), "
        f"RTU over TCP on {HOST} port {rtu_port} (unit 1), UDP on {HOST} port {udp_port}. "
    )
    assert listening_tcp_ports(child.proc.pid) == {port, rtu_port}
    udp = ModbusUdpClient(HOST, port=udp_port, timeout=3, retries=0)
    try:
        assert udp.connect()
        assert not udp.write_register(0, 777, device_id=1).isError()
    finally:
        udp.close()
    assert read_register(port) == 777
    assert child.stop(signal.SIGTERM) == 0


def test_modbusd_refuses_a_missing_serial_device_with_one_line_and_exit_2(launch: Callable[..., Modbusd]) -> None:
    line = assert_one_line_error(launch("--rtu", "/dev/ttyUSB-modbusd-test-none"))
    assert "/dev/ttyUSB-modbusd-test-none" in line and "does not exist" in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rtu", "/dev/ttyUSB0", "--bytesize", "7"], "RTU needs 8"),
        (["--unit", "248"], "1..247"),
        (["--parity", "X"], "parity 'X' is none of E, O, N (even, odd, none)"),
    ],
)
def test_modbusd_rejects_wrong_serial_options_with_one_line(
    launch: Callable[..., Modbusd], args: list[str], words: str
) -> None:
    assert words in assert_one_line_error(launch(*args))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--baudrate", "9600"], "--baudrate sets"),
        (["--parity", "N"], "--parity sets"),
        (["--bytesize", "7", "--stopbits", "2"], "--bytesize and --stopbits set"),
        (["-p", "5020", "--parity", "even"], "--parity sets"),
    ],
)
def test_modbusd_refuses_serial_settings_without_a_serial_line(
    launch: Callable[..., Modbusd], args: list[str], named: str
) -> None:
    """Alone they changed nothing: modbusd started Modbus/TCP on port 502 as if they had been understood."""
    line = assert_one_line_error(launch(*args))
    assert line.startswith(f"modbusd: {named} a serial line: name it with --rtu DEVICE or --ascii DEVICE"), line


@pytest.mark.parametrize("spelling", ["none", "None", "n"])
def test_modbusd_takes_the_parity_as_other_tools_spell_it(
    pty_pair: Callable[[], PtyPair], launch: Callable[..., Modbusd], spelling: str
) -> None:
    pair = pty_pair()
    child = launch("--rtu", pair.server_end, "--parity", spelling, "--baudrate", "9600")
    assert child.running()[1].startswith(f"Starting server with RTU on {pair.server_end} (9600 8N2, unit 1). ")
    assert child.stop(signal.SIGTERM) == 0


# ------------------------------------------------------------------------------------------------ gateway


def test_modbusd_forwards_the_unit_ids_named_by_forward(
    launch: Callable[..., Modbusd], start_server: Callable[..., Server]
) -> None:
    downstream = start_server(Device())
    downstream.device.holding_registers.set_values(0, [4321])
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "--forward", f"3,5-6=tcp:{HOST}:{downstream.port}",
                   "--forward-timeout", "0.5", "--forward-queue", "4", "--forward-in-flight", "4")  # fmt: skip
    banner = child.running()
    assert f"gateway for units 3, 5-6 to TCP {HOST}:{downstream.port}" in banner[1]
    assert read_register(port, unit_id=6) == 4321
    assert read_register(port, unit_id=1) == 0  # not forwarded: the local device
    assert child.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("1-3=rtu", "is not UNITS=rtu:DEVICE"),
        ("1=modem:/dev/ttyS0", "is not UNITS=rtu:DEVICE"),
        ("a-b=tcp:host", "not a list of unit ids"),
        ("1=rtu:/dev/ttyS0,fast", "not a baud rate"),
        ("1=rtu:/dev/ttyS0,9600,9X1", "not serial settings"),
        ("250=rtu:/dev/ttyS0", "slave ids are 0..247"),
    ],
)
def test_modbusd_rejects_a_wrong_forward_option_with_one_line(
    launch: Callable[..., Modbusd], option: str, words: str
) -> None:
    assert words in assert_one_line_error(launch("--forward", option))


@pytest.mark.parametrize(("value", "words"), [("0", "must be greater than 0"), ("many", "is not a number"),
                                             ("300", "in-flight bound 300 outside 1..256")])  # fmt: skip
def test_modbusd_rejects_a_wrong_forward_in_flight_with_one_line(
    launch: Callable[..., Modbusd], value: str, words: str
) -> None:
    assert words in assert_one_line_error(launch("--forward", "3=tcp:127.0.0.1", "--forward-in-flight", value))


def test_modbusd_refuses_a_unit_id_both_served_and_forwarded(launch: Callable[..., Modbusd]) -> None:
    line = assert_one_line_error(launch("-u", "1-3", "--forward", "3=tcp:127.0.0.1"))
    assert "both a local device and forwarded" in line


# -------------------------------------------------------------------------------- optional extras, MQTT bridge


@pytest.mark.parametrize(
    ("module", "args", "words"),
    [
        (
            "aiohttp",
            ["-p", "0", "--host", HOST, "--http", "0"],
            "the HTTP control API needs aiohttp: pip install 'modbusd[http]'",
        ),
        (
            "aiomqtt",
            ["-p", "0", "--host", HOST, "--mqtt", f"mqtt://{HOST}:1"],
            "the MQTT bridge needs aiomqtt: pip install 'modbusd[mqtt]'",
        ),
        (
            "serial_asyncio_fast",
            ["--rtu", "/dev/ttyUSB0"],  # serial only: nothing bound (and logged) first
            "serial lines need pyserial-asyncio-fast (serial_asyncio_fast is missing): pip install 'modbusd[serial]'",
        ),
    ],
)
def test_modbusd_says_in_one_line_which_extra_to_install_when_its_package_is_missing(
    launch: Callable[..., Modbusd], tmp_path: Path, module: str, args: list[str], words: str
) -> None:
    child = launch(*args, prefix=without_module(tmp_path, module))
    line = assert_one_line_error(child)
    assert line.startswith("modbusd: ") and words in line, line
    assert "simulated" not in line  # the message is modbusd's own, not the import's


def without_module(tmp_path: Path, module: str) -> list[str]:
    """A command prefix whose Python cannot import `module`, as if its extra were not installed.

    A package of that name, first on the path, whose import raises ImportError.
    """
    (tmp_path / module).mkdir()
    (tmp_path / module / "__init__.py").write_text(f"raise ImportError('simulated: not installed', name={module!r})\n")
    return [
        "env",
        f"PYTHONPATH={os.pathsep.join(filter(None, [str(tmp_path), str(SRC), os.environ.get('PYTHONPATH')]))}",
    ]


def test_modbusd_serves_the_init_example_without_aiohttp_and_says_so_in_one_warning(
    launch: Callable[..., Modbusd], tmp_path: Path
) -> None:
    """`pip install . && modbusd init f.toml && modbusd --config f.toml`: no extras, yet the example runs."""
    prefix = without_module(tmp_path, "aiohttp")
    path = tmp_path / "modbusd.toml"
    init = subprocess.run([*prefix, sys.executable, "-m", "modbusd", "init", str(path)], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert init.returncode == 0, init.stderr
    port = free_port()
    text = path.read_text()
    assert "\n[http]\n" in text  # the example does ask for the control API
    path.write_text(text.replace("port = 5020", f"port = {port}").replace("port = 8020", f"port = {free_port()}"))
    child = launch("--config", str(path), prefix=prefix)
    banner = child.running()
    assert not any("Control API" in line for line in banner)
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        assert client.read_input_registers(0, count=2, device_id=1).registers == [0x41AC, 0x0000]  # 21.5
    finally:
        client.close()
    assert child.stop(signal.SIGTERM) == 0
    warnings = [line for line in child.stderr if "WARNING" in line]
    assert len(warnings) == 1 and "aiohttp" in warnings[0] and "modbusd[http]" in warnings[0], child.stderr
    assert not any("Traceback" in line for line in child.stderr), child.stderr


def test_modbusd_mqtt_publishes_a_client_write_and_carries_out_a_set(
    launch: Callable[..., Modbusd], broker: Mosquitto
) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "--mqtt", f"mqtt://{HOST}:{broker.port}",
                   "--mqtt-subscribe", "40001:float")  # fmt: skip
    banner = child.running()
    assert f"MQTT bridge to mqtt://{HOST}:{broker.port}, topics modbusd/<unit>/<table>/<address>" in banner
    topic = "modbusd/all/hr/0"  # 40001: holding register 0 of the device answering every unit id: its one topic

    async def main() -> None:
        seen: list[Any] = []  # the JSON payloads published on `topic`, in order

        async def watch(client: aiomqtt.Client) -> None:
            async for message in client.messages:
                if str(message.topic) == topic:
                    seen.append(json.loads(bytes(message.payload)))  # type: ignore[arg-type]

        async def published(value: float) -> Any:
            """The first event on `topic` carrying `value`, waiting a bounded time for it; the state the bridge
            publishes when it connects (`client` null) may carry the value too, if the write came first."""
            deadline = time.monotonic() + 15
            while not (found := [p for p in seen if p["value"] == value and p["client"] is not None]):
                assert time.monotonic() < deadline, f"nothing with {value} on {topic} in 15 s: {seen}"
                await asyncio.sleep(0.02)
            return found[0]

        async with aiomqtt.Client(HOST, broker.port, timeout=5) as mqtt:
            await mqtt.subscribe("modbusd/#", qos=1)
            watcher = asyncio.create_task(watch(mqtt))
            modbus = AsyncModbusTcpClient(HOST, port=port, timeout=5, retries=0)
            try:
                assert await modbus.connect()
                assert not (await modbus.write_registers(0, [0x41AC, 0x0000], device_id=1)).isError()  # 21.5
                event = await published(21.5)
                assert (event["value"], event["previous"], event["type"], event["function"]) == (
                    21.5, 0.0, "float", 16)  # fmt: skip
                assert event["client"].startswith(HOST)
                # the event came after the bridge subscribed to …/set, so this one is heard
                await mqtt.publish(f"{topic}/set", "float:-3.25", qos=1)
                state = await published(-3.25)
                assert state["client"] == "mqtt" and state["type"] == "float"
                reply = await modbus.read_holding_registers(0, count=2, device_id=1)
                assert not reply.isError() and reply.registers == [0xC050, 0x0000]  # -3.25
            finally:
                modbus.close()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    asyncio.run(asyncio.wait_for(main(), 40))
    assert child.stop(signal.SIGTERM) == 0
    assert child.stdout[-1].startswith("Operator terminated server at ")
    assert not any("Traceback" in line for line in child.stderr), child.stderr


def test_the_server_runs_on_uvloop_when_installed_unless_no_uvloop() -> None:
    import uvloop  # the "fast" extra, which CI installs

    from modbusd.cli import _event_loop

    assert _event_loop(None) is uvloop.run  # the default
    assert _event_loop(True) is uvloop.run
    assert _event_loop(False) is asyncio.run
