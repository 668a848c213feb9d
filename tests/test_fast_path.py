"""The FC03/FC04 fast path and the session's one-frame shortcut give the same bytes as the reference path."""

import struct

from hypothesis import given
from hypothesis import strategies as st

from modbusd.handler import execute, read_registers_fast, respond
from modbusd.model.device import Device
from modbusd.protocol.errors import ModbusError
from modbusd.protocol.mbap import frame
from modbusd.protocol.pdu import decode_request, encode_response, exception_pdu
from modbusd.session import Session

DEVICE = Device(holding_registers=1000, input_registers=300)
DEVICE.holding_registers.set_values(0, [(i * 7919) & 0xFFFF for i in range(1000)])
DEVICE.input_registers.set_values(0, [(i * 104729) & 0xFFFF for i in range(300)])


def reference(pdu: bytes) -> bytes:
    try:
        return encode_response(execute(decode_request(pdu), DEVICE))
    except ModbusError as exc:
        return exception_pdu(pdu[0], exc.code)


register_reads = st.builds(
    lambda fc, address, quantity: struct.pack(">BHH", fc, address, quantity),
    st.sampled_from([3, 4]),
    st.one_of(st.integers(0, 1100), st.integers(0, 0xFFFF)),
    st.one_of(st.integers(0, 130), st.integers(0, 0xFFFF)),
)


@given(register_reads | st.binary(min_size=1, max_size=8))
def test_fast_path_answers_exactly_like_the_reference_or_defers(pdu: bytes) -> None:
    fast = read_registers_fast(DEVICE, pdu)
    if fast is not None:
        assert fast == reference(pdu)


@given(register_reads)
def test_fast_path_takes_every_valid_register_read(pdu: bytes) -> None:
    if not reference(pdu)[0] & 0x80:
        assert read_registers_fast(DEVICE, pdu) is not None


def answer(unit: int, pdu: bytes) -> bytes:
    return bytes((unit,)) + pdu  # distinguishes units and echoes the PDU, which is all framing needs


@given(
    tid=st.integers(0, 0xFFFF),
    unit=st.integers(0, 255),
    pdu=st.binary(min_size=1, max_size=253),
    proto=st.sampled_from([0, 0, 1]),
)
def test_session_shortcut_frames_like_the_framer(tid: int, unit: int, pdu: bytes, proto: int) -> None:
    """A whole frame in one piece (the shortcut) and in two pieces (the framer) get the same reply."""
    request = frame(tid, unit, pdu, protocol_id=proto)
    direct = Session(answer).receive(request)
    split = Session(answer)
    assert split.receive(request[:3]) == b""
    assert split.receive(request[3:]) == direct
    assert direct == (b"" if proto else frame(tid, unit, answer(unit, pdu)))


SPARSE = Device(addresses={"holding_registers": [0, 1, 2, 10], "input_registers": [5]})
SPARSE.holding_registers.set_values(0, [1, 2, 3])


@given(register_reads)
def test_fast_path_never_answers_from_a_sparse_table(pdu: bytes) -> None:
    """A sparse table's gaps hold zeros in the buffer: answering from it would hide exception 02."""
    assert read_registers_fast(SPARSE, pdu) is None


def test_sparse_gap_read_answers_exception_2_through_respond() -> None:
    assert respond(SPARSE, bytes.fromhex("03 0000 0003")) == bytes.fromhex("03 06 0001 0002 0003")
    assert respond(SPARSE, bytes.fromhex("03 0002 0002")) == bytes.fromhex("83 02")  # crosses the gap at 3
    assert respond(SPARSE, bytes.fromhex("04 0004 0001")) == bytes.fromhex("84 02")
    assert respond(SPARSE, bytes.fromhex("04 0005 0001")) == bytes.fromhex("04 02 0000")
