"""RTU framing: CRC, lengths by function code, silence, resynchronisation."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modbusd.protocol.adu import Adu
from modbusd.protocol.rtu import (
    RtuFramer,
    crc16,
    crc_ok,
    request_length,
    response_length,
    silent_intervals,
    with_crc,
)
from tests.strategies import rtu_frame, serial_requests, split_anywhere, split_frames

# The address change: a write of 2 to holding register 0x07D0 sent to address 0xFF, and the answer
# from the device's old address 1.
ADDRESS_CHANGE_REQUEST = bytes.fromhex("FF 06 07D0 0002 1D58")
ADDRESS_CHANGE_RESPONSE = bytes.fromhex("01 06 07D0 0002 0886")


def test_crc_matches_the_address_change_frames() -> None:
    assert with_crc(ADDRESS_CHANGE_REQUEST[:-2]) == ADDRESS_CHANGE_REQUEST
    assert with_crc(ADDRESS_CHANGE_RESPONSE[:-2]) == ADDRESS_CHANGE_RESPONSE
    assert crc16(b"") == 0xFFFF


def test_crc_of_a_frame_with_its_crc_is_zero() -> None:
    assert crc_ok(ADDRESS_CHANGE_REQUEST)
    assert not crc_ok(ADDRESS_CHANGE_REQUEST[:-1] + b"\x00")


CRC_FRAMES = [  # framed by their length (FC06, FC03, FC15) and by the silence (FC08)
    ADDRESS_CHANGE_REQUEST,
    rtu_frame(0x01, bytes.fromhex("03 0000 000A")),
    rtu_frame(0x11, bytes.fromhex("0F 0013 000A 02 CD01")),
    rtu_frame(0x01, bytes.fromhex("08 0000 A537")),
]


def flipped(frame: bytes, bit: int) -> bytes:
    """`frame` with one bit changed, counting from the first byte's LSB."""
    return changed(frame, bit // 8, 1 << (bit % 8))


def changed(frame: bytes, index: int, error: int) -> bytes:
    broken = bytearray(frame)
    broken[index] ^= error
    return bytes(broken)


@pytest.mark.parametrize("frame", CRC_FRAMES, ids=lambda f: f.hex(" "))
def test_rtu_framer_discards_every_error_in_either_crc_byte(frame: bytes) -> None:
    """Both CRC bytes count, every bit of each: each of the 255 wrong values of the low byte and of the high byte
    (the 16 single-bit errors among them) is thrown away at the silence, and the line goes on."""
    for index in (len(frame) - 2, len(frame) - 1):
        for error in range(1, 256):
            reasons: list[str] = []
            framer = RtuFramer(on_discard=reasons.append)
            broken = changed(frame, index, error)
            what = f"CRC byte {index - len(frame) + 2} XOR {error:02X}"
            assert not crc_ok(broken), what
            assert framer.feed(broken) == [] and framer.end_of_frame() == [], what
            assert len(reasons) == 1 and "CRC" in reasons[0], what
            assert framer.feed(frame) + framer.end_of_frame() == [Adu(0, 0, frame[0], frame[1:-2])], what


@given(serial_requests(), st.data())
def test_crc_catches_any_single_bit_error_in_a_frame_of_any_function(
    request: tuple[int, bytes], data: st.DataObject
) -> None:
    """CRC-16 detects every single-bit error (§6.2.2) anywhere; the framer throws a frame with a broken CRC away."""
    frame = rtu_frame(*request)
    assert not crc_ok(flipped(frame, data.draw(st.integers(0, 8 * len(frame) - 1), label="any bit")))
    framer = RtuFramer()
    crc_bit = data.draw(st.integers(8 * len(frame) - 16, 8 * len(frame) - 1), label="a CRC bit")
    assert framer.feed(flipped(frame, crc_bit)) + framer.end_of_frame() == []


def test_rtu_framer_frames_a_known_length_request_without_waiting_for_silence() -> None:
    framer = RtuFramer()
    assert framer.feed(ADDRESS_CHANGE_REQUEST[:5]) == []
    assert framer.feed(ADDRESS_CHANGE_REQUEST[5:]) == [Adu(0, 0, 0xFF, bytes.fromhex("06 07D0 0002"))]
    assert framer.pending == b""


def test_rtu_framer_frames_back_to_back_requests() -> None:
    a = with_crc(bytes.fromhex("01 03 0000 000A"))
    b = with_crc(bytes.fromhex("02 10 0001 0002 04 000A 0102"))
    assert [adu.unit_id for adu in RtuFramer().feed(a + b)] == [1, 2]


KNOWN_LENGTH = serial_requests().filter(lambda request: request[1][0] not in (8,) and request[1][0] < 0x41)


@settings(max_examples=60)
@given(split_frames(rtu_frame, st.lists(KNOWN_LENGTH, max_size=5)))
def test_rtu_framer_frames_back_to_back_requests_of_known_length_split_anywhere(
    case: tuple[list[tuple[int, bytes]], list[bytes]],
) -> None:
    """No silence at all (RTU over TCP, a pseudo-terminal): the function code says where each request ends."""
    frames, pieces = case
    framer = RtuFramer()
    assert [adu for piece in pieces for adu in framer.feed(piece)] == [Adu(0, 0, u, pdu) for u, pdu in frames]
    assert framer.pending == b""


@settings(max_examples=60)
@given(st.lists(serial_requests(), min_size=1, max_size=5), st.data())
def test_rtu_framer_frames_every_request_split_anywhere_with_a_silence_after_each(
    frames: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    """As on a line: t3.5 of silence (`end_of_frame`) after each frame, which is what ends FC08 and unknown codes."""
    framer = RtuFramer()
    got: list[Adu] = []
    for unit, pdu in frames:
        for piece in data.draw(split_anywhere(st.just(rtu_frame(unit, pdu))))[1]:
            got += framer.feed(piece)
        got += framer.end_of_frame()
    assert got == [Adu(0, 0, unit, pdu) for unit, pdu in frames]


def test_rtu_framer_waits_for_silence_when_the_length_is_unknown() -> None:
    diagnostic = with_crc(bytes.fromhex("01 08 0000 A537 1234"))  # FC08/00 echoes any amount of data
    framer = RtuFramer()
    assert framer.feed(diagnostic) == []
    assert framer.end_of_frame() == [Adu(0, 0, 1, bytes.fromhex("08 0000 A537 1234"))]


def test_rtu_framer_discards_a_bad_crc_at_the_silence_and_says_why() -> None:
    reasons: list[str] = []
    framer = RtuFramer(on_discard=reasons.append)
    assert framer.feed(ADDRESS_CHANGE_REQUEST[:-1] + b"\x00") == []
    assert framer.end_of_frame() == []
    assert len(reasons) == 1 and "CRC" in reasons[0]
    assert framer.feed(ADDRESS_CHANGE_REQUEST) != []  # the line goes on


def test_rtu_framer_drops_a_frame_broken_by_a_gap() -> None:
    reasons: list[str] = []
    framer = RtuFramer(on_discard=reasons.append)
    framer.feed(ADDRESS_CHANGE_REQUEST[:4])
    framer.gap()
    assert framer.feed(ADDRESS_CHANGE_REQUEST[4:]) == []
    assert len(reasons) == 1 and "1.5" in reasons[0]


def test_rtu_framer_with_resync_finds_the_next_good_frame_after_garbage() -> None:
    reasons: list[str] = []
    framer = RtuFramer(on_discard=reasons.append, resync=True)
    good = with_crc(bytes.fromhex("01 03 0000 000A"))
    assert framer.feed(b"\x01\x03garbage" + good) == [Adu(0, 0, 1, bytes.fromhex("03 0000 000A"))]
    assert len(reasons) == 1
    unknown = with_crc(bytes.fromhex("01 42 0102"))
    assert framer.feed(unknown) == [Adu(0, 0, 1, bytes.fromhex("42 0102"))]  # answered with exception 01


def test_rtu_framer_takes_the_longest_frame_at_the_silence() -> None:
    """256 bytes: address, a 253-byte PDU, CRC (Modbus over Serial Line §2.5.1)."""
    pdu = b"\x41" + bytes(range(252))
    framer = RtuFramer()
    assert framer.feed(rtu_frame(7, pdu)) == []
    assert framer.end_of_frame() == [Adu(0, 0, 7, pdu)]


def test_rtu_framer_discards_endless_bytes_past_the_largest_frame() -> None:
    reasons: list[str] = []
    framer = RtuFramer(on_discard=reasons.append)
    framer.feed(b"\x01\x63" + bytes(300))  # function 0x63: length unknown, and no silence comes
    assert framer.pending == b"" and len(reasons) == 1


def test_rtu_framer_answers_from_the_address_asked() -> None:
    assert RtuFramer().frame(Adu(0, 0, 1, b""), bytes.fromhex("06 07D0 0002")) == ADDRESS_CHANGE_RESPONSE


def test_request_length_by_function_code() -> None:
    assert request_length(b"\x01\x03") == 8
    assert request_length(b"\x01\x10\x00\x01\x00\x02\x04") == 13
    assert request_length(b"\x01\x10\x00\x01") is None  # the byte count has not arrived yet
    assert request_length(b"\x01\x08") is None
    assert request_length(b"\x01") is None


def test_silent_intervals_follow_the_baud_rate_then_stay_fixed_above_19200() -> None:
    t15, t35 = silent_intervals(9600)
    assert abs(t35 - 3.5 * 11 / 9600) < 1e-12 and abs(t15 - 1.5 * 11 / 9600) < 1e-12
    assert silent_intervals(115200) == (0.000750, 0.001750)


# ------------------------------------------------------------------------ responses, for the gateway's master side

RESPONSES = [  # response PDUs from the Application Protocol's examples (§6.x, §7)
    "01 03 CD6B05",  # FC01
    "02 03 ACDB35",  # FC02
    "03 06 022B 0000 0064",  # FC03
    "04 02 000A",  # FC04
    "05 00AC FF00",  # FC05
    "06 0001 0003",  # FC06
    "07 6D",  # FC07
    "0B 0000 0108",  # FC11
    "0C 08 0000 0108 0121 2000",  # FC12
    "0F 0013 000A",  # FC15
    "10 0001 0002",  # FC16
    "11 03 01 FF 55",  # FC17 (a server id, run indicator, one more byte)
    "14 0C 05 06 0DFE 0020 05 06 33CD 0040",  # FC20
    "16 0004 00F2 0025",  # FC22
    "17 0C 00FE 0ACD 0001 0003 000D 00FF",  # FC23
    "18 0006 0002 01B8 1284",  # FC24
    "83 02",  # an exception
]


@pytest.mark.parametrize("pdu_hex", RESPONSES)
def test_response_length_tells_where_a_response_ends_from_its_head(pdu_hex: str) -> None:
    frame = with_crc(bytes((0x11,)) + bytes.fromhex(pdu_hex))
    assert response_length(frame[:4]) == len(frame)
    assert response_length(frame[:1]) is None


@pytest.mark.parametrize("pdu_hex", ["08 0000 A537", "2B 0E 01 01 00 00 01 00 03 41 42 43", "41 00"])
def test_response_length_leaves_fc08_fc43_and_unknown_codes_to_the_silence(pdu_hex: str) -> None:
    assert response_length(with_crc(bytes((1,)) + bytes.fromhex(pdu_hex))) is None


def test_rtu_framer_for_a_master_frames_responses_back_to_back_and_by_silence() -> None:
    framer = RtuFramer(length=response_length)
    read, echo = with_crc(bytes.fromhex("11 03 02 002A")), with_crc(bytes.fromhex("11 08 0000 A537"))
    assert framer.feed(read + read[:3]) == [Adu(0, 0, 0x11, bytes.fromhex("03 02 002A"))]
    assert framer.feed(read[3:]) == [Adu(0, 0, 0x11, bytes.fromhex("03 02 002A"))]
    assert framer.feed(echo) == []  # FC08: no length to go by
    assert framer.end_of_frame() == [Adu(0, 0, 0x11, bytes.fromhex("08 0000 A537"))]
