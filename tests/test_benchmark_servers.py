"""The yardsticks bench_connections.py and bench_tcp.py put beside modbusd: libmodbus's two servers and the asyncio
floor, each built or started as the benchmarks do, driven by loadgen (which checks each answer's frame) and read once
by hand (the values).

A yardstick that answers wrongly, or not at all, would make every ratio against it meaningless without anyone
noticing: the benchmarks themselves are not part of the suite, so this is where those servers are held to the
right answers (FC03 of registers 0..9 = 0..9, echoed transaction and unit ids), one request at a time and pipelined.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_loadgen import loadgen, run  # noqa: F401  (loadgen: the fixture, built once per run)

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
START_TIMEOUT = 20.0


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {data.hex(' ')}"
        data += chunk
    return data


def build_libmodbus_server(source: str, out: Path) -> Path:
    """Compiled as bench_tcp.py compiles it: pkg-config's flags for libmodbus, else Debian's paths."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None, "no C compiler (apt-get install gcc)"
    flags = ["-I/usr/include/modbus", "-lmodbus"]
    if shutil.which("pkg-config"):
        found = subprocess.run(["pkg-config", "--cflags", "--libs", "libmodbus"], capture_output=True, text=True,
                               timeout=30, check=False).stdout.split()  # fmt: skip
        flags = found or flags
    binary = out / source.removesuffix(".c")
    build = subprocess.run([cc, "-O2", "-Wall", "-o", str(binary), str(BENCHMARKS / source), *flags],
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert build.returncode == 0, build.stderr
    return binary


@pytest.fixture
def yardstick(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """One of the three servers, started on a free loopback port; its port, once it says it is ready."""
    port = free_port()
    if request.param == "floor":
        command = [sys.executable, str(BENCHMARKS / "run_asyncio_floor.py"), "-p", str(port)]
    else:
        command = [str(build_libmodbus_server(request.param, tmp_path)), str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""  # "ready port=N", or "" if it died
        assert line.strip() == f"ready port={port}", (line, proc.stderr.read() if proc.poll() is not None else "")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=START_TIMEOUT)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else proc.returncode  # SIGTERM: a clean exit


@pytest.mark.parametrize("yardstick", ["libmodbus_server.c", "libmodbus_reply_server.c", "floor"], indirect=True)
@pytest.mark.parametrize("depth", ["1", "16"])
def test_each_yardstick_answers_every_request_right(loadgen: Path, yardstick: int, depth: str) -> None:  # noqa: F811
    code, out = run(loadgen, yardstick, "-c", "3", "-d", depth, "-w", "0.1", "-T", "0.3", "-o", "2000")
    assert code == 0 and out["errors"] == "0", out
    assert int(out["ok_total"]) > 0 and out["sent_total"] == out["ok_total"]
    assert out["conns_ok"] == "3"


@pytest.mark.parametrize("yardstick", ["libmodbus_server.c", "libmodbus_reply_server.c", "floor"], indirect=True)
def test_each_yardstick_answers_with_the_benchmark_data(yardstick: int) -> None:
    """loadgen checks the frame (ids, function, length), not the values: here the bytes themselves, so that every
    server of a benchmark serves the same data (holding register i = i)."""
    with socket.create_connection(("127.0.0.1", yardstick), timeout=START_TIMEOUT) as sock:
        sock.sendall(struct.pack(">HHHBBHH", 0x1234, 0, 6, 1, 3, 0, 10))
        answer = recv_exactly(sock, 29)
    assert answer == struct.pack(">HHHBBB10H", 0x1234, 0, 23, 1, 3, 20, *range(10))
