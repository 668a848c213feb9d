#!/usr/bin/env python3
"""Modbus/TCP throughput, latency and memory: modbusd against pymodbus, with a libmodbus ceiling.

Why it is built this way:

* The load generator is loadgen.c (C, epoll, in this directory), built into a temporary
  directory by this script.  A Python client costs more per request than the servers it
  measures, so it would measure itself.
* On a 2-core machine the servers run on core 1 and loadgen on core 0 (taskset), so neither
  steals the other's CPU.  loadgen's and the server's CPU use are printed for every run: a
  server at ~100 % with loadgen well below shows that the server is the bottleneck.
* A shared machine drifts by tens of percent, so servers run alternately within each
  scenario, every round, and the comparison quoted is a ratio from the same run.
* Every server holds the same data (holding register i = i for i < 100) and every server is
  checked to answer FC03 with exactly those values before it is measured.
* A libmodbus C server is measured in the same run: its figure shows how much loadgen can
  drive, i.e. that the Python figures are the servers' limits, not the client's.
* An "asyncio floor" server (run_asyncio_floor.py: one readiness callback per read answering canned
  FC03 responses, no Modbus work) is measured in the same run too: its figure is the most any
  Python server can do on that loop, so a target ratio above the floor's own ratio is shown, not
  argued, to be out of reach.

Only processes started here are stopped (by pid), all traffic stays on 127.0.0.1, and every
wait is bounded.  Standard library only; the servers need pymodbus and optionally uvloop.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOADGEN_SRC = HERE / "loadgen.c"
LIBMODBUS_SRC = HERE / "libmodbus_server.c"
LIBMODBUS_REPLY_SRC = HERE / "libmodbus_reply_server.c"  # libmodbus's own loop: modbus_receive + modbus_reply
HOST = "127.0.0.1"
SERVER_CPU = "1"
LOAD_CPU = "0"
READY_MARKER = "ready port="
READ_QUANTITY = 10  # FC03 of 10 registers at address 0, as in every scenario
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
MAX_ERRORS = 10**9  # loadgen's -E: never let its exit code stand in for our parsing

MODBUSD = "modbusd"
MODBUSD_UVLOOP = "modbusd+uvloop"
PYMODBUS = "pymodbus"
LIBMODBUS = "libmodbus C"
LIBMODBUS_REPLY = "libmodbus rcv+reply"  # libmodbus_reply_server.c
FLOOR = "asyncio floor"
FLOOR_UVLOOP = "asyncio floor+uvloop"
NAME_WIDTH = len(FLOOR_UVLOOP)  # the longest row label, so progress lines and tables align


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Scenario:
    """One load shape: `conns` connections with `depth` requests in flight on each."""

    key: str
    title: str
    conns: int
    depth: int


SCENARIOS = (
    Scenario("c1", "1 conn", 1, 1),
    Scenario("c10", "10 conns", 10, 1),
    Scenario("c100", "100 conns", 100, 1),
    Scenario("c10d16", "10 conns x 16 pipelined", 10, 16),
)


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: argv for a port, extra environment, and a row label."""

    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class RunningServer:
    """A server process we started; `log` holds its stdout and stderr."""

    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass(frozen=True)
class LoadResult:
    """One loadgen run: its k=v line plus the CPU that loadgen and the server used meanwhile."""

    values: dict[str, float]
    exit_code: int
    wall_s: float
    loadgen_cpu_s: float
    server_cpu_s: float
    server_sys_s: float = 0.0  # the part of server_cpu_s spent in the kernel (syscalls, TCP)

    def get(self, key: str) -> float:
        return self.values.get(key, 0.0)

    @property
    def rps(self) -> float:
        return self.get("rps")

    @property
    def failed(self) -> bool:
        """Exit 1 (setup) or 3 (no connection), or no output: the figures mean nothing."""
        return self.exit_code not in (0, 2) or "rps" not in self.values


@dataclass(frozen=True)
class MemoryResult:
    """VmRSS before and while holding idle connections."""

    base_kib: int
    held_kib: int
    conns: int

    @property
    def per_conn_kib(self) -> float:
        return (self.held_kib - self.base_kib) / self.conns if self.conns else float("nan")


# --------------------------------------------------------------------------- /proc helpers


def rss_kib(pid: int) -> int:
    """Resident set size from /proc: what the kernel really charges for the process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a live process (fields 14 and 15 of /proc/PID/stat), in seconds.

    Kept apart because the kernel's share is what no event loop can make cheaper.
    """
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    return 0.0, 0.0


def socket_count(pid: int) -> int:
    """Open sockets of a process: tells when all idle connections have been accepted."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(entry).startswith("socket:"):
                count += 1
    return count


def children_cpu_seconds() -> float:
    """CPU of reaped children; its delta around one loadgen run is loadgen's own CPU."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> None:
    """1000 idle connections need more than a 1024 `ulimit -n`.

    Raised once in this process, so that every child (loadgen, the servers) inherits it:
    no preexec_fn, which is unsafe in a process with threads.
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --------------------------------------------------------------------------- building


def compile_c(out: Path, sources: Sequence[Path], libs: Sequence[str], werror: bool = False) -> str | None:
    """Compile with cc -O2 -Wall; returns an error text instead of raising so a row can be skipped.

    `werror` for our own loadgen.c, whose warnings we fix; not for libmodbus_server.c, whose
    warnings may come from another libmodbus's headers and should not cost the ceiling row.
    """
    cmd = ["cc", "-O2", "-Wall", *(["-Werror"] if werror else []), "-o", str(out), *map(str, sources), *libs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        return f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}"
    return None


def libmodbus_flags() -> list[str]:
    """pkg-config's flags when it knows libmodbus, else Debian's paths."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "libmodbus"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        if out.strip():
            return out.split()
    return ["-I/usr/include/modbus", "-lmodbus"]


# --------------------------------------------------------------------------- processes


def pinned(cpu: str | None, argv: list[str]) -> list[str]:
    """Prefix argv with taskset; taskset execs, so the pid stays the program's own."""
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


def free_port() -> int:
    """A port the kernel just had free on 127.0.0.1 (tiny race; start() retries once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """No .pyc files written into the checkout another engineer is editing."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def wait_ready(server: RunningServer, deadline: float) -> None:
    """Wait for the ready line in the log, bounded, failing early if the process dies."""
    while time.monotonic() < deadline:
        if READY_MARKER in server.log.read_text(errors="replace"):
            return
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.spec.name} exited with {server.proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{server.spec.name} not ready after {START_TIMEOUT_S:.0f} s")


def fc03_request(transaction_id: int) -> bytes:
    """MBAP + FC03 read of READ_QUANTITY registers at 0, unit 1 (loadgen's default unit)."""
    return struct.pack(">HHHBBHH", transaction_id, 0, 6, 1, 3, 0, READ_QUANTITY)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RuntimeError("connection closed before a full response")
        data += chunk
    return data


def check_data(port: int) -> None:
    """Like-for-like check: the server must answer FC03 at 0 with registers 0..9 = 0..9."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(fc03_request(0x1234))
        header = recv_exactly(sock, 7)
        tid, _proto, length, _unit = struct.unpack(">HHHB", header)
        body = recv_exactly(sock, length - 1)
    expected = bytes((3, 2 * READ_QUANTITY)) + struct.pack(f">{READ_QUANTITY}H", *range(READ_QUANTITY))
    if tid != 0x1234 or body != expected:
        raise RuntimeError(f"unexpected FC03 answer {header.hex(' ')} | {body.hex(' ')}")


def start_server(spec: ServerSpec, logdir: Path, cpu: str | None) -> RunningServer:
    """Start, wait for the ready line, check the data; retry once on a lost port race."""
    for attempt in (1, 2):
        port = free_port()
        log = logdir / f"{spec.name.replace(' ', '_')}-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                pinned(cpu, spec.argv(port)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(spec.env),
                start_new_session=True,  # Ctrl-C reaches only us
            )
        server = RunningServer(spec, proc, port, log)
        try:
            wait_ready(server, time.monotonic() + START_TIMEOUT_S)
            check_data(port)
            return server
        except (RuntimeError, OSError) as exc:
            stop_server(server)
            if attempt == 2:
                raise RuntimeError(f"{exc}; its log ends with:\n{log_tail(log)}") from exc
    raise AssertionError("unreachable")


def stop_server(server: RunningServer) -> None:
    """SIGTERM our own child, SIGKILL it if it does not go within STOP_TIMEOUT_S."""
    if server.proc.poll() is not None:
        return
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=STOP_TIMEOUT_S)


def log_tail(log: Path, lines: int = 15) -> str:
    """The end of a server's log, indented so it reads as a quote inside the benchmark's output."""
    with contextlib.suppress(OSError):
        return "\n".join(f"    | {line}" for line in log.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def servers_running(specs: Sequence[ServerSpec], logdir: Path, cpu: str | None) -> Iterator[dict[str, RunningServer]]:
    """Start every spec that can start; stop all of them whatever happens."""
    running: dict[str, RunningServer] = {}
    try:
        for spec in specs:
            try:
                running[spec.name] = start_server(spec, logdir, cpu)
            except RuntimeError as exc:
                print(f"NOTE: {spec.name} could not start, its rows are skipped: {exc}")
        yield running
    finally:
        for server in running.values():
            stop_server(server)


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class LoadOptions:
    """loadgen settings shared by all runs."""

    loadgen: Path
    seconds: float
    warmup: float
    timeout_ms: int
    cpu: str | None


def parse_kv(line: str) -> dict[str, float]:
    """loadgen's one line of key=value pairs; a value that is not a number would be dropped."""
    values: dict[str, float] = {}
    for token in line.split():
        key, _, raw = token.partition("=")
        with contextlib.suppress(ValueError):
            values[key] = float(raw)
    return values


def run_loadgen(opts: LoadOptions, port: int, args: list[str], server_pid: int) -> LoadResult:
    """One bounded loadgen run, with loadgen's CPU (rusage delta) and the server's (/proc delta)."""
    cmd = pinned(opts.cpu, [str(opts.loadgen), "-H", HOST, "-p", str(port), *args])
    budget = 15 + opts.warmup + opts.seconds + opts.timeout_ms / 1000 + 40  # > loadgen's alarm()
    cpu0, (usr0, sys0), t0 = children_cpu_seconds(), cpu_times(server_pid), time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, check=False)
        out, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:  # run() has killed its own child already
        partial = exc.stdout or b""
        out, code = partial.decode(errors="replace") if isinstance(partial, bytes) else partial, -1
    wall = time.monotonic() - t0
    usr1, sys1 = cpu_times(server_pid)
    lines = [line for line in out.splitlines() if line.startswith("requests=")]
    return LoadResult(
        values=parse_kv(lines[-1]) if lines else {},
        exit_code=code,
        wall_s=wall,
        loadgen_cpu_s=children_cpu_seconds() - cpu0,
        server_cpu_s=(usr1 + sys1) - (usr0 + sys0),
        server_sys_s=sys1 - sys0,
    )


def scenario_args(opts: LoadOptions, scenario: Scenario) -> list[str]:
    """FC03 of READ_QUANTITY registers at 0; -E so high that only our parsing judges errors."""
    flags = {
        "-c": scenario.conns, "-d": scenario.depth, "-f": 3, "-a": 0, "-n": READ_QUANTITY,
        "-T": opts.seconds, "-w": opts.warmup, "-o": opts.timeout_ms, "-E": MAX_ERRORS,
    }  # fmt: skip
    return [str(item) for pair in flags.items() for item in pair]


def describe(result: LoadResult) -> str:
    """One progress line: figures plus who was busy (server near 100 % = server-bound)."""
    if result.failed:
        return f"FAILED (loadgen exit {result.exit_code})"
    server, loadgen = cpu_pct(result.server_cpu_s, result), cpu_pct(result.loadgen_cpu_s, result)
    return (
        f"rps={result.rps:>9.0f}  p50={result.get('p50_us'):>8.1f}us  "
        f"p99={result.get('p99_us'):>8.1f}us  errors={result.get('errors'):.0f}  "
        f"cpu: server {server:3.0f}%  loadgen {loadgen:3.0f}%"
    )


def ensure_alive(running: dict[str, RunningServer], name: str, logdir: Path, cpu: str | None) -> RunningServer:
    """A server that died in an earlier run is reported and restarted, so one crash costs one run."""
    server = running[name]
    if server.proc.poll() is None:
        return server
    print(f"NOTE: {name} died (exit {server.proc.returncode}); log tail:\n{log_tail(server.log)}")
    running[name] = start_server(server.spec, logdir, cpu)
    return running[name]


Results = dict[str, dict[str, list[LoadResult]]]


def measure_throughput(
    running: dict[str, RunningServer],
    opts: LoadOptions,
    rounds: int,
    logdir: Path,
    server_cpu: str | None,
) -> Results:
    """Every scenario, every round, servers alternately: drift hits all servers alike."""
    results: Results = {s.key: {name: [] for name in running} for s in SCENARIOS}
    for scenario in SCENARIOS:
        print(
            f"\n== {scenario.title}: FC03 x{READ_QUANTITY} regs, "
            f"-c {scenario.conns} -d {scenario.depth}, {opts.seconds:g} s + {opts.warmup:g} s warm-up"
        )
        for rnd in range(1, rounds + 1):
            for name in list(running):
                try:
                    server = ensure_alive(running, name, logdir, server_cpu)
                except RuntimeError as exc:
                    print(f"  {name:<{NAME_WIDTH}} round {rnd}: restart failed: {exc}")
                    continue
                result = run_loadgen(opts, server.port, scenario_args(opts, scenario), server.pid)
                results[scenario.key][name].append(result)
                print(f"  {name:<{NAME_WIDTH}} round {rnd}: {describe(result)}")
    return results


def pick(runs: list[LoadResult], stat: str) -> LoadResult | None:
    """The run to quote: best rps (noise only ever slows a run down) or the median run."""
    good = sorted((r for r in runs if not r.failed), key=lambda r: r.rps)
    if not good:
        return None
    return good[-1] if stat == "best" else good[len(good) // 2]  # upper median when even


# --------------------------------------------------------------------------- memory


def wait_for_sockets(pid: int, target: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if socket_count(pid) >= target:
            return True
        time.sleep(0.05)
    return False


def measure_memory(
    spec: ServerSpec, opts: LoadOptions, conns: int, logdir: Path, server_cpu: str | None
) -> MemoryResult | str:
    """RSS of a fresh server before and while `conns` idle connections are held.

    A fresh process, because a server that served 100 busy connections has freed memory to
    reuse and would look cheaper per connection.  check_data() has already opened and closed
    one connection, so one-off first-connection costs are in the baseline.
    """
    hold = 6.0
    server = start_server(spec, logdir, server_cpu)
    try:
        time.sleep(0.5)
        base, base_sockets = rss_kib(server.pid), socket_count(server.pid)
        flags = {"-H": HOST, "-p": server.port, "-c": conns, "-w": 0, "-T": hold, "-C": 60, "-E": MAX_ERRORS}
        args = [str(item) for pair in flags.items() for item in pair]
        loader = subprocess.Popen(
            pinned(opts.cpu, [str(opts.loadgen), "-I", *args]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if not wait_for_sockets(server.pid, base_sockets + conns, time.monotonic() + 60):
                return f"only {socket_count(server.pid) - base_sockets}/{conns} connections accepted"
            time.sleep(0.5)  # let the server finish setting up the last connections
            held = rss_kib(server.pid)
            out, _err = loader.communicate(timeout=60 + hold + 40)
        finally:
            if loader.poll() is None:
                loader.kill()
                loader.wait()
        ok = int(parse_kv(out).get("conns_ok", conns)) if out else conns
        return MemoryResult(base, held, ok)
    finally:
        stop_server(server)


# --------------------------------------------------------------------------- reporting


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def cell_rps(result: LoadResult | None) -> str:
    return f"{result.rps:>8.0f}" if result else f"{'-':>8}"


def cell_full(result: LoadResult | None) -> str:
    """rps p50 p99 errors."""
    if result is None:
        return f"{'-':>8} {'-':>7} {'-':>7} {'-':>6}"
    return f"{result.rps:>8.0f} {result.get('p50_us'):>7.0f} {result.get('p99_us'):>7.0f} {result.get('errors'):>6.0f}"


def picked_row(results: Results, scenario: Scenario, stat: str) -> dict[str, LoadResult | None]:
    return {name: pick(runs, stat) for name, runs in results[scenario.key].items()}


def rps_of(result: LoadResult | None) -> float | None:
    return result.rps if result else None


def cpu_pct(seconds: float, result: LoadResult) -> float:
    """CPU seconds over the run's wall time (warm-up and drain included), as % of one core."""
    return 100.0 * seconds / result.wall_s if result.wall_s else 0.0


def print_summary(results: Results, stat: str) -> None:
    """The table a reader compares: modbusd against pymodbus, with uvloop and the C ceiling."""
    print(f"\n== Summary ({stat} of rounds; rps = answered requests/s in the measured window; p50/p99 in us)")
    cols = f"{'rps':>8} {'p50':>7} {'p99':>7} {'err':>6}"
    print(
        f"{'':<24}| {'modbusd':<31} | {'+uvloop':>8} | {'pymodbus':<31} | {'libmodbus':>9} "
        f"| {'modbusd /':>9} | {'+uvloop /':>9}"
    )
    print(f"{'scenario':<24}| {cols} | {'rps':>8} | {cols} | {'C rps':>9} | {'pymodbus':>9} | {'pymodbus':>9}")
    for scenario in SCENARIOS:
        row = picked_row(results, scenario, stat)
        mb, uv, py = row.get(MODBUSD), row.get(MODBUSD_UVLOOP), row.get(PYMODBUS)
        print(
            f"{scenario.title:<24}| {cell_full(mb)} | {cell_rps(uv)} | {cell_full(py)} | "
            f"{cell_rps(row.get(LIBMODBUS)):>9} | {ratio(rps_of(mb), rps_of(py)):>9} | "
            f"{ratio(rps_of(uv), rps_of(py)):>9}"
        )
    print_floor(results, stat)


def percent(a: float | None, b: float | None) -> str:
    return f"{100 * a / b:.0f}%" if a is not None and b else "n/a"


def picked_rps(results: Results, scenario: Scenario, stat: str) -> dict[str, float | None]:
    return {name: rps_of(result) for name, result in picked_row(results, scenario, stat).items()}


def print_floor(results: Results, stat: str) -> None:
    """modbusd next to the asyncio floor, both as ratios to pymodbus and as a share of the floor.

    The floor's ratio to pymodbus bounds what any Python server can reach on that loop:
    a target above it cannot be met by making modbusd's own work cheaper.
    """
    if FLOOR not in results[SCENARIOS[0].key]:
        return
    print(f"\n-- Against the asyncio floor: {FLOOR} = one readiness callback per read answering canned FC03, "
          "no Modbus work")  # fmt: skip
    heads = ("floor", "floor+uv", "modbusd /", "floor /", "+uvloop /", "floor+uv /")
    print(f"{'':<24}| " + " | ".join(f"{h:>10}" for h in heads))
    units = ("rps", "rps", "pymodbus", "pymodbus", "pymodbus", "pymodbus")
    print(f"{'scenario':<24}| " + " | ".join(f"{u:>10}" for u in units))
    for scenario in SCENARIOS:
        rps = picked_rps(results, scenario, stat)
        py = rps.get(PYMODBUS)
        cells = (
            f"{rps[FLOOR]:.0f}" if rps.get(FLOOR) else "-",
            f"{rps[FLOOR_UVLOOP]:.0f}" if rps.get(FLOOR_UVLOOP) else "-",
            ratio(rps.get(MODBUSD), py),
            ratio(rps.get(FLOOR), py),
            ratio(rps.get(MODBUSD_UVLOOP), py),
            ratio(rps.get(FLOOR_UVLOOP), py),
        )
        print(f"{scenario.title:<24}| " + " | ".join(f"{c:>10}" for c in cells))
    if MODBUSD in results[SCENARIOS[0].key]:
        print_floor_shares(results, stat)


def print_floor_shares(results: Results, stat: str) -> None:
    """One line per scenario: the share of the floor modbusd reaches, i.e. what its own work costs."""
    for scenario in SCENARIOS:
        rps = picked_rps(results, scenario, stat)
        line = f"{scenario.title}: modbusd reaches {percent(rps.get(MODBUSD), rps.get(FLOOR))} of the asyncio floor"
        if FLOOR_UVLOOP in rps and MODBUSD_UVLOOP in rps:
            uv_share = percent(rps.get(MODBUSD_UVLOOP), rps.get(FLOOR_UVLOOP))
            line += f" (modbusd+uvloop: {uv_share} of the floor+uvloop)"
        print(line)


def print_pipelining(results: Results, stat: str) -> None:
    """Depth 16: how many requests each server answered, and what it dropped or reordered."""
    print("\n== Pipelining, 10 conns x 16 in flight: answered vs lost (whole run, warm-up included)")
    print(
        f"{'server':<{NAME_WIDTH}} {'sent':>9} {'answered':>9} {'answered%':>9} {'timeouts':>8} {'errors':>7} "
        f"{'reconnects':>10} {'disconnects':>11} {'out-of-order':>12}"
    )
    for name, runs in results["c10d16"].items():
        result = pick(runs, stat)
        if result is None:
            print(f"{name:<{NAME_WIDTH}} no successful run")
            continue
        sent, answered = result.get("sent_total"), result.get("ok_total")
        print(
            f"{name:<{NAME_WIDTH}} {sent:>9.0f} {answered:>9.0f} {100 * answered / sent if sent else 0:>8.2f}% "
            f"{result.get('timeouts'):>8.0f} {result.get('errors'):>7.0f} "
            f"{result.get('reconnects'):>10.0f} {result.get('disconnects'):>11.0f} {result.get('ooo'):>12.0f}"
        )
    mb16 = pick(results["c10d16"].get(MODBUSD, []), stat)
    py10 = pick(results["c10"].get(PYMODBUS, []), stat)
    print(f"modbusd at depth 16 / pymodbus at 10 conns without pipelining: {ratio(rps_of(mb16), rps_of(py10))}")


def print_headroom(results: Results, stat: str) -> None:
    """Evidence that loadgen is not the limit: the C server's rps, and who was busy in each run.

    A Python server near 100 % of its core while loadgen is well below 100 % of its own is
    server-bound; loadgen near 100 % would mean the figure is the client's.
    """
    print("\n== Load generator headroom: CPU % of one core, server / loadgen, in the quoted run")
    order = (MODBUSD, MODBUSD_UVLOOP, PYMODBUS, FLOOR, FLOOR_UVLOOP, LIBMODBUS)
    names = [name for name in order if name in results[SCENARIOS[0].key]]
    widths = {name: max(15, len(name)) for name in names}
    print(f"{'scenario':<24}| {'C rps / fastest Python':>22} | " + " | ".join(f"{n:>{widths[n]}}" for n in names))
    for scenario in SCENARIOS:
        row = picked_row(results, scenario, stat)
        not_servers = (LIBMODBUS, FLOOR, FLOOR_UVLOOP)  # the ceiling and the floors: yardsticks, not servers
        fastest_py = max((r.rps for n, r in row.items() if r and n not in not_servers), default=0.0)
        cells = []
        for name in names:
            result = row.get(name)
            cell = (
                f"{cpu_pct(result.server_cpu_s, result):.0f}% /{cpu_pct(result.loadgen_cpu_s, result):>3.0f}%"
                if result
                else "-"
            )
            cells.append(f"{cell:>{widths[name]}}")
        print(f"{scenario.title:<24}| {ratio(rps_of(row.get(LIBMODBUS)), fastest_py):>22} | " + " | ".join(cells))


def print_kernel_share(results: Results, stat: str) -> None:
    """How much of each server's CPU went to the kernel (socket syscalls, loopback TCP).

    An event loop (uvloop included) can only shrink the rest, so a high kernel share at one
    request per read is why uvloop adds little there.
    """
    print("\n== Server CPU spent in the kernel, % of the server's own CPU, in the quoted run")
    names = list(results[SCENARIOS[0].key])
    widths = {name: max(8, len(name)) for name in names}
    print(f"{'scenario':<24}| " + " | ".join(f"{n:>{widths[n]}}" for n in names))
    for scenario in SCENARIOS:
        row = picked_row(results, scenario, stat)
        cells = []
        for name in names:
            result = row.get(name)
            share = percent(result.server_sys_s, result.server_cpu_s) if result else "-"
            cells.append(f"{share:>{widths[name]}}")
        print(f"{scenario.title:<24}| " + " | ".join(cells))


def print_memory(memory: dict[str, MemoryResult | str], conns: int) -> None:
    print(f"\n== Memory per idle connection ({conns} idle connections, VmRSS delta)")
    for name, result in memory.items():
        if isinstance(result, str):
            print(f"{name:<15} n/a: {result}")
        else:
            print(
                f"{name:<15} base {result.base_kib:>7} KiB  held {result.held_kib:>7} KiB  "
                f"-> {result.per_conn_kib:6.2f} KiB/conn ({result.conns} conns)"
            )
    mb, py = memory.get(MODBUSD), memory.get(PYMODBUS)
    if isinstance(mb, MemoryResult) and isinstance(py, MemoryResult):
        print(f"modbusd/pymodbus KiB per connection: {ratio(mb.per_conn_kib, py.per_conn_kib)}")


# --------------------------------------------------------------------------- setup


def modbusd_problem() -> str | None:
    """None when the checkout's modbusd imports and its CLI answers --help, else why not."""
    env = child_env({"PYTHONPATH": pythonpath_with_src()})
    checks = (
        [sys.executable, "-m", "modbusd", "--help"],
        [sys.executable, "-c", "from modbusd import Device, Server"],
    )
    for cmd in checks:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, check=False)
        except subprocess.TimeoutExpired:
            return f"{' '.join(cmd[1:])} timed out"
        if proc.returncode != 0:
            return f"{' '.join(cmd[1:])}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def pythonpath_with_src() -> str:
    """src/ first, so the benchmark measures the checkout, not an installed modbusd."""
    parts = [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def server_specs(
    libmodbus_bin: Path | None,
    with_modbusd: bool,
    with_uvloop: bool,
    with_floor: bool,
    libmodbus_reply_bin: Path | None = None,
) -> list[ServerSpec]:
    """The servers in the order they alternate within a round."""
    py = sys.executable
    src_env = {"PYTHONPATH": pythonpath_with_src()}
    floor = str(HERE / "run_asyncio_floor.py")
    specs: list[ServerSpec] = []
    if with_modbusd:
        specs.append(ServerSpec(MODBUSD, lambda p: [py, str(HERE / "run_modbusd.py"), "-p", str(p)], src_env))
    specs.append(ServerSpec(PYMODBUS, lambda p: [py, str(HERE / "run_pymodbus.py"), "-p", str(p)]))
    if with_floor:
        specs.append(ServerSpec(FLOOR, lambda p: [py, floor, "-p", str(p)]))
    if with_modbusd and with_uvloop:
        specs.append(
            ServerSpec(MODBUSD_UVLOOP, lambda p: [py, str(HERE / "run_modbusd.py"), "-p", str(p), "--uvloop"], src_env)
        )
    if with_floor and with_uvloop:
        specs.append(ServerSpec(FLOOR_UVLOOP, lambda p: [py, floor, "-p", str(p), "--uvloop"]))
    if libmodbus_bin is not None:
        specs.append(ServerSpec(LIBMODBUS, lambda p: [str(libmodbus_bin), str(p)]))
    if libmodbus_reply_bin is not None:
        specs.append(ServerSpec(LIBMODBUS_REPLY, lambda p: [str(libmodbus_reply_bin), str(p)]))
    return specs


def pinning() -> tuple[str | None, str | None]:
    """(server cpu, load cpu): cores 1 and 0 when taskset and two cores exist, else unpinned."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return SERVER_CPU, LOAD_CPU
    print("NOTE: taskset or a second core missing: running unpinned, figures are less stable")
    return None, None


def uvloop_available() -> bool:
    if importlib.util.find_spec("uvloop") is None:
        print("NOTE: uvloop is not importable: the modbusd+uvloop and asyncio floor+uvloop rows are skipped")
        return False
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="modbusd vs pymodbus over Modbus/TCP on 127.0.0.1, with a libmodbus ceiling."
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run, not measured (default 1)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs per server and scenario, alternating servers (default 2)"
    )
    parser.add_argument(
        "--stat",
        choices=("best", "median"),
        default="best",
        help="which round to quote (default best: noise only slows a run)",
    )
    parser.add_argument(
        "--timeout-ms",
        type=int,
        default=1000,
        help="loadgen per-request timeout; a dropped request costs this (default 1000)",
    )
    parser.add_argument(
        "--idle-conns", type=int, default=1000, help="idle connections for the memory test, 0 to skip (default 1000)"
    )
    parser.add_argument("--no-libmodbus", action="store_true", help="skip the C ceiling row")
    parser.add_argument(
        "--no-modbusd", action="store_true", help="pymodbus/libmodbus only (also automatic when modbusd is missing)"
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the asyncio floor rows (canned answers, no Modbus work)"
    )
    parser.add_argument(
        "--loadgen-src",
        type=Path,
        default=LOADGEN_SRC,
        help="the load generator's C source to build (default benchmarks/loadgen.c)",
    )
    return parser.parse_args(argv)


def build_tools(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path | None]:
    """Build loadgen (required) and the libmodbus server (optional row)."""
    loadgen = tmp / "loadgen"
    error = compile_c(loadgen, [args.loadgen_src], [], werror=True)
    if error:
        raise SystemExit(error)
    if args.no_libmodbus:
        return loadgen, None
    lib_bin = tmp / "libmodbus_server"
    error = compile_c(lib_bin, [LIBMODBUS_SRC], libmodbus_flags())
    if error:
        print(f"NOTE: libmodbus ceiling row skipped: {error}")
        return loadgen, None
    return loadgen, lib_bin


def build_libmodbus_reply(tmp: Path) -> Path | None:
    """libmodbus's own serving loop (libmodbus_reply_server.c), for the scripts that show it beside the yardstick."""
    binary = tmp / "libmodbus_reply_server"
    error = compile_c(binary, [LIBMODBUS_REPLY_SRC], libmodbus_flags())
    if error:
        print(f"NOTE: libmodbus receive/reply row skipped: {error}")
        return None
    return binary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    server_cpu, load_cpu = pinning()
    with_modbusd = not args.no_modbusd
    if with_modbusd and (problem := modbusd_problem()):
        print(f"NOTE: modbusd is not usable yet, its rows are skipped: {problem}")
        with_modbusd = False
    with tempfile.TemporaryDirectory(prefix="bench_tcp-") as tmpdir:
        tmp = Path(tmpdir)
        loadgen, lib_bin = build_tools(args, tmp)
        opts = LoadOptions(loadgen, args.seconds, args.warmup, args.timeout_ms, load_cpu)
        specs = server_specs(lib_bin, with_modbusd, uvloop_available(), not args.no_floor)
        print(f"servers on cpu {server_cpu}, loadgen on cpu {load_cpu}; python {sys.version.split()[0]}")
        with servers_running(specs, tmp, server_cpu) as running:
            results = measure_throughput(running, opts, args.rounds, tmp, server_cpu)
            logs = {name: server_chatter(server.log) for name, server in running.items()}
        memory: dict[str, MemoryResult | str] = {}
        if args.idle_conns > 0:
            for spec in specs:
                if spec.name in (MODBUSD, PYMODBUS):
                    try:
                        memory[spec.name] = measure_memory(spec, opts, args.idle_conns, tmp, server_cpu)
                    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                        memory[spec.name] = f"failed: {exc}"
        print_summary(results, args.stat)
        print_pipelining(results, args.stat)
        print_headroom(results, args.stat)
        print_kernel_share(results, args.stat)
        if memory:
            print_memory(memory, args.idle_conns)
        print_server_logs(logs)
    return 0


def server_chatter(log: Path) -> list[str]:
    """What a server logged besides its ready line (it logs at WARNING and above only)."""
    with contextlib.suppress(OSError):
        return [
            line for line in log.read_text(errors="replace").splitlines() if line.strip() and READY_MARKER not in line
        ]
    return []


def print_server_logs(logs: dict[str, list[str]]) -> None:
    """Anything a server said under load (errors, dropped sends) is worth a look."""
    for name, lines in logs.items():
        if lines:
            tail = "\n".join(f"    {line[:160]}" for line in lines[-8:])
            print(f"\n== {name} logged {len(lines)} lines; the last ones:\n{tail}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
