"""`modbusd clone TARGET`: read a real device and write a device file that reproduces it (`modbusd.clone`).

Progress goes to standard error, one line per table; the device file to standard output or to ``-o FILE``.
A device that cannot be reached or does not answer is one line and exit code 2.
"""

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from modbusd.cli.errors import EXIT_OK, _fail, _Parser
from modbusd.cli.options import _checked, _positive, _target, _whole
from modbusd.clone import CloneError, CloneSettings, clone, parse_ranges
from modbusd.clone.reader import DEFAULT_RANGES, DEFAULT_RATE, DEFAULT_STRIDE
from modbusd.config.writer import device_file
from modbusd.protocol.serial_line import SerialLine

DEFAULT_TIMEOUT = 1.0  # seconds for each answer, as the gateway's --forward-timeout
COPY_SERVER = {"host": "127.0.0.1", "port": 5020}  # where the copy listens: this machine, a port that needs no root


_ranges = _checked(parse_ranges)


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of requests per second") from None
    if not rate >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r}: the rate is 0 (no limit) or more")
    return rate


_unit = _whole("unit id", 0, 255, base=0)


def _parser() -> _Parser:
    first, last = DEFAULT_RANGES
    parser = _Parser(prog="modbusd clone", description="Read a real device (modbusd as its client) and write a "
                     "device file that reproduces it: each table's readable addresses and values, its FC43 "
                     "identification and FC17 report. Serve the file with modbusd --config FILE.")  # fmt: skip
    parser.add_argument("target", metavar="TARGET",
                        help="tcp:HOST[:PORT] (port 502 by default), rtu:DEVICE[,BAUD[,8E1]] or ascii:DEVICE[,…] "
                        "(19200 8E1 by default); needs pip install 'modbusd[serial]' for a serial port")  # fmt: skip
    parser.add_argument("--unit", type=_unit, default=1, metavar="N",
                        help="the device's unit id (slave id) (default 1)")  # fmt: skip
    parser.add_argument("--ranges", type=_ranges, metavar="SPEC",
                        help=f"what to probe, protocol addresses per table: e.g. hr:0-999,co:0-99,ir:0x100-0x1FF "
                        f"(co, di, ir, hr); tables not named are not read (default: each table {first}-{last}, "
                        "the five-digit numbers 00001-09999 … 40001-49999)")  # fmt: skip
    parser.add_argument("--stride", type=_positive(int), default=DEFAULT_STRIDE, metavar="N",
                        help=f"sample unreadable stretches every N addresses: a readable island shorter than "
                        f"N inside one may be missed; 1 reads every address (default {DEFAULT_STRIDE})")  # fmt: skip
    parser.add_argument("--rate", type=_rate, default=DEFAULT_RATE, metavar="N",
                        help=f"at most N requests a second, not to flood a device in service; 0: no limit "
                        f"(default {DEFAULT_RATE:g})")  # fmt: skip
    parser.add_argument("--timeout", type=_positive(float), default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"wait this long for each answer; a request is tried 3 times (default "
                        f"{DEFAULT_TIMEOUT:g})")  # fmt: skip
    parser.add_argument("-o", "--output", metavar="FILE", help="write the device file here (default: standard "
                        "output)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    return parser


def _clone(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        target = _target(args.target)
    except argparse.ArgumentTypeError as exc:
        return _fail(f"clone: {exc}")
    if isinstance(target, SerialLine) and not 1 <= args.unit <= 247:
        return _fail(f"clone: unit id {args.unit}: on a serial line a device has a unit id 1..247 (0 is broadcast)")
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.force:
        return _fail(f"{output} already exists: choose another path, or add --force to overwrite it")
    settings = CloneSettings(unit_id=args.unit, stride=args.stride, rate=args.rate,
                             **({"ranges": args.ranges} if args.ranges else {}))  # fmt: skip
    # the gateway's client side logs a lost path as the gateway's exception 0x0A: here it is said as a CloneError
    logging.getLogger("modbusd.forward").setLevel(logging.ERROR)

    def progress(line: str) -> None:
        print(f"modbusd clone: {line}", file=sys.stderr, flush=True)

    progress(f"reading unit {args.unit} of {target}"
             + (f", at most {args.rate:g} requests a second" if args.rate else ""))  # fmt: skip
    try:
        device = asyncio.run(clone(target, settings, progress, timeout=args.timeout))
    except CloneError as exc:
        return _fail(f"clone: {exc}")
    except KeyboardInterrupt:
        return _fail("clone: interrupted; nothing written")
    serial_unit_id = args.unit if 1 <= args.unit <= 247 and args.unit != 1 else None
    probed = "; ".join(f"{table.value} {', '.join(f'{a}-{b}' for a, b in ranges)}"
                       for table, ranges in settings.ranges.items())  # fmt: skip
    comment = (f"modbusd clone of unit {args.unit} at {target}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
               f"probed (stride {settings.stride}): {probed}\n"
               f"serve it with: modbusd --config {output.name if output else 'FILE'}")  # fmt: skip
    text = device_file(device, server=COPY_SERVER, serial_unit_id=serial_unit_id, comment=comment)
    if output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write {output}: {exc.strerror or exc}")
    progress(f"wrote {output}: serve it with  modbusd --config {output}")
    return EXIT_OK
