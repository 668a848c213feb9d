"""The open-files limit: modbusd in a child process with a low RLIMIT_NOFILE, hammered by more clients than it can
hold. It must keep serving, log a handful of lines instead of a traceback per failed accept(), and serve new clients
once old ones leave (docs/limits.md). Every child is started here and ended here; every wait is bounded.
"""

from __future__ import annotations

import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

import modbusd
from tests.conftest import HOST, free_port, mbap_frame
from tests.test_cli import Modbusd

SRC = Path(modbusd.__file__).resolve().parents[1]
READ = bytes.fromhex("03 0000 0001")
ANSWER_LENGTH = 11  # MBAP header (7) + 03 02 0000
WAIT = 15.0  # seconds for all the answers the server can give to come


@pytest.fixture(autouse=True)
def enough_descriptors_for_the_clients() -> None:
    """The clients live in this process: it needs more descriptors than the server it hammers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))


def connect_all(port: int, count: int) -> list[socket.socket]:
    """`count` connections, each sending one request; the kernel completes them whether or not the server accepts."""
    socks = []
    for i in range(count):
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.sendall(mbap_frame(i, 1, READ))
        socks.append(sock)
    return socks


def answered(socks: list[socket.socket], timeout: float, settle: float = 1.0) -> set[socket.socket]:
    """The sockets that received their response: waits until `settle` seconds pass with no new one (or `timeout`)."""
    done: set[socket.socket] = set()
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        quiet_until = time.monotonic() + settle
        while (now := time.monotonic()) < deadline and now < quiet_until:
            for key, _ in selector.select(min(0.1, deadline - now)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(64)
                assert len(data) == ANSWER_LENGTH, data.hex(" ")
                selector.unregister(sock)
                done.add(sock)
                quiet_until = time.monotonic() + settle
    return done


def hammer(socks: set[socket.socket], seconds: float) -> int:
    """Request and read on every socket in turn for `seconds`; the number of answers."""
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sock in socks:
            sock.sendall(mbap_frame(7, 1, READ))
        for sock in socks:
            assert len(sock.recv(64)) == ANSWER_LENGTH
            count += 1
    return count


def startup_line(line: str) -> bool:
    return any(text in line for text in ("listening on", "connections at a time", "open-files limit from"))


@pytest.mark.parametrize("loop", [["--no-uvloop"], ["--uvloop"]], ids=["asyncio", "uvloop"])
def test_modbusd_under_ulimit_256_keeps_serving_quietly_and_serves_new_clients_after(loop: list[str]) -> None:
    port = free_port()
    child = Modbusd(["-p", str(port), "--host", HOST, *loop], prefix=["prlimit", "--nofile=256:256", "--"])
    socks: list[socket.socket] = []
    try:
        child.running()
        socks = connect_all(port, 300)
        served = answered(socks, WAIT)
        assert len(served) > 150
        assert hammer(served, 2.0) >= len(served)
        during = [line for line in child.stderr if not startup_line(line)]
        assert len(during) < 10, during[:20]
        assert len(served) == 256 - 64  # the ceiling: the open-files limit less its margin, and no more
        assert any("the most the open-files limit allows" in line for line in during), during
        for sock in socks:
            sock.close()
        client = ModbusTcpClient(HOST, port=port, timeout=5, retries=2)
        try:
            assert client.connect()
            assert client.read_holding_registers(0, count=1, device_id=1).registers == [0]
        finally:
            client.close()
    finally:
        for sock in socks:
            sock.close()
        child.proc.terminate()
        child.finish()
    assert not any("Traceback" in line for line in child.stderr), child.stderr[:20]


STARVED_SERVER = """
import asyncio, logging, os, resource, sys
from modbusd import Device, Server

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

async def main() -> None:
    server = Server(Device(), host="127.0.0.1", port=0)
    await server.start()
    # descriptors taken by other things (files, serial ports): accept() runs out before the connection ceiling (96)
    other = [os.open(os.devnull, os.O_RDONLY) for _ in range(70)]
    print(server.port, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    await server.stop()

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.fixture
def starved_server() -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(loop: str) -> tuple[subprocess.Popen[str], int, list[str]]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, "-c", STARVED_SERVER, loop], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        procs.append(proc)
        lines: list[str] = []
        assert proc.stderr is not None and proc.stdout is not None
        threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stderr), daemon=True).start()
        port = int(proc.stdout.readline())
        return proc, port, lines

    yield start  # type: ignore[misc]  # a factory, called with the loop's name
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_descriptors_the_server_says_so_once_and_serves_the_waiting_clients_when_some_leave(
    starved_server, loop: str
) -> None:  # fmt: skip
    proc, port, lines = starved_server(loop)
    socks = connect_all(port, 80)
    try:
        first = answered(socks, WAIT)
        assert 20 < len(first) < 80  # served as many as it had descriptors for; the rest wait
        time.sleep(2.5)  # accept() keeps failing, retried every second
        for sock in list(first)[:20]:
            sock.close()
        waiting = [sock for sock in socks if sock not in first]
        later = answered(waiting, WAIT)
        assert len(later) >= 15  # the waiting clients got the freed descriptors, and their answers
        others = [line for line in lines if " ended after " not in line]  # one line per connection that ended
        assert len(others) < 10, others
        assert any("out of file descriptors" in line for line in lines), lines
        assert any("accepting connections again" in line for line in lines), lines
    finally:
        for sock in socks:
            sock.close()
        assert proc.stdin is not None
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        assert proc.wait(15) == 0
    assert not any("Traceback" in line for line in lines), lines


def test_modbusd_raises_its_soft_limit_and_keeps_max_connections_under_the_hard_one() -> None:
    port = free_port()
    child = Modbusd(["-p", str(port), "--host", HOST, "--max-connections", "5000"],
                    prefix=["prlimit", "--nofile=200:300", "--"])  # fmt: skip
    try:
        child.running()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("--max-connections" in line for line in child.stderr):
            time.sleep(0.05)
    finally:
        child.proc.terminate()
        child.finish()
    said = [line.split(": ", 1)[1] for line in child.stderr if "modbusd.server" in line]
    assert "raised the open-files limit from 200 to 300 (the hard limit)" in said, said
    assert any(line.startswith("--max-connections 5000 is more than the open-files limit 300 allows: at most 236 "
                               "connections") for line in said), said  # fmt: skip
