"""`modbusd get POINT:COUNT`, `get --table`, `watch` and `log --follow`, as subprocesses against a real modbusd.

Each test starts its own children (the `launch` fixture) on free ports of 127.0.0.1 and ends only them; the
traffic comes from pymodbus, a client we did not write.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from tests.test_cli import HOST, SRC, Modbusd, free_port
from tests.test_cli_config import example_on, modbusd_cli

pytest.importorskip("aiohttp")

Launch = Callable[..., Modbusd]
WAIT = 10.0  # seconds a change may take to show up (the machine is loaded; it usually takes a fraction of one)


def serve(launch: Launch) -> tuple[int, int]:
    """A running modbusd with the control API: (Modbus/TCP port, API port)."""
    port, api = free_port(), free_port()
    launch("-p", str(port), "--host", HOST, "--http", str(api)).running()
    return port, api


def connect(port: int) -> ModbusTcpClient:
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    assert client.connect()
    return client


def no_traceback(child: Modbusd) -> None:
    assert not any("Traceback" in line for line in child.stderr), child.stderr


# ------------------------------------------------------------------------------------------------ get ranges


def test_get_range_prints_one_line_per_value_in_the_notation_typed(launch: Launch) -> None:
    port, api = serve(launch)
    client = connect(port)
    try:
        assert not client.write_registers(0, list(range(100, 110))).isError()
        floats = client.convert_to_registers(21.5, client.DATATYPE.FLOAT32) + client.convert_to_registers(
            -3.25, client.DATATYPE.FLOAT32)  # fmt: skip
        assert not client.write_registers(20, floats).isError()
    finally:
        client.close()
    got = modbusd_cli("get", "--http", str(api), "40001:10")
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == [f"{40001 + i}  {100 + i}" for i in range(10)]
    got = modbusd_cli("get", "--http", str(api), "40021:2", "float")  # two registers per value
    assert (got.returncode, got.stdout) == (0, "40021  21.5\n40023  -3.25\n")
    got = modbusd_cli("get", "--http", str(api), "1.20.hr:2", "float")
    assert (got.returncode, got.stdout) == (0, "1.20.hr  21.5\n1.22.hr  -3.25\n")
    got = modbusd_cli("get", "--http", str(api), "9999.hr:2")  # where five digits end, six begin
    assert got.returncode == 0 and got.stdout.splitlines()[0].startswith("9999.hr ")


def test_get_table_prints_address_raw_registers_and_value_aligned(launch: Launch) -> None:
    _, api = serve(launch)
    assert modbusd_cli("set", "--http", str(api), "30001", "float:21.5").returncode == 0
    assert modbusd_cli("set", "--http", str(api), "30011", "ushort:0x1F").returncode == 0
    got = modbusd_cli("get", "--http", str(api), "--table", "30001:2", "float")
    assert (got.returncode, got.stderr) == (0, "")
    assert got.stdout.splitlines() == [
        "ADDRESS  RAW        VALUE",
        "30001    41AC 0000  21.5",
        "30003    0000 0000  0.0",
    ]
    got = modbusd_cli("get", "--http", str(api), "--table", "9.ir:3")
    assert got.stdout.splitlines() == [
        "ADDRESS  RAW   VALUE",
        "9.ir     0000  0",
        "10.ir    001F  31",
        "11.ir    0000  0",
    ]


def test_get_range_from_a_named_point_or_its_address_spells_addresses_as_typed(launch: Launch, tmp_path: Path) -> None:
    api = free_port()
    launch("--config", str(example_on(tmp_path, free_port(), api))).running()  # "label" is string:8 at 40011
    by_address = modbusd_cli("get", "--http", str(api), "40011:2", "ushort")
    assert (by_address.returncode, by_address.stdout) == (0, "40011  19561\n40012  30313\n")  # "Li", "vi"
    by_name = modbusd_cli("get", "--http", str(api), "label:2", "ushort")
    assert (by_name.returncode, by_name.stdout) == (0, "label  19561\n11.hr  30313\n")
    own_type = modbusd_cli("get", "--http", str(api), "40011:2")  # the point's own type: string:8, 8 registers each
    assert (own_type.returncode, own_type.stdout) == (0, "40011  Living room\n40019\n")


RANGE_MISTAKES = [
    (("65530.hr:10",), "modbusd: 65530.hr:10: no such address in the device: registers 65530..65539"),
    (("40001:0",), "modbusd: 40001:0: count must be a whole number 1..125"),
    (("40001:63", "float"), "modbusd: 40001:63: count must be a whole number 1..62, not '63' (62 values of float"),
    (("00001:2001",), "modbusd: 00001:2001: count must be a whole number 1..2000"),
    (("40001:ten",), "modbusd: 40001:ten: the count after ':' must be a whole number"),
    (("1.0.hr.3:4",), "modbusd: 1.0.hr.3:4: 1.0.hr.3 is one bit of a register"),
]


def test_get_range_mistakes_are_one_line_and_exit_2(launch: Launch) -> None:
    _, api = serve(launch)
    for args, start in RANGE_MISTAKES:
        result = modbusd_cli("get", "--http", str(api), *args)
        assert result.returncode == 2 and result.stdout == "", result
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(start), result.stderr


# ---------------------------------------------------------------------------------------------------- watch


def test_watch_to_a_pipe_prints_a_changed_value_and_exits_0_on_sigint(launch: Launch) -> None:
    port, api = serve(launch)
    watch = launch("watch", "--http", str(api), "40001:2", "40011", "float", "--interval", "0.2")
    assert watch.wait_for("  40002  0").endswith("40002  0")
    watch.wait_for("  40011  0")
    client = connect(port)
    try:
        assert not client.write_register(1, 77).isError()
        started = time.monotonic()
        watch.wait_for("  40002  77", timeout=WAIT)
        assert time.monotonic() - started < WAIT
        assert not client.write_registers(10, client.convert_to_registers(1.5, client.DATATYPE.FLOAT32)).isError()
        watch.wait_for("  40011  1.5", timeout=WAIT)
    finally:
        client.close()
    assert watch.stop(signal.SIGINT) == 0
    no_traceback(watch)
    assert not any("40001  " in line for line in watch.stdout[3:]), watch.stdout  # unchanged: printed once


def test_watch_in_a_terminal_redraws_the_changed_line_in_place(launch: Launch) -> None:
    """stdout a pseudo-terminal: the table is drawn once, then the cursor goes up to the changed line only."""
    port, api = serve(launch)
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "LINES": "40", "COLUMNS": "100"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "modbusd", "watch", "--http", str(api), "40001:3",
                             "--interval", "0.2"], stdout=follower, stderr=subprocess.PIPE, env=env)  # fmt: skip
    os.close(follower)
    screen = b""

    def read_until(wanted: bytes) -> None:
        nonlocal screen
        deadline = time.monotonic() + WAIT
        while wanted not in screen and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                screen += os.read(leader, 4096)
        assert wanted in screen, screen

    try:
        read_until(b"40003  0\r\n")
        drawn = len(screen)
        client = connect(port)
        try:
            assert not client.write_register(1, 4242).isError()
        finally:
            client.close()
        read_until(b"\x1b[2A\r\x1b[2K40002  4242\x1b[2B\r")  # up to the 2nd of 3 lines, rewrite it, back down
        assert b"40001" not in screen[drawn:] and b"40003" not in screen[drawn:]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT) == 0
        assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]  # a pipe
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        proc.stderr.close()  # type: ignore[union-attr]
        os.close(leader)


def test_watch_says_so_once_when_the_api_is_lost_and_mistakes_exit_2(launch: Launch) -> None:
    port, api = free_port(), free_port()
    server = launch("-p", str(port), "--host", HOST, "--http", str(api))
    server.running()
    watch = launch("watch", "--http", str(api), "40001", "--interval", "0.1")
    watch.wait_for("  40001  0")
    assert server.stop(signal.SIGTERM) == 0
    deadline = time.monotonic() + WAIT
    while not watch.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a few more failed polls: still one line
    assert len(watch.stderr) == 1 and watch.stderr[0].startswith("modbusd: lost the control API: no control API")
    assert watch.proc.poll() is None  # it waits for the API to come back
    assert watch.stop(signal.SIGINT) == 0
    for args, start in [(("nosuchpoint",), "modbusd: nosuchpoint: no data point named"),
                        (("float",), "modbusd: float is a type: name the point first")]:  # fmt: skip
        result = modbusd_cli("watch", "--http", str(free_port()), *args)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result
        assert result.stderr.startswith(start) or "no control API" in result.stderr, result.stderr
    bad = modbusd_cli("watch", "40001", "--interval", "0.01")
    assert bad.returncode == 2 and "the interval is 0.1 s at least" in bad.stderr


# ------------------------------------------------------------------------------------------------------ log


def test_log_follow_shows_a_write_with_its_values_and_an_exception_with_its_code(launch: Launch) -> None:
    port, api = serve(launch)
    follow = launch("log", "--follow", "--http", str(api))
    client = connect(port)
    try:
        deadline = time.monotonic() + WAIT  # the follower is registered once the stream's headers came: poll
        while not follow.stdout and time.monotonic() < deadline:
            assert not client.read_holding_registers(7, count=1).isError()
            time.sleep(0.1)
        assert "tcp unit=1 fc=3 addr=7 qty=1 -> ok" in follow.wait_for("fc=3 addr=7")
        assert not client.write_registers(5, [11, 22, 33]).isError()
        assert client.read_holding_registers(65535, count=2).exception_code == 2
        wrote = follow.wait_for("fc=16", timeout=WAIT)
        assert " fc=16 addr=5 qty=3 values=[11, 22, 33] -> ok (" in wrote, wrote
        failed = follow.wait_for("fc=3 addr=65535", timeout=WAIT)
        assert failed.endswith(" ms)") and "qty=2 -> exception 2 (illegal data address)" in failed, failed
    finally:
        client.close()
    assert follow.stop(signal.SIGINT) == 0
    no_traceback(follow)
    kept = modbusd_cli("log", "--http", str(api))  # the ring kept what the follower saw
    assert kept.returncode == 0 and "values=[11, 22, 33]" in kept.stdout
    nobody = modbusd_cli("log", "--follow", "--http", str(free_port()))
    assert nobody.returncode == 2 and nobody.stderr.startswith("modbusd: no control API on 127.0.0.1 port")
