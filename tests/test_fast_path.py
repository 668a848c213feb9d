"""The fast paths (FC03/FC04 straight from the table, the session's one-frame shortcut, pipelined requests answered
at once) give the same bytes as the reference path."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modbusd.batch import batch_for
from modbusd.handler import execute, read_registers_fast, respond
from modbusd.model.device import Device
from modbusd.protocol.errors import ModbusError
from modbusd.protocol.mbap import frame
from modbusd.protocol.pdu import decode_request, encode_response, exception_pdu
from modbusd.session import FrameError, Session
from modbusd.stats import RequestCounts
from tests import strategies

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


# ------------------------------------------------------------------ pipelined requests answered at once

SIZES = {"coils": 40, "discrete_inputs": 30, "holding_registers": 100, "input_registers": 50}
EDGES = {1: SIZES["coils"], 2: SIZES["discrete_inputs"], 3: SIZES["holding_registers"], 4: SIZES["input_registers"],
         6: SIZES["holding_registers"], 16: SIZES["holding_registers"]}  # fmt: skip


def small_device(sparse: bool) -> Device:
    """Small tables, so that edges are hit often; sparse holding registers send every write the reference way."""
    addresses = {"holding_registers": [*range(50), *range(60, 100)]} if sparse else None
    device = Device(**SIZES, addresses=addresses)  # type: ignore[arg-type]  # sizes are ints
    for address in device.holding_registers.addresses():
        device.holding_registers[address] = (address * 7919) & 0xFFFF
    device.input_registers.set_values(0, [(i * 104729) & 0xFFFF for i in range(SIZES["input_registers"])])
    device.coils.write(0, [i % 3 == 0 for i in range(SIZES["coils"])])
    device.discrete_inputs.write(0, [i % 5 == 0 for i in range(SIZES["discrete_inputs"])])
    return device


@st.composite
def common_requests(draw: st.DrawFn) -> bytes:
    """FC01-04, FC06, FC16 PDUs aimed at a table's end, with quantities at and beside the limits."""
    function = draw(st.sampled_from([1, 2, 3, 4, 6, 16]))
    limit = {1: 2000, 2: 2000, 3: 125, 4: 125, 6: 1, 16: 123}[function]
    quantity = draw(st.sampled_from([0, 1, 2, limit, limit + 1]) | st.integers(0, 130))
    end = EDGES[function] + draw(st.integers(-3, 1))
    address = max(end - (1 if function == 6 else quantity), 0) if draw(st.integers(0, 3)) else draw(words)
    if function == 6:
        return struct.pack(">BHH", 6, address, draw(words))
    if function == 16:
        count = draw(st.sampled_from([2 * quantity, 2 * quantity, 2 * quantity + 2, 0])) & 0xFF
        values = draw(st.binary(min_size=min(count, 246), max_size=min(count, 246)))
        return struct.pack(">BHHB", 16, address, quantity & 0xFFFF, count) + values
    return struct.pack(">BHH", function, address, quantity & 0xFFFF)


words = st.integers(0, 0xFFFF)
common_frames = st.builds(
    lambda tid, proto, unit, pdu: frame(tid, unit, pdu, protocol_id=proto),
    words, st.sampled_from([0, 0, 0, 0, 1]), st.integers(0, 255), common_requests(),
)  # fmt: skip
any_frames = strategies.adus().map(lambda adu: strategies.encode_adus([adu]))
bad_header = st.binary(min_size=7, max_size=7).map(lambda head: head[:4] + b"\x00\x00" + head[6:])  # length 0
streams = st.lists(st.one_of(common_frames, common_frames, common_frames, any_frames), max_size=24).flatmap(
    lambda frames: st.one_of(st.just(b"".join(frames)), bad_header.map(lambda bad: b"".join(frames) + bad))
)


def observed_state(device: Device, session: Session, counts: RequestCounts) -> tuple[object, ...]:
    tables = (bytes(device.holding_registers.buffer), bytes(device.coils.buffer))
    return (*tables, device.diagnostics, session.requests, counts.ok, counts.silent, counts.exceptions,
            counts.bytes_in, counts.bytes_out)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=strategies.split_anywhere(streams),
    sparse=st.booleans(),
    slow=st.sets(st.sampled_from([1, 3, 6, 16]), max_size=2),
)
def test_pipelined_requests_answered_at_once_like_the_reference_path(
    cut: tuple[bytes, list[bytes]], sparse: bool, slow: set[int]
) -> None:
    """Any stream of frames (the common requests and every other kind, protocol ids other than 0, a header that
    loses the framing) cut anywhere: the same bytes out of each read, the same error, and the same device, counters
    and request counts afterwards, with and without the batch (`batch_for`); `slow`: function codes left to the
    reference path (what the hub observes)."""
    _stream, pieces = cut
    sides = []
    for batched in (False, True):
        device, counts = small_device(sparse), RequestCounts()
        batch = batch_for(device, counts.ok, slow) if batched else None
        session = Session(lambda _unit, pdu, d=device: respond(d, pdu), counts=counts, batch=batch)
        outs: list[bytes] = []
        for piece in pieces:
            try:
                outs.append(session.receive(piece))
            except FrameError as exc:
                outs.append(b"closed: " + exc.reply)  # type: ignore[operator]  # the responses owed before it
                break
        sides.append((outs, observed_state(device, session, counts)))
    assert sides[1] == sides[0]


def test_pipelined_reads_take_the_batch() -> None:
    """The property above holds trivially if nothing is ever batched: here every frame is."""
    device, counts = small_device(sparse=False), RequestCounts()
    requests = b"".join(frame(tid, 1, bytes.fromhex(pdu)) for tid, pdu in
                        enumerate(["03 0000 0002", "04 0031 0001", "01 0000 0028", "02 001D 0001", "06 0063 1234",
                                   "10 0000 0001 02 ABCD", "03 0063 0001"]))  # fmt: skip
    batch = batch_for(device, counts.ok, set())
    out, used, answered = batch(requests)
    assert (used, answered) == (len(requests), 7)
    assert out.endswith(frame(6, 1, bytes.fromhex("03 02 1234")))
    assert device.holding_registers[0] == 0xABCD
    assert batch(frame(0, 1, bytes.fromhex("03 0064 0001")))[2] == 0  # past the end


@pytest.mark.parametrize("change", ["listen_only", "guard", "address_register", "journal"])
def test_the_batch_takes_nothing_once_the_device_needs_the_reference_path(change: str) -> None:
    """`batch_for` binds the tables once, but what sends requests the reference way can change after: FC08/04 puts
    the device in listen-only mode, and the server gives it a guard (read-only ranges), an address register or a
    state file's journal. Each is seen on the next read."""
    device, counts = small_device(sparse=False), RequestCounts()
    batch = batch_for(device, counts.ok, set())
    read = frame(1, 1, bytes.fromhex("03 0000 0001"))
    assert batch(read)[2] == 1
    if change == "listen_only":
        device.diagnostics.listen_only = True
    elif change == "guard":
        device.guard = lambda pdu: None
    elif change == "address_register":
        device.address_register = 10
    else:
        device.holding_registers.journal = object()  # type: ignore[assignment]  # any journal at all
    assert batch(read) == (b"", 0, 0)
