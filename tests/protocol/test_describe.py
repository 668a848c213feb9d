"""The request log's words: values written and read, shortened after eight."""

import pytest

from modbusd.protocol.describe import outcome, shortened, summary


@pytest.mark.parametrize(
    ("values", "text"),
    [([], "[]"), ([1, 2, 3], "[1, 2, 3]"), (list(range(8)), "[0, 1, 2, 3, 4, 5, 6, 7]"),
     (list(range(123)), "[0, 1, 2, 3, 4, 5, 6, 7, … (+115)]")],
)  # fmt: skip
def test_shortened_shows_eight_values_and_counts_the_rest(values: list[int], text: str) -> None:
    assert shortened(values) == text


@pytest.mark.parametrize(
    ("request_hex", "text"),
    [
        pytest.param("0F 0013 000A 02 CD01", "fc=15 address=19 quantity=10 values=[1, 0, 1, 1, 0, 0, 1, 1, … (+2)]",
                     id="FC15, the spec's example"),
        pytest.param("10 0001 0002 04 000A 0102", "fc=16 address=1 quantity=2 values=[10, 258]", id="FC16"),
        pytest.param("17 0003 0006 000E 0003 06 00FF 00FF 00FF",
                     "fc=23 read_address=3 read_quantity=6 write_address=14 write_quantity=3 values=[255, 255, 255]",
                     id="FC23"),
        pytest.param("16 0004 00F2 0025", "fc=22 address=4 and_mask=242 or_mask=37", id="FC22"),
        pytest.param("06 0001 0003", "fc=6 address=1 value=3", id="FC06"),
        pytest.param("03 006B 0003", "fc=3 address=107 quantity=3", id="a read writes nothing"),
    ],
)  # fmt: skip
def test_summary_names_the_values_a_request_writes(request_hex: str, text: str) -> None:
    assert summary(bytes.fromhex(request_hex)) == text


def test_outcome_shows_the_values_read_only_when_given_the_request() -> None:
    request, reply = bytes.fromhex("01 0013 0013"), bytes.fromhex("01 03 CD6B05")  # Application Protocol §6.1
    assert outcome(reply) == "ok"
    assert outcome(reply, request) == "ok values=[1, 0, 1, 1, 0, 0, 1, 1, … (+11)]"
    assert outcome(bytes.fromhex("03 06 022B 0000 0064"), bytes.fromhex("03 006B 0003")) == "ok values=[555, 0, 100]"
    assert outcome(bytes.fromhex("83 02"), bytes.fromhex("03 FFFF 0002")) == "exception 2"
    assert outcome(None) == "no response"
