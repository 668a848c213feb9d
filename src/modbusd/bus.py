"""The serial bus: the devices reached over serial lines and RTU over TCP, by slave id.

Serial Line semantics, whatever the port: each device has one slave id, requests for other ids are ignored (other
devices on the bus answer them), 0 is a broadcast every device carries out and none answers, an address change
(a new slave id written to its address register) is answered from the old id, and frames that fail their
check are counted on every device, never answered. The server builds one `Bus` (`make_bus`) and gives it to
every serial session; the writes it observes go through the events hub's `Write`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from modbusd import handler
from modbusd.model.device import Device
from modbusd.protocol.codes import BROADCAST_UNIT_ID, MAX_UNIT_ID, MIN_UNIT_ID, ExceptionCode
from modbusd.ratelimit import RateLimitedLog, host_of
from modbusd.stats import Stats

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own

ANY_UNIT_ID = 0xFF
"""The address change is also accepted at 0xFF, for a device whose address nobody remembers."""


Write = Callable[[Device, int, bytes, str, bool], bytes | None]
"""(device, unit id, write request PDU, client, broadcast) → response PDU: a write carried out and observed."""


class Bus:
    """The devices reached over serial lines and RTU over TCP, by slave id: one bus, whatever the port."""

    def __init__(self, units: dict[int, Device], observed: set[int], write: Write) -> None:
        self.units = units  # shared with the server: an address change is seen by every transport
        self.observed = observed  # the server's: write function codes whose writes it logs or makes events of
        self.write = write
        self._ignored: set[int] = set()  # unit ids whose requests were ignored: said once each at INFO (≤ 256)

    def answer(self, unit_id: int, pdu: bytes, peer: str = "?") -> tuple[int, bytes] | None:
        found = self.answer_from(unit_id, pdu, peer)
        return None if found is None else (found[1], found[2])

    def _respond(self, device: Device, unit_id: int, pdu: bytes, peer: str) -> bytes | None:
        if pdu[0] in self.observed:
            return self.write(device, unit_id, pdu, peer, False)
        return handler.respond(device, pdu)

    def answer_from(self, unit_id: int, pdu: bytes, peer: str = "?") -> tuple[Device, int, bytes] | None:
        """(device, unit id it answers from, response PDU), or None when the bus stays silent."""
        if unit_id == BROADCAST_UNIT_ID:
            self._broadcast(pdu, peer)
            return None
        device = self.units.get(unit_id)
        if device is None:
            found = self._address_register_at_any(pdu) if unit_id == ANY_UNIT_ID else None
            if found is None:
                self._ignore(unit_id, peer)
                return None  # another device's request: it answers, not us (Serial Line §2.2)
            unit_id, device = found
        register = device.address_register
        if register is not None and (new := handler.address_written(pdu, register)) is not None:
            reply = self._change_address(device, unit_id, new, pdu, peer)
        else:
            reply = self._respond(device, unit_id, pdu, peer)
        return None if reply is None else (device, unit_id, reply)

    def _ignore(self, unit_id: int, peer: str) -> None:
        """Silence is right on a bus, where another device answers; but a client polling the wrong unit id sees
        only time-outs, so the first request for each id is logged at INFO, the rest at DEBUG."""
        first = unit_id not in self._ignored
        if first or log.isEnabledFor(logging.DEBUG):
            self._ignored.add(unit_id)
            served = sorted(self.units)
            log.log(logging.INFO if first else logging.DEBUG,
                    "%s: requests for unit %d ignored: this line serves unit%s %s%s", peer, unit_id,
                    "s" if len(served) > 1 else "", ", ".join(map(str, served)),
                    " (a bus leaves them to another device; any more: debug level)" if first else "")  # fmt: skip

    def _broadcast(self, pdu: bytes, peer: str) -> None:
        """Serial Line §2.1: every device carries out a broadcast, and none answers it."""
        for device in {id(d): d for d in self.units.values()}.values():
            register = device.address_register
            if register is not None and handler.address_written(pdu, register) is not None:
                continue  # one address for every device would be no address at all: not even written
            if pdu and pdu[0] in self.observed:
                self.write(device, BROADCAST_UNIT_ID, pdu, peer, True)
            else:
                handler.respond(device, pdu, broadcast=True)

    def _address_register_at_any(self, pdu: bytes) -> tuple[int, Device] | None:
        takers = [(unit_id, device) for unit_id, device in self.units.items()
                  if device.address_register is not None
                  and handler.address_written(pdu, device.address_register) is not None]  # fmt: skip
        if len(takers) > 1:
            log.warning("address change at 0xFF ignored: units %s could all take it, as on a real bus they would",
                        ", ".join(str(u) for u, _ in takers))  # fmt: skip
            return None
        return takers[0] if takers else None

    def _change_address(self, device: Device, old: int, new: int, pdu: bytes, peer: str) -> bytes | None:
        """The address change is answered from the old address; the new one holds from the next frame on."""
        holder = self.units.get(new)
        if holder is not None and holder is not device:
            log.warning("unit %d asked to move to unit id %d, which another device has; refused", old, new)
            return handler.refuse(device, pdu, ExceptionCode.ILLEGAL_DATA_VALUE)
        reply = self._respond(device, old, pdu, peer)
        if reply is not None and not reply[0] & 0x80 and new != old:
            del self.units[old]
            self.units[new] = device
            log.info("unit %d now answers at unit id %d", old, new)
        return reply


def make_bus(single: Device | None, devices: dict[int, Device], unit_id: int, observed: set[int], write: Write) -> Bus:
    """The bus of a server's devices: `single` at `unit_id`, or each of `devices` at its own unit id (1..247)."""
    if single is not None:
        if not MIN_UNIT_ID <= unit_id <= MAX_UNIT_ID:
            raise ValueError(f"unit id {unit_id} outside 1..247, the slave ids of a serial line")
        units = {unit_id: single}
    else:
        bad = [u for u in devices if not MIN_UNIT_ID <= u <= MAX_UNIT_ID]
        if bad:
            raise ValueError(f"unit ids {bad} outside 1..247, the slave ids of a serial line")
        units = devices  # the same dict: an address change moves the device for TCP too
    for unit, device in units.items():
        if device.address_register is not None:  # the register reads back the address
            device.holding_registers.write(device.address_register, unit.to_bytes(2, "big"))
    return Bus(units, observed, write)


class LineErrors:
    """Counts a line's discarded frames on every device of the bus; says so at WARNING once a minute per serial port
    or RTU-over-TCP client (however many connections it opens), at DEBUG otherwise."""

    def __init__(self, name: str, bus: Bus, warnings: RateLimitedLog, stats: Stats | None = None,
                 line: str = "") -> None:  # fmt: skip
        """`warnings`: the server's limiter of repeated warnings, which remembers what was said across connections.
        Its owner's, not this module's: two servers in one process (tests, an embedding program) each say what
        their own clients did. `stats`, `line`: where and under which name the discards are counted."""
        self._name = name
        self._bus = bus
        self._warnings = warnings
        self._stats = stats
        self._line = line

    def __call__(self, reason: str) -> None:
        if self._stats is not None:
            self._stats.discard(self._line)
        for device in {id(d): d for d in self._bus.units.values()}.values():
            handler.discarded(device)  # bus message + bus communication error (FC08/0B, 0C)
        self._warnings.log(log, logging.WARNING, "frame discarded", host_of(self._name),
                           "%s: frame discarded: %s (counted)", self._name, reason)  # fmt: skip
