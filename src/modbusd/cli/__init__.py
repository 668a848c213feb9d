"""The `modbusd` command: options in the spirit of MBAsyncServer's command line, one-line errors, exit codes.

``modbusd [options]`` serves; the first argument picks a subcommand instead: ``check FILE``, ``init [PATH]``,
``get POINT[:COUNT] [TYPE]``, ``set POINT [TYPE:]VALUE``, ``watch POINT[:COUNT] [TYPE]…``, ``log [--follow]``,
``clone TARGET`` (read a real device into a device file).
With ``--config FILE``, an option given on the command line overrides the file's value; one not given keeps the
file's, then the built-in default.

Exit codes: 0 after Ctrl-C, SIGTERM or the quit command, and for a subcommand that did its job; 2 for a mistake
of the person starting it (a wrong option, a broken device file, a port in use or not allowed, a get/set the
control API refused). Nothing imports this package.

Where things are: `parser.py` the server's options, `options.py` their value types, `serve.py` the settings and
the running server, `files.py` check and init, `client.py` get and set, `watch.py` watch, `log.py` log,
`clone.py` clone, `errors.py` exit codes and one-line errors.
"""

import argparse
import asyncio
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from modbusd import config as device_file
from modbusd.cli.client import TOKEN_VARIABLE, _call, _client_parser, _get, _set
from modbusd.cli.clone import _clone
from modbusd.cli.errors import EXIT_OK, EXIT_USAGE, _bind_error, _fail, _Parser, _start_error, quiet_stdout
from modbusd.cli.files import _check, _init
from modbusd.cli.log import _log
from modbusd.cli.logs import configure_logging
from modbusd.cli.options import _count, _forward, _host_name, _port, _positive, _register, _slave_id, _unit_ids
from modbusd.cli.parser import DEFAULT_HTTP_PORT, DEFAULT_PORT, build_parser
from modbusd.cli.serve import _listeners, _serial_lines, _serve, _settings, _stamp
from modbusd.cli.watch import _watch
from modbusd.server import Server

SUBCOMMANDS = ("check", "init", "get", "set", "watch", "log", "clone")

# what `modbusd.cli` held as one module, importable from it as before
__all__ = [
    "DEFAULT_HTTP_PORT", "DEFAULT_PORT", "EXIT_OK", "EXIT_USAGE", "SUBCOMMANDS", "TOKEN_VARIABLE", "_Parser",
    "_bind_error", "_call", "_check", "_client_parser", "_count", "_fail", "_forward", "_get", "_host_name", "_init",
    "_port", "_positive", "_register", "_serve", "_set", "_settings", "_slave_id", "_stamp", "_start_error",
    "_unit_ids", "build_parser", "main",
]  # fmt: skip

log = logging.getLogger("modbusd")


def _http_asked(args: argparse.Namespace) -> bool:
    """The command line asked for the control API (as against the device file's [http] table).

    Without aiohttp, an --http option is refused (the person typing it reads the line and installs the extra);
    the device file's table only warns, so that `pip install . && modbusd init f.toml && modbusd --config f.toml`,
    the first thing a user runs, serves Modbus with the standard library alone.
    """
    return args.http is not None or bool(args.http_host or args.http_token or args.http_allow_host)


def _event_loop(uvloop_asked: bool | None) -> Callable[..., Any] | None:
    """How to run the server: on uvloop when it is installed, unless --no-uvloop (a loop in C costs less CPU per
    request: docs/performance.md), else on asyncio's loop. None: --uvloop was asked and uvloop is not there."""
    if uvloop_asked is False:
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        return None if uvloop_asked else asyncio.run
    return uvloop.run


def main(argv: Sequence[str] | None = None) -> int:
    """The command; a reader that stops reading (`modbusd check FILE | head`) ends it quietly, with 0.

    The command did its job, so its exit code says so; only the rest of its output went unread. A running server
    never gets here for that: it goes on serving (`serve._say`).
    """
    try:
        try:
            return _command(argv)
        finally:  # --help and --version leave through SystemExit, and their text waits in the buffer too
            sys.stdout.flush()  # here, not in the interpreter's exit, where a closed pipe prints a traceback
    except BrokenPipeError:
        quiet_stdout()
        return EXIT_OK


def _command(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return {"check": _check, "init": _init, "get": _get, "set": _set, "watch": _watch, "log": _log,
                "clone": _clone}[argv[0]](argv[1:])  # fmt: skip
    args = build_parser().parse_args(argv)
    try:
        configure_logging(args)
    except ValueError as exc:
        return _fail(str(exc))
    if args.mqtt_subscribe:
        log.warning("--mqtt-subscribe is deprecated: use --subscribe (the MQTT bridge publishes every subscription)")
    try:
        config, http = _settings(args)
        if config.mqtt is not None and config.mqtt.subscribe:
            log.warning("%s: [mqtt] subscribe is deprecated: use [events] subscribe (the MQTT bridge publishes "
                        "every subscription)", config.path)  # fmt: skip
        lines = _serial_lines(args)
        named = bool(lines) or args.rtu_over_tcp is not None or args.udp is not None or args.tls is not None
        # naming transports serves exactly those (Modbus/TCP only when -p names it too); naming none serves the
        # device file's, if any (-p then sets the port of its Modbus/TCP, even one the file turned off)
        transports = {
            "serial": lines,
            "rtu_over_tcp": args.rtu_over_tcp,
            "udp": args.udp,
            "port": args.port,
            **({"tls": None} if args.tls is None else {}),
        }  # --tls: [server.tls] as _settings laid it out
        server = Server.from_config(
            config, address_register=args.address_register, **(transports if named else {}),
            **({"unit_id": args.unit} if args.unit is not None else {}),
            reset_state=args.reset_state,
            **{k: v for k, v in (("frame_timeout", args.frame_timeout), ("write_timeout", args.write_timeout))
               if v is not None},
        )  # fmt: skip
    except (device_file.ConfigError, ValueError) as exc:
        return _fail(str(exc))
    if http is not None:
        try:
            import aiohttp  # noqa: F401  (only to say so now, in one line, rather than after binding)
        except ImportError:
            if _http_asked(args):
                return _fail("the HTTP control API needs aiohttp: pip install 'modbusd[http]'")
            # the device file's [http] (modbusd init's example has one): the Modbus server is what was asked for
            log.warning("no control API (the device file's [http]): it needs aiohttp: pip install 'modbusd[http]'")
            http = None
    if config.mqtt is not None:
        try:
            import aiomqtt  # noqa: F401  (only to say so now, in one line)
        except ImportError:
            return _fail("the MQTT bridge needs aiomqtt: pip install 'modbusd[mqtt]'")
    host = config.server.host
    if config.server.quit_command and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the quit command is enabled on %s: any client that can reach the port can stop the server", host)
    run = _event_loop(args.uvloop)
    if run is None:
        print("modbusd: --uvloop needs the uvloop package: pip install 'modbusd[fast]'", file=sys.stderr)
        return EXIT_USAGE
    if config.metrics is not None:
        missing = [name for name in ("aiohttp", "prometheus_client") if importlib.util.find_spec(name) is None]
        if missing:  # said now, in one line, rather than after binding
            return _fail(f"--metrics-port needs {' and '.join(missing)}: pip install 'modbusd[http]'")
    return run(_serve(server, host, http, config.mqtt, _listeners(args), metrics=config.metrics))
