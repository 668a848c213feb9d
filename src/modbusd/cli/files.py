"""`modbusd check FILE` and `modbusd init [PATH]`: the device-file subcommands."""

import sys
from pathlib import Path

from modbusd import config as device_file
from modbusd.cli.errors import EXIT_OK, _fail, _Parser


def _check(argv: list[str]) -> int:
    parser = _Parser(prog="modbusd check", description="Check a device file and print what it describes.")
    parser.add_argument("file", metavar="FILE")
    args = parser.parse_args(argv)
    try:
        config = device_file.load(args.file)
    except device_file.ConfigError as exc:
        return _fail(str(exc))
    print("\n".join(device_file.summary(config)))
    return EXIT_OK


def _init(argv: list[str]) -> int:
    parser = _Parser(prog="modbusd init", description="Write a commented example device file that runs as is.")
    parser.add_argument("path", nargs="?", metavar="PATH", help="write it here (default: standard output)")
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    args = parser.parse_args(argv)
    if args.path is None:
        sys.stdout.write(device_file.EXAMPLE)
        return EXIT_OK
    path = Path(args.path)
    if path.exists() and not args.force:
        return _fail(f"{path} already exists: choose another path, or add --force to overwrite it")
    try:
        path.write_text(device_file.EXAMPLE, encoding="utf-8")
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror or exc}")
    print(f"wrote {path}: run it with  modbusd --config {path}  (check it with  modbusd check {path})")
    return EXIT_OK
