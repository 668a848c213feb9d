"""Reading a real device into a `Device` that answers as it does: modbusd as the client.

The requests go out through the gateway's downstream side (`forward.py`: one connection or serial port, one
transaction at a time, time-outs, RTU frame spacing), at most `rate` per second so that a device in service is
not flooded. What to read next in each table is `probe.py`'s to say. The device's answers decide:
- a read answered is readable; exception 02, 03 or 04 (§7) makes it unreadable, and the probe narrows it down;
- exception 01 to a table's function: the device has no such table, and the copy's is empty (exception 02);
- exception 05 or 06, or no answer: the same request again, a few times, then the clone fails;
- FC43 (§6.21) and FC17 (§6.13) answered with an exception: the copy keeps modbusd's own answer.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from modbusd.clone.probe import TableProbe, run_text, split_report
from modbusd.forward import Downstream
from modbusd.model.device import Device
from modbusd.model.names import Table
from modbusd.protocol.bits import unpack_bits
from modbusd.protocol.codes import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    DeviceIdCode,
    ExceptionCode,
    FunctionCode,
)
from modbusd.protocol.errors import GatewayPathUnavailable, GatewayTargetDeviceFailedToRespond
from modbusd.protocol.pdu import (
    DeviceIdentificationResponse,
    ExceptionResponse,
    ReadBits,
    ReadBitsResponse,
    ReadDeviceIdentification,
    ReadRegisters,
    ReadRegistersResponse,
    ReportServerId,
    decode_response,
    encode_request,
    registers,
)

log = logging.getLogger(__name__)

READS: Final = {
    Table.COILS: (FunctionCode.READ_COILS, MAX_READ_BITS),
    Table.DISCRETE_INPUTS: (FunctionCode.READ_DISCRETE_INPUTS, MAX_READ_BITS),
    Table.INPUT_REGISTERS: (FunctionCode.READ_INPUT_REGISTERS, MAX_READ_REGISTERS),
    Table.HOLDING_REGISTERS: (FunctionCode.READ_HOLDING_REGISTERS, MAX_READ_REGISTERS),
}  # the function that reads each table, and the most it reads at once (§6.1–6.4)
UNREADABLE: Final = (ExceptionCode.ILLEGAL_DATA_ADDRESS, ExceptionCode.ILLEGAL_DATA_VALUE,
                     ExceptionCode.SERVER_DEVICE_FAILURE)  # fmt: skip
AGAIN: Final = (ExceptionCode.ACKNOWLEDGE, ExceptionCode.SERVER_DEVICE_BUSY)
TRIES: Final = 3  # a request not answered (or answered busy) is sent this many times before the clone fails
BUSY_PAUSE: Final = 0.5  # seconds before asking a busy device again
MAX_OBJECT_REQUESTS: Final = 256  # FC43 "more follows" is followed at most this often: one per object id
DEFAULT_STRIDE: Final = 16
DEFAULT_RATE: Final = 50.0  # requests a second: a fraction of what a serial line at 19200 baud carries
DEFAULT_RANGES: Final = (0, 9998)  # the five-digit numbers 00001..09999, 10001.., 30001.., 40001..49999


class CloneError(Exception):
    """The device cannot be read: unreachable, silent, or answering what no Modbus device may."""


@dataclass(frozen=True, slots=True)
class CloneSettings:
    unit_id: int = 1
    ranges: Mapping[Table, Sequence[tuple[int, int]]] = field(
        default_factory=lambda: {table: [DEFAULT_RANGES] for table in Table}
    )  # the probe's ranges per table, (first, last) protocol addresses; a table not named is not read
    stride: int = DEFAULT_STRIDE  # an unreadable stretch is sampled every `stride` addresses (`probe.py`)
    rate: float = DEFAULT_RATE  # requests per second at most; 0: no limit


class DeviceReader:
    """One device behind `downstream`, read with at most `rate` requests a second."""

    def __init__(self, downstream: Downstream, settings: CloneSettings, progress: Callable[[str], None]) -> None:
        self.downstream = downstream
        self.settings = settings
        self.progress = progress
        self.requests = 0
        self._next_start = 0.0  # loop time before which no request may go out

    async def read(self) -> Device:
        """The copy: tables, FC43 objects and FC17 answer as read."""
        found = {table: await self.table(table) for table in Table if table in self.settings.ranges}
        objects = await self.identification()
        report = await self.report()
        sizes: dict[str, int] = {}
        addresses: dict[str, list[int]] = {}
        for table in Table:
            values = found.get(table, {})
            sizes[table.value] = max(values, default=-1) + 1
            if len(values) != sizes[table.value]:  # holes: a sparse table, implementing what was read
                addresses[table.value] = sorted(values)
        device = Device(**sizes, addresses=addresses, identification=objects)  # type: ignore[arg-type]  # sizes: ints
        if report is not None:
            device.additional_data = report[2]
            device.server_id, device.running = report[0], report[1]
        for table, values in found.items():
            target = getattr(device, table.value)
            for address, value in values.items():
                target[address] = bool(value) if table.is_bits else value
        return device

    async def table(self, table: Table) -> dict[int, int]:
        function, block = READS[table]
        probe = TableProbe(self.settings.ranges[table], block, self.settings.stride)
        while (read := probe.next()) is not None:
            address, quantity = read
            request = ReadBits(function, address, quantity) if table.is_bits else ReadRegisters(
                function, address, quantity)  # fmt: skip
            answer = await self.request(encode_request(request))
            if isinstance(answer, ExceptionResponse):
                if answer.code == ExceptionCode.ILLEGAL_FUNCTION:
                    self.progress(f"{table.value.replace('_', ' ')}: none (the device refuses FC{function:02d})")
                    return {}
                if answer.code not in UNREADABLE:
                    raise CloneError(f"unit {self.settings.unit_id} answered a read of {table.label}s "
                                     f"{address}..{address + quantity - 1} with exception {answer.code}")  # fmt: skip
                probe.answer(None)
            elif isinstance(answer, ReadBitsResponse | ReadRegistersResponse) and answer.function == function:
                probe.answer(self._values(answer, quantity, f"{table.label}s {address}..{address + quantity - 1}"))
            else:
                raise CloneError(f"unit {self.settings.unit_id} answered FC{function:02d} with {answer}")
        runs = probe.runs()
        summary = f"{len(probe.values)} readable ({run_text(runs)})" if runs else "none readable"
        self.progress(f"{table.value.replace('_', ' ')}: {summary}; {probe.requests} requests")
        return probe.values

    def _values(self, answer: ReadBitsResponse | ReadRegistersResponse, quantity: int, what: str) -> list[int]:
        if isinstance(answer, ReadBitsResponse):
            if len(answer.values) != (quantity + 7) // 8:
                raise CloneError(f"unit {self.settings.unit_id} answered {len(answer.values)} bytes for {what}")
            return list(unpack_bits(answer.values, quantity))
        if len(answer.values) != 2 * quantity:
            raise CloneError(f"unit {self.settings.unit_id} answered {len(answer.values) // 2} registers for {what}")
        return list(registers(answer.values))

    async def identification(self) -> dict[int, str | bytes] | None:
        """Every object of the highest category the device answers (its conformity level caps it, §6.21)."""
        objects: dict[int, str | bytes] = {}
        object_id = 0
        for _ in range(MAX_OBJECT_REQUESTS):
            request = ReadDeviceIdentification(DeviceIdCode.EXTENDED, object_id)
            answer = await self.request(encode_request(request))
            if not isinstance(answer, DeviceIdentificationResponse):
                break
            objects.update(answer.objects)
            if not answer.more_follows or answer.next_object_id <= object_id:
                break
            object_id = answer.next_object_id
        self.progress(f"identification (FC43): {len(objects)} objects" if objects else
                      "identification (FC43): not answered; the copy answers with modbusd's own")  # fmt: skip
        return objects or None

    async def report(self) -> tuple[bytes, bool, bytes] | None:
        answer = await self.request(encode_request(ReportServerId()), report=True)
        if isinstance(answer, bytes):
            try:
                found = split_report(answer)
            except ValueError as exc:
                self.progress(f"report server id (FC17): {exc}; the copy answers with modbusd's own")
                return None
            self.progress(f"report server id (FC17): {answer.hex(' ')}")
            return found
        self.progress("report server id (FC17): not answered; the copy answers with modbusd's own")
        return None

    async def request(self, pdu: bytes, *, report: bool = False) -> object:
        """The decoded answer (an FC17 answer's body as bytes); CloneError when there is none to be had."""
        loop = asyncio.get_running_loop()
        for attempt in range(TRIES):
            pause = self._next_start - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            if self.settings.rate > 0:
                self._next_start = loop.time() + 1 / self.settings.rate
            self.requests += 1
            try:
                reply = await self.downstream.forward(self.settings.unit_id, pdu)
            except GatewayPathUnavailable as exc:
                raise CloneError(str(exc)) from None
            except GatewayTargetDeviceFailedToRespond:
                log.debug("no answer to %s (try %d of %d)", pdu.hex(" "), attempt + 1, TRIES)
                continue
            if reply is None or len(reply) < 2:
                raise CloneError(f"unit {self.settings.unit_id} answered {pdu.hex(' ')} with {reply!r}")
            if reply[0] & 0x80 and reply[1] in AGAIN:
                await asyncio.sleep(BUSY_PAUSE)
                continue
            if report and reply[0] == FunctionCode.REPORT_SERVER_ID:
                return bytes(reply[2 : 2 + reply[1]])
            try:
                return decode_response(reply)
            except (ValueError, IndexError) as exc:
                raise CloneError(f"unit {self.settings.unit_id} answered {pdu.hex(' ')} with {reply.hex(' ')}, "
                                 f"which is not Modbus ({exc})") from None  # fmt: skip
        raise CloneError(f"{self.downstream}: no answer from unit {self.settings.unit_id} to {pdu.hex(' ')} "
                         f"after {TRIES} tries, {self.downstream.timeout:g} s each")  # fmt: skip
