"""Exit codes and the one-line errors of the command line: a wrong option, a port in use, a serial port missing."""

import argparse
import errno
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from modbusd.server import StartError

EXIT_OK = 0
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # argparse's signature says NoReturn
        """One line saying what is wrong and where to look, instead of the whole usage text."""
        self.exit(EXIT_USAGE, f"modbusd: {message} (see modbusd --help)\n")


def _fail(message: str) -> int:
    print(f"modbusd: {message}", file=sys.stderr)
    return EXIT_USAGE


def quiet_stdout() -> None:
    """Standard output's reader is gone (`modbusd check FILE | head`, a closed terminal): the rest goes to /dev/null.

    Otherwise the interpreter's last flush, on the way out, would print a BrokenPipeError traceback after all.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


@dataclass(frozen=True, slots=True)
class Listener:
    """How the person who started modbusd moves one listener: the option they used, or else the device file's key.

    `port`: a template for a port number ("--udp {}", "port = {} in the device file's [server.udp]"); `host`: the
    option or key naming its address.
    """

    port: str
    host: str
    datagram: bool = False  # UDP: a free port is looked for among UDP ports

    @classmethod
    def named(cls, flag: str, table: str, from_file: bool, datagram: bool = False) -> "Listener":
        """`flag` and the device file's `table` for the port; the address is [http]'s own, else [server]'s."""
        host_flag, host_table = (f"--{table}-host", table) if table in ("http", "metrics") else ("--host", "server")
        if from_file:
            return cls(f"port = {{}} in the device file's [{table}]",
                       f"{host_flag} or host in the device file's [{host_table}]", datagram)  # fmt: skip
        return cls(f"{flag} {{}}", host_flag, datagram)


DEFAULT_LISTENER = Listener("-p {}", "--host")
NEARBY_PORTS = 10  # a port in use: the next ones are tried, and the first free one suggested


def free_port_after(host: str, port: int, datagram: bool = False) -> int | None:
    """The first of the next few ports that can be bound on `host` now, as the listener would bind it; None if none.

    TCP with SO_REUSEADDR, as asyncio's listeners set it, so that a port in TIME_WAIT counts as free.
    """
    kind = socket.SOCK_DGRAM if datagram else socket.SOCK_STREAM
    for candidate in range(port + 1, min(port + NEARBY_PORTS, 65535) + 1):
        try:
            family, *_, address = socket.getaddrinfo(host, candidate, type=kind)[0]
            with socket.socket(family, kind) as probe:
                if not datagram:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError:
            continue
        return candidate
    return None


def _bind_error(exc: OSError, host: str, port: int, listener: Listener = DEFAULT_LISTENER) -> str:
    if exc.errno == errno.EACCES:
        return (
            f"modbusd: no permission to listen on port {port}: low ports (below 1024 unless "
            f"net.ipv4.ip_unprivileged_port_start says otherwise) need root or CAP_NET_BIND_SERVICE. "
            f"Use {listener.port.format(5020)}, or redirect port {port} to 5020 with iptables (see README)."
        )
    if exc.errno == errno.EADDRINUSE:
        free = free_port_after(host, port, listener.datagram)
        advice = f"choose another port: {listener.port.format(free)} is free" if free else (
            f"choose another port with {listener.port.format('PORT')}")  # fmt: skip
        return f"modbusd: port {port} on {host} is already in use by another program: stop it, or {advice}."
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"modbusd: {host} is not an address of this machine: choose one with {listener.host} "
                "(0.0.0.0 means all).")  # fmt: skip
    return f"modbusd: cannot listen on {host} port {port}: {exc.strerror or exc}"


def _start_error(exc: StartError, host: str, listeners: Mapping[str, Listener] | None = None) -> str:
    """`listeners`: by StartError.kind (tcp, udp, rtu-over-tcp), how the person moves each one."""
    if exc.kind != "serial":
        return _bind_error(exc, host, int(exc.target), (listeners or {}).get(exc.kind, DEFAULT_LISTENER))
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
