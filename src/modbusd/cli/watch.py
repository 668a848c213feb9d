"""`modbusd watch POINT[:COUNT] [TYPE]… [--interval S]`: a small live table of values, polled from the control API.

In a terminal the table is drawn once and each value that changes is redrawn in place (ANSI cursor movement, no
library: the terminal's own VT100 escapes, which every terminal emulator in use understands). When stdout is not
a terminal (a pipe, a file, a test) every value is printed once, then one line per change: ``TIME  ADDRESS
VALUE``, flushed at once, so that `grep` or `tee` see it as it happens.

A lost control API (a server restart) is said in one line on stderr, and watching goes on once it is back: a live
view left open across a restart is the point of it. A mistake (an unknown point, a bad type or count) is one line
and exit code 2, as in `modbusd get`; Ctrl-C ends it with exit code 0.
"""

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from modbusd.cli.client import POINT_HELP, ApiError, _client_parser, api, columns, point_path, rows, split_count
from modbusd.cli.errors import EXIT_OK, _fail
from modbusd.model.values import InvalidType, ValueType

MIN_INTERVAL = 0.1  # seconds: ten polls a second is as fast as anyone reads, and keeps the API's load small
UP, DOWN, CLEAR = "\x1b[{}A", "\x1b[{}B", "\r\x1b[2K"  # cursor up n, down n, to column 1 and clear the line


@dataclass(frozen=True, slots=True)
class Target:
    point: str
    count: int | None
    type: str | None


def targets(words: list[str]) -> list[Target]:
    """POINT[:COUNT] [TYPE] … → targets; a word that is a type (float, string:8) belongs to the point before it.

    ValueError for a type with no point before it, or a count that is no number."""
    found: list[Target] = []
    for word in words:
        if found and found[-1].type is None and _is_type(word):
            last = found[-1]
            found[-1] = Target(last.point, last.count, word)
            continue
        if _is_type(word) and not found:
            raise ValueError(f"{word} is a type: name the point first, as in modbusd watch 40001 {word}")
        point, count = split_count(word)
        found.append(Target(point, count, None))
    return found


def _is_type(word: str) -> bool:
    try:
        ValueType.parse(word)
    except InvalidType:
        return False
    return True


def interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds >= MIN_INTERVAL:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r}: the interval is {MIN_INTERVAL:g} s at least")
    return seconds


def poll(args: argparse.Namespace, wanted: list[Target]) -> list[tuple[str, str]]:
    """(address as typed, value text) of every value watched, in order; ApiError when the API fails."""
    values: list[tuple[str, str]] = []
    for target in wanted:
        answer = api(args, "GET", point_path(target.point, target.count, target.type))
        if target.count is None:
            values.append((target.point, answer["text"]))
        else:
            values.extend((address, text) for address, _, text in rows(answer))
    return values


class Screen:
    """The table in a terminal: drawn once, then only changed lines redrawn in place."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown: list[tuple[str, str]] = []
        self.lines: list[str] = []

    def show(self, values: list[tuple[str, str]]) -> None:
        lines = columns(values)
        if len(lines) != len(self.lines):  # first time, or after the API was lost: the whole table, anew
            self.out.write("".join(line + "\n" for line in lines))
        else:
            n = len(lines)
            for i, (old, new) in enumerate(zip(self.lines, lines, strict=True)):
                if old != new:
                    self.out.write(UP.format(n - i) + CLEAR + new + DOWN.format(n - i) + "\r")
        self.out.flush()
        self.shown, self.lines = values, lines

    def forget(self) -> None:
        self.shown, self.lines = [], []


class Changes:
    """Not a terminal: every value once, then one time-stamped line per change."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown: list[tuple[str, str]] = []

    def show(self, values: list[tuple[str, str]]) -> None:
        stamp = time.strftime("%H:%M:%S")
        changed = [v for i, v in enumerate(values) if i >= len(self.shown) or self.shown[i] != v]
        for address, text in changed:
            print(f"{stamp}  {address}  {text}", file=self.out, flush=True)
        self.shown = values

    def forget(self) -> None:
        pass  # after a loss, only what changed meanwhile is news


def _watch(argv: list[str]) -> int:
    parser = _client_parser("watch", "Watch values of a running modbusd change (its control API), in place in a "
                                     "terminal, one line per change otherwise. Ctrl-C stops.")  # fmt: skip
    parser.add_argument("points", metavar="POINT[:COUNT] [TYPE]", nargs="+", help=f"{POINT_HELP}; TYPE as in get")
    parser.add_argument("--interval", type=interval, default=1.0, metavar="S",
                        help=f"seconds between two looks (default 1, at least {MIN_INTERVAL:g})")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        wanted = targets(args.points)
    except ValueError as exc:
        return _fail(str(exc))
    out = sys.stdout
    terminal = out.isatty()
    try:
        first = poll(args, wanted)
        height = shutil.get_terminal_size().lines
        view = Screen(out) if terminal and len(first) < height else Changes(out)
        view.show(first)
        return _loop(args, wanted, view, time.sleep)
    except ApiError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_OK


def _loop(args: argparse.Namespace, wanted: list[Target], view: Screen | Changes,
          sleep: Callable[[float], None]) -> int:  # fmt: skip
    """Poll until Ctrl-C; a refusal (a point gone) ends it with exit 2, a lost API is waited for."""
    lost = False
    while True:
        sleep(args.interval)
        try:
            values = poll(args, wanted)
        except ApiError as exc:
            if exc.refused:
                return _fail(str(exc))
            if not lost:
                print(f"modbusd: lost the control API: {exc}; retrying every {args.interval:g} s", file=sys.stderr,
                      flush=True)  # fmt: skip
                lost = True
                view.forget()
            continue
        if lost:
            print("modbusd: the control API is back", file=sys.stderr, flush=True)
            lost = False
        view.show(values)
