"""Reference server for bench_tcp.py: pymodbus 3.16 holding the same data as modbusd.

Holding registers 0..99 = i, every other entry of the four separate 65536-entry
tables zero, so FC03 of 10 registers at 0 does the same work on both servers.
pymodbus 3.16 turns the deprecated ModbusDeviceContext/ModbusSequentialDataBlock
into exactly this SimDevice internally (and logs a deprecation warning), so we
build the SimDevice directly: same runtime path, no warning, no off-by-one
`address - 1` of the old block API.

Prints "ready port=N" on stdout once listening; SIGTERM/SIGINT stop it (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import signal

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

TABLE_SIZE = 65536
PRELOADED = 100


def raise_fd_limit() -> None:
    """Allow the 1000-idle-connection memory test, whatever `ulimit -n` says."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_device() -> SimDevice:
    """Four separate tables, like modbusd's default layout, holding register i = i for i < 100.

    Each table is one SimData with a full list of values and count=1: pymodbus 3.16 checks
    a block by building `registers * count` once more, so count=65536 on a bit block would
    build a list of 65536**2 entries (MemoryError).
    """
    holding = list(range(PRELOADED)) + [0] * (TABLE_SIZE - PRELOADED)
    simdata = (
        [SimData(0, values=[False] * TABLE_SIZE, datatype=DataType.BITS)],
        [SimData(0, values=[False] * TABLE_SIZE, datatype=DataType.BITS)],
        [SimData(0, values=holding, datatype=DataType.REGISTERS)],
        [SimData(0, values=[0] * TABLE_SIZE, datatype=DataType.REGISTERS)],
    )
    # id=0 answers every unit id, as modbusd does.
    return SimDevice(0, simdata=simdata)


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:port until SIGTERM/SIGINT."""
    server = ModbusTcpServer(build_device(), address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready port={port}", flush=True)
    await stop.wait()
    await server.shutdown()


def main() -> None:
    """Parse the port, quieten logging, run on the default asyncio loop."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    raise_fd_limit()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
