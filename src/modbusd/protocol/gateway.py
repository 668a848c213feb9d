"""A gateway route as plain data and as text: which unit ids, and where they go (a serial line or a Modbus/TCP server).

One grammar for the three places a route is written: `--forward UNITS=TARGET`, the device file's
``[[gateway.forward]]`` (``units``, ``target``) and `modbusd clone TARGET`. It lives here, beside `SerialLine`,
because the device file may import the protocol and the model only; the gateway itself (`routing.py`,
`forward/`) turns a route into a downstream. So do the gateway's settings' defaults and bounds, which the command
line, the device file and the downstreams share.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from modbusd.protocol.codes import MAX_UNIT_ID
from modbusd.protocol.serial_line import SerialLine

FORWARD_TIMEOUT = 1.0  # seconds a downstream device has to answer before exception 0x0B
FORWARD_QUEUE = 16  # requests that may wait for one downstream (besides those under way) before exception 06
IN_FLIGHT = 16  # requests on one connection at once; the TCP guide's NumberMaxOfServerTransaction examples go to 16
MAX_IN_FLIGHT = 256  # a bound past any server's; transaction ids (65,536 of them) must never run out
MAX_FORWARDED_UNIT_ID = 255  # a Modbus/TCP server takes every unit id of the MBAP header (a serial line: 0..247)

TARGET_SYNTAX = "rtu:DEVICE[,BAUD[,8E1]], ascii:… or tcp:HOST[:PORT]"
_SETTINGS = re.compile(r"([78])([EON])([12])?", re.IGNORECASE)  # 8E1, 8N2, 7E1 …


@dataclass(frozen=True, slots=True)
class TcpTarget:
    """A Modbus/TCP server the gateway forwards to."""

    host: str
    port: int = 502

    def __post_init__(self) -> None:
        if not 0 < self.port <= 65535:
            raise ValueError(f"port {self.port} outside 1..65535")

    def __str__(self) -> str:
        return f"TCP {self.host}:{self.port}"


Target = SerialLine | TcpTarget
"""Where the gateway forwards a unit id's requests: devices on a serial line, or a Modbus/TCP server."""


def split_target(text: str) -> tuple[str, str] | None:
    """`rtu:/dev/ttyS0,9600` → ("rtu", "/dev/ttyS0,9600"); None when it does not start with a known kind."""
    kind, colon, where = text.partition(":")
    return (kind.lower(), where) if colon and where and kind.lower() in ("rtu", "ascii", "tcp") else None


def parse_target(text: str) -> Target:
    """A device to talk to as its client: `rtu:/dev/ttyUSB0,9600,8N1`, `ascii:/dev/ttyS1`, `tcp:10.0.0.5[:502]`,
    `tcp:[::1]:502`; ValueError in one line saying what is wrong. A serial line's defaults are Serial Line
    §2.5.1's, as for serving one (19200 8E1)."""
    found = split_target(text)
    if found is None:
        raise ValueError(f"{text!r} is not {TARGET_SYNTAX}")
    kind, where = found
    if kind == "tcp":
        if where.startswith("["):  # [::1]:502
            host, _, rest = where[1:].partition("]")
            port = rest.removeprefix(":")
        elif where.count(":") == 1:
            host, _, port = where.partition(":")
        else:  # a name, an IPv4 address, or an IPv6 address without a port
            host, port = where, ""
        if port and not port.isdigit():
            raise ValueError(f"{port!r} is not a port number")
        return TcpTarget(host, int(port) if port else 502)
    device, *options = where.split(",")
    if len(options) > 2:
        raise ValueError(f"{where!r}: DEVICE[,BAUD[,SETTINGS]] at most")
    if options and not options[0].isdigit():
        raise ValueError(f"{options[0]!r} is not a baud rate")
    baudrate = int(options[0]) if options else 19200
    settings = _SETTINGS.fullmatch(options[1]) if len(options) > 1 else None
    if len(options) > 1 and settings is None:
        raise ValueError(f"{options[1]!r} is not serial settings such as 8E1, 8N2 or 7E1")
    bytesize, parity, stopbits = settings.groups() if settings else ("8", "E", None)
    return SerialLine(device, kind, baudrate, int(bytesize), parity, int(stopbits) if stopbits else None)


def unit_id_list(text: str) -> list[int]:
    """`0,1-10` → [0, 1, …, 10]: the unit-id lists of `--forward` and `--unit`; ValueError when `text` is not one.
    Which unit ids are allowed is the caller's to check."""
    units: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        units.extend(range(int(low), int(high or low) + 1))
    return units


def parse_units(text: str) -> list[int]:
    """Forwarded unit ids: `0,1-10` → [0, 1, …, 10]; ValueError saying what is wrong."""
    try:
        units = unit_id_list(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a list of unit ids such as 0,1-10") from None
    if not units or not all(0 <= u <= MAX_FORWARDED_UNIT_ID for u in units):
        raise ValueError(f"forwarded unit ids must be within 0..{MAX_FORWARDED_UNIT_ID}, got {text!r}")
    return units


def check_route(units: Iterable[int], target: Target) -> None:
    """A serial line's slave ids are 0..247 (Serial Line §2.2; 0 a broadcast); a TCP server takes any."""
    if isinstance(target, SerialLine):
        for unit in units:
            if unit > MAX_UNIT_ID:
                raise ValueError(f"unit id {unit} forwarded to {target.device}: slave ids are 0..{MAX_UNIT_ID}")


def parse_forward(text: str) -> tuple[list[int], Target]:
    """`1-10=rtu:/dev/ttyUSB0,9600,8N1`, `3=ascii:/dev/ttyS1`, `20,21=tcp:10.0.0.5:502` → (unit ids, target)."""
    units_text, equals, target_text = text.partition("=")
    if not equals or split_target(target_text) is None:
        raise ValueError(f"{text!r} is not UNITS=rtu:DEVICE[,BAUD[,8E1]], UNITS=ascii:… or UNITS=tcp:HOST[:PORT]")
    units = parse_units(units_text)
    target = parse_target(target_text)
    check_route(units, target)
    return units, target


def unit_ranges(units: Iterable[int]) -> str:
    """[1, 2, 3, 7] → `1-3, 7`, for the banner and `modbusd check`."""
    ranges: list[list[int]] = []
    for unit in sorted(units):
        if ranges and unit == ranges[-1][1] + 1:
            ranges[-1][1] = unit
        else:
            ranges.append([unit, unit])
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)
