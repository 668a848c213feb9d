#!/usr/bin/env python3
"""Throughput, p99 latency and memory by connection count and pipelining: modbusd, pymodbus and libmodbus side by side.

Scenarios, FC03 of 10 registers at 0 as in bench_tcp.py: 1 connection (latency), 100 and 1,000 connections,
10 connections with 16 requests in flight each (pipelined), and 10,000 connections, each with one request in
flight. Then memory per connection: fresh modbusd (on both loops) and pymodbus while loadgen holds 10,000 idle
connections (VmRSS delta over connections). Every server runs the same scenario in turn within each round, and the
median round is quoted, so that the ratios (modbusd over pymodbus, modbusd over libmodbus, p99 over libmodbus's
p99) come from the same minutes of a shared machine. The ratios are the command line's modbusd's: on uvloop when it
is installed (the modbusd+uvloop row; the modbusd row is asyncio's loop). The servers, the data and the load
generator are bench_tcp.py's (imported), with two libmodbus servers:

- "libmodbus C" (libmodbus_server.c), the C yardstick: it frames what it reads itself and corks its replies, so it
  gains from pipelining as a batch does; the issue's ratios to libmodbus are taken against it;
- "libmodbus rcv+reply" (libmodbus_reply_server.c): libmodbus the way its manual serves, modbus_receive() then
  modbus_reply() per request (no figure above 1,000 connections: select() takes descriptors below 1024 only);

and the asyncio floor (run_asyncio_floor.py) on the same loop as the ratios: canned answers from one readiness
callback per read and no Modbus work, the bound of any Python server on that loop ("modbusd / floor").

    python3 benchmarks/bench_connections.py                      # about 10 minutes
    python3 benchmarks/bench_connections.py --only c1,c10d16 --rounds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import bench_tcp as tcp

SCENARIOS = (
    tcp.Scenario("c1", "1 conn", 1, 1),
    tcp.Scenario("c100", "100 conns", 100, 1),
    tcp.Scenario("c1000", "1,000 conns", 1000, 1),
    tcp.Scenario("c10d16", "10 conns x 16 pipelined", 10, 16),
    tcp.Scenario("c10000", "10,000 conns", 10000, 1),
)
YARDSTICKS = (tcp.LIBMODBUS, tcp.LIBMODBUS_REPLY, tcp.FLOOR, tcp.FLOOR_UVLOOP)  # no memory row for these
REPLY_MAX_CONNS = 1000  # libmodbus_reply_server.c closes descriptors >= FD_SETSIZE (1024)
CONNECT_S = 90  # loadgen's -C: 10,000 connections are opened 16 at a time, and pymodbus accepts slowly


def load_args(opts: tcp.LoadOptions, scenario: tcp.Scenario) -> list[str]:
    return [*tcp.scenario_args(opts, scenario), "-C", str(CONNECT_S)]


def measure(running: dict[str, tcp.RunningServer], opts: tcp.LoadOptions, rounds: int,
            scenarios: Sequence[tcp.Scenario], *, logdir: Path,
            server_cpu: str | None) -> dict[str, dict[str, list[tcp.LoadResult]]]:  # fmt: skip
    results: dict[str, dict[str, list[tcp.LoadResult]]] = {s.key: {name: [] for name in running} for s in scenarios}
    for scenario in scenarios:
        print(f"\n== {scenario.title}: -c {scenario.conns} -d {scenario.depth}, {opts.seconds:g} s per run")
        for rnd in range(1, rounds + 1):
            for name in list(running):
                if name == tcp.LIBMODBUS_REPLY and scenario.conns > REPLY_MAX_CONNS:
                    continue  # modbus_receive's select() takes descriptors below 1024 only
                try:
                    server = tcp.ensure_alive(running, name, logdir, server_cpu)
                except RuntimeError as exc:
                    print(f"  {name:<{tcp.NAME_WIDTH}} round {rnd}: restart failed: {exc}")
                    continue
                result = tcp.run_loadgen(opts, server.port, load_args(opts, scenario), server.pid)
                results[scenario.key][name].append(result)
                print(f"  {name:<{tcp.NAME_WIDTH}} round {rnd}: {tcp.describe(result)}")
    return results


def cpu_us(result: tcp.LoadResult) -> float:
    """The server's CPU per answered request (warm-up included): what a server costs even while a busy machine
    gives it only part of a core, when its req/s says more about the neighbours than about the server."""
    answered = result.get("ok_total")
    return 1e6 * result.server_cpu_s / answered if answered else float("nan")


def cell(result: tcp.LoadResult | None) -> str:
    if result is None:
        return f"{'-':>8} {'-':>7} {'-':>6} {'-':>5}"
    return f"{result.rps:>8.0f} {result.get('p99_us'):>7.0f} {cpu_us(result):>6.1f} {result.get('errors'):>5.0f}"


def print_table(results: dict[str, dict[str, list[tcp.LoadResult]]], scenarios: Sequence[tcp.Scenario]) -> None:
    names = list(next(iter(results.values())))
    print("\n== Summary (median round; rps = answered requests/s; p99 in us; cpu = server CPU us per request)")
    print(f"{'':<24}| " + " | ".join(f"{n:<28}" for n in names)
          + " | modbusd / | modbusd / | p99 / libmodbus | modbusd / | modbusd /")  # fmt: skip
    print(f"{'scenario':<24}| " + " | ".join(f"{'rps':>8} {'p99':>7} {'cpu':>6} {'err':>5}" for _ in names)
          + f" | {'pymodbus':>9} | {'libmodbus':>9} | {'p99':>15} | {'rcv/reply':>9} | {'floor':>9}")  # fmt: skip
    for scenario in scenarios:
        row = {name: tcp.pick(runs, "median") for name, runs in results[scenario.key].items()}
        mb = row.get(tcp.MODBUSD_UVLOOP, row.get(tcp.MODBUSD))  # the command line's loop: uvloop when installed
        py, lib, reply = row.get(tcp.PYMODBUS), row.get(tcp.LIBMODBUS), row.get(tcp.LIBMODBUS_REPLY)
        floor = row.get(tcp.FLOOR_UVLOOP, row.get(tcp.FLOOR))
        p99 = tcp.ratio(mb.get("p99_us") if mb else None, lib.get("p99_us") if lib else None)
        print(f"{scenario.title:<24}| " + " | ".join(f"{cell(row.get(n)):<28}" for n in names)
              + f" | {tcp.ratio(tcp.rps_of(mb), tcp.rps_of(py)):>9} | {tcp.ratio(tcp.rps_of(mb), tcp.rps_of(lib)):>9}"
              f" | {p99:>15} | {tcp.ratio(tcp.rps_of(mb), tcp.rps_of(reply)):>9}"
              f" | {tcp.ratio(tcp.rps_of(mb), tcp.rps_of(floor)):>9}")  # fmt: skip
        if mb is not None and mb.get("conns_ok") < scenario.conns:
            print(f"  (modbusd: only {mb.get('conns_ok'):.0f} of {scenario.conns} connections opened)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per run (default 2)")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run (default 0.5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server and scenario (default 3)")
    parser.add_argument("--only", default="", help="scenario keys, comma-separated: c1,c100,c1000,c10d16,c10000; none")
    parser.add_argument("--idle-conns", type=int, default=10000, help="idle connections for memory, 0 skips it")
    parser.add_argument("--no-uvloop", action="store_true", help="no modbusd+uvloop row (the command line's default)")
    parser.add_argument("--timeout-ms", type=int, default=2000, help="loadgen's per-request time-out (default 2000)")
    parser.add_argument("--src", type=Path, help="another checkout's src/ to measure as modbusd (before and after)")
    parser.add_argument("--loadgen-src", type=Path, default=tcp.LOADGEN_SRC, help=argparse.SUPPRESS)
    parser.add_argument("--no-libmodbus", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-floor", action="store_true", help="no asyncio floor row (canned answers, no Modbus)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    keys = {key for key in args.only.split(",") if key}  # "none": the memory test alone
    scenarios = [s for s in SCENARIOS if not keys or s.key in keys]
    if args.src is not None:  # bench_tcp.py's servers put <checkout>/src first on PYTHONPATH
        tcp.REPO = args.src.resolve().parent
    tcp.raise_fd_limit()
    server_cpu, load_cpu = tcp.pinning()
    with tempfile.TemporaryDirectory(prefix="bench_connections-") as tmpdir:
        tmp = Path(tmpdir)
        loadgen, lib_bin = tcp.build_tools(args, tmp)
        opts = tcp.LoadOptions(loadgen, args.seconds, args.warmup, args.timeout_ms, load_cpu)
        # modbusd on asyncio's loop and on uvloop, pymodbus, libmodbus's two servers, and the floor on the
        # command line's loop: what the least Python per read costs, the bound of any Python server on that loop
        uvloop = not args.no_uvloop and tcp.uvloop_available()
        reply_bin = None if args.no_libmodbus else tcp.build_libmodbus_reply(tmp)
        server_specs = tcp.server_specs(lib_bin, True, uvloop, not args.no_floor, reply_bin)
        if uvloop:
            server_specs = [spec for spec in server_specs if spec.name != tcp.FLOOR]
        print(f"servers on cpu {server_cpu}, loadgen on cpu {load_cpu}; python {sys.version.split()[0]}")
        with tcp.servers_running(server_specs, tmp, server_cpu) as running:
            results = measure(running, opts, args.rounds, scenarios, logdir=tmp, server_cpu=server_cpu)
        memory: dict[str, tcp.MemoryResult | str] = {}
        for spec in server_specs if args.idle_conns else ():
            if spec.name not in YARDSTICKS:  # C servers' tables are static, the floor holds nothing: nothing to see
                try:
                    memory[spec.name] = tcp.measure_memory(spec, opts, args.idle_conns, tmp, server_cpu)
                except (RuntimeError, OSError) as exc:
                    memory[spec.name] = f"failed: {exc}"
        if scenarios:
            print_table(results, scenarios)
        if memory:
            tcp.print_memory(memory, args.idle_conns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
