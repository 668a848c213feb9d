"""The device file's FC17 Report Server ID (`[device.server_id]`) and FC43 objects by id, seen by real clients."""

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Server
from modbusd.config import loads
from modbusd.version import __version__
from tests.conftest import assert_config_mistake

if TYPE_CHECKING:
    from tests.conftest import RawClient


def serve(text: str, start_server: Callable[..., Server]) -> Server:
    return start_server(loads(text, "plant.toml").build_devices())


def test_device_file_sets_the_server_id_and_run_indicator_pymodbus_reports(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient]
) -> None:
    text = """
[[device]]
unit_id = 1
[device.server_id]
id = [0x2A, 0x07]
running = false
[[device]]
unit_id = 2
[device.server_id]
id = 0x11
"""
    client = connect_client(serve(text, start_server))
    first, second = client.report_device_id(device_id=1), client.report_device_id(device_id=2)
    assert not first.isError() and not second.isError()
    assert (first.identifier, first.status) == (b"\x2a\x07", False)  # pymodbus: the last byte is the run indicator
    assert (second.identifier, second.status) == (b"\x11", True)  # running is the default


@pytest.mark.parametrize(
    ("additional", "data"),
    [pytest.param('"PLC-5 v2.1"', b"PLC-5 v2.1", id="text"), pytest.param("[0x00, 0xFF, 0x80]", b"\x00\xff\x80",
                                                                             id="bytes")],
)  # fmt: skip
def test_device_file_additional_data_follows_the_run_indicator_on_the_wire(
    start_server: Callable[..., Server], open_raw: Callable[..., "RawClient"], additional: str, data: bytes
) -> None:
    server = serve(f"[[device]]\n[device.server_id]\nid = 7\nadditional_data = {additional}\n", start_server)
    raw = open_raw(server)
    raw.send(raw.frame(1, 1, b"\x11"))
    body = b"\x07\xff" + data  # §6.13: server id, run indicator, additional data
    expected = raw.frame(1, 1, bytes((0x11, len(body))) + body)
    assert raw.recv_exact(len(expected)) == expected


def test_device_file_identification_is_exactly_its_objects_with_private_ones_by_id(
    start_server: Callable[..., Server], connect_client: Callable[..., ModbusTcpClient]
) -> None:
    text = '[[device]]\n[device.identification]\nvendor_name = "ACME"\n0x80 = "serial 0042"\n'
    client = connect_client(serve(text, start_server))
    answer = client.read_device_information(read_code=3, object_id=0)
    assert not answer.isError()
    # the mandatory objects the file leaves out are modbusd's; no other modbusd object (product name, model) appears
    assert answer.information == {0: b"ACME", 1: b"modbusd", 2: __version__.encode(), 0x80: b"serial 0042"}


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        pytest.param("[device.server_id]\nid = 256\n", 3, "device[0].server_id.id", "0..255", id="id range"),
        pytest.param("[device.server_id]\nid = []\n", 3, "device[0].server_id.id", "a byte at least", id="empty"),
        pytest.param("[device.server_id]\nid = [1, 300]\n", 3, "device[0].server_id.id", "list of them",
                     id="id list"),
        pytest.param("[device.server_id]\nrunning = 1\n", 3, "device[0].server_id.running", "true",
                     id="running"),
        pytest.param("[device.server_id]\nadditional_data = 5\n", 3, "device[0].server_id.additional_data",
                     "a text or a list of bytes", id="additional"),
        pytest.param(f'[device.server_id]\nadditional_data = "{"x" * 250}"\n', 3,
                     "device[0].server_id.additional_data", "at most 250", id="too long"),
        pytest.param("[device.server_id]\nserver_id = 1\n", 3, "device[0].server_id.server_id", "expected one of",
                     id="unknown key"),
        pytest.param('[device.identification]\n0x00 = "a"\nvendor_name = "b"\n', 4,
                     "device[0].identification.vendor_name", "give it once", id="object twice"),
        pytest.param('[device.identification]\nvendr_name = "b"\n', 3, "device[0].identification.vendr_name",
                     "did you mean 'vendor_name'", id="object name typo"),
    ],
)  # fmt: skip
def test_device_file_fc17_and_object_mistakes_name_file_line_and_key(
    text: str, line: int, key: str, words: str
) -> None:
    assert_config_mistake("[[device]]\n" + text, line, key, words, "plant.toml")
