"""Who may do what, from the request's bytes (`modbusd.authorize`): ranges, roles' rights, read-only ranges,
allow-lists. Sans-I/O: each test drives the decisions with PDUs."""

from __future__ import annotations

import pytest

from modbusd import Device, handler
from modbusd.authorize import AllowList, ReadOnly, Rights, Roles, accesses, parse_span, parse_spans
from modbusd.model.names import InvalidName, Table
from modbusd.protocol.codes import ExceptionCode

HR, CO, DI, IR = Table.HOLDING_REGISTERS, Table.COILS, Table.DISCRETE_INPUTS, Table.INPUT_REGISTERS


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("100-199.hr", ((HR, 100, 199),)),
        ("100.hr-199.hr", ((HR, 100, 199),)),
        ("40101-40200", ((HR, 100, 199),)),
        ("7.co", ((CO, 7, 7),)),
        ("hr", ((HR, 0, 65535),)),
        ("discrete_inputs", ((DI, 0, 65535),)),
        ("*", tuple((t, 0, 65535) for t in Table)),
    ],
)
def test_parse_span_reads_every_notation(text: str, spans: tuple[object, ...]) -> None:
    assert parse_span(text) == spans


@pytest.mark.parametrize(
    ("text", "says"),
    [("199-100.hr", "ends before"), ("1.100.hr-1.199.hr", "without a unit id"), ("100.hr-199.co", "one table"),
     ("100", "names no table"), ("5.hr.3", "register bit")],
)  # fmt: skip
def test_parse_span_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(InvalidName, match=says):
        parse_span(text)


@pytest.mark.parametrize(
    ("pdu", "reads", "writes"),
    [
        ("03 0064 0002", ((HR, 100, 2),), ()),
        ("02 0000 0010", ((DI, 0, 16),), ()),
        ("05 0003 FF00", (), ((CO, 3, 1),)),
        ("10 0064 0002 04 0001 0002", (), ((HR, 100, 2),)),
        ("16 0064 00FF 0100", (), ((HR, 100, 1),)),  # FC22: a write; its response reads nothing out (§6.16)
        ("17 0000 0002 0064 0001 02 0005", ((HR, 0, 2),), ((HR, 100, 1),)),  # FC23: both parts
        ("2B 0E 01 00", (), ()),
        ("03 00", (), ()),  # too short to say: the handler answers it
    ],
)
def test_accesses_reads_what_a_request_reads_and_writes(pdu: str, reads: tuple[object, ...],
                                                        writes: tuple[object, ...]) -> None:  # fmt: skip
    assert accesses(bytes.fromhex(pdu)) == (reads, writes)


OPERATOR = Rights(read=parse_spans(["*"]), write=parse_spans(["100-199.hr"]))


@pytest.mark.parametrize(
    ("pdu", "allowed"),
    [
        ("03 0000 007D", True),
        ("04 FF00 0010", True),
        ("06 0096 0001", True),
        ("06 0032 0001", False),
        ("10 00C6 0002 04 0001 0002", True),  # 198..199
        ("10 00C7 0002 04 0001 0002", False),  # 199..200: one past
        ("05 0000 FF00", False),
        ("16 0064 00FF 0100", True),
        ("16 0063 00FF 0100", False),
        ("17 0000 0002 0064 0001 02 0005", True),
        ("08 0000 1234", False),  # FC08 only by name
        ("2B 0E 01 00", True),
        ("41 00", False),  # not among the functions
    ],
)
def test_rights_allow_what_the_role_may_do(pdu: str, allowed: bool) -> None:
    assert OPERATOR.allows(bytes.fromhex(pdu)) is allowed


def test_rights_check_fc23_read_part_and_write_part_each() -> None:
    narrow = Rights(read=parse_spans(["0-9.hr"]), write=parse_spans(["100-199.hr"]))
    assert narrow.allows(bytes.fromhex("17 0000 0002 0064 0001 02 0005"))
    assert not narrow.allows(bytes.fromhex("17 0014 0001 0064 0001 02 0005"))  # read part outside
    assert not narrow.allows(bytes.fromhex("17 0000 0001 0032 0001 02 0005"))  # write part outside


def test_rights_ranges_given_apart_may_cover_one_request_together() -> None:
    rights = Rights(read=parse_spans(["0-9.hr", "10-19.hr"]))
    assert rights.allows(bytes.fromhex("03 0005 000A"))
    assert not rights.allows(bytes.fromhex("03 0005 0010"))


def test_rights_functions_listed_replace_the_default() -> None:
    diagnostics = Rights(functions=frozenset({8}))
    assert diagnostics.allows(bytes.fromhex("08 0000 1234"))
    assert not diagnostics.allows(bytes.fromhex("03 0000 0001"))


def test_roles_give_the_no_role_rights_to_a_certificate_without_a_role() -> None:
    roles = Roles({"viewer": Rights(read=parse_spans(["*"]))}, no_role="viewer")
    assert roles.rights_of(None) is roles.rights["viewer"]
    assert Roles({"viewer": Rights()}).rights_of(None) is None
    assert roles.rights_of("stranger") is None


@pytest.mark.parametrize("code", [ExceptionCode.ILLEGAL_DATA_ADDRESS, ExceptionCode.ILLEGAL_FUNCTION,
                                  ExceptionCode.SERVER_DEVICE_FAILURE])  # fmt: skip
def test_read_only_ranges_refuse_client_writes_with_the_code_chosen(code: ExceptionCode) -> None:
    device = Device()
    device.guard = ReadOnly(parse_spans(["100-199.hr", "0-7.co"]), code)
    for pdu in ("06 0064 0001", "10 00C7 0002 04 0001 0002", "05 0007 FF00", "16 0064 0000 0001",
                "17 0000 0001 0096 0001 02 0001"):  # fmt: skip
        assert handler.respond(device, bytes.fromhex(pdu)) == bytes((int(pdu[:2], 16) | 0x80, code)), pdu
    assert device.holding_registers.read(100, 100) == bytes(200) and device.coils.read(0, 8) == [False] * 8
    assert handler.respond(device, bytes.fromhex("06 00C8 0001")) == bytes.fromhex("06 00C8 0001")  # 200: writable
    assert handler.respond(device, bytes.fromhex("03 0064 0001")) == bytes.fromhex("03 02 0000")  # reads go on
    assert device.diagnostics.bus_exception_error == 5  # counted as the exceptions they are


def test_read_only_ranges_are_coils_and_holding_registers_and_codes_1_2_4() -> None:
    with pytest.raises(ValueError, match="read-only for clients already"):
        ReadOnly(parse_spans(["0-9.ir"]))
    with pytest.raises(ValueError, match="1, 2 or 4"):
        ReadOnly(parse_spans(["0-9.hr"]), ExceptionCode.ILLEGAL_DATA_VALUE)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("10.1.2.3", True), ("192.0.2.7", True), ("192.0.2.8", False), ("::ffff:10.0.0.1", True), ("2001:db8::5", True),
     ("2001:db9::5", False), ("not an address", False)],
)  # fmt: skip
def test_allow_lists_match_addresses_and_networks(host: str, allowed: bool) -> None:
    assert AllowList(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]).allows(host) is allowed


def test_allow_lists_refuse_a_network_with_host_bits_set() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.1/8"):
        AllowList(["10.0.0.1/8"])
