"""Fault rules without sockets: the syntax every source shares, what a rule matches and when it fires, what each action
does to a response's bytes on each framing, and a session that asks the rules (`modbusd.faults`, docs/faults.md)."""

import asyncio
import random

import pytest

from modbusd import Device, handler
from modbusd.faults import FaultError, Faults, parse_action, parse_rule
from modbusd.faults.actions import miscounted, plan, unframe
from modbusd.model.names import Table
from modbusd.protocol.adu import Adu
from modbusd.protocol.ascii import AsciiFramer, lrc
from modbusd.protocol.mbap import MbapFramer, frame
from modbusd.protocol.rtu import RtuFramer, crc_ok, with_crc
from modbusd.session import Schedule, Session

READ = bytes.fromhex("03 0000 0001")


# ------------------------------------------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("unit=3 fc=3 every=5 action=exception:06", "unit=3 fc=3 every=5 action=exception:06"),
        ("prob=0.3 seed=1 action=delay:200ms", "prob=0.3 seed=1 action=delay:200ms"),
        ("unit=1-3,7 fc=0x03,4 action=delay:100ms..1.5s", "unit=1-3,7 fc=3-4 action=delay:100ms..1.5s"),
        ("address=40001:10 action=delay:200ms~50ms", "address=0.hr:10 action=delay:200ms~50ms"),
        ("address=1.100.co action=silent", "unit=1 address=100.co action=silent"),
        ("client=10.1.2.3/8,::1 transport=rtu_over_tcp action=reset", "client=10.0.0.0/8,::1/128 "
         "transport=rtu-over-tcp action=reset"),
        ("name=meter-3 first=2 action=exception:0x0B", "name=meter-3 first=2 action=exception:0B"),
        ("after=10 action=exception:server-device-busy", "after=10 action=exception:06"),
        ("action=corrupt:truncate", "action=corrupt:truncate:1"),
        ("action=corrupt:after:5", "action=corrupt:after:5"),
        ("action=split:10ms", "action=split:10ms"),
        ("action=split:1s:4", "action=split:1s:4"),
        ("ACTION=Twice", "action=twice"),
    ],
)  # fmt: skip
def test_fault_rule_text_reads_back_as_it_is_listed(text: str, canonical: str) -> None:
    spec = parse_rule(text)
    assert spec.text() == canonical
    assert parse_rule(canonical) == spec  # what the control API lists is a rule that can be given again


@pytest.mark.parametrize(
    ("rule", "key", "words"),
    [
        ("unit=3", "action", "missing"),
        ("unit=3 action=boom", "action", "unknown action 'boom'"),
        ("action=delay:200", "action", "not a duration such as 200ms"),
        ("action=delay:2h", "action", "not a duration"),
        ("action=delay:300ms..100ms", "action", "from the shorter"),
        ("action=exception", "action", "needs an argument, e.g. exception:06"),
        ("action=exception:zz", "action", "expected a code"),
        ("action=exception:256", "action", "outside 1..255"),
        ("action=corrupt:checksum", "action", "unknown corruption"),
        ("action=silent:1", "action", "takes no argument"),
        ("unit=300 action=silent", "unit", "not within 0..255"),
        ("fc=0 action=silent", "fc", "not within 1..127"),
        ("address=100 action=silent", "address", "names no table"),
        ("address=100.hr.3 action=silent", "address", "whole registers"),
        ("address=65535.hr:2 action=silent", "address", "runs past"),
        ("unit=1 address=2.5.hr action=silent", "address", "give it once"),
        ("client=plant.example action=silent", "client", "not an IP address"),
        ("transport=modbus action=silent", "transport", "not one of tcp"),
        ("transport=udp action=close", "transport", "close means nothing on udp"),
        ("transport=tcp action=corrupt:crc", "transport", "means nothing on tcp"),
        ("every=2 first=3 action=silent", "first", "give one of"),
        ("every=0 action=silent", "every", "whole number 1.."),
        ("prob=0 action=silent", "prob", "greater than 0"),
        ("prob=1.5 action=silent", "prob", "at most 1"),
        ("colour=red action=silent", "colour", "unknown key"),
        ("unit=3 unit=4 action=silent", "unit", "given twice"),
        ("unit=3 silent", "", "not KEY=VALUE"),
    ],
)  # fmt: skip
def test_a_wrong_rule_names_its_key_and_says_what_is_wrong(rule: str, key: str, words: str) -> None:
    with pytest.raises(FaultError, match=words) as caught:
        parse_rule(rule)
    assert caught.value.key == key


def test_rule_items_from_a_table_or_json_mean_what_the_text_means() -> None:
    from_items = parse_rule({"unit": [1, 2], "fc": 3, "every": 4, "prob": 0.5, "seed": 7, "action": "silent"})
    assert from_items == parse_rule("unit=1,2 fc=3 every=4 prob=0.5 seed=7 action=silent")
    with pytest.raises(FaultError, match="expected a number, a list or a text"):
        parse_rule({"unit": True, "action": "silent"})


# ------------------------------------------------------------------------------------------- matching


def rule(text: str) -> Faults:
    faults = Faults()
    faults.add(text)
    return faults


def decides(faults: Faults, *, transport: str = "tcp", peer: str = "127.0.0.1:5000", unit: int = 1,
            pdu: bytes = READ) -> bool:  # fmt: skip
    return faults.point(transport).decide(peer, Adu(1, 0, unit, pdu)) is not None


@pytest.mark.parametrize(
    ("text", "request_pdu", "expected"),
    [
        ("address=40001:10 action=silent", "03 0009 0002", True),  # overlaps the last register
        ("address=40001:10 action=silent", "03 000A 0001", False),  # just past it
        ("address=40011 action=silent", "03 0000 000B", True),  # covers it from below
        ("address=40001 action=silent", "04 0000 0001", False),  # an input register, not a holding one
        ("address=30001 action=silent", "04 0000 0001", True),
        ("address=5.co action=silent", "0F 0004 0003 01 07", True),  # FC15 writes coils 4..6
        ("address=5.co action=silent", "05 0006 FF00", False),
        ("address=200.hr action=silent", "17 0000 0001 00C8 0001 02 0001", True),  # FC23 writes 200
        ("address=0.hr action=silent", "17 0000 0001 00C8 0001 02 0001", True),  # … and reads 0
        ("address=0.hr action=silent", "08 0000 1234", False),  # no address at all
        ("fc=3,4 action=silent", "04 0000 0001", True),
        ("fc=3,4 action=silent", "06 0000 0001", False),
    ],
)  # fmt: skip
def test_rule_matches_a_request_by_function_and_address_range(text: str, request_pdu: str, expected: bool) -> None:
    assert decides(rule(text), pdu=bytes.fromhex(request_pdu)) is expected


def test_rule_matches_by_unit_client_and_transport() -> None:
    faults = rule("unit=2-3 client=10.0.0.0/8 transport=tcp,udp action=silent")
    assert decides(faults, unit=3, peer="10.9.8.7:1234")
    assert not decides(faults, unit=4, peer="10.9.8.7:1234")
    assert not decides(faults, unit=3, peer="192.168.1.1:1234")
    assert decides(faults, unit=3, peer="10.9.8.7:1234", transport="udp")
    assert not decides(faults, unit=3, peer="10.9.8.7:1234", transport="rtu-over-tcp")
    assert not decides(rule("client=10.0.0.0/8 action=silent"), transport="rtu", peer="/dev/ttyUSB0")


def test_a_serial_bus_faults_only_its_own_unit_ids_and_never_a_broadcast() -> None:
    faults = rule("action=exception:06")
    point = faults.point("rtu", {1: Device()})
    assert point.decide("/dev/ttyS0", Adu(0, 0, 1, READ)) is not None
    assert point.decide("/dev/ttyS0", Adu(0, 0, 2, READ)) is None  # another slave's request: not ours to answer
    assert point.decide("/dev/ttyS0", Adu(0, 0, 0, bytes.fromhex("06 0000 0001"))) is None  # a broadcast


@pytest.mark.parametrize(
    ("count", "fired"),
    [("every=3", [3, 6, 9]), ("first=2", [1, 2]), ("after=7", [8, 9, 10])],
)
def test_counts_pick_the_requests_that_get_the_fault(count: str, fired: list[int]) -> None:
    faults = rule(f"{count} action=silent")
    assert [n for n in range(1, 11) if decides(faults)] == fired
    assert faults.rules[0].matched == 10


def test_a_seeded_probability_gives_the_same_faults_to_the_same_requests() -> None:
    def run(seed: int) -> list[int]:
        faults = rule(f"prob=0.3 seed={seed} action=silent")
        return [n for n in range(200) if decides(faults)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert 30 <= len(run(1)) <= 90  # about 60 of 200


def test_reset_starts_a_rules_counts_and_random_numbers_over() -> None:
    faults = rule("prob=0.5 action=silent")
    first = [decides(faults) for _ in range(50)]
    faults.reset()
    assert [decides(faults) for _ in range(50)] == first  # the seed it drew itself, listed as its seed
    assert f"seed={faults.rules[0].seed}" in faults.counters()[0]["rule"]


def test_rules_are_tried_in_order_and_one_fault_at_most_applies() -> None:
    faults = Faults()
    first = faults.add("every=2 action=silent")
    second = faults.add("action=exception:04")
    picked = [faults.point("tcp").decide("p", Adu(1, 0, 1, READ)).rule for _ in range(4)]  # type: ignore[union-attr]
    assert picked == [second, first, second, first]
    faults.disable(first)
    assert faults.point("tcp").decide("p", Adu(1, 0, 1, READ)).rule is second  # type: ignore[union-attr]
    faults.remove(second)
    assert faults.point("tcp").decide("p", Adu(1, 0, 1, READ)) is None
    with pytest.raises(LookupError, match="no fault rule 2"):
        faults.get(2)


# -------------------------------------------------------------------------------------------- actions

RTU_OUT = with_crc(bytes.fromhex("01 03 02 1234"))
ASCII_OUT = b":" + (bytes.fromhex("01 03 02 1234") + bytes((lrc(bytes.fromhex("01 03 02 1234")),))).hex().upper(
    ).encode() + b"\r\n"  # fmt: skip
MBAP_OUT = frame(0x0102, 1, bytes.fromhex("03 02 1234"))
ADU = Adu(0x0102, 0, 1, READ)


def planned(action: str, out: bytes, framing: str) -> tuple[bytes, list[tuple[float, bytes]], str | None]:
    framer = {"mbap": MbapFramer(), "rtu": RtuFramer(), "ascii": AsciiFramer()}[framing]
    return plan(parse_action(action), random.Random(1), out, ADU, framer=framer, framing=framing)


def test_corruptions_change_exactly_what_they_name_and_keep_the_frame_well_formed() -> None:
    assert planned("corrupt:tid", MBAP_OUT, "mbap")[0] == frame(0x0103, 1, bytes.fromhex("03 02 1234"))
    assert planned("corrupt:unit", MBAP_OUT, "mbap")[0] == frame(0x0102, 2, bytes.fromhex("03 02 1234"))
    assert planned("corrupt:fc", MBAP_OUT, "mbap")[0] == frame(0x0102, 1, bytes.fromhex("04 02 1234"))
    assert planned("corrupt:count", MBAP_OUT, "mbap")[0] == frame(0x0102, 1, bytes.fromhex("03 03 1234"))
    assert planned("corrupt:unit", RTU_OUT, "rtu")[0] == with_crc(bytes.fromhex("02 03 02 1234"))
    assert planned("corrupt:count", RTU_OUT, "rtu")[0] == with_crc(bytes.fromhex("01 03 03 1234"))
    assert unframe(planned("corrupt:fc", ASCII_OUT, "ascii")[0], "ascii") == (1, bytes.fromhex("04 02 1234"))


def test_bad_crc_and_lrc_are_the_only_damage() -> None:
    bad = planned("corrupt:crc", RTU_OUT, "rtu")[0]
    assert bad[:-2] == RTU_OUT[:-2] and not crc_ok(bad)
    bad_ascii = planned("corrupt:lrc", ASCII_OUT, "ascii")[0]
    assert bad_ascii[:-4] == ASCII_OUT[:-4] and bad_ascii[-2:] == b"\r\n"
    assert AsciiFramer().feed(bad_ascii) == []  # a framer refuses it
    raw = bytes.fromhex(bad_ascii[1:-2].decode())
    assert sum(raw) & 0xFF != 0  # the LRC no longer sums to 0


def test_truncated_and_garbage_around_the_response() -> None:
    assert planned("corrupt:truncate:3", MBAP_OUT, "mbap")[0] == MBAP_OUT[:-3]
    before = planned("corrupt:before:4", RTU_OUT, "rtu")[0]
    after = planned("corrupt:after", RTU_OUT, "rtu")[0]
    assert before[4:] == RTU_OUT and len(before) == len(RTU_OUT) + 4
    assert after[: len(RTU_OUT)] == RTU_OUT and len(after) == len(RTU_OUT) + 3
    assert before[:4] == random.Random(1).randbytes(4)  # from the rule's own generator: seeded, reproducible


def test_a_byte_count_that_does_not_match() -> None:
    assert miscounted(bytes.fromhex("01 01 05")) == bytes.fromhex("01 02 05")
    assert miscounted(bytes.fromhex("06 0001 0003")) == bytes.fromhex("06 0001 0003 00")  # an echo: a byte more
    assert miscounted(bytes.fromhex("83 02")) == bytes.fromhex("83 02 00")


def test_timed_actions_give_pieces_and_gaps() -> None:
    assert planned("delay:200ms", RTU_OUT, "rtu") == (b"", [(0.2, RTU_OUT)], None)
    assert planned("twice", RTU_OUT, "rtu") == (RTU_OUT, [(0.0, RTU_OUT)], None)
    now, pieces, end = planned("split:5ms", RTU_OUT, "rtu")
    assert end is None
    assert now == RTU_OUT[:1] and pieces == [(0.005, RTU_OUT[i : i + 1]) for i in range(1, len(RTU_OUT))]
    assert planned("split:5ms:4", RTU_OUT, "rtu")[1] == [(0.005, RTU_OUT[4:])]
    assert planned("reset", RTU_OUT, "rtu") == (b"", [], "reset")
    delays = [planned("delay:100ms..300ms", RTU_OUT, "rtu")[1][0][0] for _ in range(3)]
    assert delays[0] == delays[1] == pytest.approx(random.Random(1).uniform(0.1, 0.3))
    normal = plan(parse_action("delay:10ms~1s"), random.Random(3), RTU_OUT, ADU, framer=RtuFramer(), framing="rtu")
    assert normal[1][0][0] >= 0  # a normal draw below 0 waits 0


# ------------------------------------------------------------------------------------------- sessions


def session_with(text: str, device: Device) -> tuple[Session, Faults]:
    faults = rule(text)
    return Session(lambda _unit, pdu: handler.respond(device, pdu), faults=faults.point("tcp")), faults


def test_a_replacing_fault_leaves_the_request_undone() -> None:
    device = Device()
    session, faults = session_with("fc=6 action=exception:06", device)
    write = bytes.fromhex("06 0005 1234")
    assert session.receive(frame(7, 1, write)) == frame(7, 1, bytes.fromhex("86 06"))
    assert device.holding_registers.read(5, 1) == b"\x00\x00"  # busy: not written
    faults.clear()
    assert session.receive(frame(8, 1, write)) == frame(8, 1, write)  # no rules: answered as ever
    assert device.holding_registers.read(5, 1) == b"\x12\x34"


def test_a_delayed_response_is_scheduled_and_does_not_hold_up_the_next() -> None:
    device = Device()
    session, faults = session_with("unit=1 action=delay:500ms", device)
    out = session.receive(frame(1, 1, READ) + frame(2, 2, READ))
    assert out == frame(2, 2, bytes.fromhex("03 02 0000"))  # unit 2's response at once, unit 1's later
    (schedule,) = session.take_awaiting()
    assert isinstance(schedule, Schedule)
    assert schedule.pieces == [(0.5, frame(1, 1, bytes.fromhex("03 02 0000")))]
    assert faults.rules[0].applied == 1


def test_a_deferred_answer_gets_its_fault_when_it_settles() -> None:
    async def later(pdu: bytes) -> bytes:
        return bytes((pdu[0], 2, 0, 7))

    faults = rule("action=corrupt:tid")
    session = Session(lambda _unit, pdu: later(pdu), faults=faults.point("tcp"))
    assert session.receive(frame(5, 1, READ)) == b""
    (pending,) = session.take_awaiting()
    reply = asyncio.run(pending.awaitable)  # type: ignore[union-attr]  # a Pending
    assert session.settle(pending, reply) == frame(6, 1, bytes.fromhex("03 02 0007"))  # type: ignore[arg-type]


def test_a_session_without_rules_never_asks() -> None:
    class Refuses:
        rules: tuple[object, ...] = ()

        def decide(self, peer: str, adu: Adu) -> None:
            raise AssertionError("asked with no rules")

    session = Session(lambda _unit, pdu: pdu, faults=Refuses())  # type: ignore[arg-type]  # a stand-in hook
    assert session.receive(frame(1, 1, READ) + frame(2, 1, READ)) == frame(1, 1, READ) + frame(2, 1, READ)


def test_rules_list_the_table_they_match() -> None:
    assert parse_rule("address=30001:4 action=silent").table is Table.INPUT_REGISTERS
