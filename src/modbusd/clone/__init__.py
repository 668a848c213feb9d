"""`modbusd clone`: read a real device, modbusd as its client, into a `Device` that answers as it does.

`probe.py` decides what to read next from what the device answered (sans I/O); `reader.py` asks the device through
the gateway's downstream side (`forward.py`); `config.writer` turns the copy into a device file.
"""

import re
from collections.abc import Callable, Mapping, Sequence

from modbusd.clone.reader import CloneError, CloneSettings, DeviceReader
from modbusd.forward import Downstream, SerialDownstream, TcpDownstream
from modbusd.model.device import Device
from modbusd.model.names import Table
from modbusd.protocol.codes import ADDRESS_SPACE
from modbusd.protocol.serial_line import SerialLine
from modbusd.routing import TcpTarget

Ranges = Mapping[Table, Sequence[tuple[int, int]]]

_RANGE = re.compile(r"\s*([a-z]{2})\s*:\s*(\w+)\s*(?:-\s*(\w+))?\s*", re.IGNORECASE)


def parse_ranges(text: str) -> dict[Table, list[tuple[int, int]]]:
    """``hr:0-999,co:0-99,ir:0x100`` → {Table: [(first, last)]}, protocol addresses; ValueError saying what is wrong."""
    found: dict[Table, list[tuple[int, int]]] = {}
    for part in text.split(","):
        match = _RANGE.fullmatch(part)
        if not match:
            raise ValueError(f"{part.strip()!r} is not TABLE:FIRST[-LAST], such as hr:0-999 (tables co, di, ir, hr)")
        try:
            table = Table.from_suffix(match.group(1))
            first = int(match.group(2), 0)
            last = int(match.group(3), 0) if match.group(3) else first
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not TABLE:FIRST[-LAST], such as hr:0-999 (tables co, di, ir, hr; "
                             "addresses 0..65535)") from None  # fmt: skip
        if not 0 <= first <= last < ADDRESS_SPACE:
            raise ValueError(f"{part.strip()!r}: addresses run from 0 to 65535, the first no greater than the last")
        ranges = found.setdefault(table, [])
        if any(first <= b and a <= last for a, b in ranges):
            raise ValueError(f"{part.strip()!r} overlaps another range of the same table")
        ranges.append((first, last))
    return {table: sorted(found[table]) for table in Table if table in found}


def downstream(target: SerialLine | TcpTarget, timeout: float) -> Downstream:
    if isinstance(target, TcpTarget):
        return TcpDownstream(target.host, target.port, timeout=timeout, queue_limit=0)
    return SerialDownstream(target.device, framing=target.framing, baudrate=target.baudrate,
                            bytesize=target.bytesize, parity=target.parity, stopbits=target.effective_stopbits,
                            timeout=timeout, queue_limit=0)  # fmt: skip


async def clone(target: SerialLine | TcpTarget, settings: CloneSettings, progress: Callable[[str], None], *,
                timeout: float = 1.0) -> Device:  # fmt: skip
    """A Device that answers as the device at `target` does, within `settings.ranges`; CloneError if it cannot."""
    link = downstream(target, timeout)
    await link.start()
    try:
        return await DeviceReader(link, settings, progress).read()
    finally:
        await link.stop()


__all__ = ["CloneError", "CloneSettings", "Ranges", "clone", "downstream", "parse_ranges"]
