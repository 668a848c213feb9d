#!/usr/bin/env python3
"""The server's own work per request, without sockets: one checkout's Modbus/TCP session against another's.

Each `--src` (a checkout's src/ folder; this one's by default) is imported in a child process, which builds a
`Server` around a default Device the way `benchmarks/run_modbusd.py` does, takes the session a Modbus/TCP
connection would get, and feeds it FC03 requests (10 registers at 0): one request per `receive()` (a client waiting
for each answer) and 16 per `receive()` (pipelined). It prints the best of `--repeat` runs, in µs of CPU time per
request, and each checkout's ratio to the first. CPU time and the best run, because a shared machine only ever
slows a run down; the kernel, the event loop and the load generator are bench_connections.py's to measure.

    python3 benchmarks/bench_session.py --src /tmp/before/src --src src     # before and after, side by side
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, struct, sys, time
from modbusd import Device, Server

device = Device()
for i in range(100):
    device.holding_registers[i] = i
server = Server(device, host="127.0.0.1", port=0)
sessions = getattr(server, "_sessions", None) or server._answers  # _answers: a checkout before sessions.py
session = sessions.tcp_session("127.0.0.1:50000")
one = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 10)
figures = {}
for name, data, per_read in (("1 per read", one, 1), ("16 per read", one * 16, 16)):
    reads = 160000 // (per_read * 8)
    best = float("inf")
    for _ in range(int(sys.argv[1])):
        start = time.process_time()
        for _ in range(reads):
            session.receive(data)
        best = min(best, (time.process_time() - start) / (reads * per_read))
    figures[name] = best * 1e6
print(json.dumps(figures))
"""


def measure(src: Path, repeat: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(repeat)], capture_output=True, text=True, env=env,
                          timeout=600, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{src}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return json.loads(proc.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, action="append", help="a checkout's src/ (repeatable; default this one)")
    parser.add_argument("--repeat", type=int, default=15, help="runs per figure, the best is quoted (default 15)")
    parser.add_argument("--rounds", type=int, default=2, help="times each checkout is measured, in turn (default 2)")
    args = parser.parse_args(argv)
    sources = args.src or [HERE.parent / "src"]
    best: dict[Path, dict[str, float]] = {}
    for _ in range(args.rounds):  # in turn, so that a busy minute hits every checkout
        for src in sources:
            figures = measure(src, args.repeat)
            best[src] = {k: min(v, best.get(src, figures)[k]) for k, v in figures.items()}
    first = best[sources[0]]
    print(f"{'checkout':<40} {'1 per read':>12} {'16 per read':>12}   (µs of CPU per FC03 request; ratio to the first)")
    for src in sources:
        cells = " ".join(f"{best[src][k]:>6.3f} {best[src][k] / first[k]:>4.2f}x" for k in first)
        print(f"{src!s:<40} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
