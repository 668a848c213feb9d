#!/usr/bin/env python3
"""What modbusd's other request paths cost against a direct request, with pymodbus and libmodbus in the same run.

Rows, each driven by loadgen (bench_tcp.py's) with `--conns` connections, one request in flight on each:

* FC03 (10 registers at 0): modbusd answering from its tables (direct), with a request hook that returns None (the
  tables answer after it), and as a TCP gateway (`forward` to a second modbusd on the same core: the hop);
* FC06 (holding register 0): modbusd direct, and with that register subscribed (an event per write, counted by a
  listener);
* the same FC03 and FC06 against pymodbus and the libmodbus C server.

Every server takes its turn in each round and the median round is quoted, with each row's ratio to modbusd's direct
row of the same function, to pymodbus and to libmodbus. The hook, events and gateway rows should cost what their
work costs and no more: the direct row is where the fast paths are, the others go the reference way.

    python3 benchmarks/bench_paths.py                 # about 2 minutes
    python3 benchmarks/bench_paths.py --conns 100 --rounds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import bench_tcp as tcp

PYMODBUS, LIBMODBUS = tcp.PYMODBUS, tcp.LIBMODBUS
DIRECT, HOOK, SUBSCRIBED, GATEWAY = "modbusd", "modbusd, hook -> None", "modbusd, subscribed", "modbusd gateway hop"
ROWS = (  # (function code, server name): the rows in the order printed
    (3, DIRECT), (3, HOOK), (3, GATEWAY), (3, tcp.PYMODBUS), (3, tcp.LIBMODBUS),
    (6, DIRECT), (6, SUBSCRIBED), (6, tcp.PYMODBUS), (6, tcp.LIBMODBUS),
)  # fmt: skip


def modbusd(name: str, path: str) -> tcp.ServerSpec:
    script, py = str(tcp.HERE / "run_modbusd.py"), sys.executable
    return tcp.ServerSpec(
        name, lambda p: [py, script, "-p", str(p), "--path", path], {"PYTHONPATH": tcp.pythonpath_with_src()}
    )


def load_args(opts: tcp.LoadOptions, conns: int, function: int) -> list[str]:
    flags = {"-c": conns, "-d": 1, "-f": function, "-a": 0, "-n": tcp.READ_QUANTITY, "-T": opts.seconds,
             "-w": opts.warmup, "-o": opts.timeout_ms, "-E": tcp.MAX_ERRORS}  # fmt: skip
    return [str(item) for pair in flags.items() for item in pair]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per run (default 2)")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run (default 0.5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per row (default 3)")
    parser.add_argument("--conns", type=int, default=10, help="connections, one request in flight each (default 10)")
    args = parser.parse_args(argv)
    args.loadgen_src, args.no_libmodbus = tcp.LOADGEN_SRC, False
    tcp.raise_fd_limit()
    server_cpu, load_cpu = tcp.pinning()
    with tempfile.TemporaryDirectory(prefix="bench_paths-") as tmpdir:
        tmp = Path(tmpdir)
        loadgen, lib_bin = tcp.build_tools(args, tmp)
        opts = tcp.LoadOptions(loadgen, args.seconds, args.warmup, 2000, load_cpu)
        downstream = tcp.start_server(modbusd("downstream", "direct"), tmp, server_cpu)
        try:
            specs = [modbusd(DIRECT, "direct"), modbusd(HOOK, "hook"), modbusd(SUBSCRIBED, "subscribed"),
                     modbusd(GATEWAY, f"forward:{downstream.port}"),
                     *(s for s in tcp.server_specs(lib_bin, False, False, False))]  # fmt: skip
            with tcp.servers_running(specs, tmp, server_cpu) as running:
                results = measure(running, opts, args, server_cpu, tmp)
        finally:
            tcp.stop_server(downstream)
    print_table(results, args.conns)
    return 0


Results = dict[tuple[int, str], list[tcp.LoadResult]]


def measure(running: dict[str, tcp.RunningServer], opts: tcp.LoadOptions, args: argparse.Namespace,
            server_cpu: str | None, logdir: Path) -> Results:  # fmt: skip
    results: Results = {row: [] for row in ROWS if row[1] in running}
    for rnd in range(1, args.rounds + 1):
        for function, name in results:
            server = tcp.ensure_alive(running, name, logdir, server_cpu)
            result = tcp.run_loadgen(opts, server.port, load_args(opts, args.conns, function), server.pid)
            results[function, name].append(result)
            print(f"  FC{function:02d} {name:<22} round {rnd}: {tcp.describe(result)}")
    return results


def print_table(results: Results, conns: int) -> None:
    print(f"\n== Median of rounds, {conns} connections, one request in flight each (p50/p99 in us)")
    print(f"{'FC':<4} {'server / path':<24} {'rps':>8} {'p50':>7} {'p99':>7} {'err':>5} | "
          f"{'/ direct':>8} {'/ pymodbus':>10} {'/ libmodbus':>11}")  # fmt: skip
    picked = {row: tcp.pick(runs, "median") for row, runs in results.items()}
    for (function, name), result in picked.items():
        if result is None:
            print(f"FC{function:02d} {name:<24} no successful run")
            continue
        rps = result.rps
        ratios = [tcp.ratio(rps, tcp.rps_of(picked.get((function, other)))) for other in (DIRECT, PYMODBUS, LIBMODBUS)]
        print(f"{function:<4} {name:<24} {rps:>8.0f} {result.get('p50_us'):>7.0f} {result.get('p99_us'):>7.0f} "
              f"{result.get('errors'):>5.0f} | {ratios[0]:>8} {ratios[1]:>10} {ratios[2]:>11}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
