"""The `modbusd` command: options in the spirit of seed 000's MBAsyncServer, one-line errors, exit codes.

Exit codes: 0 after Ctrl-C, SIGTERM or the quit command; 2 for a mistake of the person starting it
(a wrong option, a port in use or not allowed). Nothing imports this module.
"""

import argparse
import asyncio
import errno
import logging
import signal
import sys
import time
from collections.abc import Sequence

from modbusd.model.device import Device, Layout
from modbusd.server import Server, UnknownUnit
from modbusd.version import __version__

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modbusd",
        description="A Modbus/TCP server (slave): a device for Modbus clients to talk to.",
    )
    parser.add_argument("-p", "--port", type=_port, default=502, help="TCP port to listen on (default 502)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0, every IPv4 address)")
    parser.add_argument(
        "-d", "--data-table", choices=[layout.value for layout in Layout], default=Layout.SEPARATE.value,
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
        "--unknown-unit", choices=[u.value for u in UnknownUnit], default=UnknownUnit.EXCEPTION.value,
        help="with --unit-ids: answer other unit ids with exception 0x0B (default) or ignore them",
    )  # fmt: skip
    parser.add_argument(
        "--max-connections", type=_positive(int), metavar="N", help="at most N connections (default: no limit)"
    )
    parser.add_argument(
        "--idle-timeout", type=_positive(float), metavar="SECONDS", help="close connections idle that long"
    )
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


def _stamp() -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y")


async def _serve(server: Server, host: str) -> int:
    loop = asyncio.get_running_loop()
    try:
        await server.start()
    except OSError as exc:
        print(_bind_error(exc, host, server.port), file=sys.stderr)
        return EXIT_USAGE
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    print(f"modbusd version {__version__}")
    print(f"Starting server on {host} port {server.port}. {_stamp()}")
    print("Server running...", flush=True)
    await server.serve_forever()
    if server.quit_requested:
        print(f"Remote shutdown command received; server stopped at {_stamp()}", flush=True)
    else:
        print(f"Operator terminated server at {_stamp()}", flush=True)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.unit_ids:
        devices: Device | dict[int, Device] = {unit: Device(args.data_table) for unit in args.unit_ids}
    else:
        devices = Device(args.data_table)
    server = Server(
        devices, host=args.host, port=args.port, unknown_unit=args.unknown_unit,
        max_connections=args.max_connections, idle_timeout=args.idle_timeout, quit_word=args.quit_command,
    )  # fmt: skip
    if args.quit_command and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "the quit command is enabled on %s: any client that can reach the port can stop the server", args.host
        )
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("modbusd: --uvloop needs the uvloop package: pip install 'modbusd[fast]'", file=sys.stderr)
            return EXIT_USAGE
        run = uvloop.run
    else:
        run = asyncio.run
    return run(_serve(server, args.host))
