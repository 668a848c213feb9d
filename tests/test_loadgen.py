"""benchmarks/loadgen.c, the benchmarks' load generator: built with the C compiler .ci/run installs, run against a
real modbusd, and against a server that answers wrongly on purpose, to show that it checks every answer.

Its figures are only worth something if a wrong answer counts as an error and a right one does not, so both are
tested here; the benchmark itself (bench_tcp.py) is not part of the suite.
"""

from __future__ import annotations

import shutil
import socket
import socketserver
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modbusd import Device, Server

HOST = "127.0.0.1"
SOURCE = Path(__file__).resolve().parent.parent / "benchmarks" / "loadgen.c"
RUN_TIMEOUT = 20.0  # seconds one loadgen run may take, far above what each asks for
MBAP = struct.Struct(">HHHB")

StartServer = Callable[..., Server]


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """loadgen.c compiled once per test run, as bench_tcp.py compiles it (warnings are errors)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None, "no C compiler (apt-get install gcc)"
    binary = tmp_path_factory.mktemp("loadgen") / "loadgen"
    build = subprocess.run([cc, "-O2", "-Wall", "-Werror", "-o", str(binary), str(SOURCE)],
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert build.returncode == 0, build.stderr
    return binary


def run(binary: Path, port: int, *args: str) -> tuple[int, dict[str, str]]:
    """(exit code, the key=value pairs of its one output line)."""
    proc = subprocess.run([str(binary), "-H", HOST, "-p", str(port), "-C", "3", *args],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("requests=")]
    assert len(lines) == 1, f"exit {proc.returncode}, stdout {proc.stdout!r}, stderr {proc.stderr!r}"
    return proc.returncode, dict(token.split("=", 1) for token in lines[0].split())


@pytest.mark.parametrize(("fc", "seconds"), [("3", "1"), ("6", "0.3"), ("16", "0.3")])
def test_every_answer_of_modbusd_counts_and_none_is_an_error(
    loadgen: Path, start_server: StartServer, fc: str, seconds: str
) -> None:
    server = start_server(Device())
    code, out = run(loadgen, server.port, "-c", "2", "-d", "4", "-f", fc, "-w", "0.1", "-T", seconds, "-o", "2000")
    assert code == 0, out
    assert int(out["requests"]) > 0 and float(out["rps"]) > 0
    assert out["errors"] == "0" and out["conns_ok"] == "2"
    assert float(out["p50_us"]) > 0 and float(out["p99_us"]) >= float(out["p50_us"])
    assert float(out["max_us"]) >= float(out["p99_us"])
    # Every request sent was answered, and modbusd saw exactly as many requests as loadgen counted answers.
    assert out["sent_total"] == out["ok_total"]
    assert int(out["requests"]) <= int(out["ok_total"])
    assert server.device.diagnostics.bus_message == int(out["ok_total"])


@pytest.mark.parametrize(("fc", "quantity"), [("6", 1), ("16", 10)])
def test_stride_gives_each_connection_registers_of_its_own(
    loadgen: Path, start_server: StartServer, fc: str, quantity: int
) -> None:
    """-s: connection i writes from -a + i*-s on (the state benchmark's writers, each storing rows of its own)."""
    server = start_server(Device())
    code, out = run(loadgen, server.port, "-c", "3", "-f", fc, "-n", str(quantity), "-a", "5", "-s", "100", "-w",
                    "0.1", "-T", "0.3", "-o", "2000")  # fmt: skip
    assert code == 0 and out["errors"] == "0", out
    registers = server.device.holding_registers.values(0, 400)
    written = {address for address, value in enumerate(registers) if value}
    assert written == {first + k for first in (5, 105, 205) for k in range(quantity)}


def test_a_stride_past_the_last_register_is_refused(loadgen: Path) -> None:
    proc = subprocess.run([str(loadgen), "-c", "3", "-f", "6", "-a", "65000", "-s", "300"], capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, check=False)  # fmt: skip
    assert proc.returncode == 1 and "run past address 65535" in proc.stderr, proc.stderr


def test_idle_mode_holds_connections_and_sends_nothing(
    loadgen: Path, start_server: StartServer, eventually: Callable[..., bool]
) -> None:
    server = start_server(Device())
    proc = subprocess.Popen([str(loadgen), "-H", HOST, "-p", str(server.port), "-I", "-c", "20", "-T", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        held = eventually(lambda: server.connection_count == 20, timeout=5.0)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert held, f"modbusd saw {server.connection_count} connections"
    assert proc.returncode == 0, err
    assert "conns_ok=20 " in out and "sent_total=0 " in out and "errors=0 " in out
    assert server.device.diagnostics.bus_message == 0


# ------------------------------------------------------------------------------------ a server that answers wrongly


def wrong_answer(mistake: str, tid: int, unit: int, pdu: bytes) -> bytes:
    """The FC03 answer (registers all zero) with one deliberate `mistake`."""
    quantity = struct.unpack(">H", pdu[3:5])[0]
    answer = bytes((3, 2 * quantity)) + bytes(2 * quantity)
    if mistake == "transaction id":
        tid ^= 0x8000
    elif mistake == "unit id":
        unit ^= 1
    elif mistake == "function code":
        answer = bytes((4,)) + answer[1:]
    elif mistake == "byte count":
        answer = bytes((3, 2 * quantity - 2)) + bytes(2 * quantity - 2)
    elif mistake == "exception":
        answer = bytes((0x83, 0x02))
    return MBAP.pack(tid, 0, len(answer) + 1, unit) + answer


class WrongServer(socketserver.ThreadingTCPServer):
    """Answers every request at once, always with the same mistake."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mistake: str) -> None:
        self.mistake = mistake
        super().__init__((HOST, 0), WrongHandler)


class WrongHandler(socketserver.BaseRequestHandler):
    server: WrongServer

    def handle(self) -> None:
        self.request.settimeout(RUN_TIMEOUT)
        data = b""
        while chunk := self._recv():
            data += chunk
            while len(data) >= 7 and len(data) >= 6 + (length := struct.unpack(">H", data[4:6])[0]):
                tid, _proto, _length, unit = MBAP.unpack(data[:7])
                self.request.sendall(wrong_answer(self.server.mistake, tid, unit, data[7 : 6 + length]))
                data = data[6 + length :]

    def _recv(self) -> bytes:
        try:
            return self.request.recv(4096)
        except OSError:  # loadgen reset the connection, or the time-out above
            return b""


@pytest.fixture
def wrong_server() -> Iterator[Callable[[str], WrongServer]]:
    servers: list[tuple[WrongServer, threading.Thread]] = []

    def start(mistake: str) -> WrongServer:
        server = WrongServer(mistake)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("mistake", "counter"),
    [
        ("transaction id", "bad_tid"),
        ("unit id", "bad_unit"),
        ("function code", "bad_fc"),
        ("byte count", "bad_len"),
        ("exception", "exceptions"),
    ],
)
def test_a_wrong_answer_is_an_error_not_a_request(
    loadgen: Path, wrong_server: Callable[[str], WrongServer], mistake: str, counter: str
) -> None:
    server = wrong_server(mistake)
    port = server.server_address[1]
    code, out = run(loadgen, port, "-c", "2", "-d", "4", "-w", "0", "-T", "0.3", "-o", "200")
    assert code == 2, out  # errors above -E 0
    assert int(out[counter]) > 0 and int(out["errors"]) >= int(out[counter])
    assert out["requests"] == "0" and out["ok_total"] == "0" and out["rps"] == "0.0"


def test_a_refused_connection_is_exit_3(loadgen: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, so nobody listens there
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    proc = subprocess.run([str(loadgen), "-H", HOST, "-p", str(port), "-C", "0.3", "-T", "0.1"],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "conns_ok=0 " in proc.stdout and "only 0 of 1 connections" in proc.stderr
