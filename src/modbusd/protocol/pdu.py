"""Modbus PDUs: the messages (`messages.py`, one frozen dataclass per request and response) into bytes and back.

Messages hold what the wire holds: register data stay big-endian `bytes` and coil data stay packed bytes
(use `registers()` / `bits.unpack_bits()` to see them as numbers). That keeps the server's path to a
response a matter of slicing, and a decoded message re-encodes to exactly the bytes it came from.

`decode_request` applies the checks the specification's state diagrams put before the data model: an
unsupported function or sub-function raises IllegalFunction (01); a PDU whose length, byte count,
quantity or value is wrong raises IllegalDataValue (03). Address checks (02) belong to the data model.

The server's pair is `decode_request` / `encode_response`; the mirror pair (`encode_request` / `decode_response`)
is for tests, `modbusd clone` and the benchmark client. The four stay together: each function code's encoder and
decoder of both directions form one symmetric table that reads (and is tested, round trip) best side by side.
"""

import struct
from collections.abc import Callable
from typing import Final

from modbusd.protocol.bits import byte_count
from modbusd.protocol.codes import (
    COIL_OFF,
    COIL_ON,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    MAX_RW_READ_REGISTERS,
    MAX_RW_WRITE_REGISTERS,
    MAX_WRITE_BITS,
    MAX_WRITE_REGISTERS,
    MEI_READ_DEVICE_IDENTIFICATION,
    DiagnosticSubFunction,
    FunctionCode,
)
from modbusd.protocol.errors import IllegalDataValue, IllegalFunction
from modbusd.protocol.messages import (
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
)

__all__ = [  # the messages too (`messages.py`): they were defined here first, and are imported from here
    "READ_BIT_FUNCTIONS", "READ_REGISTER_FUNCTIONS", "SUPPORTED_FUNCTIONS", "CommEventCounterResponse",
    "CommEventLogResponse", "DeviceIdentificationResponse", "Diagnostics", "ExceptionResponse", "GetCommEventCounter",
    "GetCommEventLog", "MaskWriteRegister", "ReadBits", "ReadBitsResponse", "ReadDeviceIdentification",
    "ReadExceptionStatus", "ReadExceptionStatusResponse", "ReadRegisters", "ReadRegistersResponse",
    "ReadWriteMultipleRegisters", "ReportServerId", "ReportServerIdResponse", "Request", "Response",
    "WriteMultipleCoils", "WriteMultipleRegisters", "WriteMultipleResponse", "WriteSingleCoil", "WriteSingleRegister",
    "decode_report_server_id", "decode_request", "decode_response", "encode_request", "encode_response",
    "exception_pdu", "register_bytes", "registers",
]  # fmt: skip

_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")
_HHHHB = struct.Struct(">HHHHB")
_HHB = struct.Struct(">HHB")
_H = struct.Struct(">H")

READ_BIT_FUNCTIONS: Final = (FunctionCode.READ_COILS, FunctionCode.READ_DISCRETE_INPUTS)
READ_REGISTER_FUNCTIONS: Final = (FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS)


def registers(values: bytes) -> tuple[int, ...]:
    """Big-endian register bytes → register values."""
    return struct.unpack(f">{len(values) // 2}H", values)


def register_bytes(values: tuple[int, ...] | list[int]) -> bytes:
    """Register values → big-endian bytes (raises struct.error outside 0..65535)."""
    return struct.pack(f">{len(values)}H", *values)


def exception_pdu(function: int, code: int) -> bytes:
    """§7: the request's function code with its high bit set, then the exception code."""
    return bytes(((function | 0x80) & 0xFF, code))


# --------------------------------------------------------------------------------------- request decode


def _fixed(pdu: bytes, length: int) -> None:
    if len(pdu) != length:
        raise IllegalDataValue(f"function {pdu[0]} needs a {length}-byte PDU, got {len(pdu)}")


def _decode_read_bits(pdu: bytes) -> ReadBits:
    _fixed(pdu, 5)
    address, quantity = _HH.unpack_from(pdu, 1)
    if not 1 <= quantity <= MAX_READ_BITS:
        raise IllegalDataValue(f"quantity {quantity} outside 1..{MAX_READ_BITS}")
    return ReadBits(FunctionCode(pdu[0]), address, quantity)


def _decode_read_registers(pdu: bytes) -> ReadRegisters:
    _fixed(pdu, 5)
    address, quantity = _HH.unpack_from(pdu, 1)
    if not 1 <= quantity <= MAX_READ_REGISTERS:
        raise IllegalDataValue(f"quantity {quantity} outside 1..{MAX_READ_REGISTERS}")
    return ReadRegisters(FunctionCode(pdu[0]), address, quantity)


def _decode_write_single_coil(pdu: bytes) -> WriteSingleCoil:
    _fixed(pdu, 5)
    address, value = _HH.unpack_from(pdu, 1)
    if value not in (COIL_ON, COIL_OFF):
        raise IllegalDataValue(f"coil value 0x{value:04X} is neither 0xFF00 nor 0x0000")
    return WriteSingleCoil(address, value == COIL_ON)


def _decode_write_single_register(pdu: bytes) -> WriteSingleRegister:
    _fixed(pdu, 5)
    return WriteSingleRegister(*_HH.unpack_from(pdu, 1))


def _decode_write_multiple_coils(pdu: bytes) -> WriteMultipleCoils:
    if len(pdu) < 6:
        raise IllegalDataValue("FC15 PDU shorter than its header")
    address, quantity, count = _HHB.unpack_from(pdu, 1)
    if not 1 <= quantity <= MAX_WRITE_BITS:
        raise IllegalDataValue(f"quantity {quantity} outside 1..{MAX_WRITE_BITS}")
    if count != byte_count(quantity) or len(pdu) != 6 + count:
        raise IllegalDataValue(f"byte count {count} / PDU length {len(pdu)} disagree with quantity {quantity}")
    return WriteMultipleCoils(address, quantity, bytes(pdu[6:]))


def _decode_write_multiple_registers(pdu: bytes) -> WriteMultipleRegisters:
    if len(pdu) < 6:
        raise IllegalDataValue("FC16 PDU shorter than its header")
    address, quantity, count = _HHB.unpack_from(pdu, 1)
    if not 1 <= quantity <= MAX_WRITE_REGISTERS:
        raise IllegalDataValue(f"quantity {quantity} outside 1..{MAX_WRITE_REGISTERS}")
    if count != 2 * quantity or len(pdu) != 6 + count:
        raise IllegalDataValue(f"byte count {count} / PDU length {len(pdu)} disagree with quantity {quantity}")
    return WriteMultipleRegisters(address, bytes(pdu[6:]))


def _decode_mask_write(pdu: bytes) -> MaskWriteRegister:
    _fixed(pdu, 7)
    return MaskWriteRegister(*_HHH.unpack_from(pdu, 1))


def _decode_read_write(pdu: bytes) -> ReadWriteMultipleRegisters:
    if len(pdu) < 10:
        raise IllegalDataValue("FC23 PDU shorter than its header")
    read_address, read_quantity, write_address, write_quantity, count = _HHHHB.unpack_from(pdu, 1)
    if not 1 <= read_quantity <= MAX_RW_READ_REGISTERS:
        raise IllegalDataValue(f"read quantity {read_quantity} outside 1..{MAX_RW_READ_REGISTERS}")
    if not 1 <= write_quantity <= MAX_RW_WRITE_REGISTERS:
        raise IllegalDataValue(f"write quantity {write_quantity} outside 1..{MAX_RW_WRITE_REGISTERS}")
    if count != 2 * write_quantity or len(pdu) != 10 + count:
        raise IllegalDataValue(f"byte count {count} / PDU length {len(pdu)} disagree with quantity {write_quantity}")
    return ReadWriteMultipleRegisters(read_address, read_quantity, write_address, bytes(pdu[10:]))


def _decode_diagnostics(pdu: bytes) -> Diagnostics:
    if len(pdu) < 3:
        raise IllegalDataValue("FC08 PDU without a sub-function")
    sub_function = _H.unpack_from(pdu, 1)[0]
    if sub_function not in _DIAGNOSTIC_SUB_FUNCTIONS:
        raise IllegalFunction(f"diagnostics sub-function 0x{sub_function:04X} not supported")
    data = bytes(pdu[3:])
    if sub_function != DiagnosticSubFunction.RETURN_QUERY_DATA and len(data) != 2:
        raise IllegalDataValue(f"diagnostics sub-function {sub_function} needs 2 data bytes, got {len(data)}")
    return Diagnostics(sub_function, data)


_DIAGNOSTIC_SUB_FUNCTIONS: Final = frozenset(int(s) for s in DiagnosticSubFunction)


def _decode_device_identification(pdu: bytes) -> ReadDeviceIdentification:
    if len(pdu) < 2 or pdu[1] != MEI_READ_DEVICE_IDENTIFICATION:
        raise IllegalFunction(f"MEI type {pdu[1] if len(pdu) > 1 else None} not supported")
    _fixed(pdu, 4)
    if pdu[2] not in (1, 2, 3, 4):
        raise IllegalDataValue(f"read device id code {pdu[2]} outside 1..4")
    return ReadDeviceIdentification(pdu[2], pdu[3])


def _no_data(message: Request) -> Callable[[bytes], Request]:
    def decode(pdu: bytes) -> Request:
        _fixed(pdu, 1)
        return message

    return decode


_REQUEST_DECODERS: Final[dict[int, Callable[[bytes], Request]]] = {
    FunctionCode.READ_COILS: _decode_read_bits,
    FunctionCode.READ_DISCRETE_INPUTS: _decode_read_bits,
    FunctionCode.READ_HOLDING_REGISTERS: _decode_read_registers,
    FunctionCode.READ_INPUT_REGISTERS: _decode_read_registers,
    FunctionCode.WRITE_SINGLE_COIL: _decode_write_single_coil,
    FunctionCode.WRITE_SINGLE_REGISTER: _decode_write_single_register,
    FunctionCode.READ_EXCEPTION_STATUS: _no_data(ReadExceptionStatus()),
    FunctionCode.DIAGNOSTICS: _decode_diagnostics,
    FunctionCode.GET_COMM_EVENT_COUNTER: _no_data(GetCommEventCounter()),
    FunctionCode.GET_COMM_EVENT_LOG: _no_data(GetCommEventLog()),
    FunctionCode.WRITE_MULTIPLE_COILS: _decode_write_multiple_coils,
    FunctionCode.WRITE_MULTIPLE_REGISTERS: _decode_write_multiple_registers,
    FunctionCode.REPORT_SERVER_ID: _no_data(ReportServerId()),
    FunctionCode.MASK_WRITE_REGISTER: _decode_mask_write,
    FunctionCode.READ_WRITE_MULTIPLE_REGISTERS: _decode_read_write,
    FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT: _decode_device_identification,
}

SUPPORTED_FUNCTIONS: Final = frozenset(_REQUEST_DECODERS)


def decode_request(pdu: bytes) -> Request:
    """Request PDU → message; raises IllegalFunction (01) or IllegalDataValue (03) as §6's diagrams order them."""
    if not pdu:
        raise IllegalDataValue("empty PDU")
    decoder = _REQUEST_DECODERS.get(pdu[0])
    if decoder is None:
        raise IllegalFunction(f"function code 0x{pdu[0]:02X} not supported")
    return decoder(pdu)


# --------------------------------------------------------------------------------------- request encode


def encode_request(request: Request) -> bytes:
    """Message → request PDU: the mirror of decode_request, for tests and the benchmark client."""
    fc = request.function
    match request:
        case ReadBits() | ReadRegisters():
            return bytes((fc,)) + _HH.pack(request.address, request.quantity)
        case WriteSingleCoil():
            return bytes((fc,)) + _HH.pack(request.address, COIL_ON if request.value else COIL_OFF)
        case WriteSingleRegister():
            return bytes((fc,)) + _HH.pack(request.address, request.value)
        case Diagnostics():
            return bytes((fc,)) + _H.pack(request.sub_function) + request.data
        case WriteMultipleCoils():
            return bytes((fc,)) + _HHB.pack(request.address, request.quantity, len(request.values)) + request.values
        case WriteMultipleRegisters():
            header = _HHB.pack(request.address, request.quantity, len(request.values))
            return bytes((fc,)) + header + request.values
        case MaskWriteRegister():
            return bytes((fc,)) + _HHH.pack(request.address, request.and_mask, request.or_mask)
        case ReadWriteMultipleRegisters():
            header = _HHHHB.pack(
                request.read_address, request.read_quantity, request.write_address,
                request.write_quantity, len(request.values),
            )  # fmt: skip
            return bytes((fc,)) + header + request.values
        case ReadDeviceIdentification():
            return bytes((fc, MEI_READ_DEVICE_IDENTIFICATION, request.code, request.object_id))
        case _:
            return bytes((fc,))


# -------------------------------------------------------------------------------------- response encode


def encode_response(response: Response) -> bytes:
    """Message → response PDU. The server's only way to build a response."""
    match response:
        case ReadBitsResponse() | ReadRegistersResponse():
            return bytes((response.function, len(response.values))) + response.values
        case WriteMultipleResponse():
            return bytes((response.function,)) + _HH.pack(response.address, response.quantity)
        case ExceptionResponse():
            return exception_pdu(response.function, response.code)
        case ReadExceptionStatusResponse():
            return bytes((response.function, response.status))
        case CommEventCounterResponse():
            return bytes((response.function,)) + _HH.pack(response.status, response.event_count)
        case CommEventLogResponse():
            body = _HHH.pack(response.status, response.event_count, response.message_count) + response.events
            return bytes((response.function, len(body))) + body
        case ReportServerIdResponse():
            body = response.server_id + (b"\xff" if response.running else b"\x00") + response.additional_data
            return bytes((response.function, len(body))) + body
        case DeviceIdentificationResponse():
            out = bytearray((response.function, MEI_READ_DEVICE_IDENTIFICATION, response.code,
                             response.conformity_level, 0xFF if response.more_follows else 0x00,
                             response.next_object_id, len(response.objects)))  # fmt: skip
            for object_id, value in response.objects:
                out += bytes((object_id, len(value))) + value
            return bytes(out)
        case _:  # the echo responses: FC05, FC06, FC08, FC22
            return encode_request(response)


# -------------------------------------------------------------------------------------- response decode


def decode_response(pdu: bytes) -> Response:
    """Response PDU → message: the mirror of encode_response, for tests and the benchmark client.

    Raises ValueError on a PDU that no server should send.
    """
    if len(pdu) < 2:
        raise ValueError(f"response PDU too short: {pdu.hex(' ')}")
    fc = pdu[0]
    if fc & 0x80:
        return ExceptionResponse(fc & 0x7F, pdu[1])
    function = FunctionCode(fc)
    if (
        function in READ_BIT_FUNCTIONS
        or function in READ_REGISTER_FUNCTIONS
        or (function == FunctionCode.READ_WRITE_MULTIPLE_REGISTERS)
    ):
        if pdu[1] != len(pdu) - 2:
            raise ValueError(f"byte count {pdu[1]} disagrees with PDU length {len(pdu)}")
        if function in READ_BIT_FUNCTIONS:
            return ReadBitsResponse(function, bytes(pdu[2:]))
        return ReadRegistersResponse(function, bytes(pdu[2:]))
    if function in (FunctionCode.WRITE_MULTIPLE_COILS, FunctionCode.WRITE_MULTIPLE_REGISTERS):
        return WriteMultipleResponse(function, *_HH.unpack_from(pdu, 1))
    if function == FunctionCode.READ_EXCEPTION_STATUS:
        return ReadExceptionStatusResponse(pdu[1])
    if function == FunctionCode.GET_COMM_EVENT_COUNTER:
        return CommEventCounterResponse(*_HH.unpack_from(pdu, 1))
    if function == FunctionCode.GET_COMM_EVENT_LOG:
        status, events, messages = _HHH.unpack_from(pdu, 2)
        return CommEventLogResponse(status, events, messages, bytes(pdu[8:]))
    if function == FunctionCode.REPORT_SERVER_ID:
        raise ValueError("FC17 responses carry a device-specific server id length: use decode_report_server_id")
    if function == FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT:
        return _decode_device_identification_response(pdu)
    if function == FunctionCode.WRITE_SINGLE_COIL:
        address, value = _HH.unpack_from(pdu, 1)
        return WriteSingleCoil(address, value == COIL_ON)
    if function == FunctionCode.WRITE_SINGLE_REGISTER:
        return WriteSingleRegister(*_HH.unpack_from(pdu, 1))
    if function == FunctionCode.MASK_WRITE_REGISTER:
        return MaskWriteRegister(*_HHH.unpack_from(pdu, 1))
    return Diagnostics(_H.unpack_from(pdu, 1)[0], bytes(pdu[3:]))


def decode_report_server_id(pdu: bytes, server_id_length: int) -> ReportServerIdResponse:
    """FC17's server id has a device-specific length (§6.13), so the caller must say how long it is."""
    body = pdu[2 : 2 + pdu[1]]
    return ReportServerIdResponse(
        bytes(body[:server_id_length]), body[server_id_length] == 0xFF, bytes(body[server_id_length + 1 :])
    )


def _decode_device_identification_response(pdu: bytes) -> DeviceIdentificationResponse:
    code, conformity, more, next_id, count = pdu[2], pdu[3], pdu[4], pdu[5], pdu[6]
    objects, pos = [], 7
    for _ in range(count):
        object_id, length = pdu[pos], pdu[pos + 1]
        objects.append((object_id, bytes(pdu[pos + 2 : pos + 2 + length])))
        pos += 2 + length
    return DeviceIdentificationResponse(code, conformity, more == 0xFF, next_id, tuple(objects))
