"""Modbus messages as frozen dataclasses: one per request and one per response, as the wire holds them.

Register data stay big-endian `bytes` and coil data stay packed bytes (`pdu.registers()` / `bits.unpack_bits()`
show them as numbers), so that a decoded message re-encodes to exactly the bytes it came from. The functions that
turn them into bytes and back are `pdu.py`'s, which re-exports every name here.
"""

from dataclasses import dataclass

from modbusd.protocol.codes import FunctionCode

# --------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class ReadBits:
    """FC01 / FC02 (§6.1, §6.2)."""

    function: FunctionCode
    address: int
    quantity: int


@dataclass(frozen=True, slots=True)
class ReadRegisters:
    """FC03 / FC04 (§6.3, §6.4)."""

    function: FunctionCode
    address: int
    quantity: int


@dataclass(frozen=True, slots=True)
class WriteSingleCoil:
    """FC05 (§6.5). The response is an echo of the request."""

    address: int
    value: bool
    function: FunctionCode = FunctionCode.WRITE_SINGLE_COIL


@dataclass(frozen=True, slots=True)
class WriteSingleRegister:
    """FC06 (§6.6). The response is an echo of the request."""

    address: int
    value: int
    function: FunctionCode = FunctionCode.WRITE_SINGLE_REGISTER


@dataclass(frozen=True, slots=True)
class ReadExceptionStatus:
    """FC07 (§6.7)."""

    function: FunctionCode = FunctionCode.READ_EXCEPTION_STATUS


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """FC08 (§6.8). Request and normal response have the same shape: sub-function, then data."""

    sub_function: int
    data: bytes = b"\x00\x00"
    function: FunctionCode = FunctionCode.DIAGNOSTICS


@dataclass(frozen=True, slots=True)
class GetCommEventCounter:
    """FC11 (§6.9)."""

    function: FunctionCode = FunctionCode.GET_COMM_EVENT_COUNTER


@dataclass(frozen=True, slots=True)
class GetCommEventLog:
    """FC12 (§6.10)."""

    function: FunctionCode = FunctionCode.GET_COMM_EVENT_LOG


@dataclass(frozen=True, slots=True)
class WriteMultipleCoils:
    """FC15 (§6.11). `values` is the packed bit string as on the wire, LSB first."""

    address: int
    quantity: int
    values: bytes
    function: FunctionCode = FunctionCode.WRITE_MULTIPLE_COILS


@dataclass(frozen=True, slots=True)
class WriteMultipleRegisters:
    """FC16 (§6.12). `values` is big-endian register bytes; the quantity is len(values) // 2."""

    address: int
    values: bytes
    function: FunctionCode = FunctionCode.WRITE_MULTIPLE_REGISTERS

    @property
    def quantity(self) -> int:
        return len(self.values) // 2


@dataclass(frozen=True, slots=True)
class ReportServerId:
    """FC17 (§6.13)."""

    function: FunctionCode = FunctionCode.REPORT_SERVER_ID


@dataclass(frozen=True, slots=True)
class MaskWriteRegister:
    """FC22 (§6.16). The response is an echo of the request."""

    address: int
    and_mask: int
    or_mask: int
    function: FunctionCode = FunctionCode.MASK_WRITE_REGISTER


@dataclass(frozen=True, slots=True)
class ReadWriteMultipleRegisters:
    """FC23 (§6.17): the write is performed before the read."""

    read_address: int
    read_quantity: int
    write_address: int
    values: bytes
    function: FunctionCode = FunctionCode.READ_WRITE_MULTIPLE_REGISTERS

    @property
    def write_quantity(self) -> int:
        return len(self.values) // 2


@dataclass(frozen=True, slots=True)
class ReadDeviceIdentification:
    """FC43 / MEI 14 (§6.21)."""

    code: int
    object_id: int
    function: FunctionCode = FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT


Request = (
    ReadBits
    | ReadRegisters
    | WriteSingleCoil
    | WriteSingleRegister
    | ReadExceptionStatus
    | Diagnostics
    | GetCommEventCounter
    | GetCommEventLog
    | WriteMultipleCoils
    | WriteMultipleRegisters
    | ReportServerId
    | MaskWriteRegister
    | ReadWriteMultipleRegisters
    | ReadDeviceIdentification
)

# -------------------------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class ReadBitsResponse:
    """FC01 / FC02: `values` is the packed bit string (the byte count is its length)."""

    function: FunctionCode
    values: bytes


@dataclass(frozen=True, slots=True)
class ReadRegistersResponse:
    """FC03 / FC04 / FC23: big-endian register bytes."""

    function: FunctionCode
    values: bytes


@dataclass(frozen=True, slots=True)
class WriteMultipleResponse:
    """FC15 / FC16: start address and quantity written."""

    function: FunctionCode
    address: int
    quantity: int


@dataclass(frozen=True, slots=True)
class ReadExceptionStatusResponse:
    status: int
    function: FunctionCode = FunctionCode.READ_EXCEPTION_STATUS


@dataclass(frozen=True, slots=True)
class CommEventCounterResponse:
    status: int
    event_count: int
    function: FunctionCode = FunctionCode.GET_COMM_EVENT_COUNTER


@dataclass(frozen=True, slots=True)
class CommEventLogResponse:
    """FC12: `events` newest first, at most 64 bytes."""

    status: int
    event_count: int
    message_count: int
    events: bytes
    function: FunctionCode = FunctionCode.GET_COMM_EVENT_LOG


@dataclass(frozen=True, slots=True)
class ReportServerIdResponse:
    server_id: bytes
    running: bool
    additional_data: bytes = b""
    function: FunctionCode = FunctionCode.REPORT_SERVER_ID


@dataclass(frozen=True, slots=True)
class DeviceIdentificationResponse:
    code: int
    conformity_level: int
    more_follows: bool
    next_object_id: int
    objects: tuple[tuple[int, bytes], ...]
    function: FunctionCode = FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    function: int  # the request's function code, without the 0x80 bit
    code: int


Response = (
    ReadBitsResponse
    | ReadRegistersResponse
    | WriteSingleCoil
    | WriteSingleRegister
    | ReadExceptionStatusResponse
    | Diagnostics
    | CommEventCounterResponse
    | CommEventLogResponse
    | WriteMultipleResponse
    | ReportServerIdResponse
    | MaskWriteRegister
    | DeviceIdentificationResponse
    | ExceptionResponse
)
