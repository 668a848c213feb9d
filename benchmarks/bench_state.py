#!/usr/bin/env python3
"""Write throughput with --state (SQLite, synchronous full and normal) against the same server without, side by side.

Why it is built this way:

* The load is bench_tcp.py's: loadgen.c (C, epoll), 100 connections, one request in flight each, the server on
  core 1 and loadgen on core 0 (taskset). Each connection writes registers of its own (loadgen -s), so a commit
  stores as many rows as writes came together, as a plant's many clients would make it do, not one row.
* FC06 (one register) and FC16 (ten registers). A write is answered only once its transaction is committed, so
  the figure to watch is how many writes share one commit (the group commit) and what a sync costs on this disk.
* The three servers alternate within each round and each scenario; the ratios quoted are from the same run. The
  machine is shared: figures are noisy, the ratios less so.
* Each server's state file is new, in a temporary folder on the disk /tmp is on (fsync's cost is that disk's).

Only processes started here are stopped (by pid), all traffic stays on 127.0.0.1, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import bench_tcp as bt  # the sibling script: loadgen's build and runs, server start and stop, pinning

NO_STATE = "no state"
FULL = "state, sync full"
NORMAL = "state, sync normal"
CONNECTIONS = 100
FIRST = 100  # the registers written start here (bench_tcp's check reads 0..9 at start)

SCENARIOS = (  # (title, loadgen's function code flags, registers per connection)
    ("FC06, 100 conns", ["-f", "6"], 1),
    ("FC16 x 10, 100 conns", ["-f", "16", "-n", "10"], 10),
)


def specs(folder: Path) -> list[bt.ServerSpec]:
    py, launcher = sys.executable, str(bt.HERE / "run_modbusd.py")
    env = {"PYTHONPATH": bt.pythonpath_with_src()}

    def argv(*extra: str):
        return lambda port: [py, launcher, "-p", str(port), *extra]

    return [
        bt.ServerSpec(NO_STATE, argv(), env),
        bt.ServerSpec(FULL, argv("--state", str(folder / "full.state"), "--state-sync", "full"), env),
        bt.ServerSpec(NORMAL, argv("--state", str(folder / "normal.state"), "--state-sync", "normal"), env),
    ]


def load_args(opts: bt.LoadOptions, flags: list[str], span: int) -> list[str]:
    common = {"-c": CONNECTIONS, "-d": 1, "-a": FIRST, "-s": span, "-T": opts.seconds, "-w": opts.warmup,
              "-o": opts.timeout_ms, "-E": bt.MAX_ERRORS}  # fmt: skip
    return [*flags, *(str(item) for pair in common.items() for item in pair)]


def measure(running: dict[str, bt.RunningServer], opts: bt.LoadOptions, rounds: int, logdir: Path,
            server_cpu: str | None) -> dict[str, dict[str, list[bt.LoadResult]]]:  # fmt: skip
    results: dict[str, dict[str, list[bt.LoadResult]]] = {}
    for title, flags, span in SCENARIOS:
        print(f"\n== {title}: one request in flight per connection, {opts.seconds:g} s + {opts.warmup:g} s warm-up")
        results[title] = {name: [] for name in running}
        for rnd in range(1, rounds + 1):
            for name in list(running):
                server = bt.ensure_alive(running, name, logdir, server_cpu)
                result = bt.run_loadgen(opts, server.port, load_args(opts, flags, span), server.pid)
                results[title][name].append(result)
                print(f"  {name:<20} round {rnd}: {bt.describe(result)}")
    return results


def best(runs: list[bt.LoadResult]) -> bt.LoadResult | None:
    good = [r for r in runs if not r.failed and r.get("errors") == 0]
    return max(good, key=lambda r: r.rps) if good else None


def summary(results: dict[str, dict[str, list[bt.LoadResult]]]) -> None:
    print("\n== writes/s (best round; p50 / p99 latency), and the ratio to the same server without --state")
    print(f"{'scenario':<22} {'server':<20} {'writes/s':>9} {'p50 us':>8} {'p99 us':>9} {'vs no state':>12}")
    for title, by_server in results.items():
        reference = best(by_server.get(NO_STATE, []))
        for name, runs in by_server.items():
            result = best(runs)
            if result is None:
                print(f"{title:<22} {name:<20} {'failed or errors':>9}")
                continue
            ratio = bt.ratio(result.rps, reference.rps if reference else None)
            print(f"{title:<22} {name:<20} {result.rps:>9.0f} {result.get('p50_us'):>8.0f} "
                  f"{result.get('p99_us'):>9.0f} {ratio:>12}")  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per run (default 2)")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run (default 0.5)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server and scenario, alternating (default 2)")
    parser.add_argument("--timeout-ms", type=int, default=2000, help="loadgen's per-request time-out (default 2000)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bt.raise_fd_limit()
    server_cpu, load_cpu = bt.pinning()
    if problem := bt.modbusd_problem():
        raise SystemExit(f"modbusd is not usable: {problem}")
    with tempfile.TemporaryDirectory(prefix="bench_state-") as tmp:
        folder = Path(tmp)
        loadgen = folder / "loadgen"
        error = bt.compile_c(loadgen, [bt.LOADGEN_SRC], [], werror=True)
        if error:
            raise SystemExit(error)
        opts = bt.LoadOptions(loadgen, args.seconds, args.warmup, args.timeout_ms, load_cpu)
        print(f"state files in {folder} (the disk of /tmp); the machine is shared: figures are noisy")
        with bt.servers_running(specs(folder), folder, server_cpu) as running:
            if len(running) < 3:
                raise SystemExit("a server did not start: no side-by-side figures")
            summary(measure(running, opts, args.rounds, folder, server_cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
