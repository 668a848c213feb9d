"""What an open web console costs the Modbus request path: 100-connection FC03 throughput, side by side.

    PYTHONPATH=src python3 benchmarks/bench_console.py                   # about 1 minute
    PYTHONPATH=src python3 benchmarks/bench_console.py --seconds 5 --rounds 3

Rows, alternating within each round (loadgen, as in bench_tcp.py, 100 connections, FC03 of 10 registers):

- ``API off``: modbusd without the control API;
- ``no page``: the same server with the control API on and no console open (the reference of the ratios);
- ``page on grid``: what a console showing the grid asks: ``GET /window`` of 40 floats ten times a second and a
  page of ``GET /points`` once a second, from a thread of this process over one keep-alive connection;
- ``page on traffic``: the same, and ``GET /log?follow=1`` read as it streams (the server then records every
  request, which it does only while someone follows).

Prints requests per second per row (the best round: noise on a shared machine only slows a run down) and each
row's ratio to ``no page``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_tcp import (  # noqa: E402  # this directory's modules, once it is on the path
    HOST,
    LOADGEN_SRC,
    LoadOptions,
    LoadResult,
    ServerSpec,
    compile_c,
    describe,
    free_port,
    pinning,
    pythonpath_with_src,
    raise_fd_limit,
    run_loadgen,
    start_server,
    stop_server,
)

CONNECTIONS = 100
WINDOW = "/window?table=hr&start=0&count=40&type=float"  # a screenful of floats
ROWS = ("API off", "no page", "page on grid", "page on traffic")


def serve(port: int, http_port: int | None) -> None:
    """The server in its own process, holding bench_tcp's data, with the control API when `http_port` is set."""
    from modbusd import Server
    from run_modbusd import build_device

    async def main() -> None:
        server = Server(build_device(), host=HOST, port=port)
        await server.start()
        api = None
        if http_port is not None:
            from modbusd.web import HttpApi

            api = await HttpApi.start(server, port=http_port)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        print(f"ready port={server.port}", flush=True)
        await stop.wait()
        if api is not None:
            await api.stop()
        await server.stop()

    asyncio.run(main())


class Page:
    """A console's requests, from threads: the grid's window at 10 Hz and a points page at 1 Hz; the log stream."""

    def __init__(self, http_port: int, traffic: bool) -> None:
        self.port = http_port
        self.stopping = threading.Event()
        self.requests = 0
        self.records = 0
        self.threads = [threading.Thread(target=self.poll, daemon=True)]
        if traffic:
            self.threads.append(threading.Thread(target=self.follow, daemon=True))

    def __enter__(self) -> Page:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def poll(self) -> None:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        tick = 0
        while not self.stopping.is_set():
            began = time.monotonic()
            for path in (WINDOW, "/points?offset=0&limit=50") if tick % 10 == 0 else (WINDOW,):
                connection.request("GET", path)
                connection.getresponse().read()
                self.requests += 1
            tick += 1
            self.stopping.wait(max(0.0, 0.1 - (time.monotonic() - began)))
        connection.close()

    def follow(self) -> None:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        connection.request("GET", "/log?follow=1")
        response = connection.getresponse()
        while not self.stopping.is_set():
            line = response.readline()
            if not line:
                break
            self.records += line.count(b"\n") if line.strip() else 0
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process: its Modbus port
    parser.add_argument("--http", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per run (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per row; rows alternate (default 2)")
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.http)
        return 0
    raise_fd_limit()
    server_cpu, load_cpu = pinning()
    with tempfile.TemporaryDirectory() as tmp:
        loadgen = Path(tmp) / "loadgen"
        problem = compile_c(loadgen, [LOADGEN_SRC], [], werror=True)
        if problem:
            print(problem)
            return 1
        opts = LoadOptions(loadgen, args.seconds, 1.0, 1000, load_cpu)
        http_port = free_port()
        env = {"PYTHONPATH": pythonpath_with_src()}
        me = [sys.executable, str(Path(__file__).resolve())]
        bare = start_server(ServerSpec("API off", lambda p: [*me, "--serve", str(p)], env), Path(tmp), server_cpu)
        with_api = start_server(ServerSpec("API on", lambda p: [*me, "--serve", str(p), "--http", str(http_port)],
                                           env), Path(tmp), server_cpu)  # fmt: skip
        load = ["-c", str(CONNECTIONS), "-d", "1", "-f", "3", "-a", "0", "-n", "10", "-T", str(args.seconds),
                "-w", "1", "-o", "1000", "-E", str(10**9)]  # fmt: skip
        results: dict[str, list[LoadResult]] = {row: [] for row in ROWS}
        try:
            for round_ in range(1, args.rounds + 1):
                for row in ROWS:
                    server = bare if row == "API off" else with_api
                    if row.startswith("page"):
                        with Page(http_port, traffic=row == "page on traffic") as page:
                            result = run_loadgen(opts, server.port, load, server.proc.pid)
                        extra = f"  page: {page.requests} requests, {page.records} log records"
                    else:
                        result = run_loadgen(opts, server.port, load, server.proc.pid)
                        extra = ""
                    results[row].append(result)
                    print(f"round {round_} {row:<16} {describe(result)}{extra}", flush=True)
        finally:
            stop_server(bare)
            stop_server(with_api)
    best = {row: max((r.rps for r in runs if not r.failed), default=0.0) for row, runs in results.items()}
    print(f"\n{CONNECTIONS} connections, FC03 of 10 registers; best of {args.rounds} rounds of {args.seconds:g} s")
    print(f"{'row':<16} {'requests/s':>11}  ratio to 'no page'")
    for row in ROWS:
        ratio = best[row] / best["no page"] if best["no page"] else float("nan")
        print(f"{row:<16} {best[row]:>11.0f}  {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
