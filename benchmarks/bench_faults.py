#!/usr/bin/env python3
"""What fault injection costs per request: a server's session answering FC03, with and without fault rules, against
the same session from a source tree without fault injection (the reference), side by side in one run.

Why it is built this way:

* Fault injection must cost nothing while no rule is configured (one truthiness check per request). The claim is
  a ratio against the code before it: the reference is another source tree (by default `git archive main`), and
  each variant runs in a subprocess of its own with that tree on its PYTHONPATH, so two modbusd packages never
  meet in one interpreter.
* Sans-I/O: the session is fed whole requests and returns whole responses, as the TCP transport does, so what
  is measured is the request path (framing, answer, tables) and not the sockets, whose cost would hide it.
* Variants alternate within each round and the best round is quoted: noise on a shared machine only ever slows a
  run down. Absolute figures move between runs; the ratios much less.

Standard library only. Variants: `reference` (the other tree), `no rules`, `rule, no match` (a rule for another
unit id), `rule, matched` (a rule that matches every request and fires on none: `after=` a count never reached).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

MEASURE = r"""
import sys, time
from modbusd import Device, Server
rule, count = sys.argv[1], int(sys.argv[2])
server = Server(Device(), host="127.0.0.1", port=0)
if rule:
    server.faults.add(rule)
sessions = getattr(server, "_sessions", None) or server._answers  # _answers: a tree before sessions.py
session = sessions.tcp_session("127.0.0.1:50000")   # what a connection gets, as the server makes it
request = bytes.fromhex("0001 0000 0006 01 03 0000 000A")  # FC03, 10 registers
receive = session.receive
assert len(receive(request)) == 29
started = time.perf_counter()
for _ in range(count):
    receive(request)
print((time.perf_counter() - started) / count * 1e9)
"""

VARIANTS = {
    "no rules": "",
    "rule, no match": "unit=99 action=silent",
    "rule, matched": "after=2000000000 action=silent",
}


def reference_tree(revision: str, folder: Path) -> Path:
    """`src/` of `revision` of this repository, extracted into `folder`."""
    archive = folder / "reference.tar"
    subprocess.run(["git", "-C", str(HERE.parent), "archive", "-o", str(archive), revision, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def measure(src: Path, rule: str, count: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    result = subprocess.run([sys.executable, "-c", MEASURE, rule, str(count)], env=env, capture_output=True,
                            text=True, check=True, timeout=600)  # fmt: skip
    return float(result.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000, help="requests per run (default 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is quoted (default 3)")
    parser.add_argument("--reference", default="main", help="git revision of the reference tree (default main)")
    parser.add_argument("--reference-src", type=Path, help="a src/ folder to use as the reference instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        reference = args.reference_src or reference_tree(args.reference, Path(folder))
        runs: dict[str, list[float]] = {"reference": [], **{name: [] for name in VARIANTS}}
        for _ in range(args.rounds):
            runs["reference"].append(measure(reference, "", args.requests))
            for name, rule in VARIANTS.items():
                runs[name].append(measure(SRC, rule, args.requests))
    base = min(runs["reference"])
    print(f"session.receive, FC03 of 10 registers, {args.requests} requests x {args.rounds} rounds, best round")
    print(f"{'variant':<18} {'ns/request':>11} {'vs reference':>13}")
    for name, figures in runs.items():
        best = min(figures)
        print(f"{name:<18} {best:>11.0f} {best / base:>12.3f}x")
    print(f"reference: {args.reference_src or 'git ' + args.reference}; this tree: {SRC}")


if __name__ == "__main__":
    main()
