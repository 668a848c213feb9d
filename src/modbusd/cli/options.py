"""The value types of the options: each turns one option's text into a value, or says in one line what is wrong."""

import argparse
import re
from collections.abc import Callable
from typing import TypeVar

from modbusd import config as device_file
from modbusd.protocol.serial_line import parse_parity
from modbusd.server import SerialLine, TcpTarget

T = TypeVar("T")


def _checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An option type from a parser that raises ValueError (the device file's own, so that an option and its key
    in the file accept the same text): argparse then says the parser's message in one line, and exits 2."""

    def check(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def _whole(noun: str, low: int, high: int, *, base: int = 10, example: str = "", why: str = "") -> Callable[[str], int]:
    """An option type for a whole number within low..high, with one message when it is not a number and one when it
    is out of range (`example` follows the first, `why` the second). base 0 takes 0x… too."""

    def parse(text: str) -> int:
        try:
            value = int(text, base)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {noun}{example}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{noun} {value} outside {low}..{high}{why}")
        return value

    return parse


def _unit_ids(text: str) -> list[int]:
    """`1,2,5-7` → [1, 2, 5, 6, 7]."""
    units: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            units.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of unit ids such as 1,2,5-7") from None
    bad = [u for u in units if not 1 <= u <= 247]
    if bad or not units:
        raise argparse.ArgumentTypeError(f"unit ids must be within 1..247, got {text!r}")
    return units


def _positive(kind: type[int] | type[float]):
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


_port = _whole("port", 0, 65535, example=" number")


def _network(text: str) -> str:
    """--allow's client address or network, checked as the device file's allow lists are."""
    try:
        device_file.parse_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


_slave_id = _whole("unit id", 1, 247, base=0, why=", the slave ids of a serial line")
_host_name = _checked(device_file.check_host_name)
_register = _whole("register address", 0, 0xFFFF, base=0, example=" such as 0x07D0")
# `modbusd log --per-second`: the control API's range for GET /log?follow=1&per_second= (`modbusd.web.app`'s
# MAX_PER_SECOND, which tests/test_cli_log.py holds it to), checked here so that a mistake needs no running server
MAX_PER_SECOND = 1_000_000
_per_second = _whole("number of records a second", 1, MAX_PER_SECOND, example=" such as 100")


_SETTINGS = re.compile(r"([78])([EON])([12])?", re.IGNORECASE)  # 8E1, 8N2, 7E1 …


def _forward(text: str) -> tuple[list[int], SerialLine | TcpTarget]:
    """`1-10=rtu:/dev/ttyUSB0,9600,8N1`, `3=ascii:/dev/ttyS1`, `20,21=tcp:10.0.0.5:502` → (unit ids, target)."""
    units_text, equals, target_text = text.partition("=")
    if not equals or _split_target(target_text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not UNITS=rtu:DEVICE[,BAUD[,8E1]], UNITS=ascii:… or UNITS=tcp:HOST[:PORT]"
        )
    try:
        units = []
        for part in units_text.split(","):
            low, _, high = part.partition("-")
            units.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{units_text!r} is not a list of unit ids such as 0,1-10") from None
    if not units or not all(0 <= u <= 255 for u in units):
        raise argparse.ArgumentTypeError(f"forwarded unit ids must be within 0..255, got {units_text!r}")
    try:
        return units, _target(target_text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"--forward {text!r}: {exc}") from None


def _split_target(text: str) -> tuple[str, str] | None:
    kind, colon, where = text.partition(":")
    return (kind.lower(), where) if colon and where and kind.lower() in ("rtu", "ascii", "tcp") else None


def _target(text: str) -> SerialLine | TcpTarget:
    """A device to talk to as its client: `rtu:/dev/ttyUSB0,9600,8N1`, `ascii:/dev/ttyS1`, `tcp:10.0.0.5[:502]`
    (the gateway's --forward, and modbusd clone)."""
    found = _split_target(text)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not rtu:DEVICE[,BAUD[,8E1]], ascii:… or tcp:HOST[:PORT]")
    kind, where = found
    try:
        if kind == "tcp":
            if where.startswith("["):  # [::1]:502
                host, _, rest = where[1:].partition("]")
                port = rest.removeprefix(":")
            elif where.count(":") == 1:
                host, _, port = where.partition(":")
            else:  # a name, an IPv4 address, or an IPv6 address without a port
                host, port = where, ""
            return TcpTarget(host, _port(port) if port else 502)
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
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_parity = _checked(parse_parity)


def _subscription(option: str) -> Callable[[str], device_file.Subscribe]:
    """`--subscribe POINT[:TYPE]`'s syntax, checked by argparse; the server checks the point when it subscribes."""
    return _checked(lambda text: device_file.parse_subscribe(text, option))


_fault = _checked(device_file.parse_fault)  # `--fault 'KEY=VALUE …'`: a fault rule, checked whole (docs/faults.md)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


# `--simulate POINT[:TYPE[:ORDER]]=SPEC`, checked by argparse; the server checks the point when it adds it
_simulation = _checked(device_file.parse_simulate)
