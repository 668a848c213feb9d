"""--state the hard way: a real `python -m modbusd` killed with SIGKILL while many clients write, then restarted.

Writers over many connections send FC06 and FC16 with values that never repeat, one request at a time each, and
record what was acknowledged and what was in flight when the server died. After the restart every register must
hold its last acknowledged value, or the value of the one request that was in flight (committed, its response
lost with the process); an FC16 in flight is all there or not at all (one transaction). Both durability modes
survive a killed process, so the kills alternate between them.

Also from the command line: a state file that cannot be used is one line and exit code 2, and --reset-state.
"""

from __future__ import annotations

import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_cli import Modbusd, assert_one_line_error
from tests.test_cli_config import modbusd_cli

HOST = "127.0.0.1"
WRITERS = 16  # connections, each writing its own 10 registers
SPAN = 10
REGISTERS = WRITERS * SPAN
KILLS = 20
TIMEOUT = 5.0
MBAP = struct.Struct(">HHHB")

Launch = Callable[..., Modbusd]


def started(launch: Launch, state: Path, *options: str) -> tuple[Modbusd, int]:
    child = launch("-p", "0", "--host", HOST, "--state", str(state), *options)
    line = child.wait_for("Starting server on")
    return child, int(line.split(" port ")[1].split(".")[0])


def exchange(sock: socket.socket, transaction_id: int, pdu: bytes) -> bytes:
    """One request, its response PDU; OSError (or a short read) when the server is gone."""
    sock.sendall(MBAP.pack(transaction_id, 0, len(pdu) + 1, 1) + pdu)
    header = _read(sock, 7)
    tid, _proto, length, _unit = MBAP.unpack(header)
    assert tid == transaction_id, f"response to transaction {tid}, expected {transaction_id}"
    return _read(sock, length - 1)


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


def read_all(port: int) -> list[int]:
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        values: list[int] = []
        for tid, (address, quantity) in enumerate(((0, 100), (100, REGISTERS - 100)), 1):
            response = exchange(sock, tid, struct.pack(">BHH", 3, address, quantity))
            assert response[:2] == bytes((3, 2 * quantity)), response.hex()
            values += struct.unpack(f">{quantity}H", response[2:])
    return values


@dataclass
class Writer:
    """One connection's writes to registers first..first+SPAN-1: what was acknowledged, what was in flight."""

    first: int
    rng: random.Random
    value: int = 0  # the last value sent: values only grow, so none repeats within a run
    acked: dict[int, int] = field(default_factory=dict)
    in_flight: tuple[list[int], int] | None = None  # (registers, value) of the request sent and not answered
    answered: int = 0

    def run(self, port: int, stop: threading.Event) -> None:
        self.in_flight = None  # the last run's: the check after the restart has used it
        try:
            with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
                tid = 0
                while not stop.is_set():
                    tid = (tid + 1) & 0xFFFF
                    self.value = (self.value + 1) & 0xFFFF
                    if self.rng.random() < 0.5:  # FC06 on one register
                        register = self.first + self.rng.randrange(SPAN)
                        registers = [register]
                        pdu = struct.pack(">BHH", 6, register, self.value)
                        expected = pdu
                    else:  # FC16 on all ten, one value
                        registers = list(range(self.first, self.first + SPAN))
                        pdu = struct.pack(f">BHHB{SPAN}H", 16, self.first, SPAN, 2 * SPAN, *[self.value] * SPAN)
                        expected = struct.pack(">BHH", 16, self.first, SPAN)
                    self.in_flight = (registers, self.value)
                    response = exchange(sock, tid, pdu)
                    assert response == expected, f"{pdu.hex()} answered {response.hex()}"
                    self.acked.update(dict.fromkeys(registers, self.value))
                    self.in_flight = None
                    self.answered += 1
        except (OSError, ConnectionError):
            return  # the server died (or is stopping): what was acknowledged is recorded


def write_until(port: int, writers: list[Writer], end: Callable[[], object]) -> None:
    """Run every writer on its own connection, call `end` (the kill), then wait for every writer to see it."""
    write_until_all([(port, writer) for writer in writers], end)


def write_until_all(running: list[tuple[int, Writer]], end: Callable[[], object]) -> None:
    """`write_until` over several ports (endpoints): each writer on its own connection to its port."""
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(port, stop), daemon=True) for port, w in running]
    for thread in threads:
        thread.start()
    try:
        end()
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a writer did not end"


def check(values: list[int], allowed: list[set[int]], writers: list[Writer], when: str) -> None:
    wrong = {r: (values[r], sorted(allowed[r])) for r in range(REGISTERS) if values[r] not in allowed[r]}
    assert not wrong, f"{when}: registers lost acknowledged writes (register: (found, allowed)): {wrong}"
    for writer in writers:
        if writer.in_flight is not None and len(writer.in_flight[0]) > 1:
            registers, value = writer.in_flight
            assert len({values[r] == value for r in registers}) == 1, f"{when}: FC16 half stored: {values}"


def allowed_after(values: list[int], writers: list[Writer]) -> list[set[int]]:
    """What each register may hold after the next restart: the last acknowledged value, or the one in flight."""
    allowed = [{v} for v in values]
    for writer in writers:
        for register, value in writer.acked.items():
            allowed[register] = {value}
        if writer.in_flight is not None:
            for register in writer.in_flight[0]:
                allowed[register].add(writer.in_flight[1])
        writer.acked.clear()
    return allowed


@pytest.mark.timeout(150)
def test_every_acknowledged_write_survives_kill_9_at_a_random_moment(launch: Launch, tmp_path: Path) -> None:
    state = tmp_path / "plant.state"
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    writers = [Writer(SPAN * i, random.Random(seed + i)) for i in range(WRITERS)]
    allowed: list[set[int]] = [{0} for _ in range(REGISTERS)]
    answered = 0
    for kills in range(KILLS):
        sync = ("full", "normal")[kills % 2]
        child, port = started(launch, state, "--state-sync", sync)
        values = read_all(port)
        check(values, allowed, writers, f"seed {seed}, after kill {kills}")
        before = sum(w.answered for w in writers)
        write_until(port, writers, lambda child=child: (time.sleep(rng.uniform(0.05, 0.4)), child.proc.kill()))
        assert child.finish() == -signal.SIGKILL
        answered += sum(w.answered for w in writers) - before
        allowed = allowed_after(values, writers)
    child, port = started(launch, state)
    check(read_all(port), allowed, writers, f"seed {seed}, after the last kill")
    assert child.stop(signal.SIGTERM) == 0
    assert answered > KILLS * WRITERS, f"only {answered} writes acknowledged over {kills} runs: too few to show much"


@pytest.mark.timeout(60)
def test_a_clean_sigterm_under_load_keeps_every_acknowledged_write(launch: Launch, tmp_path: Path) -> None:
    state = tmp_path / "plant.state"
    writers = [Writer(SPAN * i, random.Random(i)) for i in range(WRITERS)]
    child, port = started(launch, state)
    values = read_all(port)
    codes: list[int] = []
    write_until(port, writers, lambda: (time.sleep(0.5), codes.append(child.stop(signal.SIGTERM))))
    assert codes == [0], child.stderr
    assert sum(w.answered for w in writers) > WRITERS
    allowed = allowed_after(values, writers)
    child, port = started(launch, state)
    check(read_all(port), allowed, writers, "after SIGTERM")
    assert child.stop(signal.SIGTERM) == 0


def test_a_state_file_that_cannot_be_used_is_one_line_and_exit_2(launch: Launch, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    line = assert_one_line_error(launch("-p", "0", "--state", str(notes)))
    assert line == (f"modbusd: {notes} is not a modbusd state file (not a SQLite file): name another file with "
                    "--state (modbusd never overwrites a file it did not make)")  # fmt: skip
    state = tmp_path / "plant.state"
    child, port = started(launch, state)
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        assert exchange(sock, 1, bytes.fromhex("06 0005 0007")) == bytes.fromhex("06 0005 0007")
    assert child.stop(signal.SIGTERM) == 0
    line = assert_one_line_error(launch("-p", "0", "--state", str(state), "-d", "packed"))
    assert line.startswith(f"modbusd: {state} was made for another memory map: the device's layout separate there, "
                           "packed here: start with --reset-state")  # fmt: skip
    assert assert_one_line_error(launch("-p", "0", "--reset-state")).startswith("modbusd: --reset-state empties")
    child, port = started(launch, state, "-d", "packed", "--reset-state")
    assert read_all(port)[5] == 0  # forgotten
    assert child.stop(signal.SIGTERM) == 0


def test_modbusd_set_through_the_control_api_is_stored_and_survives_kill_9(launch: Launch, tmp_path: Path) -> None:
    state = tmp_path / "plant.state"
    api = free_port()
    child, port = started(launch, state, "--http", str(api))
    child.wait_for("Control API on")
    done = modbusd_cli("set", "--http", str(api), "30002", "4321")  # an input register: the owner's to set
    assert done.returncode == 0, done.stderr
    child.proc.kill()
    assert child.finish() == -signal.SIGKILL
    child, port = started(launch, state)
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        assert exchange(sock, 1, bytes.fromhex("04 0001 0001")) == bytes.fromhex("04 02 10e1")
    assert child.stop(signal.SIGTERM) == 0
