"""Exit codes and the one-line errors of the command line: a wrong option, a port in use, a serial port missing."""

import argparse
import errno
import os
import sys

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
