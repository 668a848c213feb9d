"""A client write as data: which function codes write, what a write request touches, the event a write to a
subscribed point makes (`WriteEvent`), and the events log's JSON-able records of writes and events. Sans-I/O.

`hooks.py` keeps the subscriptions that make the events, and re-exports every name here.
"""

import math
import struct
from dataclasses import dataclass
from typing import Final

from modbusd.model.names import Table
from modbusd.model.values import Value, ValueType
from modbusd.protocol.bits import unpack_bits
from modbusd.protocol.codes import ExceptionCode, FunctionCode
from modbusd.protocol.errors import ModbusError
from modbusd.protocol.pdu import (
    MaskWriteRegister,
    ReadWriteMultipleRegisters,
    WriteMultipleCoils,
    WriteMultipleRegisters,
    WriteSingleCoil,
    WriteSingleRegister,
    decode_request,
)

# ----------------------------------------------------------------------------------------------- writes

WRITE_FUNCTIONS: Final = frozenset(
    int(f) for f in (FunctionCode.WRITE_SINGLE_COIL, FunctionCode.WRITE_SINGLE_REGISTER,
                     FunctionCode.WRITE_MULTIPLE_COILS, FunctionCode.WRITE_MULTIPLE_REGISTERS,
                     FunctionCode.MASK_WRITE_REGISTER, FunctionCode.READ_WRITE_MULTIPLE_REGISTERS)
)  # fmt: skip
_PAIR: Final = struct.Struct(">HH")


def written_range(pdu: bytes) -> tuple[Table, int, int] | None:
    """(table, address, quantity) that a write request would change, read straight from its bytes.

    None for a request that writes nothing or is too short to say; whether the write is valid is the handler's
    business (an invalid one is answered with an exception and changes nothing).
    """
    function = pdu[0]
    if function == FunctionCode.READ_WRITE_MULTIPLE_REGISTERS:
        if len(pdu) < 9:
            return None
        address, quantity = _PAIR.unpack_from(pdu, 5)
        return Table.HOLDING_REGISTERS, address, quantity
    if len(pdu) < 5:
        return None
    address, quantity = _PAIR.unpack_from(pdu, 1)
    if function in (FunctionCode.WRITE_SINGLE_REGISTER, FunctionCode.MASK_WRITE_REGISTER):
        return Table.HOLDING_REGISTERS, address, 1
    if function == FunctionCode.WRITE_MULTIPLE_REGISTERS:
        return Table.HOLDING_REGISTERS, address, quantity
    if function == FunctionCode.WRITE_SINGLE_COIL:
        return Table.COILS, address, 1
    if function == FunctionCode.WRITE_MULTIPLE_COILS:
        return Table.COILS, address, quantity
    return None


# ------------------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class WriteEvent:
    """A client wrote a subscribed point. `value` and `previous` are decoded as the subscription's type.

    One event per point the write touched, even when the value did not change (as HSYCO's). All the events of one
    request share `request_id`. `time` is the wall-clock time (seconds since the epoch) the write was applied.
    `by` "state": no client wrote, the state file put back the value of a write it could not store (`hub.py`).
    """

    name: str
    value: Value
    previous: Value
    client: str
    time: float
    request_id: int
    unit_id: int
    table: Table
    address: int
    bit: int | None
    type: ValueType
    function: int
    role: str | None = None  # the client certificate's role over Modbus/TCP Security; None elsewhere
    endpoint: str | None = None  # the endpoint whose device was written (`modbusd.endpoints`); None: the default one
    by: str = "tables"  # or "state": the events log's words for who did it


# ------------------------------------------------------------------------------------- events log records


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    return value


def _written_values(pdu: bytes) -> tuple[int | None, int | None, object]:
    """(address, quantity, values) of a write request as the log shows them; Nones for a malformed one."""
    try:
        request = decode_request(pdu)
    except ModbusError:
        found = written_range(pdu)
        return (found[1], found[2], None) if found else (None, None, None)
    match request:
        case WriteSingleCoil():
            return request.address, 1, request.value
        case WriteSingleRegister():
            return request.address, 1, request.value
        case WriteMultipleCoils():
            return request.address, request.quantity, [bool(b) for b in unpack_bits(request.values, request.quantity)]
        case WriteMultipleRegisters():
            return request.address, len(request.values) // 2, list(struct.unpack(f">{len(request.values) // 2}H",
                                                                                   request.values))  # fmt: skip
        case MaskWriteRegister():
            return request.address, 1, {"and_mask": request.and_mask, "or_mask": request.or_mask}
        case ReadWriteMultipleRegisters():
            count = len(request.values) // 2
            return request.write_address, count, list(struct.unpack(f">{count}H", request.values))
    return None, None, None  # pragma: no cover - only write function codes come here


def outcome(response: bytes | None) -> dict[str, object]:
    """How a request was answered, for the log: ok, an exception (with its code and name), or no response."""
    if response is None:
        return {"outcome": "no response"}
    if response[0] & 0x80:
        code = response[1] if len(response) > 1 else 0
        try:
            name = ExceptionCode(code).name
        except ValueError:
            name = "?"
        return {"outcome": "exception", "exception": code, "exception_name": name}
    return {"outcome": "ok"}


def write_record(
    pdu: bytes, response: bytes | None, *, time: float, client: str, unit_id: int, request_id: int,
    broadcast: bool = False, by: str = "tables", role: str | None = None, endpoint: str | None = None,
) -> dict[str, object]:  # fmt: skip
    """One client write as one JSON-able record of the events log. `by`: "tables" or "hook" (it answered);
    `role`: the client certificate's role (Modbus/TCP Security), left out when there is none; `endpoint`: the
    endpoint it reached (a key only when not the default one)."""
    address, quantity, values = _written_values(pdu)
    record: dict[str, object] = {
        "time": time, "kind": "write", "request_id": request_id, "client": client, "unit": unit_id,
        "function": pdu[0], "address": address, "quantity": quantity, "values": values,
    }  # fmt: skip
    if endpoint is not None:
        record["endpoint"] = endpoint
    if broadcast:
        record["broadcast"] = True
    if role is not None:
        record["role"] = role
    if by != "tables":
        record["by"] = by
    record.update(outcome(response))
    return record


def event_record(event: WriteEvent) -> dict[str, object]:
    """One event as one JSON-able record of the events log (its time as seconds since the epoch)."""
    record: dict[str, object] = {
        "time": event.time, "kind": "event", "request_id": event.request_id, "client": event.client, "name": event.name,
        "type": str(event.type), "value": _json_value(event.value), "previous": _json_value(event.previous),
    }  # fmt: skip
    if event.role is not None:
        record["role"] = event.role
    if event.endpoint is not None:
        record["endpoint"] = event.endpoint
    if event.by != "tables":
        record["by"] = event.by
    return record
