"""How long the control API takes to list every data point, and how long a Modbus request waits meanwhile.

    PYTHONPATH=src python3 benchmarks/bench_http_points.py            # 10,000 and 100,000 points
    PYTHONPATH=src python3 benchmarks/bench_http_points.py --counts 1000 8000 --limit 500

For each count: a Server with that many named points and its control API in one loop (as `modbusd --http`), a
thread that pages through ``GET /points`` and a raw Modbus/TCP client that sends FC03 over and over meanwhile.
Prints the listing's time, its time per point, the ratio to the smallest count's (linear: the ratio of the counts),
and the slowest and median FC03 round trip during the listing against the median FC03 round trip with the API
idle, measured first in the same run.
"""

import argparse
import asyncio
import json
import socket
import statistics
import struct
import threading
import time
import urllib.request

from modbusd import Device, Location, Point, Server, Table, ValueType
from modbusd.web import HttpApi

FC03 = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 1)  # transaction 1, unit 1, FC03 at 0, one register


def named_points(count: int) -> Device:
    device = Device()
    tables = (Table.HOLDING_REGISTERS, Table.INPUT_REGISTERS, Table.COILS, Table.DISCRETE_INPUTS)
    word, bit = ValueType.parse("ushort"), ValueType.parse("bit")
    for i in range(count):
        table = tables[i // 65536]
        device.points[f"p{i}"] = Point(f"p{i}", Location(table, i % 65536), bit if table.is_bits else word)
    return device


def fc03(sock: socket.socket) -> float:
    began = time.perf_counter()
    sock.sendall(FC03)
    reply = b""
    while len(reply) < 11:
        chunk = sock.recv(64)
        if not chunk:
            raise ConnectionError("the server closed the Modbus connection")
        reply += chunk
    return time.perf_counter() - began


def page_through(port: int, limit: int) -> int:
    offset: int | None = 0
    listed = 0
    while offset is not None:
        url = f"http://127.0.0.1:{port}/points?offset={offset}&limit={limit}"
        with urllib.request.urlopen(url, timeout=600) as response:
            answer = json.load(response)
        listed += len(answer["points"])
        offset = answer["next_offset"]
    return listed


async def measure(count: int, limit: int) -> dict[str, float]:
    server = Server(named_points(count), host="127.0.0.1", port=0)
    await server.start()
    api = await HttpApi.start(server, port=0)
    loop = asyncio.get_running_loop()

    def run() -> dict[str, float]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=600) as sock:
            idle = [fc03(sock) for _ in range(200)]
            done: list[float] = []
            pager = threading.Thread(target=lambda: done.append(page_through(api.port, limit)))
            began = time.perf_counter()
            pager.start()
            busy = []
            while pager.is_alive():
                busy.append(fc03(sock))
            pager.join()
            took = time.perf_counter() - began
        assert done == [count], done
        return {"seconds": took, "idle": statistics.median(idle), "busy_max": max(busy),
                "busy_median": statistics.median(busy)}  # fmt: skip

    try:
        return await loop.run_in_executor(None, run)
    finally:
        await api.stop()
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--limit", type=int, default=1000, help="points per page (default 1000, the maximum)")
    args = parser.parse_args()
    first = None
    print(f"{'points':>8} {'listing s':>10} {'us/point':>9} {'ratio':>7} {'FC03 idle ms':>13} "
          f"{'FC03 busy median ms':>20} {'FC03 busy max ms':>17}")  # fmt: skip
    for count in args.counts:
        got = asyncio.run(measure(count, args.limit))
        first = first or (count, got["seconds"])
        ratio, ms = got["seconds"] / first[1], {k: 1e3 * v for k, v in got.items()}
        print(f"{count:>8} {got['seconds']:>10.2f} {1e6 * got['seconds'] / count:>9.1f} {ratio:>7.1f} "
              f"{ms['idle']:>13.3f} {ms['busy_median']:>20.3f} {ms['busy_max']:>17.1f}")  # fmt: skip
    print(f"(linear would give a ratio of count / {first[0] if first else '?'})")


if __name__ == "__main__":
    main()
