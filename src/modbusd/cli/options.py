"""The value types of the options: each turns one option's text into a value, or says in one line what is wrong."""

import argparse
from collections.abc import Callable
from typing import TypeVar

from modbusd import config as device_file
from modbusd.protocol.serial_line import parse_parity

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
    try:
        units = device_file.unit_id_list(text)
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


def _forward(text: str) -> device_file.Route:
    """`--forward UNITS=TARGET`: the grammar of the device file's [[gateway.forward]] (`protocol.gateway`), and
    the option's text to name the route by in a later mistake (an overlap with another route)."""
    try:
        units, target = device_file.parse_forward(text)
    except ValueError as exc:
        message = str(exc)
        raise argparse.ArgumentTypeError(message if message.startswith(repr(text)) else f"--forward {text!r}: "
                                         f"{message}") from None  # fmt: skip
    return device_file.Route(tuple(units), target, f"--forward {text}")


_target = _checked(device_file.parse_target)  # a device to talk to as its client: modbusd clone's TARGET


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
