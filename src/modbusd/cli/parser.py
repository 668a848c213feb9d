"""The server's options (`modbusd [options]`), in the groups --help shows: server, security, data, serial lines,
gateway, control API, MQTT, events and logging. Their value types are in `options.py`."""

import argparse

from modbusd import config as device_file
from modbusd.cli.errors import _Parser
from modbusd.cli.logs import LOG_FILE_COUNT, LOG_FILE_MAX_BYTES, LOG_LEVELS
from modbusd.cli.options import (
    _count,
    _fault,
    _forward,
    _host_name,
    _network,
    _parity,
    _port,
    _positive,
    _register,
    _simulation,
    _slave_id,
    _subscription,
    _unit_ids,
)
from modbusd.model.device import Layout
from modbusd.server import FORWARD_IN_FLIGHT, FORWARD_QUEUE, FORWARD_TIMEOUT, FRAME_TIMEOUT, WRITE_TIMEOUT, UnknownUnit
from modbusd.version import __version__

DEFAULT_HTTP_PORT = device_file.DEFAULT_HTTP_PORT

DEFAULT_PORT = 502


EXAMPLES = """\
examples:
  modbusd -p 5020
      Modbus/TCP on port 5020: one device for every unit id, 65536 addresses
      in each of the four tables
  modbusd init modbusd.toml && modbusd --config modbusd.toml
      write the commented example device file, then serve it (port 5020)

also: modbusd check FILE | init [PATH] | get POINT[:COUNT] [TYPE] | set POINT VALUE
      | watch POINT[:COUNT] [TYPE]... | log [--follow [--per-second N]] | clone TARGET   (each has --help)
"""


def build_parser() -> argparse.ArgumentParser:
    """The options, grouped as --help shows them: what a user looks for first comes first."""
    parser = _Parser(
        prog="modbusd",
        description="A Modbus server (slave): a device for Modbus clients to talk to, over TCP, UDP,\n"
        "RTU over TCP and serial lines (RTU, ASCII). With no transport named it serves\n"
        "Modbus/TCP on port 502; naming any serves exactly those.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modbusd {__version__}")
    server = parser.add_argument_group("server", "where it listens, and its limits")
    server.add_argument("-p", "--port", type=_port, help="TCP port to listen on (default 502)")
    server.add_argument("--host", help="address to listen on (default 0.0.0.0, every IPv4 address)")
    server.add_argument("--udp", type=_port, metavar="PORT", help="serve Modbus (MBAP) over UDP on PORT")
    server.add_argument("--rtu-over-tcp", type=_port, metavar="PORT", help="serve RTU frames over TCP on PORT")
    server.add_argument(
        "-q", "--quit-command", metavar="WORD", help="a client sending exactly WORD shuts the server down"
    )
    server.add_argument(
        "--max-connections", type=_positive(int), metavar="N", help="at most N connections (default: no limit)"
    )
    server.add_argument(
        "--idle-timeout", type=_positive(float), metavar="SECONDS",
        help="close connections that completed no request for that long (default: off)",
    )  # fmt: skip
    # connection hardening (docs/limits.md): per-client limit, frame and write time-outs
    server.add_argument(
        "--max-connections-per-client", type=_positive(int), metavar="N",
        help="at most N connections from one address; more are closed at once (default: no limit)",
    )  # fmt: skip
    server.add_argument(
        "--frame-timeout", type=_positive(float), metavar="SECONDS",
        help=f"close a connection whose request has begun and not ended within that time (default {FRAME_TIMEOUT:g})",
    )  # fmt: skip
    server.add_argument(
        "--write-timeout", type=_positive(float), metavar="SECONDS",
        help=f"drop a connection that takes none of its responses for that long (default {WRITE_TIMEOUT:g})",
    )  # fmt: skip
    server.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=None,
                        help="run on uvloop: the default when it is installed (pip install 'modbusd[fast]'); "
                        "--no-uvloop: on asyncio's own loop")  # fmt: skip
    security = parser.add_argument_group("security", "Modbus/TCP Security and access rules (docs/security.md; "
                                         "pip install 'modbusd[tls]' for TLS)")  # fmt: skip
    security.add_argument(
        "--tls", nargs="?", type=_port, const=device_file.DEFAULT_TLS_PORT, metavar="PORT",
        help=f"serve Modbus/TCP Security (MBAP inside TLS 1.2+, client certificates required) on PORT (default "
        f"{device_file.DEFAULT_TLS_PORT}); needs --cert, --key and --ca",
    )  # fmt: skip
    security.add_argument("--cert", metavar="FILE", help="with --tls: the server's certificate (PEM), followed by "
                          "its chain down to the root CA")  # fmt: skip
    security.add_argument(
        "--key",
        metavar="FILE",
        help=f"with --tls: the certificate's private key (PEM; if "
        f"encrypted, its passphrase in the environment variable {device_file.KEY_PASSWORD_ENV})",
    )
    security.add_argument("--ca", metavar="FILE", help="with --tls: the CA certificates (PEM) that clients' "
                          "certificates must be signed by")  # fmt: skip
    security.add_argument(
        "--allow", action="append", type=_network, metavar="NET",
        help="accept clients from this address or network only (e.g. 10.0.0.0/8; repeatable) on every network "
        "endpoint: others are closed at accept, their UDP datagrams dropped",
    )  # fmt: skip
    data = parser.add_argument_group("data", "the devices served: a device file, or these options")
    data.add_argument(
        "--config", metavar="FILE", help="serve the devices of a device file (modbusd init writes an example); "
        "options given here override the file's",
    )  # fmt: skip
    data.add_argument(
        "-d", "--data-table", choices=[layout.value for layout in Layout],
        help="separate: four tables (default); overlaid: coils=discrete inputs and holding=input registers; "
        "packed: overlaid, with the bits packed 16 per register into the first 4096 registers",
    )  # fmt: skip
    data.add_argument(
        "-u", "--unit-ids", type=_unit_ids, metavar="IDS",
        help="one device per unit id, e.g. 1,2,5-7 (default: one device answering every unit id)",
    )  # fmt: skip
    data.add_argument(
        "--unknown-unit", choices=[u.value for u in UnknownUnit],
        help="with --unit-ids: answer other unit ids with exception 0x0B (default) or ignore them",
    )  # fmt: skip
    data.add_argument(
        "--no-listen-only", action="store_true", help="refuse FC08/04 Force Listen Only Mode with exception 01: "
        "otherwise one request from any client silences the device for every client until FC08/01",
    )  # fmt: skip
    # durable state (docs/state.md): written values kept in a SQLite file across restarts and crashes
    data.add_argument(
        "--state", metavar="FILE", help="keep written values in FILE (SQLite): restored at start, and each client "
        "write stored before it is answered (docs/state.md)",
    )  # fmt: skip
    data.add_argument(
        "--reset-state", action="store_true", help="with --state: forget the values stored there and start from "
        "the device file's",
    )  # fmt: skip
    data.add_argument(
        "--state-sync", choices=["full", "normal"], help="full (default): a write is synced to disk before it is "
        "answered, so it survives a power cut; normal: faster, survives the process's crash, not the machine's",
    )  # fmt: skip
    data.add_argument(
        "--simulate", action="append", default=[], type=_simulation, metavar="POINT[:TYPE[:ORDER]]=SPEC",
        help="generate this point's value, e.g. 30001:float=sine(offset=20,amplitude=5,period=60s): counter, ramp, "
        "triangle, sine, square, random, clock, sequence, csv, expression (docs/simulator.md); repeatable",
    )  # fmt: skip
    serial = parser.add_argument_group("serial lines", "RTU and ASCII on serial ports (pip install 'modbusd[serial]')")
    serial.add_argument("--rtu", action="append", default=[], metavar="DEVICE", help="serve RTU on a serial port")
    serial.add_argument("--ascii", action="append", default=[], metavar="DEVICE", help="serve ASCII on a serial port")
    serial.add_argument("--baudrate", type=_positive(int), metavar="N", help="serial baud rate (default 19200)")
    serial.add_argument("--parity", type=_parity, metavar="{E,O,N}",
                        help="E (default, as the serial line spec requires), O or N; even, odd, none too")  # fmt: skip
    serial.add_argument("--bytesize", type=int, choices=[7, 8], help="8 (default); ASCII may use 7")
    serial.add_argument("--stopbits", type=int, choices=[1, 2], help="default 1, or 2 with --parity N")
    serial.add_argument("--unit", type=_slave_id, metavar="N",
                        help="the device's slave id on serial lines and RTU over TCP (default 1, or the device "
                        "file's serial_unit_id); with -u each listed id is a device of its own")  # fmt: skip
    serial.add_argument("--address-register", type=_register, metavar="ADDR",
                        help="the address change: writing a unit id to this holding register (e.g. 0x07D0), "
                        "also at unit id 0xFF, moves the device to it (default: off)")  # fmt: skip
    gateway = parser.add_argument_group("gateway", "requests over Modbus/TCP and UDP forwarded by unit id")
    gateway.add_argument(
        "--forward", type=_forward, action="append", default=[], metavar="UNITS=TARGET",
        help="forward these unit ids' requests: UNITS=rtu:DEVICE[,BAUD[,8E1]] or UNITS=ascii:DEVICE[,…] (a serial "
        "line, modbusd its master; unit 0 there is a broadcast) or UNITS=tcp:HOST[:PORT] (another Modbus/TCP "
        "server); e.g. 1-10=rtu:/dev/ttyUSB0,9600,8N1. Forwarded ids are never answered locally; repeatable, added "
        "to the device file's [[gateway.forward]] routes",
    )  # fmt: skip
    gateway.add_argument(
        "--forward-timeout", type=_positive(float), metavar="SECONDS",
        help=f"no response in this time: exception 0x0B (default {FORWARD_TIMEOUT:g}, or the device "
        "file's [gateway] timeout)",
    )  # fmt: skip
    gateway.add_argument(
        "--forward-queue", type=_count, metavar="N",
        help=f"requests that may wait per downstream, besides those under way; more: exception 06 "
        f"(default {FORWARD_QUEUE}, or the device file's [gateway] queue)",
    )  # fmt: skip
    gateway.add_argument(
        "--forward-in-flight", type=_positive(int), metavar="N",
        help=f"requests sent to a tcp: downstream before its responses come, paired by transaction id; 1 for a "
        f"device that takes one at a time (default {FORWARD_IN_FLIGHT}, or the device file's [gateway] "
        f"in_flight; a serial line always has one)",
    )  # fmt: skip
    faults = parser.add_argument_group("fault injection", "misbehave on purpose, to test clients (docs/faults.md)")
    faults.add_argument(
        "--fault", action="append", default=[], type=_fault, metavar="RULE",
        help="a fault rule, e.g. 'unit=3 fc=3 every=5 action=exception:06' or 'prob=0.3 seed=1 action=delay:200ms' "
        "(keys: name unit fc address client transport prob every first after seed action); repeatable, tried in order",
    )  # fmt: skip
    http = parser.add_argument_group("control API", "HTTP, for modbusd get/set and other programs "
                                     "(pip install 'modbusd[http]')")  # fmt: skip
    http.add_argument(
        "--http", nargs="?", type=_port, const=DEFAULT_HTTP_PORT, metavar="PORT",
        help=f"serve the HTTP control API (modbusd get/set) on PORT (default {DEFAULT_HTTP_PORT}); needs aiohttp",
    )  # fmt: skip
    http.add_argument("--http-host", metavar="ADDR", help="address of the control API (default 127.0.0.1)")
    http.add_argument(
        "--http-token", metavar="TOKEN",
        help="bearer token the control API requires (16 characters at least); needed off loopback",
    )  # fmt: skip
    http.add_argument(
        "--http-allow-host", action="append", type=_host_name, metavar="NAME",
        help="a Host name the control API answers to besides localhost, 127.0.0.1, ::1 and --http-host "
        "(repeatable; others get 421, against DNS rebinding)",
    )  # fmt: skip
    # Prometheus metrics (docs/metrics.md): GET /metrics is on the control API too; this is for when it is off
    http.add_argument(
        "--metrics-port", type=_port, metavar="PORT",
        help="serve GET /metrics (Prometheus) alone on PORT: read-only, no token; needs aiohttp and prometheus-client",
    )  # fmt: skip
    http.add_argument("--metrics-host", metavar="ADDR", help="address of --metrics-port (default 127.0.0.1)")
    mqtt = parser.add_argument_group("MQTT", "a bridge to an MQTT broker (pip install 'modbusd[mqtt]')")
    mqtt.add_argument(
        "--mqtt", metavar="URL", help="bridge to the MQTT broker at URL (mqtt://[user:password@]host[:port], or "
        "mqtts:// for TLS, port 8883 by default): client "
        "writes to named coils and holding registers are published, <prefix>/<unit>/<table>/<address>/set writes; "
        "needs aiomqtt. A broker that is away is retried",
    )  # fmt: skip
    mqtt.add_argument("--mqtt-prefix", metavar="TOPIC", help="first level of the MQTT topics (default modbusd)")
    mqtt.add_argument(
        "--mqtt-subscribe", action="append", default=[], type=_subscription("--mqtt-subscribe"),
        metavar="POINT[:TYPE]", help="deprecated: the same as --subscribe",
    )  # fmt: skip
    mqtt.add_argument(
        "--mqtt-ca", metavar="FILE", help="with mqtts://: check the broker's certificate against the CA "
        "certificates in FILE (PEM) instead of the system's",
    )  # fmt: skip
    mqtt.add_argument(
        "--mqtt-cert", metavar="FILE", help="with mqtts://: the bridge's client certificate (PEM), for a broker "
        "that asks for one; its key too unless --mqtt-key",
    )  # fmt: skip
    mqtt.add_argument("--mqtt-key", metavar="FILE", help="with mqtts://: the client certificate's private key "
                      "(PEM, not encrypted)")  # fmt: skip
    logs = parser.add_argument_group("events and logging", "the log goes to standard error, or to --log-file")
    logs.add_argument(
        "--events-log", metavar="FILE", help="append every client write and every event to FILE, one JSON line "
        "each (HSYCO's eventslog), rotated at 10 MB into 5 files; a file that cannot be written is reported "
        "and the server goes on",
    )  # fmt: skip
    # Subscriptions: the events log, listeners and the MQTT bridge get their events
    logs.add_argument(
        "--subscribe", action="append", default=[], type=_subscription("--subscribe"), metavar="POINT[:TYPE]",
        help="client writes to this point make events (HSYCO's subscribe): a name or address, e.g. 100.hr:float, "
        "5.co, 7.hr:bits; repeat for more",
    )  # fmt: skip
    logs.add_argument(
        "--hook", metavar="MODULE:FUNCTION", help="a request hook to import, e.g. plant.hooks:on_request: called "
        "for every request, it may answer it itself (as the device file's hook)",
    )  # fmt: skip
    logs.add_argument(
        "--hook-forwarded", action="store_true", help="call the hook for the unit ids --forward forwards too "
        "(default: only for those answered here)",
    )  # fmt: skip
    logs.add_argument("-v", "--verbose", action="count", default=0,
                      help="log one line per request with the values it writes (costs speed); -vv: the values "
                      "each read answers too. Long lists show their first 8 values")  # fmt: skip
    logs.add_argument("--log-level", choices=LOG_LEVELS, help="info (default), or debug (as -v), warning, error")
    logs.add_argument("--log-file", metavar="FILE", help=f"log to FILE instead of standard error, rotated at "
                      f"{LOG_FILE_MAX_BYTES // 2**20} MB into {LOG_FILE_COUNT} files (for a service)")  # fmt: skip
    return parser
