"""RTU over TCP against hostile or unlucky byte streams, on a real Server over 127.0.0.1 sockets.

A request split across TCP segments is executed once and nothing inside it is; framing by length never
depends on a CRC byte's value; and a client flooding RTU over TCP with the input that is costliest to
resynchronise does not hold up a Modbus/TCP client of the same server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from modbusd import Server
from modbusd.protocol.rtu import with_crc
from tests.conftest import HOST, TIMEOUT

if TYPE_CHECKING:
    from tests.conftest import RawClient

    OpenRaw = Callable[..., RawClient]
    StartServer = Callable[..., Server]

QUIET = 0.3  # seconds of silence that show nothing more is answered
ANSWER_BOUND = 1.0  # seconds a Modbus/TCP request may wait while another client floods RTU over TCP

# Issue 8's split FC16: holding registers 100..109, whose data happens to hold a whole FC06 frame
# (write 99 to register 10, `01 06 000A 0063 E9E1`) and which arrives in two segments 0.2 s apart.
SPLIT_FC16 = with_crc(bytes.fromhex("01 10 0064 000A 14 0106 000A 0063 E9E1") + bytes(12))


def test_a_request_split_across_segments_is_executed_once_and_nothing_inside_it_is(
    start_server: StartServer, open_raw: OpenRaw
) -> None:
    server = start_server(port=None, rtu_over_tcp=0)
    raw = open_raw(server.rtu_over_tcp_port)
    assert SPLIT_FC16[:15].hex(" ") == "01 10 00 64 00 0a 14 01 06 00 0a 00 63 e9 e1"  # the first segment
    raw.send(SPLIT_FC16[:15])
    time.sleep(0.2)
    raw.send(SPLIT_FC16[15:])
    assert raw.recv_exact(8) == with_crc(bytes.fromhex("01 10 0064 000A"))  # the FC16 response, and only it
    assert raw.is_silent(QUIET)
    registers = server.device.holding_registers
    assert registers[10] == 0
    assert [registers[a] for a in range(100, 110)] == [0x0106, 0x000A, 0x0063, 0xE9E1, 0, 0, 0, 0, 0, 0]


def test_fc08_whose_crc_ends_in_00_gets_its_whole_echo(start_server: StartServer, open_raw: OpenRaw) -> None:
    server = start_server(port=None, rtu_over_tcp=0)
    raw = open_raw(server.rtu_over_tcp_port)
    request = bytes.fromhex("01 08 0000 001B A000")  # Return Query Data; the CRC's high byte is 0x00
    assert with_crc(request[:-2]) == request
    raw.send(request)
    assert raw.recv_exact(8) == request
    assert raw.is_silent(QUIET)


def _repeat(pattern: str, size: int = 65536) -> bytes:
    unit = bytes.fromhex(pattern)
    return (unit * (size // len(unit) + 1))[:size]


FLOODS = [
    # Issue 8's: unit 0 with unknown function 9, then a good FC03 frame for unit 9 (not served here).
    pytest.param(_repeat("00 09 03 00 00 00 01 85 42"), id="issue-8-pattern"),
    # Every byte a known function whose byte count promises a long frame with a bad CRC.
    pytest.param(_repeat("17 F0"), id="long-frame-claims"),
    # Every byte an unknown function code.
    pytest.param(_repeat("41"), id="unknown-functions"),
]


class Flooder:
    """Sends `data` to `port` again and again from a thread until stopped; never reads."""

    def __init__(self, port: int, data: bytes) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.settimeout(0.2)
        self.data = data
        self.sent = 0
        self.started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtu-flooder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        view = memoryview(self.data)
        while not self._stop.is_set():
            try:
                self.sent += self.sock.send(view[self.sent % len(view) :])
            except TimeoutError:
                continue
            except OSError:
                return
            if self.sent >= len(view):
                self.started.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.sock.close()


@pytest.fixture
def flooder() -> Iterator[Callable[[int, bytes], Flooder]]:
    made: list[Flooder] = []

    def make(port: int, data: bytes) -> Flooder:
        made.append(Flooder(port, data))
        return made[-1]

    yield make
    for flood in made:
        flood.stop()


@pytest.mark.parametrize("flood", FLOODS)
def test_an_rtu_over_tcp_flood_does_not_hold_up_a_modbus_tcp_client(
    start_server: StartServer, open_raw: OpenRaw, flooder: Callable[[int, bytes], Flooder], flood: bytes
) -> None:
    server = start_server(port=0, rtu_over_tcp=0)
    server.device.holding_registers[0] = 1234
    tcp = open_raw(server, timeout=ANSWER_BOUND)  # connected before the flood, so accepting it is not the test
    flood_client = flooder(server.rtu_over_tcp_port, flood)
    assert flood_client.started.wait(TIMEOUT), "the flood never got going"
    sent_before = flood_client.sent
    for transaction_id in range(1, 6):  # each answered within the bound, all while the flood goes on
        began = time.monotonic()
        assert tcp.request("03 0000 0001", transaction_id=transaction_id) == bytes.fromhex("03 02 04D2")
        assert time.monotonic() - began < ANSWER_BOUND
    assert flood_client.sent > sent_before, "the flood did not go on while the requests were answered"
