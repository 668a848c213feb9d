"""Every fault action as mbpoll (libmodbus) and pymodbus report it: what a client under test would show its user.

tests/test_server_faults.py has the exact bytes of each action; here each one meets real clients, over Modbus/TCP
on 127.0.0.1 and over RTU on a socat pty pair, and the request after the fault is answered as usual.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from modbusd import Device, Server
from modbusd.server import SerialLine
from tests.conftest import HOST

if TYPE_CHECKING:
    from tests.conftest import PtyPair

    StartServer = Callable[..., Server]

MBPOLL_TIMEOUT = "0.5"  # seconds mbpoll waits for a response (its -o) where the test expects it to time out
RUN_TIMEOUT = 30.0


def mbpoll(*args: str) -> tuple[int, str]:
    binary = shutil.which("mbpoll")
    assert binary is not None, "mbpoll is not installed (apt-get install mbpoll; .ci/run does)"
    done = subprocess.run([binary, "-1", "-o", MBPOLL_TIMEOUT, "-r", "1", "-c", "2", *args], capture_output=True,
                          text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("action", "reported"),
    [("delay:2s", "Connection timed out"),  # later than the client waits
     ("silent", "Connection timed out"),
     ("exception:06", "Slave device or server is busy"),
     ("exception:0B", "Target device failed to respond"),
     ("corrupt:tid", "Invalid data"),  # libmodbus checks the transaction id
     ("corrupt:fc", "Invalid data"),
     ("corrupt:before:3", "Invalid data"),
     ("corrupt:count", "Connection timed out"),  # it waits for the byte the count promises
     ("corrupt:truncate:2", "Connection timed out"),
     ("close", "Connection reset by peer"),
     ("reset", "Connection reset by peer")],
)  # fmt: skip
def test_mbpoll_reports_each_fault_over_tcp(start_server: StartServer, action: str, reported: str) -> None:
    server = start_server(Device())
    server.faults.add(f"first=1 action={action}")
    code, out = mbpoll("-m", "tcp", "-p", str(server.port), HOST)
    assert code != 0 and f"Read output (holding) register failed: {reported}" in out, out
    code, out = mbpoll("-m", "tcp", "-p", str(server.port), HOST)  # the next request: answered
    assert code == 0 and "[1]: \t0" in out, out


@pytest.mark.parametrize("action", ["split:20ms", "split:10ms:3", "twice", "delay:100ms"])
def test_mbpoll_reads_through_faults_that_keep_the_response(start_server: StartServer, action: str) -> None:
    server = start_server(Device())
    server.faults.add(f"action={action}")
    code, out = mbpoll("-m", "tcp", "-p", str(server.port), HOST)
    assert code == 0 and "[1]: \t0" in out and "[2]: \t0" in out, out
    assert server.faults.counters()[0]["applied"] == 1


@pytest.mark.parametrize(("action", "reported"), [("corrupt:crc", "Invalid CRC"), ("split:50ms", None)])
def test_mbpoll_over_rtu_on_a_serial_line(
    pty_pair: Callable[[], PtyPair], start_server: StartServer, action: str, reported: str | None
) -> None:
    """A bad CRC is what libmodbus reports; a response byte by byte 50 ms apart breaks t3.5 on purpose, and libmodbus,
    which waits for the bytes a response needs, still reads it."""
    pair = pty_pair()
    server = start_server(Device(), port=None, serial=SerialLine(pair.server_end, "rtu", baudrate=19200, parity="N"))
    server.faults.add(f"first=1 action={action}")
    line = ("-m", "rtu", "-b", "19200", "-P", "none", "-a", "1", pair.client_end)
    code, out = mbpoll(*line)
    if reported is None:
        assert code == 0 and "[1]: \t0" in out, out
    else:
        assert code != 0 and f"Read output (holding) register failed: {reported}" in out, out
        code, out = mbpoll(*line)
        assert code == 0 and "[1]: \t0" in out, out


@pytest.mark.parametrize("action", ["corrupt:fc", "corrupt:count", "corrupt:truncate:2", "corrupt:before:3"])
def test_pymodbus_gets_no_registers_from_a_broken_response_and_reads_the_next(
    start_server: StartServer, action: str
) -> None:
    server = start_server(Device())
    server.faults.add(f"first=1 action={action}")
    client = ModbusTcpClient(HOST, port=server.port, timeout=0.5, retries=0)
    try:
        assert client.connect()
        try:
            reply = client.read_holding_registers(0, count=2)
        except ModbusIOException:
            reply = None  # no response it could frame in time
        if action == "corrupt:fc":  # pymodbus hands back what came: FC04's response to an FC03 request
            assert reply is not None and reply.function_code == 4, reply
        else:
            assert reply is None or reply.isError(), reply
        client.close()
        assert client.connect()  # a new connection: the broken bytes are not left to spoil the next response
        assert client.read_holding_registers(0, count=2).registers == [0, 0]
    finally:
        client.close()
