"""FC08/04 Force Listen Only Mode, allowed (the specification's behaviour, the default) or refused with exception 01
(`Server(listen_only=False)`, `--no-listen-only`, `[server] listen_only = false`), over TCP, UDP and a serial line.

Allowed, one request from any client (a spoofed UDP datagram included) silences the device for every client until
FC08/01 (MODBUS Application Protocol §6.8.1). Refused, the requester gets exception 01 and everyone goes on.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from modbusd import Device, Server, handler
from modbusd.protocol.rtu import with_crc
from modbusd.server import SerialLine
from tests.conftest import HOST, MBAP, RawClient, free_port, mbap_frame
from tests.test_cli_config import modbusd_cli
from tests.test_server_serial import Line

if TYPE_CHECKING:
    from tests.conftest import PtyPair

    StartServer = Callable[..., Server]

QUIET = 0.4  # seconds of silence that show a request went unanswered
LISTEN_ONLY = "08 0004 0000"
RESTART = "08 0001 0000"
READ = "03 0000 0001"


class Client(Protocol):
    def ask(self, pdu: str) -> bytes | None:
        """The response PDU to `pdu`, or None when none comes within QUIET."""
        ...


class TcpClient:
    def __init__(self, port: int) -> None:
        self.raw = RawClient(port)
        self.tid = 0

    def ask(self, pdu: str) -> bytes | None:
        self.tid += 1
        self.raw.send(mbap_frame(self.tid, 1, pdu))
        if self.raw.is_silent(QUIET):
            return None
        tid, _, _, reply = self.raw.read_adu()
        assert tid == self.tid
        return reply

    def close(self) -> None:
        self.raw.close()


class UdpClient:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))

    def ask(self, pdu: str) -> bytes | None:
        self.sock.sendto(mbap_frame(9, 1, pdu), (HOST, self.port))
        self.sock.settimeout(QUIET)
        try:
            reply = self.sock.recv(1024)
        except TimeoutError:
            return None
        assert MBAP.unpack_from(reply)[0] == 9
        return reply[MBAP.size :]

    def close(self) -> None:
        self.sock.close()


class RtuClient:
    def __init__(self, path: str) -> None:
        self.line = Line(path, 19200)

    def ask(self, pdu: str) -> bytes | None:
        self.line.send(with_crc(bytes.fromhex("01" + pdu)))
        data = bytearray()
        deadline = time.monotonic() + QUIET
        while time.monotonic() < deadline:  # bounded: what comes until a pause after the first byte
            chunk = self.line.port.read(256)
            data += chunk
            if data and not chunk:
                break
        if not data:
            return None
        assert bytes(data) == with_crc(bytes(data[:-2])) and data[0] == 1, bytes(data).hex(" ")
        return bytes(data[1:-2])

    def close(self) -> None:
        self.line.close()


Connect = Callable[[str, bool], tuple[Device, Callable[[], Client]]]


@pytest.fixture
def connect(start_server: StartServer, pty_pair: Callable[[], PtyPair]) -> Iterator[Connect]:
    """connect(transport, listen_only) → (the device, a function that opens one more client to it)."""
    clients: list[TcpClient | UdpClient | RtuClient] = []

    def serve(transport: str, listen_only: bool) -> tuple[Device, Callable[[], Client]]:
        device = Device()
        if transport == "tcp":
            server = start_server(device, listen_only=listen_only)
            opener: Callable[[], TcpClient | UdpClient | RtuClient] = lambda: TcpClient(server.port)  # noqa: E731
        elif transport == "udp":
            server = start_server(device, port=None, udp=0, listen_only=listen_only)
            opener = lambda: UdpClient(server.udp_port)  # noqa: E731
        else:
            pair = pty_pair()  # ptys refuse even parity here: 8N2, as test_server_serial.py
            start_server(device, port=None, serial=SerialLine(pair.server_end, parity="N"), listen_only=listen_only)
            opener = lambda: RtuClient(pair.client_end)  # noqa: E731

        def open_client() -> Client:
            clients.append(opener())
            return clients[-1]

        return device, open_client

    yield serve
    for client in clients:
        client.close()


TRANSPORTS = ["tcp", "udp", "rtu"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refused_listen_only_gets_exception_01_and_the_device_keeps_answering(connect: Connect, transport: str) -> None:
    device, open_client = connect(transport, False)
    attacker = open_client()
    assert attacker.ask(LISTEN_ONLY) == bytes.fromhex("88 01")
    assert attacker.ask("08 0004 1234") == bytes.fromhex("88 01")  # 01 before 03: the data is not even looked at
    assert not device.diagnostics.listen_only
    other = attacker if transport == "rtu" else open_client()  # one master per serial line
    assert other.ask(READ) == bytes.fromhex("03 02 0000")
    assert other.ask("08 0000 ABCD") == bytes.fromhex("08 0000 ABCD")  # the rest of FC08 is unchanged


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_allowed_listen_only_silences_the_device_for_every_client_until_restart(
    connect: Connect, transport: str
) -> None:
    device, open_client = connect(transport, True)
    attacker = open_client()
    assert attacker.ask(LISTEN_ONLY) is None
    assert device.diagnostics.listen_only
    other = attacker if transport == "rtu" else open_client()
    assert other.ask(READ) is None
    assert other.ask(RESTART) is None  # §6.8.1: acted on, not answered, in listen-only mode
    assert other.ask(READ) == bytes.fromhex("03 02 0000")


def test_a_refused_broadcast_does_not_enter_listen_only_either() -> None:
    device = Device()
    device.diagnostics.refuse_listen_only = True
    assert handler.respond(device, bytes.fromhex(LISTEN_ONLY), broadcast=True) is None
    assert not device.diagnostics.listen_only
    assert device.diagnostics.bus_exception_error == 1


# ------------------------------------------------------------------------------------- command line, file


def test_no_listen_only_option_refuses_fc08_04(launch: Callable[..., object]) -> None:
    port = free_port()
    child = launch("--host", HOST, "-p", str(port), "--no-listen-only")
    child.running()  # type: ignore[attr-defined]
    client = TcpClient(port)
    try:
        assert client.ask(LISTEN_ONLY) == bytes.fromhex("88 01")
        assert client.ask(READ) == bytes.fromhex("03 02 0000")
    finally:
        client.close()


def test_device_file_listen_only_false_refuses_fc08_04(tmp_path: Path, launch: Callable[..., object]) -> None:
    port = free_port()
    path = tmp_path / "dev.toml"
    path.write_text(f'[server]\nhost = "{HOST}"\nport = {port}\nlisten_only = false\n')
    checked = modbusd_cli("check", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "server: FC08/04 force listen only mode refused (exception 01)" in checked.stdout.splitlines()
    child = launch("--config", str(path))
    child.running()  # type: ignore[attr-defined]
    client = TcpClient(port)
    try:
        assert client.ask(LISTEN_ONLY) == bytes.fromhex("88 01")
    finally:
        client.close()


def test_device_file_listen_only_must_be_true_or_false(tmp_path: Path) -> None:
    path = tmp_path / "dev.toml"
    path.write_text('[server]\nport = 5020\nlisten_only = "no"\n')
    result = modbusd_cli("check", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"modbusd: {path}:3: server.listen_only: expected true or false (false: FC08/04 Force Listen Only Mode is "
        "refused with exception 01), got 'no'"
    ]
