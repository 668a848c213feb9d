"""`modbusd clone` end to end: a modbusd serving a sparse, seeded device file is cloned on the real command line
(over TCP, and over RTU on a socat pty pair), a second modbusd serves the copy, and pymodbus reads every address
of every table through both: the same value, or the same exception. Each test ends only the children it started.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pymodbus.client import ModbusTcpClient

from tests.test_cli import HOST, free_port

if TYPE_CHECKING:
    from tests.conftest import PtyPair
    from tests.test_cli import Modbusd

    Launch = Callable[..., Modbusd]

TABLES = ("coils", "discrete_inputs", "input_registers", "holding_registers")
CLONE_TIMEOUT = 120.0  # seconds: a few thousand requests on a loaded machine
IDENTIFICATION = {0: b"ACME", 1: b"X-100", 2: b"2.5", 4: b"Pump controller", 0x80: b"serial 0042"}


def sparse_device_file(seed: int, size: int, shortest: int = 1) -> str:
    """Every table sparse: runs of random values (`shortest` long at least) with holes between them, within
    0..size-1; identification with a private object; an FC17 answer of its own. Written by hand, not by the
    writer under test."""
    rng = random.Random(seed)
    lines = [
        "[[device]]", "sparse = true", "", "[device.identification]", 'vendor_name = "ACME"', 'product_code = "X-100"',
        'major_minor_revision = "2.5"', 'product_name = "Pump controller"', '0x80 = "serial 0042"', "",
        "[device.server_id]", "id = [0x2A, 0x07]", "running = false", 'additional_data = "PLC-5"', "",
        "[device.values]",
    ]  # fmt: skip
    for table in TABLES:
        runs, address = [], rng.randrange(0, 20)
        while address < size:
            length = min(rng.randint(shortest, 150), size - address)
            values = [rng.randrange(2 if table in ("coils", "discrete_inputs") else 65536) for _ in range(length)]
            runs.append(f"{{ address = {address}, values = {values} }}")
            address += length + rng.randint(1, 120)
        lines.append(f"{table} = [{', '.join(runs)}]")
    return "\n".join(lines) + "\n"


def snapshot(port: int, last: int, unit_id: int = 1) -> dict[str, Any]:
    """Every address 0..last of every table as pymodbus reads it (value, or "exception N"), FC43's objects and
    FC17's answer."""
    client = ModbusTcpClient(HOST, port=port, timeout=5, retries=1)
    assert client.connect()
    try:
        reads = {"coils": client.read_coils, "discrete_inputs": client.read_discrete_inputs,
                 "input_registers": client.read_input_registers,
                 "holding_registers": client.read_holding_registers}  # fmt: skip
        seen: dict[str, Any] = {}
        for table, read in reads.items():

            def values(address: int, count: int, read: Callable[..., Any] = read, table: str = table) -> list[Any]:
                answer = read(address, count=count, device_id=unit_id)
                if answer.isError():
                    return [f"exception {answer.exception_code}"]
                return list(answer.bits[:count] if table in ("coils", "discrete_inputs") else answer.registers)

            found: list[Any] = []
            for start in range(0, last + 1, 100):
                count = min(100, last + 1 - start)
                block = values(start, count)
                found += block if len(block) == count else [values(a, 1)[0] for a in range(start, start + count)]
            seen[table] = found
        objects = client.read_device_information(read_code=3, object_id=0, device_id=unit_id)
        seen["identification"] = objects.information
        report = client.report_device_id(device_id=unit_id)
        seen["report"] = (report.identifier, report.status)
        return seen
    finally:
        client.close()


def clone(launch: Launch, target: str, output: Path, *options: str) -> list[str]:
    """Run `modbusd clone` to its end; its progress lines."""
    child = launch("clone", target, "-o", str(output), "--rate", "0", *options)
    code = child.finish(CLONE_TIMEOUT)
    assert code == 0, child.stderr
    return child.stderr


def assert_same(original: dict[str, Any], copy: dict[str, Any]) -> None:
    for table in TABLES:
        assert len(original[table]) == len(copy[table])
        different = [a for a, (x, y) in enumerate(zip(original[table], copy[table], strict=True)) if x != y]
        assert different == [], f"{table}: first differences at {different[:5]}"
        # the seeded file really has both: readable addresses and holes
        assert "exception 2" in original[table] and any(not isinstance(v, str) for v in original[table])
    assert original["identification"] == copy["identification"] == IDENTIFICATION
    assert original["report"] == copy["report"]
    assert copy["report"][1] is False


def test_clone_over_tcp_gives_a_device_file_whose_server_answers_every_address_as_the_original(
    launch: Launch, tmp_path: Path
) -> None:
    size, last = 800, 899
    original_file, copy_file = tmp_path / "original.toml", tmp_path / "copy.toml"
    original_file.write_text(sparse_device_file(2024, size))
    port, copy_port = free_port(), free_port()
    launch("--config", str(original_file), "-p", str(port), "--host", HOST).running()
    ranges = ",".join(f"{t}:0-{last}" for t in ("co", "di", "ir", "hr"))
    progress = clone(launch, f"tcp:{HOST}:{port}", copy_file, "--ranges", ranges, "--stride", "1")
    tables = [line for line in progress if " readable (" in line]
    assert len(tables) == 4 and tables[0].startswith("modbusd clone: coils: "), progress
    launch("--config", str(copy_file), "-p", str(copy_port), "--host", HOST).running()
    assert_same(snapshot(port, last), snapshot(copy_port, last))


def test_clone_over_rtu_on_a_pty_pair_finds_every_run_as_long_as_its_stride(
    launch: Launch, tmp_path: Path, pty_pair: Callable[[], PtyPair]
) -> None:
    size, last, stride = 300, 349, 4
    original_file, copy_file = tmp_path / "original.toml", tmp_path / "copy.toml"
    original_file.write_text(sparse_device_file(7, size, shortest=stride))
    pair = pty_pair()
    port, copy_port = free_port(), free_port()
    launch("--config", str(original_file), "--rtu", pair.server_end, "--parity", "N", "--unit", "7",
           "-p", str(port), "--host", HOST).running()  # fmt: skip
    ranges = ",".join(f"{t}:0-{last}" for t in ("co", "di", "ir", "hr"))
    clone(launch, f"rtu:{pair.client_end},19200,8N2", copy_file, "--unit", "7", "--ranges", ranges,
          "--stride", str(stride))  # fmt: skip
    assert "serial_unit_id = 7" in copy_file.read_text()
    launch("--config", str(copy_file), "-p", str(copy_port), "--host", HOST).running()
    assert_same(snapshot(port, last, unit_id=7), snapshot(copy_port, last, unit_id=7))


@pytest.mark.parametrize(
    ("target", "words"),
    [
        pytest.param("tcp:127.0.0.1:{closed}", "cannot connect", id="nothing listening"),
        pytest.param("rtu:/dev/nonexistent-serial-port", "cannot open /dev/nonexistent-serial-port", id="no port"),
        pytest.param("udp:host", "is not rtu:DEVICE", id="bad target"),
    ],
)
def test_clone_of_what_cannot_be_read_is_one_line_and_exit_2(
    launch: Launch, tmp_path: Path, target: str, words: str
) -> None:
    child = launch("clone", target.format(closed=free_port()), "-o", str(tmp_path / "copy.toml"))
    assert child.finish(CLONE_TIMEOUT) == 2
    errors = [line for line in child.stderr if line.startswith("modbusd: ")]
    assert len(errors) == 1 and words in errors[0], child.stderr
    assert "Traceback" not in "\n".join(child.stderr) and not (tmp_path / "copy.toml").exists()


def test_clone_of_a_silent_device_says_so_in_one_line(launch: Launch, tmp_path: Path, pty_pair: Callable[[], PtyPair]
                                                       ) -> None:  # fmt: skip
    pair = pty_pair()  # nothing serves the other end: every request goes unanswered
    child = launch("clone", f"rtu:{pair.client_end},19200,8N2", "--timeout", "0.2", "--ranges", "hr:0")
    assert child.finish(CLONE_TIMEOUT) == 2
    errors = [line for line in child.stderr if line.startswith("modbusd: ")]
    assert len(errors) == 1 and "no answer from unit 1" in errors[0] and "after 3 tries" in errors[0], child.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(["--ranges", "hr:9-0"], "the first no greater than the last", id="ranges"),
        pytest.param(["--rate", "-1"], "0 (no limit) or more", id="rate"),
        pytest.param(["--unit", "0"], "on a serial line a device has a unit id 1..247", id="serial unit"),
        pytest.param(["-o", "{existing}"], "already exists", id="existing file"),
    ],
)
def test_clone_mistakes_of_the_person_are_one_line_and_exit_2(
    launch: Launch, tmp_path: Path, args: list[str], words: str
) -> None:
    existing = tmp_path / "copy.toml"
    existing.write_text("# mine\n")
    child = launch("clone", "rtu:/dev/ttyS99", *(a.format(existing=existing) for a in args))
    assert child.finish(CLONE_TIMEOUT) == 2
    assert len(child.stderr) == 1 and words in child.stderr[0], child.stderr
    assert existing.read_text() == "# mine\n"
