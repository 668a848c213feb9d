"""The server's options (`modbusd [options]`): one table, read by `build_parser`."""

import argparse

from modbusd import config as device_file
from modbusd.cli.errors import _Parser
from modbusd.cli.options import _count, _forward, _host_name, _port, _positive, _register, _slave_id, _unit_ids
from modbusd.model.device import Layout
from modbusd.server import FORWARD_QUEUE, FORWARD_TIMEOUT, UnknownUnit
from modbusd.version import __version__

DEFAULT_HTTP_PORT = device_file.DEFAULT_HTTP_PORT

DEFAULT_PORT = 502


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modbusd",
        description="A Modbus server (slave): a device for Modbus clients to talk to, over TCP, UDP, RTU over TCP "
        "and serial lines (RTU, ASCII). With no transport named it serves Modbus/TCP on port 502; naming "
        "any serves exactly those.",
        epilog="Also: modbusd check FILE | modbusd init [PATH] | modbusd get POINT[:COUNT] [TYPE] | "
        "modbusd set POINT [TYPE:]VALUE | modbusd watch POINT[:COUNT] [TYPE]… | modbusd log [--follow] "
        "(each has --help).",
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
        "--idle-timeout", type=_positive(float), metavar="SECONDS", help="close connections idle that long"
    )
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
