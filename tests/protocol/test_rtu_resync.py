"""RTU over TCP framing (`RtuFramer(resync=True)`): by length, whatever the CRC's value, and in linear time.

Properties: a valid request split anywhere is framed exactly once and nothing inside it is; after garbage,
a client that keeps sending is heard again; no input raises anything but FrameError or leaves more than one
frame's worth of bytes buffered; and the O(1) CRC check at each candidate agrees with computing the CRC.
"""

import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modbusd.protocol.adu import Adu
from modbusd.protocol.errors import FrameError
from modbusd.protocol.pdu import encode_request
from modbusd.protocol.rtu import (
    MAX_FRAME,
    NO_LENGTH,
    WAIT,
    RtuFramer,
    _CrcChain,
    crc16,
    stream_request_length,
    with_crc,
)
from tests.strategies import bytes_, requests, split_at


def _one_data_word(pdu: bytes) -> bytes:
    """FC08 over RTU over TCP carries one data word (see `stream_request_length`); other requests as drawn."""
    return pdu[:5].ljust(5, b"\0") if pdu[0] == 8 else pdu


# Function codes the spec gives a length for but the server answers with exception 01 (§6.14, §6.15, §6.18).
_FILE_AND_FIFO = st.one_of(
    st.integers(7, 0xF5).flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(lambda d: bytes((20, len(d))) + d),
    st.integers(9, 0xFB).flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(lambda d: bytes((21, len(d))) + d),
    st.binary(min_size=2, max_size=2).map(lambda d: b"\x18" + d),
)

request_pdus = st.one_of(requests().map(encode_request).map(_one_data_word), _FILE_AND_FIFO)
request_frames = st.tuples(bytes_, request_pdus).map(lambda t: with_crc(bytes((t[0],)) + t[1]))


@st.composite
def frames_with_a_frame_inside(draw: st.DrawFn) -> bytes:
    """An FC16 whose register data holds a whole other request frame: what a too-eager resync executes."""
    inner = draw(request_frames.filter(lambda f: len(f) <= 200))
    before = draw(st.binary(max_size=40))
    data = (before + inner + draw(st.binary(max_size=40)))[:246]  # the inner frame ends by byte 240
    data = data[: len(data) // 2 * 2]  # whole registers
    unit = draw(bytes_)
    return with_crc(bytes((unit, 0x10, 0, 0, 0, len(data) // 2, len(data))) + data)


def adu_of(frame: bytes) -> Adu:
    return Adu(0, 0, frame[0], frame[1:-2])


def feed_all(framer: RtuFramer, pieces: list[bytes]) -> list[Adu]:
    return [adu for piece in pieces for adu in framer.feed(piece)]


@given(
    frames=st.lists(st.one_of(request_frames, frames_with_a_frame_inside()), min_size=1, max_size=4),
    data=st.data(),
)
def test_requests_split_anywhere_are_each_framed_exactly_once(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    framer = RtuFramer(resync=True)
    assert feed_all(framer, split_at(stream, cuts)) == [adu_of(f) for f in frames]
    assert framer.pending == b""


def _with_crc_byte_zero(head: str, which: int) -> bytes:
    """The request `head` with its last word changed until the CRC's low (0) or high (1) byte is 0x00."""
    prefix = bytes.fromhex(head)
    for word in range(0x10000):
        frame = with_crc(prefix + word.to_bytes(2, "big"))
        if frame[-2 + which] == 0:
            return frame
    raise AssertionError("no such word")


ZERO_CRC_BYTE_REQUESTS = [
    pytest.param(_with_crc_byte_zero(head, which), id=f"{head[3:5]}-crc-{'low' if which == 0 else 'high'}-00")
    for head, which in itertools.product(
        ["01 01 0000", "01 03 0000", "01 06 0007", "01 08 0000", "01 10 0064 0001 02", "01 16 0001 0002",
         "01 17 0000 0001 0002 0001 02", "01 2B 0E", "01 18"],
        (0, 1),
    )
]  # fmt: skip


@pytest.mark.parametrize("frame", ZERO_CRC_BYTE_REQUESTS)
def test_framing_does_not_depend_on_a_crc_byte_being_zero(frame: bytes) -> None:
    for cut in range(len(frame) + 1):
        framer = RtuFramer(resync=True)
        assert feed_all(framer, [frame[:cut], frame[cut:]]) == [adu_of(frame)], f"split at {cut}"


def test_the_issue_8_split_fc16_waits_for_its_end_instead_of_framing_the_fc06_inside_it() -> None:
    fc16 = with_crc(bytes.fromhex("01 10 0064 000A 14 0106 000A 0063 E9E1") + bytes(12))
    framer = RtuFramer(resync=True)
    assert framer.feed(fc16[:15]) == []
    assert framer.feed(fc16[15:]) == [adu_of(fc16)]


@given(soup=st.binary(max_size=300), frame=request_frames, cuts=st.lists(st.integers(0, 1500), max_size=8))
def test_a_client_that_keeps_sending_after_garbage_is_heard_again(soup: bytes, frame: bytes, cuts: list[int]) -> None:
    # Garbage that looks like the start of a long frame is waited for until it can be ruled out, at most
    # MAX_FRAME bytes later; so enough repetitions of the request (a client's retries) always get through.
    copies = 2 + 2 * MAX_FRAME // len(frame)
    framer = RtuFramer(resync=True)
    adus = feed_all(framer, split_at(soup + frame * copies, cuts))
    assert adus[-1] == adu_of(frame) and framer.pending == b""


@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_any_input_gives_frames_or_frame_error_and_buffers_less_than_a_frame(data: bytes, cuts: list[int]) -> None:
    framer = RtuFramer(resync=True, on_discard=lambda reason: None)
    for piece in split_at(data, cuts):
        with contextlib.suppress(FrameError):  # anything else fails the test
            framer.feed(piece)
        assert len(framer.pending) < MAX_FRAME


def test_dropped_bytes_are_reported_once_per_read() -> None:
    reasons: list[str] = []
    framer = RtuFramer(resync=True, on_discard=reasons.append)
    good = with_crc(bytes.fromhex("01 03 0000 000A"))
    assert framer.feed(b"\xff\xfe\xfd" + good + b"\xfc\xfb" + good) == [adu_of(good)] * 2
    assert len(reasons) == 1 and reasons[0].startswith("5 bytes") and "ff fe fd" in reasons[0]


# ----------------------------------------------------------------- function codes with no length to go by


def test_an_unknown_function_is_framed_when_it_ends_a_read_even_if_its_crc_ends_in_00() -> None:
    unknown = _with_crc_byte_zero("01 41 0102", 1)
    framer = RtuFramer(resync=True)
    assert framer.feed(unknown) == [adu_of(unknown)]  # answered with exception 01
    read = with_crc(bytes.fromhex("01 03 0000 0001"))
    assert framer.feed(read) == [adu_of(read)]


@pytest.mark.parametrize(
    "pdu_hex",
    ["08 0000 A537 1234", "2B 0D 00 01 02", "41", "00 0102", "85 01"],
    ids=["fc08-00-two-words", "fc43-other-mei", "user-defined-fc", "fc-0", "exception-code"],
)
def test_requests_without_a_length_in_one_read_are_framed_whole(pdu_hex: str) -> None:
    frame = with_crc(b"\x01" + bytes.fromhex(pdu_hex))
    assert RtuFramer(resync=True).feed(frame) == [adu_of(frame)]


def test_stream_request_length_waits_for_the_byte_that_tells_it() -> None:
    assert stream_request_length(b"\x01") == WAIT
    assert stream_request_length(b"\x01\x10\x00\x01\x00\x02") == WAIT  # the byte count is next
    assert stream_request_length(b"\x01\x10\x00\x01\x00\x02\x04") == 13
    assert stream_request_length(b"\x01\x08") == 8  # one data word, whatever the sub-function
    assert stream_request_length(b"\x01\x2b") == WAIT and stream_request_length(b"\x01\x2b\x0e") == 7
    assert stream_request_length(b"\x01\x2b\x0d") == NO_LENGTH
    assert stream_request_length(b"\x00\x00") == NO_LENGTH
    assert stream_request_length(b"\x01\x14\x07") == 12  # FC20: byte count 7


# ------------------------------------------------------------------------------------ the O(1) CRC check


@st.composite
def buffers_with_frames(draw: st.DrawFn) -> tuple[bytearray, list[int]]:
    """Garbage and good frames back to back, and where each piece ends (where a good CRC is likely)."""
    pieces = draw(st.lists(st.one_of(st.binary(max_size=20), request_frames), max_size=6))
    return bytearray(b"".join(pieces)), list(itertools.accumulate(len(p) for p in pieces))


WALK = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 8), st.booleans()), min_size=1, max_size=40)


@given(buffer=buffers_with_frames(), walk=WALK)
def test_crc_chain_agrees_with_computing_each_crc(
    buffer: tuple[bytearray, list[int]], walk: list[tuple[int, int, bool]]
) -> None:
    """Candidates as the framer tries them: start offsets only grow, and bytes before a good frame go."""
    buf, ends = buffer
    chain = _CrcChain()
    start = 0
    for choice, step, consume in walk:
        if len(buf) - start < 4:
            break
        candidates = [e for e in ends if start + 4 <= e <= start + MAX_FRAME]  # where good CRCs are
        candidates.append(min(len(buf), start + 4 + choice))
        end = candidates[choice % len(candidates)]
        good = chain.good(buf, start, end)
        assert good == (crc16(buf[start:end]) == 0)
        if good:
            start = end
        elif step == 8:  # on to the next piece, likely a good frame, whose CRC the registers now give
            start = next((e for e in [0, *ends] if e > start), start + 1)
        else:
            start += step  # step 0: another end at the same start (FC08/00)
        if consume:
            del buf[:start]
            chain.consumed(start)
            ends = [e - start for e in ends if e > start]
            start = 0
