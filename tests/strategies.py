"""Hypothesis strategies shared by the sans-I/O tests: every request and response type, MBAP streams.

Every strategy builds messages inside the specification's limits, so `decode_request(encode_request(m)) == m`
must hold for all of them; tests that want out-of-range messages build those by hand.
"""

from collections.abc import Callable, Iterable
from itertools import pairwise

from hypothesis import strategies as st

from modbusd.protocol.bits import byte_count
from modbusd.protocol.codes import (
    MAX_EVENT_LOG,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    MAX_RW_READ_REGISTERS,
    MAX_RW_WRITE_REGISTERS,
    MAX_WRITE_BITS,
    MAX_WRITE_REGISTERS,
    DeviceIdCode,
    DiagnosticSubFunction,
    FunctionCode,
)
from modbusd.protocol.mbap import Adu, frame
from modbusd.protocol.pdu import (
    READ_BIT_FUNCTIONS,
    READ_REGISTER_FUNCTIONS,
    SUPPORTED_FUNCTIONS,
    CommEventCounterResponse,
    CommEventLogResponse,
    DeviceIdentificationResponse,
    Diagnostics,
    ExceptionResponse,
    GetCommEventCounter,
    GetCommEventLog,
    MaskWriteRegister,
    ReadBits,
    ReadBitsResponse,
    ReadDeviceIdentification,
    ReadExceptionStatus,
    ReadExceptionStatusResponse,
    ReadRegisters,
    ReadRegistersResponse,
    ReadWriteMultipleRegisters,
    ReportServerId,
    ReportServerIdResponse,
    Request,
    Response,
    WriteMultipleCoils,
    WriteMultipleRegisters,
    WriteMultipleResponse,
    WriteSingleCoil,
    WriteSingleRegister,
    encode_request,
    encode_response,
)

addresses = st.integers(0, 0xFFFF)
words = st.integers(0, 0xFFFF)
bytes_ = st.integers(0, 0xFF)


def register_data(min_registers: int, max_registers: int) -> st.SearchStrategy[bytes]:
    """Big-endian register bytes: always an even number of them."""
    return st.integers(min_registers, max_registers).flatmap(lambda n: st.binary(min_size=2 * n, max_size=2 * n))


@st.composite
def write_multiple_coils(draw: st.DrawFn) -> WriteMultipleCoils:
    quantity = draw(st.integers(1, MAX_WRITE_BITS))
    size = byte_count(quantity)
    return WriteMultipleCoils(draw(addresses), quantity, draw(st.binary(min_size=size, max_size=size)))


@st.composite
def diagnostics_requests(draw: st.DrawFn) -> Diagnostics:
    """FC08: sub-function 00 echoes any data that fits a PDU; every other one carries exactly two bytes."""
    sub_function = draw(st.sampled_from(DiagnosticSubFunction))
    if sub_function == DiagnosticSubFunction.RETURN_QUERY_DATA:
        return Diagnostics(int(sub_function), draw(st.binary(max_size=250)))
    return Diagnostics(int(sub_function), draw(st.binary(min_size=2, max_size=2)))


REQUESTS: dict[str, st.SearchStrategy[Request]] = {
    "ReadBits": st.builds(
        ReadBits, function=st.sampled_from(READ_BIT_FUNCTIONS), address=addresses,
        quantity=st.integers(1, MAX_READ_BITS),
    ),
    "ReadRegisters": st.builds(
        ReadRegisters, function=st.sampled_from(READ_REGISTER_FUNCTIONS), address=addresses,
        quantity=st.integers(1, MAX_READ_REGISTERS),
    ),
    "WriteSingleCoil": st.builds(WriteSingleCoil, address=addresses, value=st.booleans()),
    "WriteSingleRegister": st.builds(WriteSingleRegister, address=addresses, value=words),
    "ReadExceptionStatus": st.just(ReadExceptionStatus()),
    "Diagnostics": diagnostics_requests(),
    "GetCommEventCounter": st.just(GetCommEventCounter()),
    "GetCommEventLog": st.just(GetCommEventLog()),
    "WriteMultipleCoils": write_multiple_coils(),
    "WriteMultipleRegisters": st.builds(
        WriteMultipleRegisters, address=addresses, values=register_data(1, MAX_WRITE_REGISTERS)
    ),
    "ReportServerId": st.just(ReportServerId()),
    "MaskWriteRegister": st.builds(MaskWriteRegister, address=addresses, and_mask=words, or_mask=words),
    "ReadWriteMultipleRegisters": st.builds(
        ReadWriteMultipleRegisters, read_address=addresses, read_quantity=st.integers(1, MAX_RW_READ_REGISTERS),
        write_address=addresses, values=register_data(1, MAX_RW_WRITE_REGISTERS),
    ),
    "ReadDeviceIdentification": st.builds(
        ReadDeviceIdentification, code=st.sampled_from([int(c) for c in DeviceIdCode]), object_id=bytes_
    ),
}  # fmt: skip


def requests() -> st.SearchStrategy[Request]:
    """Any valid request of any type."""
    return st.one_of(*REQUESTS.values())


@st.composite
def device_identification_responses(draw: st.DrawFn) -> DeviceIdentificationResponse:
    objects = draw(st.lists(st.tuples(bytes_, st.binary(max_size=40)), max_size=5))
    return DeviceIdentificationResponse(
        code=draw(st.integers(1, 4)), conformity_level=draw(st.sampled_from([0x01, 0x02, 0x03, 0x81, 0x82, 0x83])),
        more_follows=draw(st.booleans()), next_object_id=draw(bytes_), objects=tuple(objects),
    )  # fmt: skip


RESPONSES: dict[str, st.SearchStrategy[Response]] = {
    "ReadBitsResponse": st.builds(
        ReadBitsResponse, function=st.sampled_from(READ_BIT_FUNCTIONS),
        values=st.binary(min_size=1, max_size=byte_count(MAX_READ_BITS)),
    ),
    "ReadRegistersResponse": st.builds(
        ReadRegistersResponse,
        function=st.sampled_from([*READ_REGISTER_FUNCTIONS, FunctionCode.READ_WRITE_MULTIPLE_REGISTERS]),
        values=register_data(1, MAX_READ_REGISTERS),
    ),
    "WriteSingleCoil": REQUESTS["WriteSingleCoil"],
    "WriteSingleRegister": REQUESTS["WriteSingleRegister"],
    "ReadExceptionStatusResponse": st.builds(ReadExceptionStatusResponse, status=bytes_),
    "Diagnostics": diagnostics_requests(),
    "CommEventCounterResponse": st.builds(CommEventCounterResponse, status=st.sampled_from([0, 0xFFFF]),
                                          event_count=words),
    "CommEventLogResponse": st.builds(
        CommEventLogResponse, status=st.sampled_from([0, 0xFFFF]), event_count=words, message_count=words,
        events=st.binary(max_size=MAX_EVENT_LOG),
    ),
    "WriteMultipleResponse": st.builds(
        WriteMultipleResponse,
        function=st.sampled_from([FunctionCode.WRITE_MULTIPLE_COILS, FunctionCode.WRITE_MULTIPLE_REGISTERS]),
        address=addresses, quantity=words,
    ),
    "MaskWriteRegister": REQUESTS["MaskWriteRegister"],
    "DeviceIdentificationResponse": device_identification_responses(),
    "ExceptionResponse": st.builds(ExceptionResponse, function=st.integers(1, 0x7F), code=st.integers(1, 0x0B)),
}  # fmt: skip


def responses() -> st.SearchStrategy[Response]:
    """Any response `decode_response` can read back (FC17 has its own decoder: see report_server_id_responses)."""
    return st.one_of(*RESPONSES.values())


report_server_id_responses = st.builds(
    ReportServerIdResponse, server_id=st.binary(min_size=1, max_size=20), running=st.booleans(),
    additional_data=st.binary(max_size=20),
)  # fmt: skip


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """A valid request PDU with a few bytes changed, cut short or lengthened: what a buggy client sends."""
    pdu = bytearray(encode_request(draw(requests())))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(pdu) - 1))
        pdu[position] = draw(bytes_)
    cut = draw(st.integers(1, len(pdu)))
    tail = draw(st.binary(max_size=253 - cut))
    return bytes(pdu[:cut]) + tail if draw(st.booleans()) else bytes(pdu)


def fuzz_pdus() -> st.SearchStrategy[bytes]:
    """Non-empty PDUs of at most 253 bytes, mostly with a supported function code so the decoders are reached."""
    supported = st.sampled_from(sorted(SUPPORTED_FUNCTIONS))
    plausible = st.tuples(supported, st.binary(max_size=252)).map(lambda t: bytes((t[0],)) + t[1])
    return st.one_of(st.binary(min_size=1, max_size=253), plausible, mutated_requests())


# ------------------------------------------------------------------------------------------------ MBAP


def pdus_of_every_kind() -> st.SearchStrategy[bytes]:
    """PDUs of every function code and length: every request and response type as encoded, and raw PDUs of any
    first byte, with the lengths at the limits (1 and 253 bytes, Application Protocol §4.1) drawn on purpose."""
    sizes = st.sampled_from([1, 2, 3, 252, 253]) | st.integers(1, 253)
    raw = sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n))
    return st.one_of(requests().map(encode_request), responses().map(encode_response), raw)


pdus = pdus_of_every_kind()


def adus(protocol_ids: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[Adu]:
    """One well-formed frame; the protocol id is mostly 0 and sometimes not, as a confused client sends."""
    if protocol_ids is None:
        protocol_ids = st.one_of(st.just(0), st.just(0), st.just(0), words)
    return st.builds(Adu, transaction_id=words, protocol_id=protocol_ids, unit_id=bytes_, pdu=pdus)


def encode_adus(frames: Iterable[Adu]) -> bytes:
    return b"".join(frame(a.transaction_id, a.unit_id, a.pdu, a.protocol_id) for a in frames)


def mbap_frames(max_frames: int = 8) -> st.SearchStrategy[list[Adu]]:
    return st.lists(adus(), max_size=max_frames)


def mbap_streams(max_frames: int = 8) -> st.SearchStrategy[bytes]:
    """Well-formed MBAP frames back to back, as a pipelining client sends them."""
    return mbap_frames(max_frames).map(encode_adus)


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` cut at every position in `cuts` (clamped to 0..len(data)); the pieces join back to `data`.

    Models TCP segmentation: the receiver must not care where the stream was cut.
    """
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in pairwise(points)]


@st.composite
def split_anywhere(draw: st.DrawFn, streams: st.SearchStrategy[bytes]) -> tuple[bytes, list[bytes]]:
    """A stream and its pieces, cut anywhere inside it: at random places, or (one time in eight) at every byte."""
    stream = draw(streams)
    if draw(st.integers(0, 7)) == 0:
        return stream, split_at(stream, range(len(stream)))
    return stream, split_at(stream, draw(st.lists(st.integers(0, len(stream)), max_size=30)))


# ------------------------------------------------------------------------------------------ serial lines

unit_ids = st.integers(0, 247)  # 0 is broadcast; 248..255 are reserved (Modbus over Serial Line §2.2)


def crc16_reference(data: bytes) -> int:
    """CRC-16/MODBUS bit by bit, as Modbus over Serial Line §6.2.2 describes it: written out here, not imported."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit_id: int, pdu: bytes) -> bytes:
    """Address, PDU, CRC low byte first (§2.5.1)."""
    return bytes((unit_id,)) + pdu + crc16_reference(bytes((unit_id,)) + pdu).to_bytes(2, "little")


def ascii_frame(unit_id: int, pdu: bytes) -> bytes:
    """':', the hex pairs of address, PDU and LRC (the two's complement of the byte sum, §6.2.1), CR LF."""
    body = bytes((unit_id,)) + pdu
    return b":" + (body + bytes(((-sum(body)) & 0xFF,))).hex().upper().encode() + b"\r\n"


@st.composite
def serial_requests(draw: st.DrawFn) -> tuple[int, bytes]:
    """(unit id, request PDU): every request type, and as often PDUs of function codes nobody implements (they
    end only at a silence on RTU, and are answered with exception 01), up to the longest PDU (253 bytes)."""
    unit_id = draw(unit_ids)
    if draw(st.booleans()):
        return unit_id, encode_request(draw(requests()))
    size = draw(st.sampled_from([0, 1, 251, 252]) | st.integers(0, 252))
    return unit_id, bytes((draw(st.integers(0x41, 0x48)),)) + draw(st.binary(min_size=size, max_size=size))


Frames = list[tuple[int, bytes]]


def split_frames(
    encode: Callable[[int, bytes], bytes], frames: st.SearchStrategy[Frames]
) -> st.SearchStrategy[tuple[Frames, list[bytes]]]:
    """(unit id, PDU) pairs, and their frames back to back as `encode` writes them, cut anywhere."""
    return frames.flatmap(
        lambda fs: split_anywhere(st.just(b"".join(encode(u, p) for u, p in fs))).map(lambda cut: (fs, cut[1]))
    )
