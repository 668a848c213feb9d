"""--state with endpoints: every endpoint's devices kept under its name, and the file's check per endpoint.

The store with real SQLite files in tmp_path; then a real `python -m modbusd` serving a device file with a default
endpoint, a TCP endpoint and a template with count = 2, written over pymodbus, the control API and `modbusd set`,
killed with SIGKILL under load from writers on every endpoint, and restarted: every acknowledged write is back on
its own endpoint and on no other. Then the device file changed under the state file: an endpoint removed or resized
is one line and exit code 2, one added is taken in.
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Device
from modbusd.state import device_keys
from modbusd.state_store import StateError, StateStore
from tests.conftest import free_port
from tests.test_cli import Modbusd, assert_one_line_error
from tests.test_cli_config import modbusd_cli
from tests.test_state_crash import (
    HOST,
    REGISTERS,
    SPAN,
    TIMEOUT,
    Launch,
    Writer,
    allowed_after,
    check,
    read_all,
    write_until_all,
)
from tests.test_web_hardening import call

# ------------------------------------------------------------------------------------------ the store


def sized(registers: int = 16) -> Device:
    return Device(coils=16, discrete_inputs=16, holding_registers=registers, input_registers=16)


def test_each_endpoints_devices_are_keyed_under_its_name_the_default_ones_as_before() -> None:
    shared, other = sized(), sized()
    keys = device_keys((sized(), {}), {"meter1": (sized(), {}), "plc": (None, {1: shared, 2: shared, 5: other})})
    assert list(keys) == ["*", "meter1/*", "plc/1", "plc/5"]
    assert keys["plc/1"] is shared and keys["plc/5"] is other
    assert list(device_keys(None, {"m": (sized(), {})})) == ["m/*"]  # a server serving only its endpoints


def test_values_go_back_to_their_own_endpoint_and_a_new_endpoint_is_added(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    store = StateStore(path, {"*": sized(), "m1/*": sized()})  # an old file: the default endpoint's device alone
    store.commit([("*", "holding_registers", 3, 33), ("m1/*", "holding_registers", 3, 44)])
    store.close()
    devices = {"*": sized(), "m1/*": sized(), "m2/*": sized(), "m3/1": sized()}
    store = StateStore(path, devices)
    assert store.added == ["m2", "m3"]
    assert [devices[k].holding_registers[3] for k in devices] == [33, 44, 0, 0]
    store.commit([("m2/*", "holding_registers", 3, 55)])
    store.close()
    again = {"*": sized(), "m1/*": sized(), "m2/*": sized(), "m3/1": sized()}
    store = StateStore(path, again)
    assert store.added == []  # written into the file at the first start
    assert [again[k].holding_registers[3] for k in again] == [33, 44, 55, 0]
    store.close()


@pytest.mark.parametrize(
    ("devices", "says"),
    [
        pytest.param({"*": sized(), "m2/1": sized()}, "keeps the values of endpoint m1, which is not served "
                     "now: serve it again, or start with --reset-state", id="removed"),
        pytest.param({"m1/*": sized(), "m2/1": sized()}, "keeps the values of the default endpoint (the top-level "
                     "[[device]] tables), which is not served now", id="default removed"),
        pytest.param({"*": sized(), "m1/*": sized(17), "m2/1": sized()}, "made for another memory map: endpoint m1's "
                     "holding registers 16 there, 17 here", id="resized"),
        pytest.param({"*": sized(), "m1/*": sized(), "m2/1": sized(), "m2/2": sized()}, "made for endpoint m2's "
                     "devices unit 1, not unit 1, unit 2", id="unit ids"),
    ],
)  # fmt: skip
def test_an_endpoint_removed_or_changed_is_refused_until_reset(
    tmp_path: Path, devices: dict[str, Device], says: str
) -> None:
    path = tmp_path / "s.state"
    StateStore(path, {"*": sized(), "m1/*": sized(), "m2/1": sized()}).close()
    with pytest.raises(StateError) as refused:
        StateStore(path, devices)
    assert says in str(refused.value), str(refused.value)
    assert "--reset-state" in str(refused.value)
    StateStore(path, devices, reset=True).close()
    StateStore(path, devices).close()


def test_many_endpoints_removed_are_named_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    StateStore(path, {"*": sized()} | {f"m{n}/*": sized() for n in range(1, 9)}).close()
    with pytest.raises(StateError, match=r"keeps the values of endpoints m2, m3, m4, m5, m6 and 2 more, which are "):
        StateStore(path, {"*": sized(), "m1/*": sized()})


# ------------------------------------------------------------------------------------------ modbusd


def plant(count: int = 2, plc_registers: int = 65536) -> str:
    """The default endpoint, a TCP endpoint `plc` and `count` meters (meter1 …), each on a free port."""
    return f"""
[server]
name = "plant"
host = "{HOST}"
[[device]]

[[template]]
name = "meter"
unit_id = 1

[[endpoint]]
name = "plc"
host = "{HOST}"
port = 0
[[endpoint.device]]
unit_id = 1
[endpoint.device.size]
holding_registers = {plc_registers}

[[endpoint]]
name = "meter{{n}}"
count = {count}
host = "{HOST}"
port = 0
[[endpoint.device]]
template = "meter"
"""


def serve(launch: Launch, file: Path, state: Path, *options: str) -> tuple[Modbusd, dict[str | None, int]]:
    """A modbusd child serving `file` with `state`, and its ports: the default endpoint's under None."""
    child = launch("--config", str(file), "-p", "0", "--state", str(state), *options)
    banner = child.running()
    ports: dict[str | None, int] = {}
    for line in banner:
        if found := re.match(r"Starting server on \S+ port (\d+)", line):
            ports[None] = int(found.group(1))
        elif found := re.match(r"\s+endpoint (\S+): \S+ port (\d+)", line):
            ports[found.group(1)] = int(found.group(2))
    return child, ports


ENDPOINTS = (None, "plc", "meter1", "meter2")


def write_each_function(port: int, tag: int) -> None:
    """FC06, FC16, FC05, FC15, FC22 and FC23 over pymodbus, with values that are this endpoint's own (`tag`)."""
    client = ModbusTcpClient(HOST, port=port, timeout=TIMEOUT, retries=0)
    assert client.connect()
    try:
        assert not client.write_register(1000, 100 + tag, device_id=1).isError()
        assert not client.write_registers(1010, [tag, tag + 1, tag + 2], device_id=1).isError()
        assert not client.write_coil(tag, True, device_id=1).isError()
        assert not client.write_coils(100, [bool(tag & 1), bool(tag & 2), bool(tag & 4)], device_id=1).isError()
        assert not client.mask_write_register(address=1020, and_mask=0, or_mask=0x0101 * tag, device_id=1).isError()
        assert not client.readwrite_registers(read_address=0, read_count=1, address=1030, values=[7 * tag],
                                              device_id=1).isError()  # fmt: skip
    finally:
        client.close()


def assert_own_writes(port: int, tag: int, owner: int) -> None:
    """What `write_each_function(port, tag)` wrote, and the owner's `owner` at 40201 (past the writers'
    registers): nothing of another endpoint's."""
    client = ModbusTcpClient(HOST, port=port, timeout=TIMEOUT, retries=0)
    assert client.connect()
    try:
        read = client.read_holding_registers
        registers = {a: read(a, count=3, device_id=1).registers for a in (1000, 1010, 1020, 1030, 200)}
        assert registers == {1000: [100 + tag, 0, 0], 1010: [tag, tag + 1, tag + 2], 1020: [0x0101 * tag, 0, 0],
                             1030: [7 * tag, 0, 0], 200: [owner, 0, 0]}, f"tag {tag}"  # fmt: skip
        coils = client.read_coils(0, count=8, device_id=1).bits[:8]
        assert coils == [n == tag for n in range(8)], f"tag {tag}: coils {coils}"
        assert client.read_coils(100, count=8, device_id=1).bits[:3] == [bool(tag & 1), bool(tag & 2), bool(tag & 4)]
    finally:
        client.close()


@pytest.mark.timeout(150)
def test_every_acknowledged_write_survives_kill_9_on_its_own_endpoint(launch: Launch, tmp_path: Path) -> None:
    file, state, api = tmp_path / "plant.toml", tmp_path / "plant.state", free_port()
    file.write_text(plant())
    child, ports = serve(launch, file, state, "--http", str(api))
    assert set(ports) == set(ENDPOINTS)
    for tag, name in enumerate(ENDPOINTS, 1):  # the same addresses everywhere, each endpoint's values its own
        write_each_function(ports[name], tag)
    for tag, name in enumerate(ENDPOINTS[:-1], 1):  # the owner's writes: the control API …
        point = "40201" if name is None else f"{name}/40201"
        assert call(api, "PUT", f"/points/{point}", {"value": 1000 * tag})[0] == 200
    done = modbusd_cli("set", "--http", str(api), "meter2/40201", "4000")  # … and modbusd set
    assert done.returncode == 0, done.stderr
    child.proc.kill()  # at once: every write above was acknowledged
    assert child.finish() == -signal.SIGKILL
    # then writers on every endpoint, 4 connections each, until a kill -9 at a random moment, three times
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    writers = {
        name: [Writer(SPAN * i, random.Random(seed + i), value=0x4000 * k) for i in range(4)]
        for k, name in enumerate(ENDPOINTS)
    }  # fmt: skip  (each endpoint's values of its own)
    allowed = {name: [{0} for _ in range(REGISTERS)] for name in ENDPOINTS}
    for kills in range(3):
        child, ports = serve(launch, file, state, "--state-sync", ("full", "normal")[kills % 2])
        values = {name: read_all(ports[name]) for name in ENDPOINTS}
        for tag, name in enumerate(ENDPOINTS, 1):
            assert_own_writes(ports[name], tag, 1000 * tag)
            check(values[name], allowed[name], writers[name], f"seed {seed}, {name or 'default'}, kill {kills}")
        running = [(ports[name], writer) for name in ENDPOINTS for writer in writers[name]]
        write_until_all(running, lambda child=child: (time.sleep(rng.uniform(0.1, 0.4)), child.proc.kill()))
        assert child.finish() == -signal.SIGKILL
        allowed = {name: allowed_after(values[name], writers[name]) for name in ENDPOINTS}
    child, ports = serve(launch, file, state)
    for tag, name in enumerate(ENDPOINTS, 1):
        assert_own_writes(ports[name], tag, 1000 * tag)
        check(read_all(ports[name]), allowed[name], writers[name], f"seed {seed}, {name or 'default'}, at last")
    assert child.stop(signal.SIGTERM) == 0
    answered = {name or "default": sum(w.answered for w in writers[name]) for name in ENDPOINTS}
    assert all(count > 4 for count in answered.values()), f"too few writes acknowledged to show much: {answered}"


def test_an_endpoint_removed_or_resized_is_one_line_and_exit_2_and_a_new_one_is_taken_in(
    launch: Launch, tmp_path: Path
) -> None:
    file, state = tmp_path / "plant.toml", tmp_path / "plant.state"
    file.write_text(plant())
    child, ports = serve(launch, file, state)
    write_each_function(ports["meter2"], 4)
    assert child.stop(signal.SIGTERM) == 0
    hint = "start with --reset-state to begin it afresh from the device file (its values are lost), or name another "\
           "file with --state"  # fmt: skip
    file.write_text(plant(count=1))
    line = assert_one_line_error(launch("--config", str(file), "-p", "0", "--state", str(state)))
    assert line == f"modbusd: {state} keeps the values of endpoint meter2, which is not served now: serve it again, "\
                   f"or {hint}"  # fmt: skip
    file.write_text(plant(plc_registers=100))
    line = assert_one_line_error(launch("--config", str(file), "-p", "0", "--state", str(state)))
    assert line == f"modbusd: {state} was made for another memory map: endpoint plc unit 1's holding registers 65536 "\
                   f"there, 100 here: {hint}"  # fmt: skip
    file.write_text(plant(count=3))  # meter3 is new: taken in, nothing stored changes
    child, ports = serve(launch, file, state)
    assert_own_writes(ports["meter2"], 4, 0)
    write_each_function(ports["meter3"], 5)
    child.proc.kill()
    assert child.finish() == -signal.SIGKILL
    child, ports = serve(launch, file, state)
    assert_own_writes(ports["meter3"], 5, 0)
    assert_own_writes(ports["meter2"], 4, 0)
    assert child.stop(signal.SIGTERM) == 0
    file.write_text(plant(count=1))
    child, ports = serve(launch, file, state, "--reset-state")  # made anew for meter1 alone
    assert read_all(ports["meter1"]) == [0] * REGISTERS
    assert child.stop(signal.SIGTERM) == 0
    with sqlite3.connect(state) as db:
        assert sorted(key for (key,) in db.execute("SELECT device FROM devices")) == ["*", "meter1/1", "plc/1"]
    db.close()
