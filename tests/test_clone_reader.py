"""`clone.reader` against a real modbusd on 127.0.0.1 whose request hook plays a device that refuses functions,
is busy once, and reads at a bounded rate; and `parse_ranges`, the --ranges syntax."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from modbusd import Device, Server
from modbusd.clone import CloneError, CloneSettings, clone, downstream, parse_ranges
from modbusd.clone.reader import DeviceReader
from modbusd.config import loads
from modbusd.config.writer import device_file
from modbusd.model.names import Table
from modbusd.routing import TcpTarget

HOST = "127.0.0.1"


def refusing(functions: set[int], busy_once: set[int]) -> Callable[[str, str, int, bytes], bytes | None]:
    """A hook: exception 01 to `functions`, exception 06 to the first request of each of `busy_once`."""

    def hook(server_name: str, client: str, unit_id: int, pdu: bytes) -> bytes | None:
        if pdu[0] in functions:
            return bytes((pdu[0] | 0x80, 0x01))
        if pdu[0] in busy_once:
            busy_once.discard(pdu[0])
            return bytes((pdu[0] | 0x80, 0x06))
        return None

    return hook


def test_a_device_refusing_functions_gives_an_empty_table_and_modbusd_own_answers(
    start_server: Callable[..., Server],
) -> None:
    device = Device(holding_registers=50)
    device.holding_registers.set_values(0, range(100, 150))
    server = start_server(device, hook=refusing({0x01, 0x2B, 0x11}, {0x03}))
    lines: list[str] = []
    settings = CloneSettings(ranges={Table.COILS: [(0, 99)], Table.HOLDING_REGISTERS: [(0, 99)]}, rate=0)
    copy = asyncio.run(clone(TcpTarget(HOST, server.port), settings, lines.append))
    assert "coils: none (the device refuses FC01)" in lines
    assert any(line.startswith("identification (FC43): not answered") for line in lines)
    assert any(line.startswith("report server id (FC17): not answered") for line in lines)
    assert (len(copy.coils), len(copy.holding_registers)) == (0, 50)  # read again after the busy answer
    assert copy.holding_registers.values(0, 50) == list(range(100, 150))
    text = device_file(copy)
    assert "[device.identification]" in text and "[device.server_id]" not in text  # modbusd's own: the defaults
    assert loads(text).build_devices().holding_registers.values(48, 2) == [148, 149]  # type: ignore[union-attr]


def test_reads_go_out_no_faster_than_the_rate(start_server: Callable[..., Server]) -> None:
    device = Device(holding_registers=300, addresses={"holding_registers": range(0, 300, 3)})  # holes: many reads
    server = start_server(device)
    rate = 100.0

    async def read() -> tuple[int, float]:
        link = downstream(TcpTarget(HOST, server.port), timeout=2.0)
        await link.start()
        try:
            reader = DeviceReader(link, CloneSettings(ranges={Table.HOLDING_REGISTERS: [(0, 59)]}, rate=rate),
                                  lambda line: None)  # fmt: skip
            began = time.monotonic()
            await reader.table(Table.HOLDING_REGISTERS)
            return reader.requests, time.monotonic() - began
        finally:
            await link.stop()

    requests, took = asyncio.run(read())
    assert requests > 20
    assert took >= (requests - 1) / rate * 0.95  # a lower bound: a loaded machine only makes it longer


def test_a_server_that_closes_at_once_is_a_clone_error(start_server: Callable[..., Server]) -> None:
    server = start_server(Device())
    port = server.port
    server.stop_thread()
    with pytest.raises(CloneError, match="cannot connect"):
        asyncio.run(clone(TcpTarget(HOST, port), CloneSettings(rate=0), lambda line: None))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("hr:0-999", {Table.HOLDING_REGISTERS: [(0, 999)]}, id="one"),
        pytest.param("co:0-99, ir:0x100-0x1FF,hr:5", {Table.COILS: [(0, 99)], Table.INPUT_REGISTERS: [(256, 511)],
                                                      Table.HOLDING_REGISTERS: [(5, 5)]}, id="several"),
        pytest.param("hr:100-199,hr:0-9", {Table.HOLDING_REGISTERS: [(0, 9), (100, 199)]}, id="sorted"),
    ],
)  # fmt: skip
def test_parse_ranges(text: str, expected: dict[Table, list[tuple[int, int]]]) -> None:
    assert parse_ranges(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("hr", "is not TABLE:FIRST[-LAST]", id="no addresses"),
        pytest.param("xx:0-9", "tables co, di, ir, hr", id="table"),
        pytest.param("hr:9-0", "the first no greater than the last", id="reversed"),
        pytest.param("hr:0-65536", "from 0 to 65535", id="too far"),
        pytest.param("hr:0-9,hr:5-20", "overlaps", id="overlap"),
    ],
)
def test_parse_ranges_mistakes(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_ranges(text)
    assert words in str(caught.value)
