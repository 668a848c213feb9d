"""The device file's transports: [server] port (false: off), [server.udp], [server.rtu_over_tcp], [[server.serial]],
a device's serial_unit_id and address_register; served as the file says unless the command line names transports.

Serial lines are socat pty pairs at 8N2: this machine's kernel refuses even parity on a pseudo-terminal.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusUdpClient

from modbusd import Server
from modbusd.config import loads, summary
from modbusd.protocol.serial_line import Framing
from tests.conftest import PtyPair
from tests.test_cli import HOST, Modbusd, free_port, listening_tcp_ports
from tests.test_cli_config import modbusd_cli

Launch = Callable[..., Modbusd]
MISSING = "/dev/ttyUSB-modbusd-test-none"  # a serial port that does not exist: serving it would fail at once

TRANSPORTS = f"""
[server]
host = "{HOST}"
port = false
[server.udp]
port = 5021
[server.rtu_over_tcp]
port = 5022
[[server.serial]]
device = "/dev/ttyUSB0"
[[server.serial]]
device = "/dev/ttyS1"
framing = "ascii"
baudrate = 9600
bytesize = 7
parity = "odd"
stopbits = 2
[[device]]
serial_unit_id = 7
address_register = 0x07D0
"""


def udp_read(port: int, address: int, unit_id: int = 1) -> list[int]:
    client = ModbusUdpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        reply = client.read_holding_registers(address, count=1, device_id=unit_id)
        assert not reply.isError(), reply
        return reply.registers
    finally:
        client.close()


# ------------------------------------------------------------------------------------------ in process


def test_config_transports_load_with_serial_line_rules_and_reach_the_server() -> None:
    config = loads(TRANSPORTS, "t.toml")
    s = config.server
    assert (s.port, s.udp, s.rtu_over_tcp) == (None, 5021, 5022)
    first, second = s.serial
    assert (first.device, first.framing, first.settings) == ("/dev/ttyUSB0", Framing.RTU, "19200 8E1")
    assert (second.framing, second.settings) == (Framing.ASCII, "9600 7O2")  # parity "odd" is O, as to the CLI
    server = Server.from_config(config)
    assert server.port is None and server.serial_lines == s.serial
    assert (server.udp_port, server.rtu_over_tcp_port, server.unit_id) == (5021, 5022, 7)
    assert server.device.address_register == 0x07D0
    assert server.device.holding_registers[0x07D0] == 7  # the register reads back the slave id
    assert Server.from_config(config, unit_id=9).unit_id == 9  # --unit over the file's serial_unit_id
    overridden = Server.from_config(config, serial=(), rtu_over_tcp=None, udp=6021, port=None)
    assert (overridden.serial_lines, overridden.rtu_over_tcp_port, overridden.udp_port) == ((), None, 6021)
    assert overridden.listening() == [f"UDP on {HOST} port 6021"]


def test_config_summary_lists_every_transport() -> None:
    lines = summary(loads(TRANSPORTS, "t.toml"))
    assert lines[1:6] == [
        "server: tcp off",
        f"server: udp {HOST} port 5021",
        f"server: rtu over tcp {HOST} port 5022",
        "server: serial rtu /dev/ttyUSB0 19200 8E1",
        "server: serial ascii /dev/ttyS1 9600 7O2",
    ]
    assert lines[6].startswith("device (every unit id; unit id 7 on serial lines; address register 2000 (0x07D0)):")


def test_config_without_transport_tables_serves_modbus_tcp_only() -> None:
    server = Server.from_config(loads("[server]\nport = 5020\n"))
    assert (server.port, server.serial_lines, server.udp_port, server.rtu_over_tcp_port) == (5020, (), None, None)


# ------------------------------------------------------------------------------------ modbusd --config


def test_check_prints_the_transports(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text(TRANSPORTS)
    result = modbusd_cli("check", str(tmp_path / "t.toml"))
    assert result.returncode == 0, result.stderr
    assert "server: udp 127.0.0.1 port 5021\n" in result.stdout
    assert "server: serial ascii /dev/ttyS1 9600 7O2\n" in result.stdout


def test_device_file_serves_udp_and_a_serial_line_on_one_data_model(
    pty_pair: Callable[[], PtyPair], launch: Launch, tmp_path: Path
) -> None:
    pair = pty_pair()
    udp = free_port()
    path = tmp_path / "dev.toml"
    path.write_text(f"""
[server]
host = "{HOST}"
port = false
[server.udp]
port = {udp}
[[server.serial]]
device = "{pair.server_end}"
parity = "N"

[[device]]
serial_unit_id = 5
[[device.point]]
name = "level"
address = "40004"
value = 1234
""")
    child = launch("--config", str(path))
    starting = child.running()[1]
    assert starting.startswith(f"Starting server with RTU on {pair.server_end} (19200 8N2, unit 5), "
                               f"UDP on {HOST} port {udp}. ")  # fmt: skip
    assert listening_tcp_ports(child.proc.pid) == set()  # port = false: no Modbus/TCP
    assert udp_read(udp, 3) == [1234]
    client = ModbusSerialClient(pair.client_end, framer=FramerType.RTU, baudrate=19200, parity="N", stopbits=2,
                                timeout=3, retries=0)  # fmt: skip
    try:
        assert client.connect()
        reply = client.read_holding_registers(3, count=1, device_id=5)
        assert not reply.isError(), reply
        assert reply.registers == [1234]
        assert not client.write_register(3, 4321, device_id=5).isError()
    finally:
        client.close()
    assert udp_read(udp, 3) == [4321]
    assert child.stop(signal.SIGTERM) == 0


def test_command_line_transports_replace_the_file_s_and_p_alone_keeps_them(launch: Launch, tmp_path: Path) -> None:
    port, file_udp, cli_udp = free_port(), free_port(), free_port()
    path = tmp_path / "dev.toml"
    path.write_text(f"""
[server]
host = "{HOST}"
port = {port}
[server.udp]
port = {file_udp}
[[server.serial]]
device = "{MISSING}"
[[device]]
[[device.point]]
name = "level"
address = "40001"
value = 77
""")
    child = launch("--config", str(path), "--udp", str(cli_udp))  # the file's missing serial port is not opened
    assert child.running()[1].startswith(f"Starting server with UDP on {HOST} port {cli_udp}. ")
    assert listening_tcp_ports(child.proc.pid) == set()  # naming transports serves exactly those
    assert udp_read(cli_udp, 0) == [77]
    assert child.stop(signal.SIGTERM) == 0

    other = free_port()
    path.write_text(path.read_text().replace(f'[[server.serial]]\ndevice = "{MISSING}"\n', ""))
    child = launch("--config", str(path), "-p", str(other))  # no transport named: the file's, on another TCP port
    assert child.running()[1].startswith(f"Starting server on {HOST} port {other}, UDP on {HOST} port {file_udp}. ")
    assert udp_read(file_udp, 0) == [77]
    assert child.stop(signal.SIGTERM) == 0


def test_device_file_serial_port_missing_is_one_line_and_exit_2(launch: Launch, tmp_path: Path) -> None:
    path = tmp_path / "dev.toml"
    path.write_text(f'[server]\nport = false\n[[server.serial]]\ndevice = "{MISSING}"\n')
    child = launch("--config", str(path))
    assert child.finish() == 2 and child.stdout == []
    assert child.stderr == [f"modbusd: serial port {MISSING} does not exist: check its name "
                            "(ls /dev/ttyUSB* /dev/ttyACM*)."]  # fmt: skip


def test_device_file_page_transport_example_loads() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "device-file.md").read_text(encoding="utf-8")
    block = page.split("**Transports.**", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = loads(block, "docs/device-file.md")
    assert config.server.port is None and config.server.udp == 502 and len(config.server.serial) == 2
    assert Server.from_config(config).listening() == [
        "RTU on /dev/ttyUSB0 (19200 8E1, unit 7)",
        "ASCII on /dev/ttyS0 (9600 7E1, unit 7)",
        "UDP on 0.0.0.0 port 502",
    ]
