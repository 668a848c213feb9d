"""The fast path: every common Modbus/TCP request of one read answered in one loop, without the message objects.

A client that waits for each answer sends one frame per read; a pipelining one sends many. Either way most requests
are FC01-04 reads and FC06/FC16 writes, well-formed, within a dense table, and for them `respond` (handler.py)
builds message objects and moves counters one request at a time. `batch_for` binds what a device's tables are once
per transport, so that a read costs one call: the setup that used to be paid per read (tables, buffers, their
sizes) is paid once. It mirrors `MbapFramer.feed` + `handler.respond` + `MbapFramer.frame` for those requests only,
and a property test (tests/test_fast_path.py) holds it to that reference path's bytes, errors and counters.
Measured in docs/performance.md.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Container
from typing import Final

from modbusd.model import diagnostics as diag
from modbusd.model.device import Device
from modbusd.protocol.codes import MAX_EVENT_LOG, MAX_READ_BITS, MAX_READ_REGISTERS, MAX_WRITE_REGISTERS

Batch = Callable[[bytes], tuple[bytes | bytearray, int, int]]
"""An MBAP stream's bytes → (the framed responses of the requests it took, the bytes they used, how many)."""

_FRAME_HEAD: Final = struct.Struct(">HHHBBHH")  # MBAP header, function code, address, quantity (or FC06's value)
_READ_HEAD: Final = struct.Struct(">HHHBBB")  # a read response's MBAP header, function code and byte count
_WRITE_ECHO: Final = struct.Struct(">HHHBBHH")  # FC16's response: MBAP header, function code, address, quantity
_PAIR: Final = (diag.RECEIVE_EVENT, diag.SEND_EVENT)  # what `respond` logs for one request answered normally


def batch_for(device: Device, ok: list[int], slow: Container[int]) -> Batch:
    """Answer the leading common requests of an MBAP stream for `device`: (their framed responses, the bytes of the
    stream they took, how many they were).

    It stops at the first frame it does not take (any other function, a function code in `slow`, an error to
    answer, a partial frame, protocol id ≠ 0) and leaves it and the rest to the reference path; it takes nothing
    while the device is in listen-only mode, has a guard or an address register, or its holding registers are
    journaled (those are checked on every call: FC08 and the server change them). The counters `respond` moves per
    request are moved once for all, and `ok[function]` counts each request answered (the session's
    `RequestCounts.ok`). The tables' storage is bound here: a table never replaces its buffer.
    """
    holding, inputs = device.holding_registers, device.input_registers
    coils, discrete = device.coils, device.discrete_inputs
    words, writable = holding.buffer, holding.dense_end  # dense_end: 0 when sparse, for the reference path's checks
    registers = (None, None, None, (words, writable), (inputs.buffer, inputs.dense_end))  # by function code
    unpack, read_head, write_echo = _FRAME_HEAD.unpack_from, _READ_HEAD.pack, _WRITE_ECHO.pack

    def batch(data: bytes) -> tuple[bytes | bytearray, int, int]:
        d = device.diagnostics
        if (
            d.listen_only
            or device.guard is not None
            or device.address_register is not None
            or holding.journal is not None
        ):
            return b"", 0, 0
        out = bytearray()
        size = len(data)
        pos = answered = 0
        while size - pos >= 12:
            tid, proto, length, unit, function, address, quantity = unpack(data, pos)
            if proto or function in slow:
                break
            end = address + quantity
            if length == 6 and (function == 3 or function == 4):  # noqa: PLR1714  (faster than a tuple lookup)
                buffer, dense_end = registers[function]  # type: ignore[misc]  # FC03, FC04: a table's
                if not 1 <= quantity <= MAX_READ_REGISTERS or end > dense_end:  # as in read_registers_fast
                    break
                count = 2 * quantity
                out += read_head(tid, 0, 3 + count, unit, function, count)
                out += buffer[2 * address : 2 * end]
            elif length == 6 and (function == 1 or function == 2):  # noqa: PLR1714  (as above)
                bits = coils if function == 1 else discrete
                if not 1 <= quantity <= MAX_READ_BITS or end > bits.size or bits.sparse:
                    break
                try:
                    packed = bits.read_packed(address, quantity)
                except Exception:  # a bug of ours: the reference path answers it with exception 04 and logs it
                    break
                out += read_head(tid, 0, 3 + len(packed), unit, function, len(packed))
                out += packed
            elif length == 6 and function == 6:  # §6.6: the response echoes the request
                if address >= writable:
                    break
                words[2 * address : 2 * address + 2] = data[pos + 10 : pos + 12]
                out += data[pos : pos + 12]
            elif function == 16 and length == 7 + 2 * quantity and 1 <= quantity <= MAX_WRITE_REGISTERS:
                if pos + 6 + length > size or data[pos + 12] != 2 * quantity or end > writable:
                    break
                words[2 * address : 2 * end] = data[pos + 13 : pos + 6 + length]
                out += write_echo(tid, 0, 6, unit, 16, address, quantity)
            else:
                break
            ok[function] += 1
            answered += 1
            pos += 6 + length
        if answered:
            d.bus_message += answered
            d.server_message += answered
            d.event_count += answered  # none of these functions is a poll (§6.9)
            d.events.extendleft(_PAIR if answered == 1 else _PAIR * min(answered, MAX_EVENT_LOG))  # newest first
        return out, pos, answered

    return batch
