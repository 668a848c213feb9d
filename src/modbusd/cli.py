"""The `modbusd` command: options in the spirit of MBAsyncServer's command line, one-line errors, exit codes.

``modbusd [options]`` serves; the first argument picks a subcommand instead: ``check FILE``, ``init [PATH]``,
``get POINT [TYPE]``, ``set POINT [TYPE:]VALUE``. With ``--config FILE``, an option given on the command line
overrides the file's value; one not given keeps the file's, then the built-in default.

Exit codes: 0 after Ctrl-C, SIGTERM or the quit command, and for a subcommand that did its job; 2 for a mistake
of the person starting it (a wrong option, a broken device file, a port in use or not allowed, a get/set the
control API refused). Nothing imports this module.
"""

import argparse
import asyncio
import dataclasses
import errno
import json
import logging
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from modbusd import config as device_file
from modbusd.model.device import Layout
from modbusd.server import (  # connection hardening (docs/limits.md)
    FORWARD_QUEUE,
    FORWARD_TIMEOUT,
    FRAME_TIMEOUT,
    WRITE_TIMEOUT,
    SerialLine,
    Server,
    StartError,
    TcpTarget,
    UnknownUnit,
)
from modbusd.version import __version__

SUBCOMMANDS = ("check", "init", "get", "set")
DEFAULT_HTTP_PORT = device_file.DEFAULT_HTTP_PORT
TOKEN_VARIABLE = "MODBUSD_HTTP_TOKEN"  # get/set read the bearer token from here unless --token is given

log = logging.getLogger("modbusd")

EXIT_OK = 0
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # argparse's signature says NoReturn
        """One line saying what is wrong and where to look, instead of the whole usage text."""
        self.exit(EXIT_USAGE, f"modbusd: {message} (see modbusd --help)\n")


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


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} outside 0..65535")
    return port


def _slave_id(text: str) -> int:
    try:
        unit = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a unit id") from None
    if not 1 <= unit <= 247:
        raise argparse.ArgumentTypeError(f"unit id {unit} outside 1..247, the slave ids of a serial line")
    return unit


def _host_name(text: str) -> str:
    try:
        return device_file.check_host_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _register(text: str) -> int:
    try:
        address = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a register address such as 0x07D0") from None
    if not 0 <= address <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"register address {address} outside 0..65535")
    return address


_SETTINGS = re.compile(r"([78])([EON])([12])?", re.IGNORECASE)  # 8E1, 8N2, 7E1 …


def _forward(text: str) -> tuple[list[int], SerialLine | TcpTarget]:
    """`1-10=rtu:/dev/ttyUSB0,9600,8N1`, `3=ascii:/dev/ttyS1`, `20,21=tcp:10.0.0.5:502` → (unit ids, target)."""
    units_text, equals, target_text = text.partition("=")
    kind, colon, where = target_text.partition(":")
    kind = kind.lower()
    if not equals or not colon or not where or kind not in ("rtu", "ascii", "tcp"):
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
        if kind == "tcp":
            if where.startswith("["):  # [::1]:502
                host, _, rest = where[1:].partition("]")
                port = rest.removeprefix(":")
            elif where.count(":") == 1:
                host, _, port = where.partition(":")
            else:  # a name, an IPv4 address, or an IPv6 address without a port
                host, port = where, ""
            return units, TcpTarget(host, _port(port) if port else 502)
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
        return units, SerialLine(device, kind, baudrate, int(bytesize), parity, int(stopbits) if stopbits else None)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise argparse.ArgumentTypeError(f"--forward {text!r}: {exc}") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


DEFAULT_PORT = 502


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modbusd",
        description="A Modbus server (slave): a device for Modbus clients to talk to, over TCP, UDP, RTU over TCP "
        "and serial lines (RTU, ASCII). With no transport named it serves Modbus/TCP on port 502; naming "
        "any serves exactly those.",
        epilog="Also: modbusd check FILE | modbusd init [PATH] | modbusd get POINT [TYPE] | "
        "modbusd set POINT [TYPE:]VALUE (each has --help).",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="serve the devices of a device file (modbusd init writes an example); "
        "options given here override the file's",
    )  # fmt: skip
    parser.add_argument("-p", "--port", type=_port, help="TCP port to listen on (default 502)")
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0, every IPv4 address)")
    parser.add_argument(
        "-d", "--data-table", choices=[layout.value for layout in Layout],
        help="separate: four tables (default); overlaid: coils=discrete inputs and holding=input registers; "
        "packed: overlaid, with the bits packed 16 per register into the first 4096 registers",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quit-command", metavar="WORD", help="a client sending exactly WORD shuts the server down"
    )
    parser.add_argument(
        "-u", "--unit-ids", type=_unit_ids, metavar="IDS",
        help="one device per unit id, e.g. 1,2,5-7 (default: one device answering every unit id)",
    )  # fmt: skip
    parser.add_argument(
        "--unknown-unit", choices=[u.value for u in UnknownUnit],
        help="with --unit-ids: answer other unit ids with exception 0x0B (default) or ignore them",
    )  # fmt: skip
    parser.add_argument(
        "--max-connections", type=_positive(int), metavar="N", help="at most N connections (default: no limit)"
    )
    parser.add_argument(
        "--idle-timeout", type=_positive(float), metavar="SECONDS",
        help="close connections that completed no request for that long (default: off)",
    )  # fmt: skip
    # connection hardening (docs/limits.md): per-client limit, frame and write time-outs
    parser.add_argument(
        "--max-connections-per-client", type=_positive(int), metavar="N",
        help="at most N connections from one address; more are closed at once (default: no limit)",
    )  # fmt: skip
    parser.add_argument(
        "--frame-timeout", type=_positive(float), metavar="SECONDS",
        help=f"close a connection whose request has begun and not ended within that time (default {FRAME_TIMEOUT:g})",
    )  # fmt: skip
    parser.add_argument(
        "--write-timeout", type=_positive(float), metavar="SECONDS",
        help=f"drop a connection that takes none of its responses for that long (default {WRITE_TIMEOUT:g})",
    )  # fmt: skip
    serial = parser.add_argument_group("serial lines and other transports")
    serial.add_argument("--rtu", action="append", default=[], metavar="DEVICE", help="serve RTU on a serial port")
    serial.add_argument("--ascii", action="append", default=[], metavar="DEVICE", help="serve ASCII on a serial port")
    serial.add_argument("--baudrate", type=_positive(int), default=19200, help="serial baud rate (default 19200)")
    serial.add_argument("--parity", choices=["E", "O", "N"], type=str.upper, default="E",
                        help="E (default, as the serial line spec requires), O or N")  # fmt: skip
    serial.add_argument("--bytesize", type=int, choices=[7, 8], default=8, help="8 (default); ASCII may use 7")
    serial.add_argument("--stopbits", type=int, choices=[1, 2], help="default 1, or 2 with --parity N")
    serial.add_argument("--unit", type=_slave_id, metavar="N",
                        help="the device's slave id on serial lines and RTU over TCP (default 1, or the device "
                        "file's serial_unit_id); with -u each listed id is a device of its own")  # fmt: skip
    serial.add_argument("--address-register", type=_register, metavar="ADDR",
                        help="the address change: writing a unit id to this holding register (e.g. 0x07D0), "
                        "also at unit id 0xFF, moves the device to it (default: off)")  # fmt: skip
    serial.add_argument("--rtu-over-tcp", type=_port, metavar="PORT", help="serve RTU frames over TCP on PORT")
    serial.add_argument("--udp", type=_port, metavar="PORT", help="serve Modbus (MBAP) over UDP on PORT")
    gateway = parser.add_argument_group("gateway (requests over Modbus/TCP and UDP forwarded by unit id)")
    gateway.add_argument(
        "--forward", type=_forward, action="append", default=[], metavar="UNITS=TARGET",
        help="forward these unit ids' requests: UNITS=rtu:DEVICE[,BAUD[,8E1]] or UNITS=ascii:DEVICE[,…] (a serial "
        "line, modbusd its master; unit 0 there is a broadcast) or UNITS=tcp:HOST[:PORT] (another Modbus/TCP "
        "server); e.g. 1-10=rtu:/dev/ttyUSB0,9600,8N1. Forwarded ids are never answered locally",
    )  # fmt: skip
    gateway.add_argument(
        "--forward-timeout", type=_positive(float), default=FORWARD_TIMEOUT, metavar="SECONDS",
        help=f"no response in this time: exception 0x0B (default {FORWARD_TIMEOUT:g})",
    )  # fmt: skip
    gateway.add_argument(
        "--forward-queue", type=_count, default=FORWARD_QUEUE, metavar="N",
        help=f"requests that may wait per downstream, besides the one under way; more: exception 06 "
        f"(default {FORWARD_QUEUE})",
    )  # fmt: skip
    parser.add_argument(
        "--http", nargs="?", type=_port, const=DEFAULT_HTTP_PORT, metavar="PORT",
        help=f"serve the HTTP control API (modbusd get/set) on PORT (default {DEFAULT_HTTP_PORT}); needs aiohttp",
    )  # fmt: skip
    parser.add_argument("--http-host", metavar="ADDR", help="address of the control API (default 127.0.0.1)")
    parser.add_argument(
        "--http-token", metavar="TOKEN", help="bearer token the control API requires; needed off loopback"
    )
    parser.add_argument(
        "--http-allow-host", action="append", type=_host_name, metavar="NAME",
        help="a Host name the control API answers to besides localhost, 127.0.0.1, ::1 and --http-host "
        "(repeatable; others get 421, against DNS rebinding)",
    )  # fmt: skip
    parser.add_argument(
        "--mqtt", metavar="URL", help="bridge to the MQTT broker at URL (mqtt://[user:password@]host[:port]): client "
        "writes to named coils and holding registers are published, <prefix>/<unit>/<table>/<address>/set writes; "
        "needs aiomqtt. A broker that is away is retried",
    )  # fmt: skip
    parser.add_argument("--mqtt-prefix", metavar="TOPIC", help="first level of the MQTT topics (default modbusd)")
    parser.add_argument(
        "--mqtt-subscribe", action="append", default=[], metavar="POINT[:TYPE]",
        help="publish this point too (a name or address, e.g. 100.hr:float or 5.co); repeat for more",
    )  # fmt: skip
    parser.add_argument(
        "--events-log", metavar="FILE", help="append every client write and every event to FILE, one JSON line "
        "each (HSYCO's eventslog), rotated at 10 MB into 5 files; a file that cannot be written is reported "
        "and the server goes on",
    )  # fmt: skip
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (pip install 'modbusd[fast]')")
    parser.add_argument("-v", "--verbose", action="store_true", help="log one line per request (costs speed)")
    parser.add_argument("--version", action="version", version=f"modbusd {__version__}")
    return parser


def _bind_error(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EACCES:
        return (
            f"modbusd: no permission to listen on port {port}: low ports (below 1024 unless "
            f"net.ipv4.ip_unprivileged_port_start says otherwise) need root or CAP_NET_BIND_SERVICE. "
            "Use -p 5020, or redirect port 502 to 5020 with iptables (see README)."
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"modbusd: port {port} on {host} is already in use by another program: "
            "stop it, or choose another port with -p 5020."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"modbusd: {host} is not an address of this machine: choose one with --host (0.0.0.0 means all)."
    return f"modbusd: cannot listen on {host} port {port}: {exc.strerror or exc}"


def _start_error(exc: StartError, host: str) -> str:
    if exc.kind != "serial":
        return _bind_error(exc, host, int(exc.target))
    device = exc.target
    if exc.errno == errno.ENOENT:
        return f"modbusd: serial port {device} does not exist: check its name (ls /dev/ttyUSB* /dev/ttyACM*)."
    if exc.errno == errno.EACCES:
        return (
            f"modbusd: no permission to open serial port {device}: add the user to its group "
            "(usually dialout: sudo usermod -aG dialout $USER, then log in again) or run as root."
        )
    if exc.errno in (errno.EBUSY, errno.EAGAIN):
        return f"modbusd: serial port {device} is in use by another program."
    return f"modbusd: cannot open serial port {device}: {exc.strerror or exc.cause}"


def _stamp() -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y")


async def _serve(server: Server, host: str, http: device_file.HttpConfig | None = None,
                 mqtt: device_file.MqttConfig | None = None) -> int:  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        await server.start()
    except StartError as exc:
        print(_start_error(exc, host), file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:  # the serial extra is not installed
        print(f"modbusd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    api = None
    if http is not None:
        from modbusd.web import HttpApi  # only with --http: aiohttp is an optional extra

        try:
            api = await HttpApi.start(server, host=http.host, port=http.port, token=http.token,
                                      allow_hosts=http.allow_hosts)  # fmt: skip
        except OSError as exc:
            await server.stop()
            print(_bind_error(exc, http.host, http.port).replace("-p 5020", "--http 8021"), file=sys.stderr)
            return EXIT_USAGE
    bridge = None
    if mqtt is not None:
        from modbusd.mqtt import MqttBridge  # only with --mqtt: aiomqtt is an optional extra

        try:
            bridge = await MqttBridge.start(
                server, mqtt.host, mqtt.port, points=mqtt.subscribe, named_points=True, username=mqtt.username,
                password=mqtt.password, prefix=mqtt.prefix, retain=mqtt.retain, qos=mqtt.qos, queue=mqtt.queue,
            )  # fmt: skip
        except (ValueError, LookupError) as exc:  # a point to publish that the devices do not have
            if api is not None:
                await api.stop()
            await server.stop()
            return _fail(f"--mqtt-subscribe / [mqtt] subscribe: {exc}")
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    print(f"modbusd version {__version__}")
    served = ", ".join(server.listening())
    print(f"Starting server {'on' if server.port is not None else 'with'} {served}. {_stamp()}")
    if api is not None:
        print(f"Control API on http://{api.host}:{api.port}/")
    if bridge is not None:
        print(f"MQTT bridge to {mqtt.url if mqtt else ''}, topics {bridge.prefix}/<unit>/<table>/<address>")
    print("Server running...", flush=True)
    try:
        await server.serve_forever()
    finally:
        if bridge is not None:
            await bridge.stop()
        if api is not None:
            await api.stop()
    if server.quit_requested:
        print(f"Remote shutdown command received; server stopped at {_stamp()}", flush=True)
    else:
        print(f"Operator terminated server at {_stamp()}", flush=True)
    return EXIT_OK


def _fail(message: str) -> int:
    print(f"modbusd: {message}", file=sys.stderr)
    return EXIT_USAGE


def _settings(args: argparse.Namespace) -> tuple[device_file.Config, device_file.HttpConfig | None]:
    """The device file (or the built-in defaults) with every option given on the command line laid over it."""
    if args.config:
        if args.unit_ids or args.data_table:
            raise ValueError("--unit-ids and --data-table describe devices, which the device file does: "
                             "set unit_id and layout there")  # fmt: skip
        config = device_file.load(args.config)
    else:
        layout = Layout(args.data_table or Layout.SEPARATE)
        devices = tuple(device_file.DeviceConfig(unit_ids=(u,), layout=layout) for u in args.unit_ids or ())
        config = device_file.Config("", devices=devices or (device_file.DeviceConfig(layout=layout),))
    given = {"host": args.host, "port": args.port, "unknown_unit": args.unknown_unit,
             "max_connections": args.max_connections, "idle_timeout": args.idle_timeout,
             "max_connections_per_client": args.max_connections_per_client,
             "quit_command": args.quit_command,
             "eventslog": str(Path(args.events_log).absolute()) if args.events_log else None}  # fmt: skip
    server = dataclasses.replace(config.server, **{k: v for k, v in given.items() if v is not None})
    http = config.http
    if args.http is not None or args.http_host or args.http_token or args.http_allow_host:
        allow = (*(http.allow_hosts if http else ()), *(args.http_allow_host or ()))
        http = dataclasses.replace(http or device_file.HttpConfig(), allow_hosts=allow, **{k: v for k, v in (
            ("port", args.http), ("host", args.http_host), ("token", args.http_token)) if v is not None})  # fmt: skip
    if http is not None and http.host not in device_file.LOOPBACK and not http.token:
        raise ValueError(f"the control API can write anything: binding it to {http.host} needs --http-token")
    mqtt = config.mqtt
    if args.mqtt is not None or args.mqtt_prefix is not None or args.mqtt_subscribe:
        if args.mqtt is None and mqtt is None:
            raise ValueError("--mqtt-prefix and --mqtt-subscribe need --mqtt URL (or [mqtt] in the device file)")
        options: dict[str, object] = device_file.parse_mqtt_url(args.mqtt) if args.mqtt is not None else {}
        if args.mqtt_prefix is not None:
            options["prefix"] = device_file.check_mqtt_prefix(args.mqtt_prefix)
        if args.mqtt_subscribe:
            options["subscribe"] = (*(mqtt.subscribe if mqtt else ()), *args.mqtt_subscribe)
        mqtt = dataclasses.replace(mqtt or device_file.MqttConfig(), **options)  # type: ignore[arg-type]
    return dataclasses.replace(config, server=server, mqtt=mqtt), http


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return {"check": _check, "init": _init, "get": _get, "set": _set}[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config, http = _settings(args)
        lines = [
            SerialLine(device, framing, args.baudrate, args.bytesize, args.parity, args.stopbits)
            for framing, devices_named in (("rtu", args.rtu), ("ascii", args.ascii))
            for device in devices_named
        ]
        named = bool(lines) or args.rtu_over_tcp is not None or args.udp is not None
        # naming transports serves exactly those (Modbus/TCP only when -p names it too); naming none serves the
        # device file's, if any (-p then sets the port of its Modbus/TCP, even one the file turned off)
        transports = {"serial": lines, "rtu_over_tcp": args.rtu_over_tcp, "udp": args.udp, "port": args.port}
        server = Server.from_config(
            config, address_register=args.address_register, **(transports if named else {}),
            **({"unit_id": args.unit} if args.unit is not None else {}),
            forward={unit: target for units, target in args.forward for unit in units},
            forward_timeout=args.forward_timeout, forward_queue=args.forward_queue,
            **{k: v for k, v in (("frame_timeout", args.frame_timeout), ("write_timeout", args.write_timeout))
               if v is not None},
        )  # fmt: skip
    except (device_file.ConfigError, ValueError) as exc:
        return _fail(str(exc))
    if http is not None:
        try:
            import aiohttp  # noqa: F401  (only to say so now, in one line, rather than after binding)
        except ImportError:
            return _fail("the HTTP control API needs aiohttp: pip install 'modbusd[http]'")
    if config.mqtt is not None:
        try:
            import aiomqtt  # noqa: F401  (only to say so now, in one line)
        except ImportError:
            return _fail("the MQTT bridge needs aiomqtt: pip install 'modbusd[mqtt]'")
    host = config.server.host
    if config.server.quit_command and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the quit command is enabled on %s: any client that can reach the port can stop the server", host)
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("modbusd: --uvloop needs the uvloop package: pip install 'modbusd[fast]'", file=sys.stderr)
            return EXIT_USAGE
        run = uvloop.run
    else:
        run = asyncio.run
    return run(_serve(server, host, http, config.mqtt))


# ------------------------------------------------------------------------------------------ subcommands


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


def _client_parser(name: str, description: str) -> _Parser:
    parser = _Parser(prog=f"modbusd {name}", description=description)
    parser.add_argument(
        "--http", type=_port, default=DEFAULT_HTTP_PORT, metavar="PORT",
        help=f"port of the running server's control API on 127.0.0.1 (default {DEFAULT_HTTP_PORT})",
    )  # fmt: skip
    parser.add_argument("--token", help=f"bearer token, if the server requires one (or set {TOKEN_VARIABLE})")
    parser.add_argument("--timeout", type=_positive(float), default=5.0, help=argparse.SUPPRESS)
    return parser


def _call(args: argparse.Namespace, method: str, point: str, query: str = "", body: object = None) -> int:
    """One request to the control API; prints the value's text, or one line saying what went wrong."""
    url = f"http://127.0.0.1:{args.http}/points/{urllib.parse.quote(point, safe='')}{query}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        return _fail(f"{point}: {message}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(f"no control API on 127.0.0.1 port {args.http} ({reason}): start the server with "
                     f"--http {args.http}, or [http] in its device file")  # fmt: skip
    print(answer["text"])
    return EXIT_OK


def _get(argv: list[str]) -> int:
    parser = _client_parser("get", "Read a data point or any address from a running modbusd (its control API).")
    parser.add_argument("point", metavar="POINT", help="a data point's name, or an address: 30001, 1.0.ir, 40001")
    parser.add_argument("type", metavar="TYPE", nargs="?", help="read it as this type: float, uint, string:8, …")
    args = parser.parse_args(argv)
    query = f"?type={urllib.parse.quote(args.type)}" if args.type else ""
    return _call(args, "GET", args.point, query)


def _set(argv: list[str]) -> int:
    parser = _client_parser("set", "Write a data point or any address of a running modbusd (its control API).")
    parser.add_argument("point", metavar="POINT", help="a data point's name, or an address: 30001, 1.0.ir, 40001")
    parser.add_argument(
        "value", metavar="[TYPE:]VALUE", help="float:21.5, ushort:0x1F, bit:on, bits:1010-0000-1111-0000, "
        "string:8:Pump 1; a named point takes its own type without TYPE:",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return _call(args, "PUT", args.point, body={"value": args.value})
