#!/usr/bin/env python3
"""What watching the server costs its Modbus clients: 100-connection FC03 throughput with an open web console page and
a Prometheus scrape every second, against nothing watching, side by side in one run; and what the request-path
counters cost each request.

    python3 benchmarks/bench_console.py                      # about a minute and a half
    python3 benchmarks/bench_console.py --rounds 5 --seconds 4
    python3 benchmarks/bench_console.py --src /tmp/before/src   # another checkout's modbusd, the same watchers

Part 1, end to end. One `python -m modbusd -p PORT --http HTTP` process (the real command line, this checkout's
src/ unless --src), pinned to core 1; loadgen.c (built here, as bench_tcp.py builds it) drives it with 100
connections of FC03, 10 registers, pinned to core 0 with this script and its watcher threads. Rounds rotate, on the
same server, between:

- "idle": nothing but loadgen;
- "console": what an open console page asks on its default panel (Points), as the page itself asks it
  (src/modbusd/web/console/grid.js, panels.js): ``GET /window`` of 40 registers ten times a second, a page of
  ``GET /points`` once a second; and Prometheus scraping ``GET /metrics`` every second. The "Done when" of the
  console: its ratio to idle should be at least 0.9;
- "traffic": the same with the page on its Traffic panel: ``GET /log?follow=1&per_second=200`` (the page's
  cap) read as it streams, in place of the points page;
- "log": the same with the whole log (``GET /log?follow=1``, what ``modbusd log --follow`` asks): every request
  recorded and sent.

It prints each round, the median req/s of each mode and each mode / idle.

Part 2, the request path. The same Session (`modbusd.session`) answering one FC03 per `receive()`, as at 100
connections, with and without a `RequestCounts` (`modbusd.stats`), interleaved, best of several repeats: CPU µs per
request each way, and the difference as a share of the server's whole CPU per request measured in part 1. A scrape's
own cost (`generate_latest` of a busy server's counters) is printed too. Then the request log: the CPU time of a
connection's answer function with nobody following the log, with the console's capped follower and with a follower
of every request, and what the control API's writer spends per record it sends.

Each mode's figures: the median req/s and its ratio to idle (the target), and the server process' CPU time per
request over all of its rounds, with idle's CPU per request divided by it: on a shared machine the server gets
whatever is left of its core, which moves the req/s of a round by tens of percent, while the CPU a request costs
moves far less.

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

SRC = bench_tcp.REPO / "src"  # --src replaces it
C100 = Scenario("c100", "100 conns", 100, 1)
READY = "Server running..."
SCRAPE_EVERY = 1.0  # seconds: a Prometheus scrape_interval of 1 s, far more often than the usual 15 s
POLL_EVERY = 0.1  # seconds: the grid's 10 Hz (grid.js POLL_MS)
POINTS_EVERY = 1.0  # seconds: the Points panel's refresh (console.js)
WINDOW = "/window?table=hr&start=0&count=40&type=ushort"  # the grid's first screen, as the page asks for it
POINTS = "/points?offset=0&limit=50"  # the Points panel's first page
TRAFFIC = "/log?follow=1&per_second=200"  # the Traffic panel (panels.js TRAFFIC_PER_SECOND)
LOG = "/log?follow=1"  # modbusd log --follow
MODES = ("idle", "console", "traffic", "log")


# ------------------------------------------------------------------------------------------- the server


def start_modbusd(src: Path, cpu: str | None, logdir: Path) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    port, http = free_port(), free_port()
    log = logdir / f"modbusd-{port}.log"
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
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
        jobs: dict[str, tuple[Callable[[], None], ...]] = {
            "idle": (),
            "console": (self.prometheus, self.grid, self.points),
            "traffic": (self.prometheus, self.grid, lambda: self.follow(TRAFFIC)),
            "log": (self.prometheus, self.grid, lambda: self.follow(LOG)),
        }
        self.threads = [threading.Thread(target=self._guarded, args=(job,), daemon=True) for job in jobs[mode]]

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
            self.errors.append(f"{getattr(job, '__name__', 'follow')}: {exc}")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=5) as response:
            return response.read()

    def every(self, seconds: float, action: Callable[[], None]) -> None:
        next_at = time.monotonic()
        while not self.done.is_set():
            action()
            next_at += seconds
            self.done.wait(max(0.0, next_at - time.monotonic()))

    def prometheus(self) -> None:
        def scrape() -> None:
            assert b"modbusd_requests_total" in self.get("/metrics")
            self.scrapes += 1

        self.every(SCRAPE_EVERY, scrape)

    def grid(self) -> None:
        def poll() -> None:
            assert len(json.loads(self.get(WINDOW))["values"]) == 40
            self.polls += 1

        self.every(POLL_EVERY, poll)

    def points(self) -> None:
        self.every(POINTS_EVERY, lambda: json.loads(self.get(POINTS))["points"])

    def follow(self, path: str) -> None:
        """One log stream, read as it comes until the round ends."""
        with socket.create_connection((HOST, int(self.base.rsplit(":", 1)[1])), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            sock.settimeout(0.5)
            while not self.done.is_set():
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise ConnectionError("the log stream ended")
                self.log_lines += chunk.count(b"\n")


# ------------------------------------------------------------------------------------------- part 1


def throughput(opts: LoadOptions, port: int, http: int, pid: int, rounds: int, *,
               modes: Sequence[str] = MODES) -> dict[str, list[LoadResult]]:  # fmt: skip
    results: dict[str, list[LoadResult]] = {mode: [] for mode in modes}
    for number in range(rounds):
        shift = number % len(modes)
        for mode in [*modes[shift:], *modes[:shift]]:  # rotate who goes first
            watchers = Watchers(http, mode)
            watchers.start()
            result = run_loadgen(opts, port, scenario_args(opts, C100), pid)
            watchers.stop()
            results[mode].append(result)
            extra = "" if mode == "idle" else (
                f"  ({watchers.scrapes} scrapes, {watchers.polls} polls, {watchers.log_lines} log lines"
                f"{'; FAILED: ' + '; '.join(watchers.errors) if watchers.errors else ''})")  # fmt: skip
            print(f"round {number + 1} {mode:<8} {bench_tcp.describe(result)}{extra}", flush=True)
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


def follow(server: object, cap: int | None) -> object:
    try:
        return server.requests.follow(lambda: None, cap)  # type: ignore[attr-defined]  # a Server
    except TypeError:  # --src of a tree from before the cap: every request
        return server.requests.follow(lambda: None)  # type: ignore[attr-defined]


def following_cost(repeats: int, count: int) -> dict[str, float]:
    """CPU µs per FC03 answered by a Modbus/TCP connection's answer function, with nobody following the request log,
    with the console following it (its cap) and with a follower of every request; and µs per record to decode and
    serialise what a follower takes (the control API's writer does it, a batch at a time). No loop runs here, so
    the hub cannot pause past the console's cap: each request over it is observed and counted, the cost a server
    pays only until its loop next turns."""
    from modbusd import Device, Server
    from modbusd.web.log import lines

    server = Server(Device(), host=HOST, port=0)
    sessions = getattr(server, "_sessions", None)  # private: what a connection gets
    if sessions is not None:
        answer = sessions.answers.session_answer("127.0.0.1:40000", "tcp")
    else:  # --src of a tree from before sessions.py
        answer = server._answers._session_answer("127.0.0.1:40000", "tcp")  # type: ignore[attr-defined]
    pdu = bytes.fromhex("03 0000 000a")
    costs: dict[str, list[float]] = {"nobody": [], "console": [], "every request": []}
    per_second = {"nobody": 0, "console": int(TRAFFIC.rsplit("=", 1)[1]), "every request": None}
    for _ in range(repeats):
        for name, cap in per_second.items():
            follower = None if cap == 0 else follow(server, cap)
            began = time.process_time()
            for _ in range(count):
                answer(1, pdu)
            costs[name].append((time.process_time() - began) / count * 1e6)
            if follower is not None:
                server.requests.unfollow(follower)
    best = {name: min(found) for name, found in costs.items()}
    follower = server.requests.follow(lambda: None)
    writer = []
    for _ in range(repeats):
        for _ in range(1000):  # the follower's queue holds 1000
            answer(1, pdu)
        began = time.process_time()
        lines(follower.take()[0])
        writer.append((time.process_time() - began) / 1000 * 1e6)
    best["writer, per record"] = min(writer)
    return best


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every mode (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run (default 3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per run (default 1)")
    parser.add_argument("--requests", type=int, default=50_000, help="session calls per repeat in part 2")
    parser.add_argument("--repeats", type=int, default=25, help="repeats of part 2, best taken (default 25)")
    parser.add_argument("--src", type=Path, default=SRC, help="the modbusd source tree to measure (default: this one)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"the modes to run, idle first (default {','.join(MODES)})")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    modes = [mode for mode in MODES if mode in args.modes.split(",")]
    if not modes or modes[0] != "idle" or len(modes) != len(args.modes.split(",")):
        raise SystemExit(f"--modes: idle and any of {', '.join(MODES[1:])}, separated by commas")
    src = args.src.resolve()
    sys.path.insert(0, str(src))  # part 2 imports that modbusd, never an installed one
    bench_tcp.raise_fd_limit()
    server_cpu, load_cpu = bench_tcp.pinning()
    if load_cpu is not None:
        os.sched_setaffinity(0, {int(load_cpu)})  # the watchers share loadgen's core, not the server's
    with tempfile.TemporaryDirectory(prefix="bench_console-") as tmp:
        loadgen = Path(tmp) / "loadgen"
        error = compile_c(loadgen, [bench_tcp.LOADGEN_SRC], [], werror=True)
        if error:
            raise SystemExit(error)
        opts = LoadOptions(loadgen, args.seconds, args.warmup, 1000, load_cpu)
        proc, port, http, _log = start_modbusd(src, server_cpu, Path(tmp))
        try:
            print(f"modbusd ({src}) on cpu {server_cpu}, loadgen and watchers on cpu {load_cpu}; python "
                  f"{sys.version.split()[0]}; 100 connections, FC03 x 10 registers")  # fmt: skip
            results = throughput(opts, port, http, proc.pid, args.rounds, modes=modes)
        finally:
            stop(proc)
    idle = median_rps(results["idle"])
    print()
    what = {"idle": "nothing watching",
            "console": f"GET /metrics every {SCRAPE_EVERY:g} s; a page on Points: {WINDOW} at {1 / POLL_EVERY:g} Hz, "
                       f"{POINTS} at {1 / POINTS_EVERY:g} Hz",
            "traffic": f"the same, the page on Traffic: {TRAFFIC} in place of the points",
            "log": f"the same with {LOG} (every request, as modbusd log --follow)"}  # fmt: skip
    idle_us = cpu_per_request_us(results["idle"])
    print(f"{'mode':<8} {'req/s':>9}  {'/ idle':>6}  {'server CPU/request':>18}  {'idle / it':>9}")
    for mode in modes:
        rps, us = median_rps(results[mode]), cpu_per_request_us(results[mode])
        share = f"{rps / idle:6.3f}" if idle and mode != "idle" else ""
        cost = f"{idle_us / us:9.3f}" if us and mode != "idle" else ""
        print(f"{mode:<8} {rps:>9.0f}  {share:>6}  {us:>15.1f} us  {cost:>9}  {what[mode]}")
    print(f"(req/s: the median of {args.rounds} rounds; CPU per request: over all of them, the steadier figure on a "
          "shared machine, where the server gets what is left of its core)")  # fmt: skip
    if "console" in results:
        ratio = median_rps(results["console"]) / idle if idle else 0.0
        print(f"console / idle = {ratio:.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
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
    print()
    print(f"the request log on the request path, one FC03 answer, best of {args.repeats} x {args.requests:,}:")
    following = following_cost(args.repeats, args.requests)
    for name, us in following.items():
        extra = f"  (+{us - following['nobody']:.3f} us)" if name in ("console", "every request") else ""
        print(f"  {'followed by ' + name if name != 'writer, per record' else name:<26} {us:6.3f} us{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
