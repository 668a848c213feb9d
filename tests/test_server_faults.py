"""Fault injection seen from the client side, over real sockets on 127.0.0.1 (docs/faults.md): pymodbus's clients
(time-outs, exception codes, a wrong transaction id and a bad CRC rejected), mbpoll, and raw sockets for the exact
bytes (pieces, garbage, repeats, closes and resets); delays that hold up nobody else; seeded rules that repeat
themselves; the control API's routes, the counters and the events log; --fault and [[fault]] on the command line."""

from __future__ import annotations

import json
import logging
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient, ModbusUdpClient
from pymodbus.exceptions import ModbusIOException

from modbusd import Device, Server
from modbusd.protocol.rtu import with_crc
from modbusd.server import SerialLine, TcpTarget
from tests.conftest import HOST, mbap_frame, wait_until
from tests.test_cli import assert_one_line_error, free_port
from tests.test_web_hardening import call

if TYPE_CHECKING:
    from tests.conftest import PtyPair, RawClient
    from tests.test_cli import Modbusd
    from tests.test_web_hardening import Started

    StartServer = Callable[..., Server]
    OpenRaw = Callable[..., RawClient]

SHORT = 0.5  # seconds a client waits where the test expects it to time out
READ = "03 0000 0001"
ANSWER = bytes.fromhex("03 02 0000")


def client(port: int, timeout: float = 3.0, **options: object) -> ModbusTcpClient:
    found = ModbusTcpClient(HOST, port=port, timeout=timeout, retries=0, **options)  # type: ignore[arg-type]
    assert found.connect()
    return found


# --------------------------------------------------------------------------------------- pymodbus's view


def test_silent_unit_times_out_while_another_answers(start_server: StartServer) -> None:
    server = start_server()
    server.faults.add("unit=3 action=silent")
    tcp = client(server.port, SHORT)
    try:
        started = time.monotonic()
        with pytest.raises(ModbusIOException):
            tcp.read_holding_registers(0, count=1, device_id=3)
        assert time.monotonic() - started >= SHORT * 0.9
        assert tcp.read_holding_registers(0, count=1, device_id=4).registers == [0]
    finally:
        tcp.close()
    assert server.counters()["faults"][0]["applied"] == 1  # type: ignore[index]


@pytest.mark.parametrize("code", [0x04, 0x06, 0x01, 0x0A, 0x0B])
def test_exception_code_reaches_the_client_and_the_write_is_not_done(start_server: StartServer, code: int) -> None:
    server = start_server()
    server.faults.add(fc=6, action=f"exception:0x{code:02X}")
    tcp = client(server.port)
    try:
        response = tcp.write_register(5, 1234, device_id=1)
        assert response.isError() and response.exception_code == code
        assert tcp.write_registers(5, [99], device_id=1).isError() is False  # FC16 is not matched
    finally:
        tcp.close()
    assert server.device.holding_registers.values(5, 1) == [99]


def test_gateway_path_exceptions_without_forwarding(start_server: StartServer) -> None:
    """0x0A and 0x0B as a gateway gives them: the forwarded unit's request never reaches the downstream device."""
    downstream = start_server()
    gateway = start_server(Device(), forward={7: TcpTarget(HOST, downstream.port), 8: TcpTarget(HOST, downstream.port)})
    gateway.faults.add("unit=7 action=exception:0A")
    gateway.faults.add("unit=8 fc=6 action=exception:0B")
    tcp = client(gateway.port)
    try:
        assert tcp.write_register(1, 11, device_id=7).exception_code == 0x0A
        assert tcp.write_register(2, 22, device_id=8).exception_code == 0x0B
        assert tcp.read_holding_registers(0, count=1, device_id=8).registers == [0]  # forwarded as ever
    finally:
        tcp.close()
    assert downstream.device.holding_registers.values(1, 2) == [0, 0]


def test_wrong_transaction_id_is_rejected_by_pymodbus(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server()
    server.faults.add("first=1 action=corrupt:tid")
    tcp = client(server.port, SHORT)
    try:
        with caplog.at_level(logging.ERROR, logger="pymodbus.logging"), pytest.raises(ModbusIOException):
            tcp.read_holding_registers(0, count=1, device_id=1)
    finally:
        tcp.close()
    assert any("transaction_id" in record.getMessage() for record in caplog.records), caplog.text


def test_bad_crc_over_rtu_over_tcp_is_reported_by_pymodbus(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(port=None, rtu_over_tcp=0)
    server.faults.add("transport=rtu_over_tcp first=1 action=corrupt:crc")
    rtu = client(server.rtu_over_tcp_port, SHORT, framer=FramerType.RTU)
    try:
        with caplog.at_level(logging.DEBUG, logger="pymodbus.logging"), pytest.raises(ModbusIOException):
            rtu.read_holding_registers(0, count=1, device_id=1)
        assert rtu.read_holding_registers(0, count=1, device_id=1).registers == [0]  # the next one is intact
    finally:
        rtu.close()
    assert any("CRC check failed" in record.getMessage() for record in caplog.records), caplog.text


@pytest.mark.parametrize("framing", ["rtu", "ascii"])
def test_bad_crc_and_lrc_on_a_serial_line(
    pty_pair: Callable[[], PtyPair], start_server: StartServer, caplog: pytest.LogCaptureFixture, framing: str
) -> None:
    pair = pty_pair()
    server = start_server(port=None, serial=SerialLine(pair.server_end, framing, parity="N"))
    server.faults.add("first=1 action=corrupt:crc")
    line = ModbusSerialClient(pair.client_end, framer=FramerType.RTU if framing == "rtu" else FramerType.ASCII,
                              baudrate=19200, parity="N", stopbits=2, timeout=SHORT, retries=0)  # fmt: skip
    try:
        assert line.connect()
        with caplog.at_level(logging.DEBUG, logger="pymodbus.logging"), pytest.raises(ModbusIOException):
            line.read_holding_registers(0, count=1, device_id=1)
        assert line.read_holding_registers(0, count=1, device_id=1).registers == [0]
    finally:
        line.close()
    reported = "CRC check failed" if framing == "rtu" else "LRC wrong"
    assert any(reported in record.getMessage() for record in caplog.records), caplog.text


def test_udp_repeat_comes_as_a_second_datagram(start_server: StartServer) -> None:
    server = start_server(port=None, udp=0)
    server.faults.add("action=twice")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(3.0)
        udp.sendto(mbap_frame(9, 1, READ), (HOST, server.udp_port))
        assert [udp.recv(300), udp.recv(300)] == [mbap_frame(9, 1, ANSWER)] * 2
    pymodbus_udp = ModbusUdpClient(HOST, port=server.udp_port, timeout=3.0, retries=0)
    try:  # a client that reads one datagram per request is not thrown by the repeat of a read
        assert pymodbus_udp.connect()
        assert pymodbus_udp.read_holding_registers(0, count=1, device_id=1).registers == [0]
    finally:
        pymodbus_udp.close()


def test_mbpoll_reports_the_exception(start_server: StartServer) -> None:
    server = start_server()
    server.faults.add("fc=3 action=exception:06")
    mbpoll = shutil.which("mbpoll")
    assert mbpoll is not None, "mbpoll is not installed (apt-get install mbpoll)"
    result = subprocess.run([mbpoll, "-m", "tcp", "-p", str(server.port), "-1", "-o", "2", "-0", "-r", "0", "-t",
                             "4", HOST], capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
    assert "busy" in (result.stdout + result.stderr).lower(), result


# ---------------------------------------------------------------------------------------- the exact bytes


def test_split_response_arrives_in_pieces_with_gaps(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server()
    server.faults.add("action=split:300ms:4")
    raw = open_raw(server, timeout=5.0)
    raw.send(mbap_frame(1, 1, READ))
    expected = mbap_frame(1, 1, ANSWER)  # 11 bytes: pieces of 4, 4 and 3
    chunks, times = [], []
    while sum(map(len, chunks)) < len(expected):
        chunks.append(raw.sock.recv(64))
        times.append(time.monotonic())
        assert chunks[-1], "closed"
    assert b"".join(chunks) == expected
    assert chunks[0] == expected[:4] and len(chunks) >= 2  # the first piece alone: the rest was not sent yet
    assert times[-1] - times[0] >= 2 * 0.3 * 0.8


def test_pymodbus_reads_a_response_split_byte_by_byte(start_server: StartServer) -> None:
    """Over TCP the MBAP length tells where a response ends, however it arrives: a client that frames by it copes."""
    server = start_server()
    server.device.holding_registers.set_values(0, [7, 8])
    server.faults.add("action=split:30ms")
    tcp = client(server.port)
    try:
        started = time.monotonic()
        assert tcp.read_holding_registers(0, count=2, device_id=1).registers == [7, 8]
        assert time.monotonic() - started >= 12 * 0.03 * 0.8  # 13 bytes, 12 gaps
    finally:
        tcp.close()


def test_garbage_before_and_after_and_truncation(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server()
    server.faults.add("unit=1 seed=5 action=corrupt:before:3")
    server.faults.add("unit=2 seed=6 action=corrupt:after:2")
    server.faults.add("unit=3 action=corrupt:truncate:2")
    raw = open_raw(server)
    raw.send(mbap_frame(1, 1, READ))
    assert raw.recv_exact(14) == random.Random(5).randbytes(3) + mbap_frame(1, 1, ANSWER)
    raw.send(mbap_frame(2, 2, READ))
    assert raw.recv_exact(13) == mbap_frame(2, 2, ANSWER) + random.Random(6).randbytes(2)
    raw.send(mbap_frame(3, 3, READ))
    assert raw.recv_exact(9) == mbap_frame(3, 3, ANSWER)[:-2]
    assert raw.is_silent(0.3)


def test_response_sent_twice(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server()
    server.faults.add("action=twice")
    raw = open_raw(server)
    raw.send(mbap_frame(4, 1, READ))
    assert raw.recv_exact(22) == mbap_frame(4, 1, ANSWER) * 2


def test_reset_is_a_connection_reset_and_close_an_end_of_file(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server()
    server.faults.add("unit=1 action=reset")
    server.faults.add("unit=2 action=close")
    raw = open_raw(server)
    raw.send(mbap_frame(1, 1, READ))
    with pytest.raises(ConnectionResetError):
        raw.sock.recv(64)
    other = open_raw(server)
    other.send(mbap_frame(1, 2, READ))
    assert other.sock.recv(64) == b""
    assert client(server.port).read_holding_registers(0, count=1, device_id=3).registers == [0]  # server goes on


def test_rtu_over_tcp_split_and_wrong_unit_keep_a_good_crc(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server(port=None, rtu_over_tcp=0, unit_id=1)
    server.faults.add("fc=3 action=corrupt:unit")
    raw = open_raw(server.rtu_over_tcp_port)
    raw.send(with_crc(bytes.fromhex("01 03 0000 0001")))
    assert raw.recv_exact(7) == with_crc(bytes.fromhex("02 03 02 0000"))


# ------------------------------------------------------------------------------- nobody else is held up


def test_a_delayed_unit_holds_up_neither_another_connection_nor_a_later_request(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    server = start_server({1: Device(), 2: Device()})
    server.faults.add("unit=1 action=delay:2.5s")
    raw = open_raw(server, timeout=5.0)
    started = time.monotonic()
    raw.send(mbap_frame(1, 1, READ) + mbap_frame(2, 2, READ))  # pipelined on one connection
    other = client(server.port)
    try:
        assert other.read_holding_registers(0, count=1, device_id=2).registers == [0]  # another connection
        assert time.monotonic() - started < 2.0
    finally:
        other.close()
    assert raw.read_adu(timeout=2.0) == (2, 0, 2, ANSWER)  # the request behind it overtakes it: tids pair them
    assert raw.read_adu(timeout=5.0) == (1, 0, 1, ANSWER)
    assert time.monotonic() - started >= 2.5 * 0.9


def test_a_delayed_unit_on_a_serial_line_lets_another_unit_answer(
    pty_pair: Callable[[], PtyPair], start_server: StartServer
) -> None:
    """The server holds nothing up; on the wire the late response then comes after the other unit's."""
    import serial

    pair = pty_pair()
    server = start_server({1: Device(), 2: Device()}, port=None, serial=SerialLine(pair.server_end, parity="N"))
    server.faults.add("unit=1 action=delay:800ms")
    port = serial.Serial(pair.client_end, baudrate=19200, parity="N", stopbits=2, timeout=0.05)
    try:
        port.write(with_crc(bytes.fromhex("01 03 0000 0001")))
        time.sleep(0.1)
        port.write(with_crc(bytes.fromhex("02 03 0000 0001")))
        received = bytearray()
        deadline = time.monotonic() + 3.0
        while len(received) < 14 and time.monotonic() < deadline:
            received += port.read(14 - len(received))
    finally:
        port.close()
    assert bytes(received) == with_crc(bytes.fromhex("02 03 02 0000")) + with_crc(bytes.fromhex("01 03 02 0000"))


# ------------------------------------------------------------------------------------------ reproducible


def outcomes(port: int, count: int = 40) -> list[bool]:
    tcp = client(port)
    try:
        return [tcp.read_holding_registers(0, count=1, device_id=1).isError() for _ in range(count)]
    finally:
        tcp.close()


def test_seeded_rule_gives_the_same_faults_run_after_run(start_server: StartServer, tmp_path: Path) -> None:
    first = start_server(events_log=tmp_path / "events.jsonl")
    first.faults.add("prob=0.4 seed=11 action=exception:06")
    run = outcomes(first.port)
    assert 5 <= sum(run) <= 30
    first.faults.reset()
    assert outcomes(first.port) == run
    second = start_server()
    second.faults.add({"prob": 0.4, "seed": 11, "action": "exception:06"})
    assert outcomes(second.port) == run
    assert wait_until(lambda: (tmp_path / "events.jsonl").exists() and len(fault_lines(tmp_path)) == 2 * sum(run))
    line = fault_lines(tmp_path)[0]
    assert (line["rule"], line["action"], line["unit"], line["function"]) == (1, "exception:06", 1, 3)


def fault_lines(folder: Path) -> list[dict[str, object]]:
    lines = [json.loads(text) for text in (folder / "events.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == "fault"]


def test_events_log_has_the_delay_drawn(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(events_log=tmp_path / "events.jsonl")
    server.faults.add("seed=3 action=delay:10ms..50ms")
    assert outcomes(server.port, 1) == [False]
    assert wait_until(lambda: (tmp_path / "events.jsonl").exists() and len(fault_lines(tmp_path)) == 1)
    assert fault_lines(tmp_path)[0]["delay"] == pytest.approx(random.Random(3).uniform(0.01, 0.05), abs=1e-6)


# --------------------------------------------------------------------------------------- the control API


def test_control_api_adds_disables_and_removes_rules(start_api: Callable[..., Started]) -> None:
    server, api = start_api()
    status, added, _ = call(api.port, "POST", "/faults", {"rule": "fc=3 action=exception:06"})
    assert status == 201 and added["rule"].startswith("fc=3 seed=") and added["enabled"] is True
    status, second, _ = call(api.port, "POST", "/faults", {"name": "slow", "unit": 9, "action": "delay:10ms"})
    assert status == 201 and second["id"] == 2
    tcp = client(server.port)
    try:  # an open connection sees rules added after it opened
        assert tcp.read_holding_registers(0, count=1, device_id=1).exception_code == 6
        assert call(api.port, "PATCH", "/faults/1", {"enabled": False})[1]["enabled"] is False
        assert not tcp.read_holding_registers(0, count=1, device_id=1).isError()
        listed = call(api.port, "GET", "/faults")[1]["faults"]
        assert [(x["id"], x["name"], x["matched"], x["applied"]) for x in listed] == [
            (1, None, 1, 1),
            (2, "slow", 0, 0),
        ]
        assert call(api.port, "GET", "/counters")[1]["faults"] == listed
        assert call(api.port, "DELETE", "/faults/slow", headers={"Content-Type": "application/json"})[0] == 200
        assert call(api.port, "GET", "/faults/2")[0] == 404
    finally:
        tcp.close()
    assert [rule.id for rule in server.faults.rules] == [1]


@pytest.mark.parametrize(
    "case",
    [
        ("POST", "/faults", {"rule": "unit=3 action=boom"}, 400, "unknown action"),
        ("POST", "/faults", {"unit": 3}, 400, "action: missing"),
        ("POST", "/faults", ["action=silent"], 400, "expected"),
        ("PATCH", "/faults/1", {"enabled": "no"}, 400, "expected"),
        ("PATCH", "/faults/7", {"enabled": False}, 404, "no fault rule 7"),
        ("DELETE", "/faults/7", {}, 404, "no fault rule 7"),
    ],
)  # fmt: skip
def test_control_api_refuses_wrong_rules_with_a_reason(
    start_api: Callable[..., Started],
    case: tuple[str, str, object, int, str],
) -> None:
    method, path, body, status, words = case
    server, api = start_api()
    server.faults.add("action=silent")
    answer = call(api.port, method, path, body)
    assert answer[0] == status and words in answer[1]["error"], answer[1]


def test_control_api_fault_writes_pass_the_same_checks_as_every_write(start_api: Callable[..., Started]) -> None:
    server, api = start_api(token="a-long-enough-secret-token")
    auth = {"Authorization": "Bearer a-long-enough-secret-token"}
    assert call(api.port, "POST", "/faults", {"rule": "action=silent"})[0] == 401
    assert call(api.port, "POST", "/faults", {"rule": "action=silent"}, headers={**auth, "Origin": "http://evil.example"}
                )[0] == 403  # fmt: skip
    assert call(api.port, "DELETE", "/faults/1", headers=auth)[0] == 415  # a write needs the JSON content type
    assert server.faults.rules == []


# --------------------------------------------------------------------------------------- the command line


def test_fault_option_on_the_command_line(launch: Callable[..., Modbusd]) -> None:
    port = free_port()
    child = launch("-p", str(port), "--host", HOST, "--fault", "unit=3 fc=3 every=2 action=exception:06",
                   "--fault", "unit=4 action=silent")  # fmt: skip
    child.running()
    tcp = client(port, SHORT)
    try:
        codes = [tcp.read_holding_registers(0, count=1, device_id=3).isError() for _ in range(4)]
        assert codes == [False, True, False, True]
        with pytest.raises(ModbusIOException):
            tcp.read_holding_registers(0, count=1, device_id=4)
    finally:
        tcp.close()


@pytest.mark.parametrize(
    ("rule", "words"),
    [("unit=3 action=boom", "unknown action 'boom'"), ("unit=3", "action: missing"), ("every=2 first=1 action=silent",
     "give one of")],
)  # fmt: skip
def test_bad_fault_option_is_one_line_and_exit_2(launch: Callable[..., Modbusd], rule: str, words: str) -> None:
    line = assert_one_line_error(launch("-p", str(free_port()), "--fault", rule))
    assert line.startswith("modbusd: argument --fault:") and words in line


def test_device_file_fault_tables_are_served_and_checked(launch: Callable[..., Modbusd], tmp_path: Path) -> None:
    port = free_port()
    good = tmp_path / "plant.toml"
    good.write_text(f'[server]\nhost = "{HOST}"\nport = {port}\n\n[[fault]]\nunit = 5\naction = "exception:04"\n')
    check = launch("check", str(good))
    assert check.finish() == 0 and "fault: unit=5 action=exception:04" in check.stdout
    child = launch("--config", str(good))
    child.running()
    tcp = client(port)
    try:
        assert tcp.read_holding_registers(0, count=1, device_id=5).exception_code == 4
    finally:
        tcp.close()
    bad = tmp_path / "bad.toml"
    bad.write_text('[[fault]]\nunit = 5\naction = "silent"\n\n[[fault]]\nfc = 3\naction = "delay:200"\n')
    line = assert_one_line_error(launch("check", str(bad)))
    assert line == f"modbusd: {bad}:7: fault[1].action: '200' is not a duration such as 200ms or 1.5s"
