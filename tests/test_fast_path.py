"""The FC03/FC04 fast path and the session's one-frame shortcut give the same bytes as the reference path."""

import struct

import pytest
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


@st.composite
def register_reads(draw: st.DrawFn, ends: dict[int, list[int]]) -> bytes:
    """FC03/FC04 reads, mostly aimed so that address + quantity lands on or beside one of `ends` (a table's end,
    the end of a sparse range, the end of the address space), with the quantities where the limits are (0, 1,
    125, 126); a uniform draw would almost never try `address + quantity` one past a table's end."""
    function = draw(st.sampled_from([3, 4]))
    quantity = draw(st.sampled_from([0, 1, 2, 124, 125, 126]) | st.integers(0, 130) | st.integers(0, 0xFFFF))
    if draw(st.integers(0, 3)):  # three in four: at an edge
        end = draw(st.sampled_from(ends[function])) + draw(st.integers(-2, 2))
        address = min(max(end - quantity, 0), 0xFFFF)
    else:
        address = draw(st.integers(0, 0xFFFF))
    return struct.pack(">BHH", function, address, min(quantity, 0xFFFF))


ADDRESS_SPACE_END = 0x10000
DEVICE_ENDS = {3: [0, 1000, ADDRESS_SPACE_END], 4: [0, 300, ADDRESS_SPACE_END]}
SPARSE_ENDS = {3: [0, 3, 10, 11, ADDRESS_SPACE_END], 4: [5, 6, ADDRESS_SPACE_END]}  # SPARSE's ranges below


@given(register_reads(DEVICE_ENDS) | st.binary(min_size=1, max_size=8))
def test_fast_path_answers_exactly_like_the_reference_or_defers(pdu: bytes) -> None:
    fast = read_registers_fast(DEVICE, pdu)
    if fast is not None:
        assert fast == reference(pdu)


@given(register_reads(DEVICE_ENDS))
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


@given(register_reads(SPARSE_ENDS))
def test_fast_path_never_answers_from_a_sparse_table(pdu: bytes) -> None:
    """A sparse table's gaps hold zeros in the buffer: answering from it would hide exception 02."""
    assert read_registers_fast(SPARSE, pdu) is None


def test_sparse_gap_read_answers_exception_2_through_respond() -> None:
    assert respond(SPARSE, bytes.fromhex("03 0000 0003")) == bytes.fromhex("03 06 0001 0002 0003")
    assert respond(SPARSE, bytes.fromhex("03 0002 0002")) == bytes.fromhex("83 02")  # crosses the gap at 3
    assert respond(SPARSE, bytes.fromhex("04 0004 0001")) == bytes.fromhex("84 02")
    assert respond(SPARSE, bytes.fromhex("04 0005 0001")) == bytes.fromhex("04 02 0000")


FAST_PATH_EDGES = [  # (request, whether the fast path answers it); DEVICE has 1000 holding and 300 input registers
    ("03 03E7 0001", True),  # the last register
    ("03 03E8 0001", False),  # one past the end
    ("03 0370 0078", True),  # 880 + 120 = 1000: up to the end
    ("03 0371 0078", False),  # 881 + 120: one past it
    ("04 012B 0001", True),  # the last input register
    ("04 012C 0001", False),
    ("04 00AF 007D", True),  # 175 + 125 = 300, the largest quantity
    ("03 0000 007D", True),
    ("03 0000 007E", False),  # 126: one over the limit (§6.3)
    ("03 0000 0000", False),  # 0: below it
    ("03 FFFF 0001", False),  # the address space's end, far past the table
]


@pytest.mark.parametrize(("request_hex", "fast"), FAST_PATH_EDGES)
def test_fast_path_edges_answer_like_the_reference(request_hex: str, fast: bool) -> None:
    pdu = bytes.fromhex(request_hex)
    answer = read_registers_fast(DEVICE, pdu)
    assert (answer is not None) == fast
    assert (answer or reference(pdu)) == reference(pdu)
