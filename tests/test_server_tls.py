"""Modbus/TCP Security over real TLS on 127.0.0.1: pymodbus's TLS client with client certificates carrying roles,
`openssl s_client` for the handshakes the server must refuse, and the roles' rights request by request.

The certificates are made here (tests/certificates.py); the rights are the device file's [roles] as `Roles`.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymodbus.client import ModbusTlsClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from modbusd import Device, Server
from modbusd.authorize import Rights, Roles, parse_spans
from modbusd.config import TlsConfig, server_tls_context
from tests.certificates import Authority
from tests.conftest import wait_until

HOST = "127.0.0.1"
TIMEOUT = 5.0
ILLEGAL_FUNCTION = 1

ROLES = Roles({
    "operator": Rights(read=parse_spans(["*"]), write=parse_spans(["100-199.hr", "0-15.co"])),
    "viewer": Rights(read=parse_spans(["*"])),
    # reads holding registers 0..9 only, writes 100..199: FC23's two halves can each be refused alone
    "narrow": Rights(read=parse_spans(["0-9.hr"]), write=parse_spans(["100-199.hr"])),
})  # fmt: skip


@dataclass
class Pki:
    ca: Authority
    other_ca: Authority
    server: tuple[Path, Path]  # its file holds the chain: the server's certificate, then the CA's
    clients: dict[str, tuple[Path, Path]]

    def client_context(self, who: str | None, *, ca: Path | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # pymodbus's TLS client wraps its socket without a server_hostname
        context.load_verify_locations(cafile=ca or self.ca.path)  # the server's chain is still verified
        if who is not None:
            context.load_cert_chain(*self.clients[who])
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = Authority(folder), Authority(folder, "other-ca")
    clients = {
        "operator": ca.issue("operator", roles=["operator"]),
        "viewer": ca.issue("viewer", roles=["viewer"]),
        "narrow": ca.issue("narrow", roles=["narrow"]),
        "stranger": ca.issue("stranger", roles=["stranger"]),  # a role the rules do not name
        "none": ca.issue("none"),  # no role extension: the NULL role
        "two": ca.issue("two", roles=["operator", "viewer"]),  # refused
        "foreign": other.issue("foreign", roles=["operator"]),  # signed by a CA the server does not trust
    }
    return Pki(ca, other, ca.issue("server", ip=HOST, chain=True), clients)


def tls_context(pki: Pki) -> ssl.SSLContext:
    return server_tls_context(TlsConfig(0, str(pki.server[0]), str(pki.server[1]), str(pki.ca.path)))


@pytest.fixture
def tls_server(pki: Pki, start_server: Callable[..., Server], tmp_path: Path) -> Server:
    def hook(server: str, client: str, unit_id: int, pdu: bytes, *, role: str | None = None) -> None:
        seen.append((client, role, pdu[0]))

    seen: list[tuple[str, str | None, int]] = []
    server = start_server(Device(), port=None, tls=tls_context(pki), tls_port=0, roles=ROLES, hook=hook,
                          events_log=tmp_path / "events.jsonl")  # fmt: skip
    server.hook_seen = seen  # type: ignore[attr-defined]  # the test's own record
    return server


@pytest.fixture
def connect(
    pki: Pki, tls_server: Server, connect_client: Callable[..., ModbusTlsClient]
) -> Callable[[str | None], ModbusTlsClient]:
    """connect(who) → a pymodbus TLS client presenting `who`'s certificate (None: no certificate)."""
    return lambda who: connect_client(tls_server, sslctx=pki.client_context(who))


def records(server: Server, kind: str, count: int) -> list[dict[str, object]]:
    """The events log's `count` records of `kind`, once its writer thread has written them."""
    assert server.events_log is not None
    path = server.events_log.path

    def found() -> list[dict[str, object]]:
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["kind"] == kind]

    assert wait_until(lambda: len(found()) >= count), found()
    return found()


# ---------------------------------------------------------------------------------------------- roles


def test_tls_operator_reads_everything_and_writes_only_its_registers(
    tls_server: Server, connect: Callable[[str | None], ModbusTlsClient]
) -> None:
    tls_server.write("5.ir", 77)
    client = connect("operator")
    assert client.read_input_registers(5, count=1).registers == [77]
    assert not client.write_register(150, 42).isError()
    assert tls_server.read("150.hr") == 42
    refused = client.write_register(50, 42)
    assert refused.isError() and refused.exception_code == ILLEGAL_FUNCTION
    assert tls_server.read("50.hr") == 0
    assert not client.write_coil(3, True).isError()
    assert client.write_coil(16, True).exception_code == ILLEGAL_FUNCTION  # one past its coils


def test_tls_viewer_reads_and_every_write_is_illegal_function(
    tls_server: Server, connect: Callable[[str | None], ModbusTlsClient]
) -> None:
    client = connect("viewer")
    assert client.read_holding_registers(100, count=3).registers == [0, 0, 0]
    assert client.read_coils(0, count=8).bits[:8] == [False] * 8
    for refused in (client.write_register(150, 1), client.write_registers(100, [1, 2]), client.write_coil(0, True)):
        assert refused.isError() and refused.exception_code == ILLEGAL_FUNCTION
    assert tls_server.read("150.hr") == 0


def test_tls_mask_write_needs_the_write_right_on_its_register(
    tls_server: Server, connect: Callable[[str | None], ModbusTlsClient]
) -> None:
    tls_server.write("150.hr", 0x00F0)
    tls_server.write("50.hr", 0x00F0)
    operator = connect("operator")
    assert not operator.mask_write_register(address=150, and_mask=0x00FF, or_mask=0x0100).isError()
    assert tls_server.read("150.hr") == 0x01F0  # §6.16: (0x00F0 AND 0x00FF) OR (0x0100 AND NOT 0x00FF)
    assert operator.mask_write_register(address=50, and_mask=0, or_mask=1).exception_code == ILLEGAL_FUNCTION
    assert connect("viewer").mask_write_register(address=150, and_mask=0, or_mask=1).exception_code == 1
    assert tls_server.read("50.hr") == 0x00F0 and tls_server.read("150.hr") == 0x01F0


def test_tls_read_write_multiple_checks_its_read_part_and_its_write_part(
    tls_server: Server, connect: Callable[[str | None], ModbusTlsClient]
) -> None:
    tls_server.write("1.hr", 11)
    client = connect("narrow")
    both = client.readwrite_registers(read_address=0, read_count=2, write_address=100, values=[5])
    assert both.registers == [0, 11]
    assert tls_server.read("100.hr") == 5
    read_part = client.readwrite_registers(read_address=20, read_count=1, write_address=100, values=[6])
    assert read_part.isError() and read_part.exception_code == ILLEGAL_FUNCTION
    write_part = client.readwrite_registers(read_address=0, read_count=1, write_address=50, values=[6])
    assert write_part.isError() and write_part.exception_code == ILLEGAL_FUNCTION
    assert tls_server.read("100.hr") == 5 and tls_server.read("50.hr") == 0  # neither refused request wrote


def test_tls_no_role_and_an_unknown_role_are_denied_everything(
    tls_server: Server, connect: Callable[[str | None], ModbusTlsClient]
) -> None:
    for who in ("none", "stranger"):
        client = connect(who)
        assert client.read_holding_registers(0, count=1).exception_code == ILLEGAL_FUNCTION
        assert client.write_register(150, 1).exception_code == ILLEGAL_FUNCTION


def test_tls_a_certificate_without_a_role_gets_the_no_role_rights(
    pki: Pki, start_server: Callable[..., Server]
) -> None:
    server = start_server(Device(), port=None, tls=tls_context(pki), tls_port=0,
                          roles=Roles(ROLES.rights, no_role="viewer"))  # fmt: skip
    client = ModbusTlsClient(HOST, port=server.tls_port, sslctx=pki.client_context("none"), timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(0, count=1).registers == [0]
        assert client.write_register(150, 1).exception_code == ILLEGAL_FUNCTION
    finally:
        client.close()


def test_tls_without_roles_every_client_with_a_certificate_may_do_everything(
    pki: Pki, start_server: Callable[..., Server]
) -> None:
    server = start_server(Device(), port=None, tls=tls_context(pki), tls_port=0)
    client = ModbusTlsClient(HOST, port=server.tls_port, sslctx=pki.client_context("none"), timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        assert not client.write_register(50, 9).isError()
        assert server.read("50.hr") == 9
    finally:
        client.close()


def test_tls_denied_requests_are_counted_and_logged_with_role_and_client(
    tls_server: Server, connect: Callable[[str | None], ModbusTlsClient]
) -> None:
    client = connect("viewer")
    assert client.write_register(150, 1).exception_code == ILLEGAL_FUNCTION
    assert client.write_register(151, 1).exception_code == ILLEGAL_FUNCTION
    assert tls_server.counters()["security"]["denied"] == 2  # type: ignore[index]  # a dict
    denied = records(tls_server, "denied", 2)
    assert [(r["role"], r["function"], r["writes"]) for r in denied] == [
        ("viewer", 6, [["hr", 150, 1]]), ("viewer", 6, [["hr", 151, 1]])]  # fmt: skip
    assert all(str(r["client"]).startswith(f"{HOST}:") for r in denied)


def test_tls_the_hook_and_the_write_events_receive_the_role(
    tls_server: Server, connect: Callable[[str | None], ModbusTlsClient]
) -> None:
    events = []
    tls_server.add_listener(events.append)
    tls_server.subscribe("150.hr")
    client = connect("operator")
    assert not client.write_register(150, 3).isError()
    assert wait_until(lambda: len(events) == 1)
    assert events[0].role == "operator" and events[0].value == 3
    assert [r["role"] for r in records(tls_server, "write", 1)] == ["operator"]
    assert 6 in [fc for _, role, fc in tls_server.hook_seen if role == "operator"]  # type: ignore[attr-defined]


def test_tls_the_server_sends_its_whole_chain(pki: Pki, tls_server: Server) -> None:
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"{HOST}:{tls_server.tls_port}", "-showcerts", "-CAfile",
         str(pki.ca.path), "-cert", str(pki.clients["viewer"][0]), "-key", str(pki.clients["viewer"][1])],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.stdout.count("-----BEGIN CERTIFICATE-----") == 2, done.stdout  # the server's, then the CA's
    assert "Verify return code: 0 (ok)" in done.stdout


# ---------------------------------------------------------------------------------------------- refusals


def s_client(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


REFUSED = {  # openssl s_client's options → what the server's log line says
    "no client certificate": (lambda pki: [], "certificate"),
    "a certificate from another CA": (lambda pki: ["-cert", str(pki.clients["foreign"][0]), "-key",
                                                   str(pki.clients["foreign"][1])], "certificate not accepted"),
    "TLS 1.1": (lambda pki: ["-tls1_1", "-cert", str(pki.clients["viewer"][0]), "-key", str(pki.clients["viewer"][1])],
                "protocol"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED)
def test_tls_handshakes_the_specification_refuses_are_logged_once_and_others_go_on(
    pki: Pki, tls_server: Server, connect: Callable[[str | None], ModbusTlsClient], caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:  # fmt: skip
    options, reason = REFUSED[case]
    working = connect("viewer")  # a connection that did nothing wrong, open throughout
    caplog.set_level(logging.WARNING, "modbusd")
    for _ in range(2):
        s_client(tls_server.tls_port, "-CAfile", str(pki.ca.path), *options(pki))
    assert wait_until(lambda: tls_server.counters()["security"]["handshakes_failed"] == 2)  # type: ignore[index]
    failed = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(failed) == 1, failed  # the second one from this address is held back
    assert f"TLS handshake with {HOST}:" in failed[0] and reason in failed[0].lower()
    assert working.read_holding_registers(0, count=1).registers == [0]


def test_tls_a_certificate_with_two_roles_is_refused(
    pki: Pki, tls_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "modbusd")
    client = ModbusTlsClient(HOST, port=tls_server.tls_port, sslctx=pki.client_context("two"), timeout=2, retries=0)
    try:
        client.connect()  # the handshake itself succeeds: the role is read once it is done
        try:
            result = client.read_holding_registers(0, count=1)
        except (ConnectionException, ModbusIOException):
            result = None
    finally:
        client.close()
    assert result is None, f"answered: {result}"
    assert tls_server.counters()["security"]["certificates_refused"] == 1  # type: ignore[index]
    assert any("more than one extension 1.3.6.1.4.1.50316.802.1" in r.getMessage() for r in caplog.records)


def test_tls_plain_modbus_tcp_on_the_tls_port_gets_no_answer(tls_server: Server) -> None:
    received = b""
    with socket.create_connection((HOST, tls_server.tls_port), timeout=TIMEOUT) as sock:
        sock.sendall(bytes.fromhex("0001 0000 0006 01 03 0000 0001"))
        while chunk := sock.recv(100):  # until the server closes it
            received += chunk
    assert not received.startswith(bytes.fromhex("0001 0000")), received  # no MBAP response: at most a TLS alert
    assert wait_until(lambda: tls_server.counters()["security"]["handshakes_failed"] == 1)  # type: ignore[index]
