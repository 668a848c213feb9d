"""The request log's words: one line for a request (function, address, quantity, the values it writes) and for
its answer (ok, exception N, or the values it read). Text for people, so only the log calls it, and only when its
level is on: the answer path never pays for it otherwise.
"""

from collections.abc import Sequence
from typing import Final

from modbusd.protocol.bits import unpack_bits
from modbusd.protocol.codes import FunctionCode
from modbusd.protocol.errors import IllegalDataValue, IllegalFunction
from modbusd.protocol.pdu import (
    ReadWriteMultipleRegisters,
    WriteMultipleCoils,
    WriteMultipleRegisters,
    decode_request,
    registers,
)

SHOWN_VALUES: Final = 8  # values shown in full; the rest are counted: [1, 2, … (+120)]

_SUMMARY_FIELDS: Final = ("sub_function", "code", "object_id", "address", "read_address", "read_quantity",
                          "write_address", "write_quantity", "quantity", "value", "and_mask", "or_mask")  # fmt: skip
_READ_BITS: Final = (FunctionCode.READ_COILS, FunctionCode.READ_DISCRETE_INPUTS)
_READ_REGISTERS: Final = (FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS,
                          FunctionCode.READ_WRITE_MULTIPLE_REGISTERS)  # fmt: skip


def summary(pdu: bytes) -> str:
    """One line for the request log: the function, the address, quantity or value it names, the values it writes.

    FC05, FC06 and FC22 name their value or masks as fields; FC15, FC16 and FC23 show their values, shortened.
    """
    try:
        request = decode_request(pdu)
    except (IllegalFunction, IllegalDataValue):
        return f"fc={pdu[0] if pdu else '-'} data={pdu[1:].hex()}"
    parts = [f"fc={pdu[0]}"]
    for name in _SUMMARY_FIELDS:
        value = getattr(request, name, None)
        if value is not None:
            parts.append(f"{name}={int(value)}")
    if isinstance(request, WriteMultipleCoils):
        parts.append(f"values={shortened(unpack_bits(request.values, request.quantity))}")
    elif isinstance(request, (WriteMultipleRegisters, ReadWriteMultipleRegisters)):
        parts.append(f"values={shortened(registers(request.values))}")
    return " ".join(parts)


def shortened(values: Sequence[int]) -> str:
    """`[1, 2, 3]`, or the first SHOWN_VALUES and a count of the rest: a 123-register write stays one short line."""
    shown = ", ".join(map(str, values[:SHOWN_VALUES]))
    more = len(values) - SHOWN_VALUES
    return f"[{shown}, … (+{more})]" if more > 0 else f"[{shown}]"


def outcome(reply: bytes | None, request: bytes | None = None) -> str:
    """ "ok", "exception N" or "no response"; given the `request`, a read's answer shows the values it read."""
    if reply is None:
        return "no response"
    if reply[0] & 0x80:
        return f"exception {reply[1]}"
    if request is not None and len(reply) >= 2:
        if reply[0] in _READ_BITS and len(request) >= 5:
            return f"ok values={shortened(unpack_bits(reply[2:], int.from_bytes(request[3:5], 'big')))}"
        if reply[0] in _READ_REGISTERS:
            return f"ok values={shortened(registers(reply[2:]))}"
    return "ok"
