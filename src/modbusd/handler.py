"""Modbus semantics: what each request does to a device, and the counters every request moves.

`respond` is the one place where a request PDU becomes a response PDU and where errors become exception
responses. It imports the protocol and the model only; who sent the request is the session's business.
"""

import logging
import struct
from typing import Final

from modbusd.model import diagnostics as diag
from modbusd.model.device import Device
from modbusd.model.identification import BASIC_LAST, EXTENDED_LAST, REGULAR_LAST
from modbusd.protocol.codes import (
    COIL_OFF,
    COIL_ON,
    MAX_PDU,
    MAX_READ_REGISTERS,
    MAX_UNIT_ID,
    MIN_UNIT_ID,
    DeviceIdCode,
    DiagnosticSubFunction,
    ExceptionCode,
    FunctionCode,
)
from modbusd.protocol.errors import IllegalDataAddress, IllegalDataValue, IllegalFunction, ModbusError
from modbusd.protocol.pdu import (
    CommEventCounterResponse,
    CommEventLogResponse,
    DeviceIdentificationResponse,
    Diagnostics,
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
    decode_request,
    encode_response,
    exception_pdu,
)

log = logging.getLogger(__name__)

_READ_REGISTERS: Final = FunctionCode.READ_HOLDING_REGISTERS
_POLLS: Final = frozenset((int(FunctionCode.GET_COMM_EVENT_COUNTER), int(FunctionCode.GET_COMM_EVENT_LOG)))
_DIAGNOSTICS: Final = int(FunctionCode.DIAGNOSTICS)
_RECEIVED: Final = (diag.RECEIVE_EVENT, diag.RECEIVE_EVENT | diag.RECEIVE_BROADCAST)  # indexed by `broadcast`
_RESTART: Final = bytes((FunctionCode.DIAGNOSTICS, 0x00, DiagnosticSubFunction.RESTART_COMMUNICATIONS_OPTION))
_ADDRESS_QUANTITY: Final = struct.Struct(">HH")
_DEVICE_ID_HEADER: Final = 7  # FC, MEI type, code, conformity level, more follows, next object id, count


class _NoResponse(Exception):
    """Raised by requests that the specification answers with silence (FC08/04, FC08/01 in listen-only)."""


def execute(request: Request, device: Device) -> Response:
    """Carry out `request` on `device`. Raises ModbusError for the client's mistakes."""
    match request:
        case ReadRegisters():
            table = device.holding_registers if request.function == _READ_REGISTERS else device.input_registers
            return ReadRegistersResponse(request.function, table.read(request.address, request.quantity))
        case ReadBits():
            table = device.coils if request.function == FunctionCode.READ_COILS else device.discrete_inputs
            return ReadBitsResponse(request.function, table.read_packed(request.address, request.quantity))
        case WriteSingleCoil():
            device.coils.write_packed(request.address, 1, b"\x01" if request.value else b"\x00")
            return request
        case WriteSingleRegister():
            if device.address_register is not None:
                _check_address_value(device, request.address, request.value.to_bytes(2, "big"))
            device.holding_registers.write(request.address, request.value.to_bytes(2, "big"))
            return request
        case WriteMultipleCoils():
            device.coils.write_packed(request.address, request.quantity, request.values)
            return WriteMultipleResponse(request.function, request.address, request.quantity)
        case WriteMultipleRegisters():
            if device.address_register is not None:
                _check_address_value(device, request.address, request.values)
            device.holding_registers.write(request.address, request.values)
            return WriteMultipleResponse(request.function, request.address, request.quantity)
        case MaskWriteRegister():
            device.holding_registers.mask_write(request.address, request.and_mask, request.or_mask)
            return request
        case ReadWriteMultipleRegisters():
            table = device.holding_registers
            table.check(request.read_address, request.read_quantity)  # §6.17: both ranges valid before any write
            table.write(request.write_address, request.values)
            return ReadRegistersResponse(request.function, table.read(request.read_address, request.read_quantity))
        case ReadExceptionStatus():
            return ReadExceptionStatusResponse(device.exception_status & 0xFF)
        case Diagnostics():
            return _diagnostics(request, device)
        case GetCommEventCounter():
            return CommEventCounterResponse(0, device.diagnostics.event_count & 0xFFFF)
        case GetCommEventLog():
            d = device.diagnostics
            return CommEventLogResponse(0, d.event_count & 0xFFFF, d.bus_message & 0xFFFF, bytes(d.events))
        case ReportServerId():
            return ReportServerIdResponse(device.server_id, device.running, device.additional_data)
        case ReadDeviceIdentification():
            return _device_identification(request, device)
    raise IllegalFunction(f"no handler for {request!r}")  # pragma: no cover - decode_request admits no other


def _check_address_value(device: Device, address: int, values: bytes) -> None:
    """A write covering the address register must leave a serial unit id there (1..247, Serial Line §2.2)."""
    offset = 2 * (device.address_register - address)  # type: ignore[operator]  # checked by the caller
    if 0 <= offset < len(values) and not MIN_UNIT_ID <= int.from_bytes(values[offset : offset + 2]) <= MAX_UNIT_ID:
        raise IllegalDataValue(f"unit id {int.from_bytes(values[offset : offset + 2])} outside 1..247")


def address_written(pdu: bytes, register: int) -> int | None:
    """The value an FC06 or FC16 request `pdu` writes into holding register `register`, None if it writes none."""
    if len(pdu) == 5 and pdu[0] == FunctionCode.WRITE_SINGLE_REGISTER:
        address, value = _ADDRESS_QUANTITY.unpack_from(pdu, 1)
        return value if address == register else None
    if len(pdu) >= 6 and pdu[0] == FunctionCode.WRITE_MULTIPLE_REGISTERS:
        address, quantity = _ADDRESS_QUANTITY.unpack_from(pdu, 1)
        offset = 6 + 2 * (register - address)
        if address <= register < address + quantity and offset + 2 <= len(pdu):
            return int.from_bytes(pdu[offset : offset + 2])
    return None


_COUNTERS: Final = {
    DiagnosticSubFunction.RETURN_BUS_MESSAGE_COUNT: "bus_message",
    DiagnosticSubFunction.RETURN_BUS_COMMUNICATION_ERROR_COUNT: "bus_communication_error",
    DiagnosticSubFunction.RETURN_BUS_EXCEPTION_ERROR_COUNT: "bus_exception_error",
    DiagnosticSubFunction.RETURN_SERVER_MESSAGE_COUNT: "server_message",
    DiagnosticSubFunction.RETURN_SERVER_NO_RESPONSE_COUNT: "server_no_response",
    DiagnosticSubFunction.RETURN_SERVER_NAK_COUNT: "server_nak",
    DiagnosticSubFunction.RETURN_SERVER_BUSY_COUNT: "server_busy",
    DiagnosticSubFunction.RETURN_BUS_CHARACTER_OVERRUN_COUNT: "bus_character_overrun",
    DiagnosticSubFunction.RETURN_DIAGNOSTIC_REGISTER: "diagnostic_register",
}


def _diagnostics(request: Diagnostics, device: Device) -> Diagnostics:
    """FC08 (§6.8.1). Every sub-function but 00 carries two data bytes, checked by decode_request."""
    d = device.diagnostics
    sub, data = request.sub_function, request.data
    value = int.from_bytes(data, "big") if len(data) == 2 else 0
    if sub == DiagnosticSubFunction.RETURN_QUERY_DATA:
        return request
    if sub == DiagnosticSubFunction.RESTART_COMMUNICATIONS_OPTION:
        if value not in (COIL_OFF, COIL_ON):
            raise IllegalDataValue(f"restart option 0x{value:04X} is neither 0x0000 nor 0xFF00")
        return request  # §6.8.1: the response goes out before the restart, which `respond` performs last
    if sub == DiagnosticSubFunction.CHANGE_ASCII_INPUT_DELIMITER:
        if data[1] != 0:
            raise IllegalDataValue("the new ASCII delimiter must be followed by 0x00")
        d.ascii_delimiter = data[0]
        return request
    if sub == DiagnosticSubFunction.FORCE_LISTEN_ONLY_MODE and d.refuse_listen_only:
        # 01 before 03, as in every §6 state diagram: the sub-function is not offered to this client at all
        raise IllegalFunction("Force Listen Only Mode is refused here (--no-listen-only)")
    if value != 0:
        raise IllegalDataValue(f"diagnostics sub-function {sub} needs data 0x0000, got 0x{value:04X}")
    if sub == DiagnosticSubFunction.FORCE_LISTEN_ONLY_MODE:
        d.listen_only = True
        d.log_event(diag.ENTERED_LISTEN_ONLY)
        raise _NoResponse
    if sub == DiagnosticSubFunction.CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER:
        d.clear_counters()
        return request
    if sub == DiagnosticSubFunction.CLEAR_OVERRUN_COUNTER_AND_FLAG:
        d.bus_character_overrun = 0
        return request
    counter = getattr(d, _COUNTERS[DiagnosticSubFunction(sub)])
    return Diagnostics(sub, (counter & 0xFFFF).to_bytes(2, "big"))


_RESTART_OPTIONS: Final = {b"\x00\x00": False, b"\xff\x00": True}  # data → clear the event log too


def _restart_if_asked(device: Device, pdu: bytes) -> None:
    """FC08/01 (§6.8.1): leave listen-only mode and clear the counters, after the response is accounted for."""
    clear_log = _RESTART_OPTIONS.get(pdu[3:])
    if pdu[:3] != _RESTART or clear_log is None:
        return
    d = device.diagnostics
    d.clear_counters()
    d.listen_only = False
    if clear_log:
        d.events.clear()
    d.log_event(diag.COMMUNICATION_RESTART)


_STREAM_LAST: Final = {DeviceIdCode.BASIC: BASIC_LAST, DeviceIdCode.REGULAR: REGULAR_LAST,
                       DeviceIdCode.EXTENDED: EXTENDED_LAST}  # fmt: skip


def _device_identification(request: ReadDeviceIdentification, device: Device) -> DeviceIdentificationResponse:
    """FC43/14 (§6.21): stream access by category, or one object; as many whole objects as fit one PDU."""
    objects = device.identification
    level = objects.conformity_level
    if request.code == DeviceIdCode.INDIVIDUAL:
        if request.object_id not in objects:
            raise IllegalDataAddress(f"no identification object 0x{request.object_id:02X}")
        return DeviceIdentificationResponse(
            request.code, level, False, 0, ((request.object_id, objects[request.object_id]),)
        )
    last = _STREAM_LAST[DeviceIdCode(request.code)]
    start = request.object_id
    if start > last or start not in objects:
        start = 0  # §6.21: an unknown object id in stream access restarts the stream at the beginning
    chosen: list[tuple[int, bytes]] = []
    room = MAX_PDU - _DEVICE_ID_HEADER
    for object_id in objects:
        if object_id < start or object_id > last:
            continue
        value = objects[object_id]
        if 2 + len(value) > room:
            return DeviceIdentificationResponse(request.code, level, True, object_id, tuple(chosen))
        chosen.append((object_id, value))
        room -= 2 + len(value)
    return DeviceIdentificationResponse(request.code, level, False, 0, tuple(chosen))


def read_registers_fast(device: Device, pdu: bytes) -> bytes | None:
    """FC03/FC04 straight from the table's buffer, or None to take the general path.

    Reads of a few registers are what most clients send most of the time; skipping the message objects
    here saves about half of the server's own time per request. It answers only well-formed, in-range
    reads, so every error still comes from the general path; a property test holds both to the same bytes.
    """
    function = pdu[0]
    if (function == 3 or function == 4) and len(pdu) == 5:  # noqa: PLR1714  (faster than a tuple lookup)
        address, quantity = _ADDRESS_QUANTITY.unpack_from(pdu, 1)
        table = device.holding_registers if function == 3 else device.input_registers
        end = address + quantity
        # dense_end: the size of a dense table, 0 for a sparse one (whose gaps only the general path checks)
        if 1 <= quantity <= MAX_READ_REGISTERS and end <= table.dense_end:  # so the slice needs no more checks
            return bytes((function, 2 * quantity)) + table.buffer[2 * address : 2 * end]
    return None


def _send_event(code: int) -> int:
    if code <= ExceptionCode.ILLEGAL_DATA_VALUE:
        return diag.SEND_EVENT | diag.SEND_READ_EXCEPTION
    if code == ExceptionCode.SERVER_DEVICE_FAILURE:
        return diag.SEND_EVENT | diag.SEND_SERVER_ABORT_EXCEPTION
    if code in (ExceptionCode.ACKNOWLEDGE, ExceptionCode.SERVER_DEVICE_BUSY):
        return diag.SEND_EVENT | diag.SEND_BUSY_EXCEPTION
    if code == ExceptionCode.NEGATIVE_ACKNOWLEDGE:
        return diag.SEND_EVENT | diag.SEND_NAK_EXCEPTION
    return diag.SEND_EVENT


def record_exception(device: Device, code: int) -> None:
    """Count an exception response sent on the device's behalf (also used for one built outside `respond`)."""
    d = device.diagnostics
    d.bus_exception_error += 1
    if code == ExceptionCode.SERVER_DEVICE_BUSY:
        d.server_busy += 1
    elif code == ExceptionCode.NEGATIVE_ACKNOWLEDGE:
        d.server_nak += 1
    d.log_event(_send_event(code))


def refused_after_all(device: Device, code: int) -> None:
    """A response `respond` counted as a success, replaced by exception `code` before it was sent (a write that
    the state file could not store, so undone): §6.9's event counter takes the success back, and the exception is
    counted (FC08/0D) and logged (FC12) as any other. The FC12 log keeps the success's send event before it."""
    device.diagnostics.event_count -= 1
    record_exception(device, code)


def respond(device: Device, pdu: bytes, *, broadcast: bool = False, answer_broadcast: bool = False) -> bytes | None:
    """Request PDU → response PDU, or None where the specification wants silence.

    Moves the FC08/FC11/FC12 counters and event log: every message counts as a bus message; in listen-only
    mode only FC08/01 is acted on; broadcasts are executed and never answered. `answer_broadcast`: return
    the response a broadcast would have had (counted as unanswered all the same), for the server's events and
    log, which need to know whether the write was carried out; None still means it was not acted on.
    """
    if not pdu:
        return None  # no function code to answer with; MBAP's minimum length keeps this off TCP anyway
    d = device.diagnostics
    d.bus_message += 1
    if d.listen_only:
        d.log_event(diag.RECEIVE_EVENT | diag.RECEIVE_IN_LISTEN_ONLY | (diag.RECEIVE_BROADCAST if broadcast else 0))
        d.server_no_response += 1
        _restart_if_asked(device, pdu)  # the one request acted on in listen-only mode, and not answered
        return None
    d.server_message += 1
    events = d.events
    events.appendleft(_RECEIVED[broadcast])  # appendleft: newest first, as FC12 reports them
    try:
        guard = device.guard
        if guard is not None:  # read-only ranges (modbusd.authorize): refused before anything is done
            guard(pdu)
        response = read_registers_fast(device, pdu) or encode_response(execute(decode_request(pdu), device))
    except ModbusError as exc:
        response = exception_pdu(pdu[0], exc.code)
        record_exception(device, exc.code)
    except _NoResponse:
        d.server_no_response += 1
        return None
    except Exception:  # our bug, not the client's: exception 4, one traceback, and everything goes on
        log.exception("failed on request %s", pdu.hex(" "))
        response = exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)
        record_exception(device, ExceptionCode.SERVER_DEVICE_FAILURE)
    else:
        function = pdu[0]
        if function not in _POLLS:
            d.event_count += 1  # §6.9: successful completions only, not the polls themselves
        events.appendleft(diag.SEND_EVENT)
        if function == _DIAGNOSTICS:
            _restart_if_asked(device, pdu)
    if broadcast:
        d.server_no_response += 1
        return response if answer_broadcast else None
    return response


def refuse(device: Device, pdu: bytes, code: ExceptionCode) -> bytes | None:
    """Answer `pdu` with exception `code` decided outside the device (e.g. a unit id taken by another device),
    moving the counters as `respond` would for the same exception."""
    d = device.diagnostics
    if d.listen_only:
        return respond(device, pdu)  # not acted on, not answered: respond does the counting
    d.bus_message += 1
    d.server_message += 1
    d.events.appendleft(diag.RECEIVE_EVENT)
    record_exception(device, code)
    return exception_pdu(pdu[0], code)


def discarded(device: Device) -> None:
    """A frame that reached the device but could not be acted on (e.g. MBAP protocol id ≠ 0)."""
    d = device.diagnostics
    d.bus_message += 1
    d.bus_communication_error += 1
    d.log_event(diag.RECEIVE_EVENT | diag.RECEIVE_COMMUNICATION_ERROR)
