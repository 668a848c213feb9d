"""Fixtures for the socket tests: servers on 127.0.0.1 with a free port, pymodbus clients, raw TCP clients,
virtual serial lines (socat pty pairs) and a mosquitto MQTT broker.

Every server, client, socket and process made here is closed by the fixture that made it, and every wait is
bounded.
"""

import asyncio
import os
import re
import selectors
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient, ModbusTlsClient

from modbusd import Device, Server
from modbusd.config import ConfigError, loads

HOST = "127.0.0.1"
TIMEOUT = 3.0  # seconds any single socket operation may take before the test fails
MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id: written out here, not taken from modbusd


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def mbap_frame(transaction_id: int, unit_id: int, pdu: bytes | str, protocol_id: int = 0) -> bytes:
    """A Modbus/TCP ADU built by hand; `pdu` may be hex text such as "03 0000 0001"."""
    body = bytes.fromhex(pdu) if isinstance(pdu, str) else pdu
    return MBAP.pack(transaction_id, protocol_id, len(body) + 1, unit_id) + body


class RawClient:
    """A plain TCP socket that speaks bytes: for what a well-behaved client library will not send."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout

    frame = staticmethod(mbap_frame)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, count: int, timeout: float | None = None) -> bytes:
        """Exactly `count` bytes, or AssertionError when the peer closes or the time runs out first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        data = bytearray()
        while len(data) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out with {len(data)} of {count} bytes: {bytes(data).hex(' ')}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(count - len(data))
            except TimeoutError:
                continue
            if not chunk:
                raise AssertionError(f"connection closed after {len(data)} of {count} bytes")
            data += chunk
        return bytes(data)

    def read_adu(self, timeout: float | None = None) -> tuple[int, int, int, bytes]:
        """(transaction id, protocol id, unit id, pdu) of the next response."""
        tid, proto, length, unit = MBAP.unpack(self.recv_exact(MBAP.size, timeout))
        return tid, proto, unit, self.recv_exact(length - 1, timeout)

    def request(self, pdu: bytes | str, *, transaction_id: int = 1, unit_id: int = 1) -> bytes:
        """Send one request and return the response PDU, checking that the MBAP header echoes the request's."""
        self.send(mbap_frame(transaction_id, unit_id, pdu))
        tid, proto, unit, reply = self.read_adu()
        assert (tid, proto, unit) == (transaction_id, 0, unit_id)
        return reply

    def is_silent(self, seconds: float = 0.5) -> bool:
        """True when nothing at all arrives within `seconds` (and the peer has not closed)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        assert data, "the server closed the connection instead of staying silent"
        return False

    def closed_by_peer(self, timeout: float | None = None) -> bool:
        """True when the peer closes (EOF or reset) within `timeout`; any data that arrives first is discarded."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(4096):
                    return True
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """start_server(devices=None, **options) → a Server on 127.0.0.1 (port 0: a free one) in a background thread."""
    servers: list[Server] = []

    def start(devices: Device | Mapping[int, Device] | None = None, **options: Any) -> Server:
        options.setdefault("port", 0)
        server = Server(devices if devices is not None else Device(), host=HOST, **options)
        server.start_thread(timeout=TIMEOUT)
        servers.append(server)
        assert server.port != 0
        return server

    yield start
    for server in servers:
        server.stop_thread(timeout=TIMEOUT)
    assert wait_until(lambda: not any(t.name == "modbusd" for t in threading.enumerate())), "a server thread lives on"


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """One device in the default (separate) layout, answering every unit id."""
    return start_server()


@pytest.fixture
def connect_client() -> Iterator[Callable[..., ModbusTcpClient]]:
    """connect_client(server) → a connected pymodbus client with a short time-out and no retries; with
    `sslctx`, a pymodbus TLS client of the server's Modbus/TCP Security port."""
    clients: list[ModbusTcpClient | ModbusTlsClient] = []

    def connect(server: Server, timeout: float = TIMEOUT, *, sslctx: ssl.SSLContext | None = None) -> Any:
        if sslctx is None:
            client: ModbusTcpClient | ModbusTlsClient = ModbusTcpClient(HOST, port=server.port, timeout=timeout,
                                                                        retries=0)  # fmt: skip
        else:
            client = ModbusTlsClient(HOST, port=server.tls_port, sslctx=sslctx, timeout=timeout, retries=0)
        clients.append(client)
        assert client.connect(), f"pymodbus could not connect to port {client.comm_params.port}"
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def client(server: Server, connect_client: Callable[..., ModbusTcpClient]) -> ModbusTcpClient:
    return connect_client(server)


@pytest.fixture
def start_api(start_server: Callable[..., Server]) -> Iterator[Callable[..., tuple[Server, Any]]]:
    """start_api(devices=None, server_options=None, **HttpApi options) → (server, api): the control API on a free
    port, in the loop of a server served from a background thread, as under `modbusd --http`. Skips without
    aiohttp (an extra)."""
    pytest.importorskip("aiohttp")
    from modbusd.web import HttpApi  # after the skip

    started: list[tuple[Server, Any]] = []

    def start(devices: object = None, server_options: Mapping[str, Any] | None = None, **options: Any,
              ) -> tuple[Server, Any]:  # fmt: skip
        server = start_server(devices, **(server_options or {}))
        api = asyncio.run_coroutine_threadsafe(HttpApi.start(server, port=0, **options), server._loop).result(TIMEOUT)
        started.append((server, api))
        return server, api

    yield start
    for server, api in started:
        asyncio.run_coroutine_threadsafe(api.stop(), server._loop).result(TIMEOUT)


@pytest.fixture
def open_raw() -> Iterator[Callable[..., RawClient]]:
    """open_raw(server_or_port) → a RawClient connected to it; closed at the end of the test."""
    raws: list[RawClient] = []

    def open_(target: Server | int, timeout: float = TIMEOUT) -> RawClient:
        raw = RawClient(target.port if isinstance(target, Server) else target, timeout)
        raws.append(raw)
        return raw

    yield open_
    for raw in raws:
        raw.close()


def assert_config_mistake(text: str, line: int, key: str, words: str, path: str = "broken.toml") -> None:
    """Reading the device file `text` fails with one ConfigError that names the file, the line and the key, and
    says `words` about what is wrong: what a person needs to fix it."""
    with pytest.raises(ConfigError) as caught:
        loads(text, path)
    error = caught.value
    assert (error.path, error.line, error.key) == (path, line, key), str(error)
    assert words in error.message
    assert str(error).startswith(f"{path}:{line}: ")


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT, interval: float = 0.01) -> bool:
    """Poll `condition` until it holds or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


@pytest.fixture
def eventually() -> Callable[..., bool]:
    """The bounded `wait_until` poller, as a fixture so test modules need not import conftest."""
    return wait_until


class PtyPair:
    """A virtual serial cable: bytes written to one end come out of the other, as on a null-modem cable."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        socat = shutil.which("socat")
        if socat is None:
            pytest.fail("socat is not installed: apt-get install socat (.ci/run does)")
        self.proc = subprocess.Popen(
            [socat, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None
        paths: list[str] = []
        text = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stderr, selectors.EVENT_READ)
            while len(paths) < 2 and (left := deadline - time.monotonic()) > 0:
                if not selector.select(left):
                    continue
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                text += chunk
                paths = re.findall(r"PTY is (\S+)", text.decode(errors="replace"))
        if len(paths) < 2:
            self.close()
            pytest.fail(f"socat did not report two ptys in {timeout} s: {text!r}")
        self.server_end, self.client_end = paths[0], paths[1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def pty_pair() -> Iterator[Callable[[], PtyPair]]:
    """pty_pair() → a new PtyPair; every socat started is stopped at the end of the test."""
    pairs: list[PtyPair] = []

    def make() -> PtyPair:
        pair = PtyPair()
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        pair.close()


BROKER_TIMEOUT = 10.0  # seconds mosquitto may take to accept connections, or to exit


class Mosquitto:
    """A mosquitto broker this test started (and only that one): anonymous, no persistence, on one port."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/sbin/mosquitto") if Path(p).exists()), None)  # fmt: skip
        if binary is None:
            pytest.fail("mosquitto is not installed: apt-get install mosquitto (.ci/run does)")
        self.binary = binary
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n")
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + BROKER_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.log.read_text(errors='replace')}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not accept connections on port {self.port} in {BROKER_TIMEOUT} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(BROKER_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(BROKER_TIMEOUT)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running mosquitto on a free port of 127.0.0.1, stopped at the end of the test."""
    mosquitto = Mosquitto(tmp_path)
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


@pytest.fixture
def launch() -> Iterator[Callable[..., Any]]:
    """launch(*args) → a `python -m modbusd` child (test_cli.py's Modbusd), killed at the end if still alive."""
    from tests.test_cli import EXIT_TIMEOUT, Modbusd  # test_cli imports this module: import it when used

    children: list[Modbusd] = []

    def start(*args: str) -> Modbusd:
        children.append(Modbusd(list(args)))
        return children[-1]

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
        child.finish(EXIT_TIMEOUT)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Each phase's report kept on the test item (`item.report_call`), so a fixture's teardown can tell that its test
    failed: the browser tests save a screenshot then."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
