"""Session: one connection's bytes in, bytes out, with a plain function standing in for the server."""

import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modbusd import handler
from modbusd.model.device import Device
from modbusd.protocol.errors import FrameError, GatewayTargetDeviceFailedToRespond, ServerDeviceBusy
from modbusd.protocol.mbap import frame
from modbusd.protocol.rtu import RtuFramer, with_crc
from modbusd.session import Session
from tests.strategies import split_at

READ = bytes.fromhex("03 0000 0001")


class Recorder:
    """An answer function that remembers what it was asked and answers FC + the PDU's length."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bytes]] = []

    def __call__(self, unit_id: int, pdu: bytes) -> bytes | None:
        self.calls.append((unit_id, pdu))
        return bytes((pdu[0], len(pdu)))


def test_session_answers_one_request() -> None:
    answer = Recorder()
    assert Session(answer).receive(frame(0x1234, 0x11, READ)) == frame(0x1234, 0x11, b"\x03\x05")
    assert answer.calls == [(0x11, READ)]


def test_session_answers_pipelined_requests_in_order() -> None:
    session = Session(Recorder())
    requests = b"".join(frame(tid, 1, bytes((fc,)) + b"\x00" * tid) for tid, fc in enumerate((3, 4, 1, 2), 1))
    expected = b"".join(frame(tid, 1, bytes((fc, 1 + tid))) for tid, fc in enumerate((3, 4, 1, 2), 1))
    assert session.receive(requests) == expected


def test_session_answers_a_request_fed_one_byte_at_a_time() -> None:
    answer = Recorder()
    session = Session(answer)
    data = frame(9, 1, READ)
    assert [session.receive(data[i : i + 1]) for i in range(len(data) - 1)] == [b""] * (len(data) - 1)
    assert answer.calls == []
    assert session.receive(data[-1:]) == frame(9, 1, b"\x03\x05")


@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=5), st.integers(0, 0xFF),
       st.lists(st.integers(0, 100), max_size=10))  # fmt: skip
def test_session_echoes_transaction_and_unit_id_however_the_stream_is_cut(
    transaction_ids: list[int], unit_id: int, cuts: list[int]
) -> None:
    session = Session(Recorder())
    stream = b"".join(frame(tid, unit_id, READ) for tid in transaction_ids)
    replies = b"".join(session.receive(part) for part in split_at(stream, cuts))
    assert replies == b"".join(frame(tid, unit_id, b"\x03\x05") for tid in transaction_ids)


def test_session_sends_nothing_when_the_answer_is_none() -> None:
    session = Session(lambda unit_id, pdu: None if pdu[0] == 6 else pdu)
    data = frame(1, 1, bytes.fromhex("06 0000 0001")) + frame(2, 1, READ)
    assert session.receive(data) == frame(2, 1, READ)


def test_session_discards_a_frame_whose_protocol_id_is_not_zero(caplog: pytest.LogCaptureFixture) -> None:
    answer, discarded = Recorder(), []
    session = Session(answer, discard=discarded.append)
    data = frame(1, 7, READ, protocol_id=1) + frame(2, 8, READ, protocol_id=0xFFFF) + frame(3, 9, READ)
    with caplog.at_level(logging.DEBUG, logger="modbusd.session"):
        replies = session.receive(data)
    assert replies == frame(3, 9, b"\x03\x05")  # no reply to the discarded ones; the next frame still answered
    assert answer.calls == [(9, READ)]
    assert discarded == [7, 8]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "protocol id" in warnings[0].getMessage()


def test_session_discards_without_a_discard_callback() -> None:
    assert Session(Recorder()).receive(frame(1, 1, READ, protocol_id=2) + frame(2, 1, READ)) == frame(2, 1, b"\x03\x05")


@pytest.mark.parametrize("length", [0, 1, 255, 0xFFFF])
def test_session_raises_frame_error_on_a_bad_length(length: int) -> None:
    answer = Recorder()
    with pytest.raises(FrameError):
        Session(answer).receive(b"\x00\x01\x00\x00" + length.to_bytes(2, "big") + b"\x01" + READ)
    assert answer.calls == []


@pytest.mark.parametrize("data", [b"STOP", b"STOP\n", b"STOP\r\n"])
def test_session_calls_on_quit_for_the_quit_word(data: bytes) -> None:
    quits: list[None] = []
    session = Session(Recorder(), quit_word=b"STOP", on_quit=lambda: quits.append(None))
    assert session.receive(data) == b""
    assert quits == [None]


def test_session_calls_on_quit_for_the_quit_word_split_across_segments() -> None:
    quits: list[None] = []
    session = Session(Recorder(), quit_word=b"STOP", on_quit=lambda: quits.append(None))
    assert session.receive(b"ST") == b""
    assert quits == []
    session.receive(b"OP")
    assert quits == [None]


@pytest.mark.parametrize(
    "data",
    [pytest.param(b"STO", id="a prefix of the word"), pytest.param(b"STOPX", id="the word with more after it"),
     pytest.param(b"XSTOP", id="the word after something else"), pytest.param(b"stop", id="another case")],
)  # fmt: skip
def test_session_ignores_what_is_not_exactly_the_quit_word(data: bytes) -> None:
    quits: list[None] = []
    session = Session(Recorder(), quit_word=b"STOP", on_quit=lambda: quits.append(None))
    assert session.receive(data) == b""
    assert quits == []


def test_session_ignores_the_quit_word_inside_a_frame() -> None:
    quits: list[None] = []
    answer = Recorder()
    session = Session(answer, quit_word=b"STOP", on_quit=lambda: quits.append(None))
    assert session.receive(frame(1, 1, b"STOP")) == frame(1, 1, b"S\x04")
    assert quits == []
    assert answer.calls == [(1, b"STOP")]


def test_session_ignores_the_quit_word_after_a_frame_in_the_same_segment() -> None:
    quits: list[None] = []
    session = Session(Recorder(), quit_word=b"STOP", on_quit=lambda: quits.append(None))
    assert session.receive(frame(1, 1, READ) + b"STOP") == frame(1, 1, b"\x03\x05")
    assert quits == []


def test_session_without_a_quit_word_treats_it_as_stream_bytes() -> None:
    answer = Recorder()
    session = Session(answer)
    assert session.receive(b"STOP") == b""
    assert answer.calls == []


def test_session_answers_exception_4_when_the_answer_function_raises(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[bytes] = []

    def answer(unit_id: int, pdu: bytes) -> bytes:
        calls.append(pdu)
        if len(calls) == 1:
            raise RuntimeError("simulated bug")
        return pdu

    session = Session(answer)
    with caplog.at_level(logging.ERROR, logger="modbusd.session"):
        replies = session.receive(frame(5, 1, READ) + frame(6, 1, READ))
    assert replies == frame(5, 1, b"\x83\x04") + frame(6, 1, READ)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is RuntimeError


def test_session_with_the_handler_answers_an_unknown_function_with_c2_01_and_its_transaction_id() -> None:
    device = Device()
    session = Session(lambda unit_id, pdu: handler.respond(device, pdu))
    assert session.receive(frame(0xBEEF, 0xFF, b"\x42")) == frame(0xBEEF, 0xFF, b"\xc2\x01")


def test_session_answers_the_requests_before_a_bad_frame_then_raises() -> None:
    """Pipelined good requests followed by garbage in one segment: the good ones still get their answers."""
    session = Session(lambda unit, pdu: pdu)
    good = frame(1, 1, b"\x03\x00\x00\x00\x01") + frame(2, 1, b"\x03\x00\x01\x00\x01")
    bad = b"\x00\x03\x00\x00\x01\x00\x01"  # MBAP length 0x100 = 256 > 254
    with pytest.raises(FrameError) as caught:
        session.receive(good + bad)
    assert caught.value.reply == good


_FUNCTIONS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 22, 23, 43, 0, 0x42, 0x80, 0xFF])
_PDUS = st.builds(lambda fc, rest: bytes((fc,)) + rest, _FUNCTIONS, st.binary(max_size=252))
_FRAMES = st.builds(frame, st.integers(0, 0xFFFF), st.integers(0, 255), _PDUS)


@given(st.lists(st.one_of(_FRAMES, st.binary(max_size=20)), max_size=12), st.sampled_from(["separate", "packed"]))
def test_session_with_the_handler_survives_any_byte_stream(chunks: list[bytes], layout: str) -> None:
    """Whatever a client sends, the session either answers (never with exception 04) or raises FrameError."""
    device = Device(layout)
    session = Session(lambda unit, pdu: handler.respond(device, pdu))
    for chunk in chunks:
        try:
            out = session.receive(chunk)
        except FrameError:
            session = Session(lambda unit, pdu: handler.respond(device, pdu))  # the transport would reconnect
            continue
        while out:
            length = int.from_bytes(out[4:6], "big")
            pdu = out[7 : 6 + length]
            assert not (pdu[0] & 0x80 and pdu[1] == 0x04), f"exception 04 for a client's bytes: {pdu.hex()}"
            out = out[6 + length :]


# ------------------------------------------------------------------------------ serial lines: time and addresses

RTU_READ = bytes.fromhex("01 03 0000 0001 840A")  # an RTU request: unit 1, FC03 address 0 quantity 1


def test_session_answers_an_unknown_length_rtu_frame_at_the_end_of_frame() -> None:
    answer = Recorder()
    session = Session(answer, framer=RtuFramer())
    request = with_crc(bytes.fromhex("01 08 0000 1234"))  # FC08's length depends on its sub-function: needs silence
    assert session.receive(request) == b""
    assert session.end_of_frame() == with_crc(bytes.fromhex("01 08 05"))
    assert answer.calls == [(1, bytes.fromhex("08 0000 1234"))]


def test_session_gap_makes_the_framer_drop_the_frame_it_broke() -> None:
    reasons: list[str] = []
    answer = Recorder()
    session = Session(answer, framer=RtuFramer(on_discard=reasons.append))
    assert session.receive(RTU_READ[:3]) == b""
    session.gap()
    assert session.receive(RTU_READ[3:]) == b""
    assert session.end_of_frame() == b""
    assert answer.calls == [] and len(reasons) == 2  # the gap, then the tail that is no frame


def test_session_without_a_timed_framer_ignores_silences() -> None:
    session = Session(Recorder())
    session.gap()
    assert session.end_of_frame() == b""


def test_session_frames_an_addressed_answer_from_the_unit_it_names() -> None:
    def answer(unit_id: int, pdu: bytes) -> tuple[int, bytes] | None:
        return (1, pdu) if unit_id == 0xFF else None

    session = Session(answer, framer=RtuFramer(), addressed=True)
    assert session.receive(bytes.fromhex("FF 06 07D0 0002 1D58")) == bytes.fromhex("01 06 07D0 0002 0886")
    assert session.receive(RTU_READ) == b""  # None: not addressed to anyone here


def test_session_addressed_answer_that_raises_gives_exception_4_but_never_to_a_broadcast(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def answer(unit_id: int, pdu: bytes) -> tuple[int, bytes] | None:
        raise RuntimeError("bug")

    session = Session(answer, framer=RtuFramer(), addressed=True)
    with caplog.at_level(logging.ERROR):
        assert session.receive(RTU_READ) == with_crc(bytes.fromhex("01 83 04"))
        assert session.receive(with_crc(bytes.fromhex("00 06 0000 0001"))) == b""


# ------------------------------------------------------------------------- answers that take time (awaitables)


class Later:
    """Stands for an awaitable: the session never awaits it, it only keeps its place in line."""

    def __init__(self, unit_id: int, pdu: bytes) -> None:
        self.request = (unit_id, pdu)

    def __await__(self) -> Iterator[None]:  # never called: the transport awaits, not the session
        raise AssertionError("the session must not await")


def slow_for_unit_9(unit_id: int, pdu: bytes) -> bytes | Later:
    return Later(unit_id, pdu) if unit_id == 9 else bytes((pdu[0], unit_id))


def test_session_holds_later_responses_behind_a_pending_one_and_releases_them_in_order() -> None:
    session = Session(slow_for_unit_9)
    data = frame(1, 1, READ) + frame(2, 9, READ) + frame(3, 2, READ)
    assert session.receive(data) == frame(1, 1, b"\x03\x01")  # the one before the slow one goes at once
    [pending] = session.take_awaiting()
    assert isinstance(pending.awaitable, Later) and pending.awaitable.request == (9, READ)
    assert not session.take_awaiting()  # nothing more: taken once
    assert session.receive(frame(4, 3, READ)) == b""  # behind the pending one too, though answered at once
    assert session.settle(pending, b"\x03\x02\x00\x2a") == frame(2, 9, b"\x03\x02\x00\x2a") + frame(
        3, 2, b"\x03\x02"
    ) + frame(4, 3, b"\x03\x03")
    assert session.receive(frame(5, 1, READ)) == frame(5, 1, b"\x03\x01")  # back on the fast path


def test_session_releases_nothing_until_the_first_pending_answer_settles() -> None:
    session = Session(slow_for_unit_9)
    assert session.receive(frame(1, 9, READ) + frame(2, 9, READ)) == b""
    first, second = session.take_awaiting()
    assert session.settle(second, b"\x03\x00") == b""
    assert session.settle(first, b"\x03\x01") == frame(1, 9, b"\x03\x01") + frame(2, 9, b"\x03\x00")


def test_session_answers_a_failed_pending_answer_with_its_exception_code() -> None:
    session = Session(slow_for_unit_9)
    session.receive(frame(1, 9, READ) + frame(2, 9, READ))
    timed_out, broken = session.take_awaiting()
    assert session.fail(timed_out, GatewayTargetDeviceFailedToRespond()) == frame(1, 9, b"\x83\x0b")
    assert session.fail(broken, RuntimeError("a bug")) == frame(2, 9, b"\x83\x04")


def test_session_sends_nothing_for_a_pending_answer_that_settles_as_none() -> None:
    session = Session(slow_for_unit_9)
    assert session.receive(frame(1, 9, READ) + frame(2, 1, READ)) == b""
    [pending] = session.take_awaiting()
    assert session.settle(pending, None) == frame(2, 1, b"\x03\x01")


def test_session_answers_a_modbus_error_raised_by_the_answer_function_with_its_code() -> None:
    def busy(unit_id: int, pdu: bytes) -> bytes:
        raise ServerDeviceBusy("queue full")

    assert Session(busy).receive(frame(7, 1, READ)) == frame(7, 1, b"\x83\x06")


def test_session_answers_requests_before_a_bad_frame_even_behind_a_pending_one() -> None:
    session = Session(slow_for_unit_9)
    bad = frame(3, 1, READ)[:4] + b"\x00\x01" + b"\x01"  # MBAP length 1: the stream can't be trusted
    with pytest.raises(FrameError) as caught:
        session.receive(frame(1, 1, READ) + frame(2, 9, READ) + bad)
    assert caught.value.reply == frame(1, 1, b"\x03\x01")
    assert len(session.take_awaiting()) == 1  # for the transport to await or cancel
