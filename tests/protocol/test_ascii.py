"""ASCII framing: hex pairs, LRC, CR LF, a new ':' restarting the frame."""

from hypothesis import given, settings
from hypothesis import strategies as st

from modbusd.protocol.adu import Adu
from modbusd.protocol.ascii import AsciiFramer, lrc
from tests.strategies import ascii_frame, serial_requests, split_frames

# Modbus over Serial Line §2.5.2.2's example: FC03 to address 0xF7 (LRC 0x60).
SPEC_FRAME = b":F7031389000A60\r\n"


def test_lrc_matches_the_spec_example() -> None:
    assert lrc(bytes.fromhex("F7 03 1389 000A")) == 0x60


def test_ascii_framer_decodes_the_spec_example() -> None:
    assert AsciiFramer().feed(SPEC_FRAME) == [Adu(0, 0, 0xF7, bytes.fromhex("03 1389 000A"))]


def test_ascii_framer_encodes_uppercase_hex_with_lrc_and_crlf() -> None:
    assert AsciiFramer().frame(Adu(0, 0, 0xF7, b""), bytes.fromhex("03 1389 000A")) == SPEC_FRAME


@settings(max_examples=60)
@given(split_frames(ascii_frame, st.lists(serial_requests(), max_size=5)))
def test_ascii_framer_frames_requests_of_every_function_code_split_anywhere(
    case: tuple[list[tuple[int, bytes]], list[bytes]],
) -> None:
    frames, pieces = case
    framer = AsciiFramer()
    assert [adu for piece in pieces for adu in framer.feed(piece)] == [Adu(0, 0, u, pdu) for u, pdu in frames]
    assert framer.pending == b""


@given(serial_requests())
def test_ascii_framer_writes_any_pdu_as_the_spec_spells_it(frame: tuple[int, bytes]) -> None:
    unit, pdu = frame
    assert AsciiFramer().frame(Adu(0, 0, unit, b""), pdu) == ascii_frame(unit, pdu)


def test_ascii_framer_takes_the_longest_frame_and_drops_one_byte_more() -> None:
    """513 characters: ':', 2 × (address + 253-byte PDU + LRC), CR LF (Modbus over Serial Line §2.5.2.1)."""
    longest = ascii_frame(1, b"\x41" + bytes(range(252)))
    assert len(longest) == 513
    assert AsciiFramer().feed(longest) == [Adu(0, 0, 1, b"\x41" + bytes(range(252)))]
    reasons: list[str] = []
    assert AsciiFramer(on_discard=reasons.append).feed(ascii_frame(1, b"\x41" + bytes(range(253)))) == []
    assert len(reasons) == 1


def test_ascii_framer_discards_a_bad_lrc() -> None:
    reasons: list[str] = []
    assert AsciiFramer(on_discard=reasons.append).feed(b":F7031389000A61\r\n") == []
    assert "LRC" in reasons[0]


def test_ascii_framer_discards_non_hex_and_short_frames() -> None:
    reasons: list[str] = []
    framer = AsciiFramer(on_discard=reasons.append)
    assert framer.feed(b":F7ZZ\r\n:F7\r\n") == []
    assert len(reasons) == 2


def test_ascii_framer_restarts_at_a_new_colon() -> None:
    reasons: list[str] = []
    framer = AsciiFramer(on_discard=reasons.append)
    assert framer.feed(b":F703" + SPEC_FRAME) == [Adu(0, 0, 0xF7, bytes.fromhex("03 1389 000A"))]
    assert len(reasons) == 1


def test_ascii_framer_drops_a_partial_frame_at_the_time_out() -> None:
    reasons: list[str] = []
    framer = AsciiFramer(on_discard=reasons.append)
    framer.feed(SPEC_FRAME[:6])
    assert framer.end_of_frame() == []
    assert framer.pending == b"" and len(reasons) == 1


def test_ascii_framer_honours_a_changed_delimiter() -> None:
    framer = AsciiFramer(delimiter=ord("!"))
    assert framer.feed(SPEC_FRAME) == []
    assert framer.feed(b":F7031389000A60\r!") != []
    assert framer.frame(Adu(0, 0, 1, b""), b"\x07").endswith(b"\r!")


def test_ascii_framer_ignores_noise_between_frames() -> None:
    assert len(AsciiFramer().feed(b"xx\r\n" + SPEC_FRAME + b"yy")) == 1


def test_ascii_framer_changes_its_delimiter_after_the_response_that_confirms_the_change() -> None:
    framer = AsciiFramer()
    framer.change_delimiter(ord("!"))
    assert framer.frame(Adu(0, 0, 1, b""), bytes.fromhex("08 0003 2100")).endswith(b"\r\n")
    assert framer.delimiter == ord("!")
    assert framer.feed(SPEC_FRAME) == []  # CR LF no longer ends a frame
    assert framer.feed(b":F7031389000A60\r!") != []
    framer.change_delimiter(ord("!"))  # no change: nothing pending
    assert framer.frame(Adu(0, 0, 1, b""), b"\x07").endswith(b"\r!")
