#!/usr/bin/env python3
"""What value generators cost: 100-connection FC03 throughput with 10,000 generated points updated at 10 Hz,
against the same server with none, side by side in one run; and the CPU time of one generated update.

    python3 benchmarks/bench_generators.py                       # about a minute
    python3 benchmarks/bench_generators.py --generators 10000 --every 100ms --seconds 3 --rounds 3

Reuses bench_tcp.py's pieces: loadgen.c (built into a temporary directory), run_modbusd.py (the server through the
library API, holding register i = i for i < 100, here with `--generators N`: sine, ramp, counter and random in turn,
floats and ushorts, on the input registers, clear of the registers the load reads), the pinning (server on core 1,
loadgen on core 0) and the alternation of the two servers within each round, so drift hits both alike.

Printed: each run's requests per second; the best and the median of each server, and their ratios (target ≥ 0.8);
and
the CPU time per generated update, from each server's CPU use while idle (no load) over --idle seconds:
(CPU with generators − CPU without) / updates. On a shared machine the figures are noisy: compare ratios from one
run, not figures across runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench_tcp import (
    HERE,
    LOADGEN_SRC,
    LoadOptions,
    LoadResult,
    Scenario,
    ServerSpec,
    compile_c,
    cpu_times,
    describe,
    ensure_alive,
    pick,
    pinning,
    pythonpath_with_src,
    raise_fd_limit,
    run_loadgen,
    scenario_args,
    servers_running,
)

PLAIN = "modbusd"
GENERATED = "modbusd + generators"
HUNDRED = Scenario("c100", "100 connections", 100, 1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generators", type=int, default=10_000, help="generated points (default 10000)")
    parser.add_argument("--every", default="100ms", help="their update period (default 100ms: 10 Hz)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server, alternating (default 3)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured per server (default 3)")
    return parser.parse_args()


def seconds_of(every: str) -> float:
    units = {"ms": 0.001, "s": 1.0}
    for unit in ("ms", "s"):
        if every.endswith(unit):
            return float(every[: -len(unit)]) * units[unit]
    raise SystemExit(f"--every {every!r}: write it as 100ms or 1s")


def idle_cpu(pid: int, seconds: float) -> float:
    """CPU seconds (user + system) the process used over `seconds` of wall time, with nothing else asked of it."""
    user0, system0 = cpu_times(pid)
    time.sleep(seconds)
    user1, system1 = cpu_times(pid)
    return (user1 + system1) - (user0 + system0)


def main() -> int:
    args = parse_args()
    raise_fd_limit()
    server_cpu, load_cpu = pinning()
    py, env = sys.executable, {"PYTHONPATH": pythonpath_with_src()}
    runner = str(HERE / "run_modbusd.py")
    specs = [
        ServerSpec(PLAIN, lambda p: [py, runner, "-p", str(p)], env),
        ServerSpec(
            GENERATED,
            lambda p: [py, runner, "-p", str(p), "--generators", str(args.generators), "--every", args.every],
            env,
        ),
    ]
    rate = 1 / seconds_of(args.every)
    with tempfile.TemporaryDirectory(prefix="bench_generators.") as folder:
        tmp = Path(folder)
        loadgen = tmp / "loadgen"
        if error := compile_c(loadgen, [LOADGEN_SRC], [], werror=True):
            raise SystemExit(error)
        opts = LoadOptions(loadgen, args.seconds, args.warmup, 1000, load_cpu)
        print(f"{args.generators} generators every {args.every} ({args.generators * rate:,.0f} updates/s); "
              f"server on cpu {server_cpu}, loadgen on cpu {load_cpu}; python {sys.version.split()[0]}")  # fmt: skip
        with servers_running(specs, tmp, server_cpu) as running:
            if len(running) != len(specs):
                return 1
            idle = {name: idle_cpu(server.pid, args.idle) for name, server in running.items()}
            results: dict[str, list[LoadResult]] = {name: [] for name in running}
            print(f"\n== FC03 x10 registers, {HUNDRED.title}, {args.seconds:g} s + {args.warmup:g} s warm-up")
            for round_ in range(1, args.rounds + 1):
                for name in list(running):
                    server = ensure_alive(running, name, tmp, server_cpu)
                    result = run_loadgen(opts, server.port, scenario_args(opts, HUNDRED), server.pid)
                    results[name].append(result)
                    print(f"  {name:<22} round {round_}: {describe(result)}")
    for stat in ("best", "median"):
        plain, generated = pick(results[PLAIN], stat), pick(results[GENERATED], stat)
        print(f"\n{stat} of {args.rounds}:")
        for name, picked in ((PLAIN, plain), (GENERATED, generated)):
            print(f"  {name:<22} {picked.rps if picked else float('nan'):>9.0f} requests/s")
        if plain and generated:
            print(f"  ratio {generated.rps / plain.rps:.2f} (target >= 0.8)")
    updates = args.generators * rate * args.idle
    extra = idle[GENERATED] - idle[PLAIN]
    print(f"\nidle CPU over {args.idle:g} s: {PLAIN} {idle[PLAIN]:.3f} s, {GENERATED} {idle[GENERATED]:.3f} s "
          f"({100 * idle[GENERATED] / args.idle:.0f} % of a core)")  # fmt: skip
    print(f"CPU per generated update: {1e6 * extra / updates:.2f} us ({updates:,.0f} updates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
