"""MBAP framing (TCP guide §3.1.3, §4.4.1.1): frames are found by the length field, never by segment."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modbusd.protocol.errors import FrameError
from modbusd.protocol.mbap import Adu, MbapFramer, frame
from tests.strategies import adus, encode_adus, mbap_frames, split_anywhere, split_at

READ_HR = bytes.fromhex("03 006B 0003")


def test_frame_builds_the_guide_header() -> None:
    # transaction id 0x1234, protocol id 0, length = unit id + PDU = 6, unit id 0xFF
    assert frame(0x1234, 0xFF, READ_HR) == bytes.fromhex("1234 0000 0006 FF") + READ_HR


def test_framer_returns_one_complete_frame() -> None:
    assert MbapFramer().feed(frame(7, 1, READ_HR)) == [Adu(7, 0, 1, READ_HR)]


def test_framer_keeps_a_partial_frame_until_the_rest_arrives() -> None:
    framer = MbapFramer()
    data = frame(7, 1, READ_HR)
    assert framer.feed(data[:9]) == []
    assert framer.pending == data[:9]
    assert framer.feed(data[9:]) == [Adu(7, 0, 1, READ_HR)]
    assert framer.pending == b""


def test_framer_returns_pipelined_frames_in_order() -> None:
    expected = [Adu(tid, 0, 1, READ_HR) for tid in range(16)]
    assert MbapFramer().feed(encode_adus(expected)) == expected


def test_framer_keeps_the_start_of_the_next_frame_after_a_complete_one() -> None:
    framer = MbapFramer()
    first, second = frame(1, 1, READ_HR), frame(2, 1, READ_HR)
    assert framer.feed(first + second[:3]) == [Adu(1, 0, 1, READ_HR)]
    assert framer.feed(second[3:]) == [Adu(2, 0, 1, READ_HR)]


def test_framer_returns_frames_whose_protocol_id_is_not_zero_so_the_session_can_discard_them() -> None:
    data = frame(1, 1, READ_HR, protocol_id=1) + frame(2, 1, READ_HR)
    assert MbapFramer().feed(data) == [Adu(1, 1, 1, READ_HR), Adu(2, 0, 1, READ_HR)]


@pytest.mark.parametrize("length", [2, 254])
def test_framer_accepts_the_length_limits(length: int) -> None:
    pdu = b"\x03" * (length - 1)
    assert MbapFramer().feed(frame(1, 1, pdu)) == [Adu(1, 0, 1, pdu)]


@pytest.mark.parametrize("length", [0, 1, 255, 260, 0xFFFF])
def test_framer_raises_frame_error_on_a_length_outside_2_to_254(length: int) -> None:
    header = (1).to_bytes(2, "big") + b"\x00\x00" + length.to_bytes(2, "big") + b"\x01"
    with pytest.raises(FrameError):
        MbapFramer().feed(header + bytes(300))


def test_framer_raises_frame_error_as_soon_as_the_header_is_complete() -> None:
    framer = MbapFramer()
    assert framer.feed(bytes.fromhex("0001 0000 00")) == []  # length not known yet: wait
    with pytest.raises(FrameError):
        framer.feed(bytes.fromhex("00 01"))  # length 0, and the bytes that would follow never come


def test_framer_checks_the_length_of_frames_with_another_protocol_id_too() -> None:
    with pytest.raises(FrameError):
        MbapFramer().feed(bytes.fromhex("0001 0001 0000 01"))


@settings(max_examples=50)
@given(mbap_frames())
def test_framer_returns_exactly_the_frames_that_were_sent(frames: list[Adu]) -> None:
    assert MbapFramer().feed(encode_adus(frames)) == frames


@settings(max_examples=50)
@given(mbap_frames().flatmap(lambda frames: split_anywhere(st.just(encode_adus(frames))).map(lambda c: (frames, c))))
def test_framer_gives_the_frames_sent_for_any_split(case: tuple[list[Adu], tuple[bytes, list[bytes]]]) -> None:
    """PDUs of every function code and length, cut anywhere, even at every byte (TCP guide §4.4.1.1)."""
    frames, (_, pieces) = case
    framer = MbapFramer()
    assert [adu for piece in pieces for adu in framer.feed(piece)] == frames
    assert framer.pending == b""


@given(adus())
def test_framer_reassembles_a_frame_fed_one_byte_at_a_time(adu: Adu) -> None:
    framer = MbapFramer()
    data = encode_adus([adu])
    assert [framer.feed(data[i : i + 1]) for i in range(len(data) - 1)] == [[]] * (len(data) - 1)
    assert framer.feed(data[-1:]) == [adu]


@given(st.binary(max_size=600))
def test_framer_turns_garbage_into_frames_or_frame_error_and_nothing_else(data: bytes) -> None:
    framer = MbapFramer()
    with contextlib.suppress(FrameError):  # anything else fails the test
        for adu in framer.feed(data):
            assert 1 <= len(adu.pdu) <= 253


@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=10))
def test_framer_turns_split_garbage_into_frames_or_frame_error_and_nothing_else(data: bytes, cuts: list[int]) -> None:
    framer = MbapFramer()
    with contextlib.suppress(FrameError):
        for part in split_at(data, cuts):
            for adu in framer.feed(part):
                assert 1 <= len(adu.pdu) <= 253
        assert len(framer.pending) < 260  # never more than one incomplete frame is kept


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
def test_split_at_pieces_join_back_to_the_data(data: bytes, cuts: list[int]) -> None:
    assert b"".join(split_at(data, cuts)) == data


@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=10))
def test_empty_says_whether_bytes_of_a_partial_frame_are_kept(data: bytes, cuts: list[int]) -> None:
    """`empty` is an attribute `feed` keeps (the session reads it before every read), so it must follow every way
    the kept bytes change: frames taken, a partial frame kept, a bad header dropping everything."""
    framer = MbapFramer()
    assert framer.empty
    for part in split_at(data, cuts):
        try:
            framer.feed(part)
        except FrameError:
            assert framer.empty
            break
        assert framer.empty == (framer.pending == b"")
