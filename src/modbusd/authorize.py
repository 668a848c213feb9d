"""Who may do what, decided from a request PDU alone: roles' rights, read-only ranges, client allow-lists. Sans-I/O.

- Roles (MODBUS/TCP Security §8.4): the role in a client's certificate is looked up in the roles-to-rights rules
  (`Roles`, the device file's ``[roles.NAME]`` tables); a request outside them is NOT_AUTHORIZED, answered with
  exception 01 (R-31) by the caller. The rules are the end user's (R-26..R-28): nothing here is built in.
- Read-only ranges (`ReadOnly`): coils and holding registers that clients may read and not write, without TLS; a
  device's guard (`Device.guard`), so every transport's writes meet it and the owner's own writes (`Server.write`,
  the control API) do not.
- Allow-lists (`AllowList`): the client addresses or networks an endpoint or a unit id answers.

What a request reads and writes (`accesses`) is read straight from its bytes, as `hooks.written_range` does for
writes: a request too short to say is let through, and the handler answers it with the exception its form deserves.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from modbusd.model.names import InvalidName, Table, parse_address
from modbusd.protocol.codes import ADDRESS_SPACE, ExceptionCode, FunctionCode
from modbusd.protocol.errors import ModbusError

_PAIR: Final = struct.Struct(">HH")
Access = tuple[Table, int, int]
"""(table, first address, quantity) that a request reads or writes."""

_READS: Final = {FunctionCode.READ_COILS: Table.COILS, FunctionCode.READ_DISCRETE_INPUTS: Table.DISCRETE_INPUTS,
                 FunctionCode.READ_HOLDING_REGISTERS: Table.HOLDING_REGISTERS,
                 FunctionCode.READ_INPUT_REGISTERS: Table.INPUT_REGISTERS}  # fmt: skip
_WRITES: Final = {FunctionCode.WRITE_MULTIPLE_COILS: Table.COILS,
                  FunctionCode.WRITE_MULTIPLE_REGISTERS: Table.HOLDING_REGISTERS}  # fmt: skip
_WRITE_ONE: Final = {FunctionCode.WRITE_SINGLE_COIL: Table.COILS, FunctionCode.WRITE_SINGLE_REGISTER:
                     Table.HOLDING_REGISTERS, FunctionCode.MASK_WRITE_REGISTER: Table.HOLDING_REGISTERS}  # fmt: skip

ADDRESSED: Final = frozenset(int(f) for f in (*_READS, *_WRITES, *_WRITE_ONE,
                                              FunctionCode.READ_WRITE_MULTIPLE_REGISTERS))  # fmt: skip
"""The function codes that name table addresses: each is checked against a role's read and write ranges."""

DEFAULT_FUNCTIONS: Final = ADDRESSED | frozenset(int(f) for f in (
    FunctionCode.READ_EXCEPTION_STATUS, FunctionCode.GET_COMM_EVENT_COUNTER, FunctionCode.GET_COMM_EVENT_LOG,
    FunctionCode.REPORT_SERVER_ID, FunctionCode.ENCAPSULATED_INTERFACE_TRANSPORT))  # fmt: skip
"""A role's functions when its rules list none: everything but FC08 Diagnostics, which can silence the device for
every client (FC08/04, §6.8.1) or restart its communications (FC08/01), so a role gets it only by name."""


def accesses(pdu: bytes) -> tuple[tuple[Access, ...], tuple[Access, ...]]:
    """(what `pdu` reads, what it writes). FC22 Mask Write is a write of one register only: its response echoes the
    request (§6.16), so nothing is read out. FC23 reads and writes (§6.17), and both parts are checked."""
    function = pdu[0]
    if function == FunctionCode.READ_WRITE_MULTIPLE_REGISTERS:
        if len(pdu) < 9:
            return (), ()
        read_at, read_count = _PAIR.unpack_from(pdu, 1)
        write_at, write_count = _PAIR.unpack_from(pdu, 5)
        hr = Table.HOLDING_REGISTERS
        return ((hr, read_at, read_count),), ((hr, write_at, write_count),)
    if len(pdu) < 5:
        return (), ()
    address, quantity = _PAIR.unpack_from(pdu, 1)
    table = _READS.get(function)  # type: ignore[call-overload]  # an int looked up among IntEnum keys
    if table is not None:
        return ((table, address, quantity),), ()
    table = _WRITES.get(function)  # type: ignore[call-overload]  # as above
    if table is not None:
        return (), ((table, address, quantity),)
    table = _WRITE_ONE.get(function)  # type: ignore[call-overload]  # as above
    if table is not None:
        return (), ((table, address, 1),)
    return (), ()


# ----------------------------------------------------------------------------------------------------- ranges

Span = tuple[Table, int, int]
"""(table, first address, last address), both included: the unit of every rule below."""

_TABLE_WORDS: Final = {**{t.suffix: t for t in Table}, **{t.value: t for t in Table}}


def parse_span(text: str) -> tuple[Span, ...]:
    """A range of addresses in the notations of `modbusd.model.names`: ``"100-199.hr"``, ``"100.hr-199.hr"``,
    ``"40101-40200"``, one address (``"7.co"``), a whole table (``"hr"``, ``"holding_registers"``) or ``"*"``
    (every table). InvalidName (a ValueError) saying what is wrong."""
    name = text.strip().lower()
    if name == "*":
        return tuple((table, 0, ADDRESS_SPACE - 1) for table in Table)
    if name in _TABLE_WORDS:
        return ((_TABLE_WORDS[name], 0, ADDRESS_SPACE - 1),)
    first, dash, last = name.partition("-")
    if dash and first.strip().isdecimal() and "." in last:  # 100-199.hr: the table named once, at the end
        first = f"{first.strip()}.{last.rpartition('.')[2]}"
    start = parse_address(first)
    end = parse_address(last) if dash else start
    for where in (start, end):
        if where.unit_id is not None or where.bit is not None:
            raise InvalidName(f"{text!r}: a range names addresses only, without a unit id or a register bit")
    if start.table is not end.table:
        raise InvalidName(f"{text!r}: both ends must be in one table ({start.table.label} ≠ {end.table.label})")
    if end.address < start.address:
        raise InvalidName(f"{text!r}: the range ends before it starts")
    return ((start.table, start.address, end.address),)


def parse_spans(texts: Iterable[str]) -> tuple[Span, ...]:
    return tuple(span for text in texts for span in parse_span(text))


def _covered(spans: tuple[Span, ...], table: Table, address: int, quantity: int) -> bool:
    """Every address of (table, address, quantity) lies in one of `spans` (ranges given apart may touch)."""
    end = address + max(quantity, 1) - 1
    at = address
    for first, last in sorted((f, last) for t, f, last in spans if t is table):
        if first <= at <= last:
            at = last + 1
            if at > end:
                return True
    return False


def _touches(spans: tuple[Span, ...], table: Table, address: int, quantity: int) -> bool:
    end = address + max(quantity, 1) - 1
    return any(t is table and first <= end and address <= last for t, first, last in spans)


# ------------------------------------------------------------------------------------------------------ roles


@dataclass(frozen=True, slots=True)
class Rights:
    """One role's rights: the functions it may use, and the addresses it may read and write with them."""

    functions: frozenset[int] = DEFAULT_FUNCTIONS
    read: tuple[Span, ...] = ()
    write: tuple[Span, ...] = ()

    def allows(self, pdu: bytes) -> bool:
        """AUTHORIZED (True) or NOT_AUTHORIZED (False), MODBUS/TCP Security §8.4."""
        if pdu[0] not in self.functions:
            return False
        reads, writes = accesses(pdu)
        return all(_covered(self.read, *a) for a in reads) and all(_covered(self.write, *a) for a in writes)


@dataclass(frozen=True, slots=True)
class Roles:
    """The roles-to-rights rules database (R-25..R-28): role name → rights. `no_role`: whose rights a certificate
    without a role gets (R-23 hands the algorithm a NULL role); None, the default, denies it everything."""

    rights: Mapping[str, Rights] = field(default_factory=dict)
    no_role: str | None = None

    def rights_of(self, role: str | None) -> Rights | None:
        """A role's rights; None for a role the rules do not name (every request denied)."""
        return self.rights.get(self.no_role if role is None else role)  # type: ignore[arg-type]  # None: no key


# ------------------------------------------------------------------------------------------ read-only ranges

READ_ONLY_CODES: Final = (ExceptionCode.ILLEGAL_DATA_ADDRESS, ExceptionCode.ILLEGAL_FUNCTION,
                          ExceptionCode.SERVER_DEVICE_FAILURE)  # fmt: skip
"""What a write into a read-only range may be answered with: 02 by default (the address is not writable, the
way the Application Protocol §7 describes 02: "not an allowable address for the server"), 01 or 04 by choice."""


class ReadOnly:
    """A device's guard (`Device.guard`): a client write touching these ranges raises ModbusError(code), before
    anything is written; FC23's read is then not done either (its write comes first, §6.17)."""

    __slots__ = ("code", "spans")

    def __init__(self, spans: tuple[Span, ...], code: ExceptionCode = ExceptionCode.ILLEGAL_DATA_ADDRESS) -> None:
        for table, _, _ in spans:
            if table not in (Table.COILS, Table.HOLDING_REGISTERS):
                raise ValueError(f"{table.label}s are read-only for clients already: only coils and holding "
                                 "registers can be made read-only")  # fmt: skip
        if code not in READ_ONLY_CODES:
            raise ValueError(f"a write into a read-only range is answered with exception 1, 2 or 4, not {code}")
        self.spans = spans
        self.code = ExceptionCode(code)

    def __call__(self, pdu: bytes) -> None:
        for access in accesses(pdu)[1]:
            if _touches(self.spans, *access):
                raise _Refused(self.code)


class _Refused(ModbusError):
    """A ModbusError whose code is chosen when it is raised (the read-only ranges' configurable answer)."""

    def __init__(self, code: ExceptionCode) -> None:
        super().__init__(f"write into a read-only range: exception {int(code):02d}")
        self.code = code  # type: ignore[misc]  # the class attribute, per instance


# ------------------------------------------------------------------------------------------------ allow-lists

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    """Client addresses or networks (``"192.0.2.7"``, ``"10.0.0.0/8"``, ``"2001:db8::/32"``); a host matches
    when it lies in one. IPv4-mapped IPv6 addresses (``::ffff:192.0.2.7``) match as the IPv4 address they carry."""

    __slots__ = ("networks",)

    def __init__(self, networks: Iterable[str | Network]) -> None:
        self.networks = tuple(parse_network(n) if isinstance(n, str) else n for n in networks)

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])  # a scope id (fe80::1%eth0) is no part of it
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __repr__(self) -> str:
        return f"AllowList({[str(n) for n in self.networks]})"


def parse_network(text: str) -> Network:
    """``"192.0.2.7"`` or ``"10.0.0.0/8"`` → a network; ValueError in one line (host bits set, not an address)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an address or network such as 192.0.2.7 or 10.0.0.0/8: {exc}") from None
