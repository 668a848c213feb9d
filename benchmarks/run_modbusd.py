"""modbusd for bench_tcp.py, started through the library API so that it holds the benchmark data.

The CLI starts with every table zero; the benchmark wants holding register i = i for
i < 100 on every server (the same bytes on the wire as pymodbus and libmodbus), so this
launcher fills the Device before serving.  It imports modbusd from the checkout
(bench_tcp.py puts src/ on PYTHONPATH), never from an older installed copy.

Prints "ready port=N" on stdout once listening; SIGTERM/SIGINT stop it (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import signal
from collections.abc import Coroutine
from typing import Any

from modbusd import Device, Server
from modbusd.routing import TcpTarget

PRELOADED = 100


def raise_fd_limit() -> None:
    """Allow the 1000-idle-connection memory test, whatever `ulimit -n` says."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_device() -> Device:
    """Default Device (four separate 65536-entry tables), holding register i = i for i < 100."""
    device = Device()
    for i in range(PRELOADED):
        device.holding_registers[i] = i
    return device


GENERATED = (
    "sine(offset=20, amplitude=5, period=60s, every={every})",
    "ramp(min=0, max=1000, period=10s, every={every})",
    "counter(period=1s, every={every})",
    "random(min=0, max=100, seed=1, every={every})",
)


def add_generators(server: Server, count: int, every: str) -> None:
    """`count` generators (bench_generators.py, at most 32,768): four kinds in turn, floats and ushorts, two
    registers apart on the input registers, clear of the holding registers the load reads."""
    for i in range(count):
        kind = "float" if i % 2 else "ushort"
        server.simulator.add(f"{2 * i}.ir", GENERATED[i % 4].format(every=every), kind)


async def serve(port: int, *, generators: int = 0, every: str = "100ms", state: str | None = None,
                state_sync: str = "full", path: str = "direct") -> None:  # fmt: skip
    """Listen on 127.0.0.1:port until SIGTERM/SIGINT, then stop gracefully; `state`: a state file (bench_state.py).

    `path` (bench_paths.py): "direct"; "hook", a request hook that returns None (the tables answer); "subscribed",
    holding register 0 subscribed and the events counted by a listener; "forward:PORT", a gateway forwarding unit
    id 1 to the Modbus/TCP server on 127.0.0.1:PORT."""
    kind, _, downstream = path.partition(":")
    options: dict[str, Any] = {}
    if kind == "hook":
        options["hook"] = lambda *_: None
    elif kind == "forward":
        options["forward"] = {1: TcpTarget("127.0.0.1", int(downstream))}
    server = Server(build_device(), host="127.0.0.1", port=port, state=state, state_sync=state_sync, **options)
    add_generators(server, generators, every)
    await server.start()
    if kind == "subscribed":
        server.subscribe("0.hr")
        events = [0]
        server.add_listener(lambda _event: events.__setitem__(0, events[0] + 1))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready port={server.port}", flush=True)
    await stop.wait()
    await server.stop()


def run(main: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    """Run on asyncio's default loop, or on uvloop when asked (Python 3.11 has no loop_factory)."""
    if not use_uvloop:
        asyncio.run(main)
        return
    import uvloop  # optional: only this row needs it

    uvloop.run(main)


def main() -> None:
    """Parse options, keep logging at WARNING so it costs nothing, serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop")
    parser.add_argument("--state", metavar="FILE", help="keep written values in FILE (bench_state.py)")
    parser.add_argument("--state-sync", choices=["full", "normal"], default="full")
    parser.add_argument("--generators", type=int, default=0, help="value generators to run (bench_generators.py)")
    parser.add_argument("--every", default="100ms", help="their update period (default 100ms)")
    parser.add_argument("--path", default="direct", help="direct, hook, subscribed or forward:PORT (bench_paths.py)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise_fd_limit()
    run(serve(args.port, generators=args.generators, every=args.every, state=args.state, state_sync=args.state_sync,
              path=args.path), args.uvloop)  # fmt: skip


if __name__ == "__main__":
    main()
