"""The one grammar of a gateway route (`--forward UNITS=TARGET`, the device file's [[gateway.forward]], `modbusd
clone TARGET`), as text → plain data, and the one-line ValueError for each kind of mistake."""

import re

import pytest

from modbusd.protocol.gateway import TcpTarget, parse_forward, parse_target, parse_units, unit_ranges
from modbusd.protocol.serial_line import SerialLine


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("tcp:10.0.0.5", TcpTarget("10.0.0.5", 502)),
        ("TCP:plc.example:1502", TcpTarget("plc.example", 1502)),
        ("tcp:[::1]:1502", TcpTarget("::1", 1502)),
        ("tcp:fe80::1", TcpTarget("fe80::1", 502)),  # an IPv6 address without brackets has no port
        ("rtu:/dev/ttyUSB0", SerialLine("/dev/ttyUSB0", "rtu", 19200, 8, "E", None)),  # Serial Line §2.5.1's
        ("rtu:/dev/ttyUSB0,9600,8N1", SerialLine("/dev/ttyUSB0", "rtu", 9600, 8, "N", 1)),
        ("ascii:/dev/ttyS1,9600,7e1", SerialLine("/dev/ttyS1", "ascii", 9600, 7, "E", 1)),
        ("rtu:/dev/ttyS0,19200,8n", SerialLine("/dev/ttyS0", "rtu", 19200, 8, "N", None)),  # 8N alone: 8N2
    ],
)
def test_parse_target_reads_every_spelling_of_a_downstream(text: str, target: object) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("udp:host", "'udp:host' is not rtu:DEVICE[,BAUD[,8E1]], ascii:… or tcp:HOST[:PORT]"),
        ("tcp:", "is not rtu:DEVICE"),
        ("tcp:host:http", "'http' is not a port number"),
        ("tcp:host:0", "port 0 outside 1..65535"),
        ("rtu:/dev/ttyS0,fast", "'fast' is not a baud rate"),
        ("rtu:/dev/ttyS0,9600,8E1,x", "DEVICE[,BAUD[,SETTINGS]] at most"),
        ("rtu:/dev/ttyS0,9600,7E1", "RTU needs 8"),
    ],
)
def test_parse_target_says_what_is_wrong_in_one_line(text: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_target(text)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_parse_forward_gives_the_unit_ids_and_checks_a_serial_lines_slave_ids() -> None:
    assert parse_forward("0,3,5-7=tcp:h") == ([0, 3, 5, 6, 7], TcpTarget("h"))
    assert parse_forward("255=tcp:h")[0] == [255]  # a TCP server takes every MBAP unit id
    with pytest.raises(ValueError, match=re.escape("unit id 248 forwarded to /dev/ttyS0: slave ids are 0..247")):
        parse_forward("248=rtu:/dev/ttyS0")
    with pytest.raises(ValueError, match="is not UNITS=rtu:DEVICE"):
        parse_forward("1-3=rtu")


@pytest.mark.parametrize(("text", "words"), [("a-b", "is not a list of unit ids"), ("256", "within 0..255"),
                                             ("5-3", "within 0..255"), ("", "is not a list of unit ids")])  # fmt: skip
def test_parse_units_refuses_what_is_not_unit_ids(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_units(text)


def test_unit_ranges_folds_runs() -> None:
    assert unit_ranges([7, 1, 2, 3, 10, 11]) == "1-3, 7, 10-11"
