"""modbusd on virtual serial lines (socat pty pairs), driven by pymodbus's serial client and by raw bytes.

Pseudo-terminals carry bytes at once, whatever the baud rate; the baud rate still sets the silences modbusd
measures, so the gap test runs at 600 baud, where t1.5 is 27.5 ms and t3.5 is 64 ms.

Parity: the tests use 8N2 (no parity, so two stop bits, Serial Line §2.5.1). This machine's kernel refuses
even parity on a pseudo-terminal when input parity checking is off, which is how pyserial sets it up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import serial
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient, ModbusUdpClient
from pymodbus.pdu import ModbusPDU

from modbusd import Device, Server
from modbusd.protocol.ascii import lrc
from modbusd.protocol.rtu import with_crc
from modbusd.server import SerialLine
from modbusd.transport.serial import SerialConnection

if TYPE_CHECKING:
    from tests.conftest import PtyPair, RawClient

    OpenRaw = Callable[..., RawClient]
    StartServer = Callable[..., Server]
    MakePty = Callable[[], PtyPair]

TIMEOUT = 2.0
QUIET = 0.3  # seconds of silence that show a request went unanswered


def check_ok(response: ModbusPDU) -> Any:  # Any: each function's response class has its own fields
    assert not response.isError(), f"unexpected error response {response}"
    return response


def ascii_frame(hex_text: str) -> bytes:
    raw = bytes.fromhex(hex_text)
    return b":" + (raw + bytes((lrc(raw),))).hex().upper().encode() + b"\r\n"


class Line:
    """The client end of a served serial line: raw bytes in and out, with bounded waits."""

    def __init__(self, path: str, baudrate: int) -> None:
        self.port = serial.Serial(path, baudrate=baudrate, parity="N", stopbits=2, timeout=0.05)

    def send(self, data: bytes | str) -> None:
        self.port.write(bytes.fromhex(data) if isinstance(data, str) else data)
        self.port.flush()

    def read(self, count: int, timeout: float = TIMEOUT) -> bytes:
        data = bytearray()
        deadline = time.monotonic() + timeout
        while len(data) < count and time.monotonic() < deadline:
            data += self.port.read(count - len(data))
        assert len(data) == count, f"got {bytes(data).hex(' ')} of {count} bytes"
        return bytes(data)

    def read_until(self, end: bytes, timeout: float = TIMEOUT) -> bytes:
        data = bytearray()
        deadline = time.monotonic() + timeout
        while not data.endswith(end) and time.monotonic() < deadline:
            data += self.port.read(1)
        assert data.endswith(end), f"no {end!r} after {bytes(data)!r}"
        return bytes(data)

    def is_silent(self, seconds: float = QUIET) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.port.read(1):
                return False
        return True

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def serve_line(
    pty_pair: MakePty,
    start_server: StartServer,  # in this order, so that servers stop before their ptys go
) -> Iterator[Callable[..., tuple[Server, PtyPair]]]:
    """serve_line(framing, devices=None, baudrate=19200, **server_options) → (server, pty pair), serial only."""

    def serve(framing: str = "rtu", devices: Any = None, baudrate: int = 19200, **options: Any) -> tuple[Server, Any]:
        pair = pty_pair()
        options.setdefault("port", None)
        line = SerialLine(pair.server_end, framing, baudrate=baudrate, parity="N")
        return start_server(devices, serial=line, **options), pair

    yield serve


@pytest.fixture
def open_line() -> Iterator[Callable[..., Line]]:
    lines: list[Line] = []

    def open_(pair: PtyPair, baudrate: int = 19200) -> Line:
        line = Line(pair.client_end, baudrate)
        lines.append(line)
        return line

    yield open_
    for line in lines:
        line.close()


@pytest.fixture
def serial_client() -> Iterator[Callable[..., ModbusSerialClient]]:
    clients: list[ModbusSerialClient] = []

    def connect(pair: PtyPair, framing: str = "rtu", **options: Any) -> ModbusSerialClient:
        framer = FramerType.RTU if framing == "rtu" else FramerType.ASCII
        client = ModbusSerialClient(pair.client_end, framer=framer, baudrate=19200, parity="N", stopbits=2,
                                    timeout=TIMEOUT, retries=0, **options)  # fmt: skip
        clients.append(client)
        assert client.connect()
        return client

    yield connect
    for client in clients:
        client.close()


# ------------------------------------------------------------------------------------ every function code


@pytest.mark.parametrize("framing", ["rtu", "ascii"])
def test_serial_line_answers_every_function_code(
    serve_line: Callable[..., tuple[Server, PtyPair]], serial_client: Callable[..., ModbusSerialClient],
    framing: str,
) -> None:  # fmt: skip
    server, pair = serve_line(framing)
    device = server.device
    device.discrete_inputs.write(3, [True, False, True])
    device.input_registers.set_values(8, [0x000A, 0x1234])
    client = serial_client(pair, framing)
    unit = {"device_id": 1}
    check_ok(client.write_coil(172, True, **unit))
    check_ok(client.write_coils(20, [True, False, True], **unit))
    assert check_ok(client.read_coils(20, count=3, **unit)).bits[:3] == [True, False, True]
    assert check_ok(client.read_discrete_inputs(3, count=3, **unit)).bits[:3] == [True, False, True]
    check_ok(client.write_register(1, 0x0003, **unit))
    check_ok(client.write_registers(10, [1, 2, 3], **unit))
    assert check_ok(client.read_holding_registers(10, count=3, **unit)).registers == [1, 2, 3]
    assert check_ok(client.read_input_registers(8, count=2, **unit)).registers == [0x000A, 0x1234]
    device.holding_registers.set_values(4, [0x12])
    check_ok(client.mask_write_register(address=4, and_mask=0xF2, or_mask=0x25, **unit))
    assert device.holding_registers.values(4, 1) == [0x17]  # the spec's §6.16 example
    rw = check_ok(client.readwrite_registers(read_address=10, read_count=2, write_address=11, values=[9], **unit))
    assert rw.registers == [1, 9]  # FC23 writes before it reads
    check_ok(client.read_exception_status(**unit))
    assert check_ok(client.diag_query_data(b"\x12\x34", **unit)).message == b"\x12\x34"
    check_ok(client.diag_read_bus_message_count(**unit))
    check_ok(client.diag_get_comm_event_counter(**unit))
    check_ok(client.diag_get_comm_event_log(**unit))
    check_ok(client.report_device_id(**unit))
    info = check_ok(client.read_device_information(**unit))
    assert info.information[0] == b"modbusd"
    assert check_ok(client.read_holding_registers(1, count=1, **unit)).registers == [3]
    assert device.coils.read(172, 1) == [True]


def test_serial_line_answers_exceptions_too(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    _, pair = serve_line("rtu", Device(holding_registers=10))
    line = open_line(pair)
    line.send(with_crc(bytes.fromhex("01 03 0009 0002")))
    assert line.read(5) == with_crc(bytes.fromhex("01 83 02"))


# ------------------------------------------------------------------------------- what a bus must ignore


def line_ignores_a_bad_crc(line: Line, request_hex: str) -> bool:
    """Send the request with its CRC spoiled: a frame with a communication error gets no answer at all (Application
    Protocol §7, Serial Line §2.4.2)."""
    good = with_crc(bytes.fromhex(request_hex))
    line.send(good[:-1] + bytes((good[-1] ^ 0xFF,)))
    return line.is_silent()


def test_rtu_line_ignores_a_bad_crc_and_counts_it(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    server, pair = serve_line("rtu")
    line = open_line(pair)
    assert line_ignores_a_bad_crc(line, "01 03 0000 0001")
    assert server.device.diagnostics.bus_communication_error == 1
    line.send(with_crc(bytes.fromhex("01 08 000C 0000")))  # FC08/0C: bus communication error count
    assert line.read(8) == with_crc(bytes.fromhex("01 08 000C 0001"))


def test_ascii_line_ignores_a_bad_lrc_and_counts_it(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    server, pair = serve_line("ascii")
    line = open_line(pair)
    frame = ascii_frame("01 03 0000 0001")
    line.send(frame[:-4] + (b"00" if frame[-4:-2] != b"00" else b"01") + b"\r\n")
    assert line.is_silent()
    assert server.device.diagnostics.bus_communication_error == 1
    line.send(ascii_frame("01 08 000C 0000"))
    assert line.read_until(b"\r\n") == ascii_frame("01 08 000C 0001")


@pytest.mark.parametrize("framing", ["rtu", "ascii"])
def test_serial_line_ignores_other_slave_ids(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line], framing: str
) -> None:
    server, pair = serve_line(framing, unit_id=7)
    line = open_line(pair)
    encode = with_crc if framing == "rtu" else (lambda raw: ascii_frame(raw.hex()))
    line.send(encode(bytes.fromhex("01 03 0000 0001")))
    line.send(encode(bytes.fromhex("F8 03 0000 0001")))  # 248: reserved, nobody's
    assert line.is_silent()
    line.send(encode(bytes.fromhex("07 03 0000 0001")))
    reply = line.read(7) if framing == "rtu" else line.read_until(b"\r\n")
    assert reply == encode(bytes.fromhex("07 03 02 0000"))
    assert server.device.diagnostics.bus_communication_error == 0  # not errors: other devices' traffic


def test_broadcast_write_reaches_every_device_of_the_line_and_gets_no_response(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    devices = {1: Device(), 2: Device()}
    _, pair = serve_line("rtu", devices)
    line = open_line(pair)
    line.send(with_crc(bytes.fromhex("00 06 0005 ABCD")))
    assert line.is_silent()
    assert [d.holding_registers.values(5, 1) for d in devices.values()] == [[0xABCD], [0xABCD]]
    line.send(with_crc(bytes.fromhex("02 03 0005 0001")))
    assert line.read(7) == with_crc(bytes.fromhex("02 03 02 ABCD"))


def test_two_devices_on_one_line_answer_each_at_its_own_id(
    serve_line: Callable[..., tuple[Server, PtyPair]], serial_client: Callable[..., ModbusSerialClient]
) -> None:
    devices = {1: Device(), 2: Device()}
    _, pair = serve_line("rtu", devices)
    client = serial_client(pair)
    check_ok(client.write_register(0, 11, device_id=1))
    check_ok(client.write_register(0, 22, device_id=2))
    assert [d.holding_registers.values(0, 1)[0] for d in devices.values()] == [11, 22]


# ----------------------------------------------------------------------------------------- timing


def test_rtu_frames_back_to_back_are_both_answered(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    _, pair = serve_line("rtu")
    line = open_line(pair)
    echo = [with_crc(bytes.fromhex(f"01 08 0000 {n:04X}")) for n in (0x1111, 0x2222)]  # ended by silence only
    for frame in echo:  # the answer comes only once the server has seen t3.5 (1.75 ms at 19200 baud) of silence
        line.send(frame)
        assert line.read(8) == frame  # FC08/00 echoes the request; the next is sent after it, as a master does
    reads = [with_crc(bytes.fromhex(f"01 03 {a:04X} 0001")) for a in (0, 1)]
    line.send(reads[0] + reads[1])  # no silence at all: FC03's length tells where the first ends
    assert line.read(14) == with_crc(bytes.fromhex("01 03 02 0000")) * 2


def test_rtu_frame_with_a_gap_longer_than_1_5_characters_is_discarded(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    server, pair = serve_line("rtu", baudrate=600)  # t1.5 = 27.5 ms, t3.5 = 64.2 ms
    line = open_line(pair, 600)
    request = with_crc(bytes.fromhex("01 06 0000 0042"))
    line.send(request[:3])
    # Ten times t1.5, so that the silence the server measures stays longer than t1.5 even when a loaded machine
    # delays its reads. It is past t3.5 too, so the frame is cut short by the silence: dropped all the same. The
    # gap between t1.5 and t3.5 is told apart on a clock the test sets, in
    # test_serial_connection_tells_gap_and_end_of_frame_from_the_silences.
    time.sleep(0.3)
    line.send(request[3:])
    assert line.is_silent(0.4)
    assert server.device.holding_registers.values(0, 1) == [0]
    assert server.device.diagnostics.bus_communication_error >= 1
    line.send(request)  # the same frame whole is answered
    assert line.read(8) == request


# ------------------------------------------------------------------------------ the address change


def test_address_change_byte_for_byte(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    server, pair = serve_line("rtu", Device(address_register=0x07D0))
    line = open_line(pair)
    line.send("FF 06 07 D0 00 02 1D 58")
    assert line.read(8) == bytes.fromhex("01 06 07 D0 00 02 08 86")  # answered from the old address
    line.send(with_crc(bytes.fromhex("01 03 07D0 0001")))
    assert line.is_silent()
    line.send(with_crc(bytes.fromhex("02 03 07D0 0001")))
    assert line.read(7) == with_crc(bytes.fromhex("02 03 02 0002"))
    assert server.unit_id == 2


def test_address_change_is_off_by_default_and_refuses_ids_outside_1_to_247(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    _, pair = serve_line("rtu", {1: Device(address_register=0x07D0), 3: Device()})
    line = open_line(pair)
    line.send(with_crc(bytes.fromhex("01 06 07D0 00F8")))  # 248: reserved
    assert line.read(5) == with_crc(bytes.fromhex("01 86 03"))
    line.send(with_crc(bytes.fromhex("01 06 07D0 0003")))  # taken by the other device
    assert line.read(5) == with_crc(bytes.fromhex("01 86 03"))
    line.send(with_crc(bytes.fromhex("03 06 07D0 0005")))  # no address register: an ordinary write
    assert line.read(8) == with_crc(bytes.fromhex("03 06 07D0 0005"))
    line.send(with_crc(bytes.fromhex("FF 06 0000 0005")))  # 0xFF takes the address change only
    assert line.is_silent()
    line.send(with_crc(bytes.fromhex("01 10 07CF 0002 04 0000 0009")))  # FC16 covering the register
    assert line.read(8) == with_crc(bytes.fromhex("01 10 07CF 0002"))
    line.send(with_crc(bytes.fromhex("09 03 07D0 0001")))
    assert line.read(7) == with_crc(bytes.fromhex("09 03 02 0009"))


# ------------------------------------------------------------------------------------ ASCII delimiter


def test_ascii_line_follows_the_delimiter_fc08_03_sets_from_the_next_frame_on(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    _, pair = serve_line("ascii")
    line = open_line(pair)
    line.send(ascii_frame("01 08 0003 2100"))  # new delimiter '!'
    assert line.read_until(b"\r\n") == ascii_frame("01 08 0003 2100")
    line.send(ascii_frame("01 03 0000 0001")[:-1] + b"!")
    assert line.read_until(b"\r!") == ascii_frame("01 03 02 0000")[:-1] + b"!"


# --------------------------------------------------------------------------- other transports, one model


def test_rtu_over_tcp_with_pymodbus_and_serial_unit_ids(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server(port=None, rtu_over_tcp=0, unit_id=3)
    client = ModbusTcpClient("127.0.0.1", port=server.rtu_over_tcp_port, framer=FramerType.RTU, timeout=TIMEOUT,
                             retries=0)  # fmt: skip
    try:
        assert client.connect()
        check_ok(client.write_register(5, 1234, device_id=3))
        assert check_ok(client.read_holding_registers(5, count=1, device_id=3)).registers == [1234]
    finally:
        client.close()
    raw = open_raw(server.rtu_over_tcp_port)
    raw.send(with_crc(bytes.fromhex("04 03 0005 0001")) + b"\x00garbage")  # another id, then noise
    assert raw.is_silent(QUIET)
    raw.send(with_crc(bytes.fromhex("03 03 0005 0001")))  # resync: the next good frame is found and answered
    assert raw.recv_exact(7) == with_crc(bytes.fromhex("03 03 02 04D2"))
    assert server.device.diagnostics.bus_communication_error >= 1


def test_bus_says_once_per_unit_id_that_it_ignores_another_units_requests(
    start_server: StartServer, open_raw: OpenRaw, caplog: pytest.LogCaptureFixture
) -> None:
    """Silence is right on a bus; a client polling the wrong id would see only time-outs without this line."""
    caplog.set_level(logging.DEBUG, logger="modbusd")
    server = start_server(port=None, rtu_over_tcp=0, unit_id=7)
    raw = open_raw(server.rtu_over_tcp_port)
    for unit in (1, 1, 2):
        raw.send(with_crc(bytes([unit]) + bytes.fromhex("03 0000 0001")))
    assert raw.is_silent(QUIET)
    raw.send(with_crc(bytes.fromhex("07 03 0000 0001")))  # answered after the three before it were handled
    assert raw.recv_exact(7) == with_crc(bytes.fromhex("07 03 02 0000"))
    ignored = [(r.levelno, r.getMessage()) for r in caplog.records if " ignored: " in r.getMessage()]
    assert [level for level, _ in ignored] == [logging.INFO, logging.DEBUG, logging.INFO], ignored
    assert "requests for unit 1 ignored: this line serves unit 7 " in ignored[0][1]
    assert "requests for unit 2 ignored: this line serves unit 7 " in ignored[2][1]


def test_udp_with_pymodbus(start_server: StartServer) -> None:
    server = start_server(port=None, udp=0)
    client = ModbusUdpClient("127.0.0.1", port=server.udp_port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        check_ok(client.write_registers(7, [1, 2, 3], device_id=9))
        assert check_ok(client.read_holding_registers(7, count=3, device_id=9)).registers == [1, 2, 3]
    finally:
        client.close()


def test_value_written_over_one_transport_is_read_over_every_other(
    pty_pair: MakePty, start_server: StartServer, serial_client: Callable[..., ModbusSerialClient]
) -> None:
    pair = pty_pair()
    server = start_server(port=0, rtu_over_tcp=0, udp=0, serial=SerialLine(pair.server_end, parity="N"))
    rtu = serial_client(pair)
    check_ok(rtu.write_register(100, 4321, device_id=1))
    tcp = ModbusTcpClient("127.0.0.1", port=server.port, timeout=TIMEOUT, retries=0)
    rtu_tcp = ModbusTcpClient("127.0.0.1", port=server.rtu_over_tcp_port, framer=FramerType.RTU, timeout=TIMEOUT,
                              retries=0)  # fmt: skip
    udp = ModbusUdpClient("127.0.0.1", port=server.udp_port, timeout=TIMEOUT, retries=0)
    try:
        for client in (tcp, rtu_tcp, udp):
            assert client.connect()
            assert check_ok(client.read_holding_registers(100, count=1, device_id=1)).registers == [4321]
        check_ok(udp.write_coil(9, True, device_id=1))
        assert check_ok(rtu.read_coils(9, count=1, device_id=1)).bits[0] is True
    finally:
        for client in (tcp, rtu_tcp, udp):
            client.close()


# ------------------------------------------------------------------------------ the transport's clock


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.awaiting: list[object] = []  # answers to await: none here

    def receive(self, data: bytes) -> bytes:
        self.calls.append(f"receive {data.hex()}")
        return b""

    def gap(self) -> None:
        self.calls.append("gap")

    def end_of_frame(self) -> bytes:
        self.calls.append("end")
        return b""


class NullTransport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def test_serial_connection_tells_gap_and_end_of_frame_from_the_silences(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("modbusd.transport.serial.time.monotonic", lambda: clock[0])
    session = Recorder()

    async def run() -> None:
        connection = SerialConnection(session, gap_after=0.010, end_after=0.030)  # type: ignore[arg-type]  # a fake
        connection.connection_made(NullTransport())
        for delay, data in ((0.0, b"\x01"), (0.005, b"\x02"), (0.020, b"\x03"), (0.050, b"\x04")):
            clock[0] += delay
            connection.data_received(data)
        connection.close()

    asyncio.run(run())
    assert session.calls == ["receive 01", "receive 02", "gap", "receive 03", "end", "receive 04"]


def test_rtu_line_metrics_count_its_discarded_frame_request_and_bytes(
    serve_line: Callable[..., tuple[Server, PtyPair]], open_line: Callable[..., Line]
) -> None:
    """GET /metrics' families for a serial line: the bad frame under the line's device, every frame timed."""
    from tests.test_metrics import generate, labels, of, samples

    server, pair = serve_line("rtu")
    line = open_line(pair)
    assert line_ignores_a_bad_crc(line, "01 03 0000 0001")
    line.send(with_crc(bytes.fromhex("01 03 0000 0001")))
    assert line.read(7) == with_crc(bytes.fromhex("01 03 02 0000"))
    found = samples(generate(server))
    assert of(found, "modbusd_serial_frames_discarded_total") == {labels(line=pair.server_end): 1}
    assert of(found, "modbusd_requests_total") == {labels(transport="rtu", function="3", outcome="ok"): 1}
    assert of(found, "modbusd_received_bytes_total") == {labels(transport="rtu"): 16}
    assert of(found, "modbusd_sent_bytes_total") == {labels(transport="rtu"): 7}
    assert of(found, "modbusd_request_latency_seconds_count") == {labels(transport="rtu"): 1}
