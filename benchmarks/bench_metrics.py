#!/usr/bin/env python3
"""What watching costs: 100-connection FC03 throughput with nothing watching against a Prometheus scrape every second
plus an open console page, side by side in one run; and what the counters cost each request.

    python3 benchmarks/bench_metrics.py                      # about a minute
    python3 benchmarks/bench_metrics.py --rounds 5 --seconds 4

Part 1, end to end. One `python -m modbusd -p PORT --http HTTP` process (the real command line, this checkout's
src/), pinned to core 1; loadgen.c (built here, as bench_tcp.py builds it) drives it with 100 connections of FC03,
10 registers, pinned to core 0 with this script. Rounds alternate on the same server:

- "idle": nothing but loadgen;
- "scraped": meanwhile a Prometheus stand-in scrapes ``GET /metrics`` every second;
- "scraped+grid": and ``GET /points/0.hr?count=40`` polled at 10 Hz (an open console page's 40-register grid);
- "watched": and a ``GET /log?follow=1`` stream reader (the console's live traffic pane): Prometheus and the whole
  console page stand-in together, the comparison the target is set for.

The console is being built on another branch: `console_requests` stands in for what its page asks; when it lands,
replace them with the real page's requests (or drive the page itself) and keep the rest. The two middle modes say
which watcher costs what. It prints each round, the median req/s of each mode, and each mode / idle (target for
watched / idle: at least 0.9).

Part 2, the request path. The same Session (`modbusd.session`) answering one FC03 per `receive()`, as at 100
connections, with and without a `RequestCounts` (`modbusd.stats`), interleaved, best of several repeats: CPU µs per
request each way, and the difference as a share of the server's whole CPU per request measured in part 1. A scrape's
own cost (`generate_latest` of a busy server's counters) is printed too.

The machine is shared (2 cores, other work running): figures move by tens of percent between runs; the ratios,
measured side by side, are what to read. Only processes started here are stopped, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import bench_tcp  # this directory: loadgen's build and runs, as bench_tcp.py measures
from bench_tcp import HOST, LoadOptions, LoadResult, Scenario, compile_c, free_port, pinned, run_loadgen, scenario_args

SRC = bench_tcp.REPO / "src"
sys.path.insert(0, str(SRC))  # part 2 imports this checkout's modbusd, never an installed one

C100 = Scenario("c100", "100 conns", 100, 1)
READY = "Server running..."
SCRAPE_EVERY = 1.0  # seconds: a Prometheus scrape_interval of 1 s, far more often than the usual 15 s
POLL_EVERY = 0.1  # seconds: the console grid's 10 Hz
WINDOW = "/points/0.hr?count=40"


# ------------------------------------------------------------------------------------------- the server


def start_modbusd(cpu: str | None, logdir: Path) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    port, http = free_port(), free_port()
    log = logdir / f"modbusd-{port}.log"
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            pinned(cpu, [sys.executable, "-m", "modbusd", "-p", str(port), "--host", HOST, "--http", str(http)]),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + bench_tcp.START_TIMEOUT_S
    while READY not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"modbusd did not start:\n{bench_tcp.log_tail(log)}")
        time.sleep(0.05)
    return proc, port, http, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=bench_tcp.STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=bench_tcp.STOP_TIMEOUT_S)


# ------------------------------------------------------------------------------------------- the watchers


class Watchers:
    """Threads that ask what Prometheus and an open console page ask, until `stop()`; they count their answers."""

    def __init__(self, http: int, mode: str) -> None:
        self.base = f"http://{HOST}:{http}"
        self.done = threading.Event()
        self.scrapes = self.polls = self.log_lines = 0
        self.errors: list[str] = []
        jobs = (self._prometheus, *console_requests(self))[: MODES.index(mode)]
        self.threads = [threading.Thread(target=self._guarded, args=(job,), daemon=True) for job in jobs]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def _guarded(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as exc:  # said in the output: a watcher that failed watched nothing
            self.errors.append(f"{job.__name__}: {exc}")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=5) as response:
            return response.read()

    def every(self, seconds: float, action: Callable[[], None]) -> None:
        next_at = time.monotonic()
        while not self.done.is_set():
            action()
            next_at += seconds
            self.done.wait(max(0.0, next_at - time.monotonic()))

    def _prometheus(self) -> None:
        def scrape() -> None:
            assert b"modbusd_requests_total" in self.get("/metrics")
            self.scrapes += 1

        self.every(SCRAPE_EVERY, scrape)

    def follow_log(self) -> None:
        """The traffic pane: one stream, read line by line until the round ends."""
        with socket.create_connection((HOST, int(self.base.rsplit(":", 1)[1])), timeout=5) as sock:
            sock.sendall(f"GET /log?follow=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            sock.settimeout(0.5)
            while not self.done.is_set():
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise ConnectionError("the log stream ended")
                self.log_lines += chunk.count(b"\n")

    def poll_window(self) -> None:
        """The grid: 40 holding registers, ten times a second."""

        def poll() -> None:
            assert len(json.loads(self.get(WINDOW))["values"]) == 40
            self.polls += 1

        self.every(POLL_EVERY, poll)


def console_requests(watchers: Watchers) -> tuple[Callable[[], None], ...]:
    """What an open console page asks for, until the page itself is measured (module docstring)."""
    return (watchers.poll_window, watchers.follow_log)


MODES = ("idle", "scraped", "scraped+grid", "watched")  # each adds the next watcher: Prometheus, the grid, the log


# ------------------------------------------------------------------------------------------- part 1


def throughput(opts: LoadOptions, port: int, http: int, pid: int, rounds: int) -> dict[str, list[LoadResult]]:
    results: dict[str, list[LoadResult]] = {mode: [] for mode in MODES}
    for number in range(rounds):
        for mode in MODES[number % 2 :: 1] + MODES[: number % 2]:  # rotate who goes first
            watchers = Watchers(http, mode)
            watchers.start()
            result = run_loadgen(opts, port, scenario_args(opts, C100), pid)
            watchers.stop()
            results[mode].append(result)
            extra = "" if mode == "idle" else (
                f"  ({watchers.scrapes} scrapes, {watchers.polls} polls, {watchers.log_lines} log lines"
                f"{'; FAILED: ' + '; '.join(watchers.errors) if watchers.errors else ''})")  # fmt: skip
            print(f"round {number + 1} {mode:<12} {bench_tcp.describe(result)}{extra}", flush=True)
    return results


def median_rps(runs: list[LoadResult]) -> float:
    good = [run.rps for run in runs if not run.failed]
    return statistics.median(good) if good else 0.0


def cpu_per_request_us(runs: list[LoadResult]) -> float:
    """The server's CPU (user + system) per request answered, in µs, over the runs."""
    requests = sum(run.get("requests") for run in runs if not run.failed)
    return 1e6 * sum(run.server_cpu_s for run in runs if not run.failed) / requests if requests else 0.0


# ------------------------------------------------------------------------------------------- part 2


def session_cost(repeats: int, count: int) -> tuple[float, float, float]:
    """(µs per request without counting, with counting, µs per scrape of the counted server's counters)."""
    from modbusd import Device, Server, handler
    from modbusd.session import Session
    from modbusd.stats import RequestCounts
    from modbusd.web.metrics import exposition, make_registry

    request = bytes.fromhex("0001 0000 0006 01 03 0000 000a")  # MBAP + FC03 of 10 registers at 0
    response = handler.respond(Device(), request[7:])

    def answer(_unit: int, _pdu: bytes) -> bytes | None:
        """The response at hand: the session's own work is all that is timed, so the counting's share shows."""
        return response

    def run(counts: RequestCounts | None) -> float:
        session = Session(answer, counts=counts)
        receive = session.receive
        began = time.process_time()
        for _ in range(count):
            receive(request)
        return (time.process_time() - began) / count * 1e6

    plain, counted = [], []
    for _ in range(repeats):  # interleaved, so that a busy moment of the machine hits both
        plain.append(run(None))
        counted.append(run(RequestCounts()))
    server = Server(Device(), host=HOST, port=0)
    counts = server.stats.counts("tcp")  # a busy server's counters: many functions, outcomes, exceptions
    for function in (1, 2, 3, 4, 5, 6, 15, 16, 23):
        counts.ok[function] = 10**6
        counts.answered(function, bytes((function | 0x80, 2)), 9)
    registry = make_registry(server)
    began = time.perf_counter()
    for _ in range(50):
        exposition(registry)
    scrape = (time.perf_counter() - began) / 50 * 1e6
    return min(plain), min(counted), scrape


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="idle/watched pairs (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per run (default 1)")
    parser.add_argument("--requests", type=int, default=50_000, help="session calls per repeat in part 2")
    parser.add_argument("--repeats", type=int, default=25, help="repeats of part 2, best taken (default 25)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bench_tcp.raise_fd_limit()
    server_cpu, load_cpu = bench_tcp.pinning()
    if load_cpu is not None:
        os.sched_setaffinity(0, {int(load_cpu)})  # the watchers share loadgen's core, not the server's
    with tempfile.TemporaryDirectory(prefix="bench_metrics-") as tmp:
        loadgen = Path(tmp) / "loadgen"
        error = compile_c(loadgen, [bench_tcp.LOADGEN_SRC], [], werror=True)
        if error:
            raise SystemExit(error)
        opts = LoadOptions(loadgen, args.seconds, args.warmup, 1000, load_cpu)
        proc, port, http, _log = start_modbusd(server_cpu, Path(tmp))
        try:
            print(f"modbusd on cpu {server_cpu}, loadgen and watchers on cpu {load_cpu}; python "
                  f"{sys.version.split()[0]}; 100 connections, FC03 x 10 registers")  # fmt: skip
            results = throughput(opts, port, http, proc.pid, args.rounds)
        finally:
            stop(proc)
    idle = median_rps(results["idle"])
    print()
    what = {"idle": "nothing watching", "scraped": f"GET /metrics every {SCRAPE_EVERY:g} s",
            "scraped+grid": f"and GET {WINDOW} at {1 / POLL_EVERY:g} Hz",
            "watched": "and GET /log?follow=1"}  # fmt: skip
    for mode in MODES:
        rps = median_rps(results[mode])
        share = f"{mode} / idle = {rps / idle:.3f}" if idle and mode != "idle" else ""
        print(f"{mode:<12} {rps:>9.0f} req/s (median of {len(results[mode])})  {share:<26} {what[mode]}")
    ratio = median_rps(results["watched"]) / idle if idle else 0.0
    print(f"watched / idle = {ratio:.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    server_us = cpu_per_request_us(results["idle"])
    plain, counted, scrape = session_cost(args.repeats, args.requests)
    print()
    print(f"session path, one FC03 per receive() (answer at hand), best of {args.repeats} x {args.requests:,}:")
    print(f"  without counting {plain:6.3f} us/request")
    print(f"  with counting    {counted:6.3f} us/request  (+{counted - plain:.3f} us, counted / plain = "
          f"{counted / plain:.3f})")  # fmt: skip
    if server_us:
        print(f"  the server's whole CPU per request at 100 connections (idle rounds): {server_us:.1f} us, so "
              f"counting costs {100 * (counted - plain) / server_us:.2f} % of it")  # fmt: skip
    print(f"one scrape of a busy server's counters (generate_latest): {scrape:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
