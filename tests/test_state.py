"""Durable state (--state): what is stored per layout, restore, the file's checks, and a full disk.

The journal and its rows are driven with plain tables (sans-I/O); the store with real SQLite files in tmp_path;
the server with pymodbus over 127.0.0.1. A full disk is SQLite's own SQLITE_FULL, made with `max_page_count`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Device, Server
from modbusd.config import ConfigError, loads, summary
from modbusd.protocol.errors import ServerDeviceFailure
from modbusd.protocol.rtu import with_crc
from modbusd.state import Journal, restore, rollback, rows
from modbusd.state_store import StateError, StateStore
from tests.conftest import RawClient, wait_until

StartServer = Callable[..., Server]
Connect = Callable[..., ModbusTcpClient]


def journaled(device: Device) -> Journal:
    journal = Journal(lambda: None)
    journal.attach("*", device)
    return journal


# ------------------------------------------------------------------------------------------ sans-I/O


def test_separate_layout_stores_each_item_written_in_its_own_table() -> None:
    device = Device(coils=100, discrete_inputs=100, holding_registers=100, input_registers=100)
    journal = journaled(device)
    device.holding_registers.set_values(10, [1, 2])
    device.coils.write(3, [True, False, True])
    device.input_registers[7] = 70  # the owner writes the read-only tables too
    device.discrete_inputs[9] = True
    assert sorted(rows(journal.take())) == [
        ("*", "coils", 3, 1), ("*", "coils", 4, 0), ("*", "coils", 5, 1), ("*", "discrete_inputs", 9, 1),
        ("*", "holding_registers", 10, 1), ("*", "holding_registers", 11, 2), ("*", "input_registers", 7, 70),
    ]  # fmt: skip


def test_shared_memory_is_stored_once_under_the_table_that_owns_it() -> None:
    overlaid = Device("overlaid", coils=100, holding_registers=100)
    journal = journaled(overlaid)
    overlaid.input_registers[5] = 9  # the same word as holding register 5
    overlaid.discrete_inputs[6] = True  # the same bit as coil 6
    assert sorted(rows(journal.take())) == [("*", "coils", 6, 1), ("*", "holding_registers", 5, 9)]
    packed = Device("packed", coils=1000, holding_registers=100)
    journal = journaled(packed)
    packed.coils.write(17, [True, True])  # coils 17, 18: bits 1 and 2 of holding register 1
    assert rows(journal.take()) == [("*", "holding_registers", 1, 0b110)]


def test_rows_hold_the_value_at_commit_once_per_item() -> None:
    device = Device(holding_registers=10)
    journal = journaled(device)
    device.holding_registers[2] = 1
    device.holding_registers.mask_write(2, 0x00FF, 0x1200)  # FC22: read, then one write
    device.holding_registers[2] = 3
    assert rows(journal.take()) == [("*", "holding_registers", 2, 3)]
    assert journal.writes == 3 and not journal.entries


def test_the_first_write_after_a_take_wakes_the_owner_once() -> None:
    woken: list[int] = []
    device = Device(holding_registers=10)
    journal = Journal(lambda: woken.append(1))
    journal.attach("*", device)
    device.holding_registers[1] = 1
    device.holding_registers[2] = 2
    assert woken == [1]
    journal.take()
    device.holding_registers[3] = 3
    assert woken == [1, 1]


def test_rollback_puts_back_what_the_writes_overwrote() -> None:
    device = Device("packed", coils=64, holding_registers=4)
    device.holding_registers[0] = 0xAAAA
    journal = journaled(device)
    device.holding_registers[0] = 1
    device.coils.write(0, [False] * 16)
    device.holding_registers.set_values(0, [7, 8, 9])
    rollback(journal.take())
    assert device.holding_registers.values(0, 4) == [0xAAAA, 0, 0, 0]


def test_a_table_without_a_journal_journals_nothing() -> None:
    device = Device(holding_registers=10)
    journal = journaled(device)
    journal.detach()
    device.holding_registers[1] = 1
    assert device.holding_registers.journal is None and not journal.entries and journal.writes == 0


def test_restore_refuses_values_the_device_cannot_hold() -> None:
    device = Device(coils=8, holding_registers=4)
    restore(device, "holding_registers", [(3, 0xFFFF)])
    restore(device, "coils", [(7, 1)])
    assert device.holding_registers[3] == 0xFFFF and device.coils[7]
    for memory, stored in (("holding_registers", [(4, 1)]), ("coils", [(0, 2)]), ("bits", [(0, 1)])):
        with pytest.raises(ValueError):
            restore(device, memory, stored)


# --------------------------------------------------------------------------------------- the file


def small() -> dict[str, Device]:
    return {"*": Device(coils=16, discrete_inputs=16, holding_registers=16, input_registers=16)}


def test_a_new_file_is_made_and_its_values_come_back(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    store = StateStore(path, small())
    store.commit([("*", "holding_registers", 3, 33), ("*", "coils", 2, 1)])
    store.close()
    devices = small()
    StateStore(path, devices).close()
    assert devices["*"].holding_registers[3] == 33 and devices["*"].coils[2]


def test_reset_forgets_the_stored_values(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    store = StateStore(path, small())
    store.commit([("*", "holding_registers", 3, 33)])
    store.close()
    devices = small()
    devices["*"].holding_registers[3] = 5  # the device file's initial value
    StateStore(path, devices, reset=True).close()
    assert devices["*"].holding_registers[3] == 5
    StateStore(path, devices).close()
    assert devices["*"].holding_registers[3] == 5


@pytest.mark.parametrize(
    ("devices", "says"),
    [
        pytest.param({"*": Device("overlaid", coils=16, holding_registers=16)}, "layout separate there, overlaid here",
                     id="layout"),
        pytest.param({"*": Device(coils=16, discrete_inputs=16, holding_registers=17, input_registers=16)},
                     "holding registers 16 there, 17 here", id="size"),
        pytest.param({"1": Device(coils=16, discrete_inputs=16, holding_registers=16, input_registers=16)},
                     "made for the devices *, not unit 1", id="devices"),
    ],
)  # fmt: skip
def test_a_file_made_for_another_memory_map_is_refused_until_reset(
    tmp_path: Path, devices: dict[str, Device], says: str
) -> None:
    path = tmp_path / "s.state"
    StateStore(path, small()).close()
    with pytest.raises(StateError) as refused:
        StateStore(path, devices)
    assert says in str(refused.value) and "--reset-state" in str(refused.value)
    StateStore(path, devices, reset=True).close()
    StateStore(path, devices).close()


def test_a_file_that_is_not_ours_is_never_touched(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not a database at all\n" * 10)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    other_bytes = other.read_bytes()
    for path, says in ((text, "not a SQLite file"), (other, "another program's SQLite database")):
        for reset in (False, True):
            with pytest.raises(StateError, match=says):
                StateStore(path, small(), reset=reset)
    assert text.read_bytes() == b"not a database at all\n" * 10 and other.read_bytes() == other_bytes


def test_a_damaged_file_of_ours_asks_for_reset(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    StateStore(path, small()).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE written")
    db.close()
    with pytest.raises(StateError, match=r"damaged .*--reset-state"):
        StateStore(path, small())
    StateStore(path, small(), reset=True).close()


def test_a_second_server_on_the_same_file_is_told_at_start(tmp_path: Path) -> None:
    path = tmp_path / "s.state"
    first = StateStore(path, small())
    for reset in (False, True):
        with pytest.raises(StateError, match="in use by another server"):
            StateStore(path, small(), reset=reset)
    first.close()
    StateStore(path, small()).close()


# ------------------------------------------------------------------------------------- the server


def test_client_and_owner_writes_survive_a_restart(start_server: StartServer, connect_client: Connect,
                                                   tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "s.state"
    server = start_server(Device(), state=path)
    client = connect_client(server)
    assert not client.write_register(5, 1234).isError()
    assert not client.write_registers(10, [1, 2, 3]).isError()
    assert not client.write_coil(3, True).isError()
    assert not client.write_coils(20, [True, False, True]).isError()
    assert not client.mask_write_register(address=5, and_mask=0x00FF, or_mask=0x0100).isError()
    assert not client.readwrite_registers(read_address=0, read_count=1, address=30, values=[9]).isError()
    server.write("30001", 77)  # an input register: the owner's to set
    server.write("10005", True)
    server.stop_thread()
    again = Server(Device(), host="127.0.0.1", port=0, state=path)
    d = again.device
    assert d.holding_registers.values(5, 1) == [(1234 & 0x00FF) | 0x0100]
    assert d.holding_registers.values(10, 3) == [1, 2, 3] and d.holding_registers[30] == 9
    assert d.coils.read(20, 3) == [True, False, True] and d.coils[3]
    assert d.input_registers[0] == 77 and d.discrete_inputs[4]
    assert again.state is not None
    again.state.stop()


def test_the_state_file_wins_over_the_device_files_values_where_written(tmp_path: Path) -> None:
    device_file = """
[server]
state = "plant.state"
[[device]]
[[device.point]]
name = "setpoint"
address = "40001"
value = %d
[[device.point]]
name = "limit"
address = "40002"
value = %d
"""
    first = Server.from_config(loads(device_file % (10, 20), base=tmp_path))
    assert first.state is not None and first.state.store.path == tmp_path / "plant.state"
    first.write("setpoint", 11)
    first.state.stop()
    second = Server.from_config(loads(device_file % (15, 25), base=tmp_path))  # the file's values changed
    assert (second.read("setpoint"), second.read("limit")) == (11, 25)  # written: kept; never written: the file's
    assert second.state is not None
    second.state.stop()
    third = Server.from_config(loads(device_file % (15, 25), base=tmp_path), reset_state=True)
    assert third.read("40001") == 15
    assert third.state is not None
    third.state.stop()


def test_check_names_the_state_file_and_its_mode(tmp_path: Path) -> None:
    config = loads('[server]\nstate = "s.state"\nstate_sync = "normal"\n[[device]]\n', base=tmp_path)
    assert f"server: state file {tmp_path / 's.state'} (synchronous=normal)" in summary(config)
    with pytest.raises(ConfigError, match="state_sync"):
        loads('[server]\nstate_sync = "off"\n[[device]]\n')


def fc16(raw: RawClient, address: int, values: list[int], transaction_id: int) -> bytes:
    pdu = struct.pack(f">BHHB{len(values)}H", 16, address, len(values), 2 * len(values), *values)
    return raw.request(pdu, transaction_id=transaction_id)


def test_a_full_disk_refuses_the_writes_with_exception_04_and_undoes_them(
    start_server: StartServer, open_raw: Callable[..., RawClient], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(Device(), state=tmp_path / "s.state")
    assert server.state is not None
    db = server.state.store.connection
    raw = open_raw(server)
    assert fc16(raw, 0, [1] * 10, 1) == bytes.fromhex("10 0000 000a")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now fails with SQLITE_FULL when the file must grow
    caplog.set_level(logging.DEBUG, logger="modbusd.durable")
    refused = None
    for i in range(1, 200):  # each FC16 adds 120 rows: the page fills within a few
        reply = fc16(raw, 120 * i, [i] * 120, i + 1)
        if reply != struct.pack(">BHH", 16, 120 * i, 120):
            refused = i
            break
    assert refused is not None, "the disk never filled"
    assert reply == bytes.fromhex("90 04")  # exception 04, Server Device Failure
    assert raw.request(struct.pack(">BHH", 3, 120 * refused, 2), transaction_id=500) == bytes.fromhex("03 04 0000 0000")
    assert fc16(raw, 120 * refused, [7] * 120, 501) == bytes.fromhex("90 04")  # still full: refused again
    db.execute("PRAGMA query_only = ON")  # a file gone read-only: SQLITE_READONLY
    with pytest.raises(ServerDeviceFailure):
        server.write("40002", 5)  # the owner is told too, and the value is undone
    assert server.read("40002") == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot be written (database or disk is full)" in errors[0].getMessage()
    db.execute("PRAGMA query_only = OFF")
    db.execute("PRAGMA max_page_count = 1073741823")  # room again: the next write is stored and answered
    assert fc16(raw, 120 * refused, [7] * 120, 502) == struct.pack(">BHH", 16, 120 * refused, 120)
    assert any("is written again" in r.getMessage() for r in caplog.records)
    assert server.state.failed >= 2


def test_serial_frames_are_held_too_and_the_address_change_is_stored_at_once(
    start_server: StartServer, open_raw: Callable[..., RawClient], tmp_path: Path
) -> None:
    """RTU over TCP: a write is answered once stored; the address change, answered from the old unit id (which a
    held answer cannot do), is stored before it is answered."""
    path = tmp_path / "s.state"
    server = start_server(Device(address_register=0x07D0), rtu_over_tcp=0, state=path)
    assert server.rtu_over_tcp_port is not None
    line = open_raw(server.rtu_over_tcp_port)
    line.send(with_crc(bytes.fromhex("01 06 0005 0007")))
    assert line.recv_exact(8) == with_crc(bytes.fromhex("01 06 0005 0007"))
    line.send(bytes.fromhex("FF 06 07 D0 00 02 1D 58"))
    assert line.recv_exact(8) == bytes.fromhex("01 06 07 D0 00 02 08 86")  # from the old address
    assert server.state is not None and server.state.commits == 2
    server.stop_thread()
    again = Server(Device(address_register=0x07D0), state=path)
    assert again.device.holding_registers[5] == 7 and again.device.holding_registers[0x07D0] == 2
    assert again.state is not None
    again.state.stop()


async def passing_hook(_server: str, _peer: str, _unit_id: int, _pdu: bytes) -> bytes | None:
    return None  # a coroutine hook that lets the tables answer, after it has been awaited


def test_a_write_behind_a_coroutine_hook_is_held_too(
    start_server: StartServer, open_raw: Callable[..., RawClient], tmp_path: Path
) -> None:
    """The tables are written only when the hook's coroutine has been awaited: its answer waits for the commit too,
    here one that fails (a read-only file), so the write is refused and undone, over Modbus/TCP and RTU over TCP."""
    server = start_server(Device(), rtu_over_tcp=0, state=tmp_path / "s.state", hook=passing_hook)
    assert server.state is not None and server.rtu_over_tcp_port is not None
    server.state.store.connection.execute("PRAGMA query_only = ON")
    assert open_raw(server).request(bytes.fromhex("06 0009 0001")) == bytes.fromhex("86 04")
    line = open_raw(server.rtu_over_tcp_port)
    line.send(with_crc(bytes.fromhex("01 06 000A 0001")))
    assert line.recv_exact(5) == with_crc(bytes.fromhex("01 86 04"))
    assert server.device.holding_registers.values(9, 2) == [0, 0]


def test_without_state_no_table_is_journaled(server: Server) -> None:
    d = server.device
    assert server.state is None
    assert all(t.journal is None for t in (d.coils, d.discrete_inputs, d.input_registers, d.holding_registers))


def test_an_owner_is_told_when_its_write_was_refused_by_a_commit_it_did_not_make(tmp_path: Path) -> None:
    """Not serving, the write's own wake commits it at once; that commit fails, and commit_now, finding nothing left
    to commit, must still learn the write was undone (the same race a loop's commit makes with an owner's thread)."""
    server = Server(Device(), host="127.0.0.1", port=0, state=tmp_path / "s.state")
    assert server.state is not None
    server.state.store.connection.execute("PRAGMA query_only = ON")  # SQLITE_READONLY on the next commit
    with pytest.raises(ServerDeviceFailure):
        server.write("40001", 5)
    assert server.read("40001") == 0
    server.state.store.connection.execute("PRAGMA query_only = OFF")
    server.write("40001", 6)  # stored: no exception
    assert server.read("40001") == 6


def fill_the_disk(server: Server) -> sqlite3.Connection:
    """Let the state file grow no more: the next commit that needs a new page fails with SQLITE_FULL."""
    assert server.state is not None
    db = server.state.store.connection
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    return db


def test_a_write_refused_after_all_is_counted_as_an_exception_and_logged_as_refused(
    start_server: StartServer, open_raw: Callable[..., RawClient], tmp_path: Path
) -> None:
    """The tables did the write and counted a success; the state file could not store it, so it was undone and
    answered with exception 04: the FC08 and FC11 counters a client reads, and the events log, say so too."""
    log_path = tmp_path / "events.jsonl"
    server = start_server(Device(), state=tmp_path / "s.state", events_log=log_path)
    raw = open_raw(server)
    assert fc16(raw, 0, [1] * 10, 1) == bytes.fromhex("10 0000 000a")
    fill_the_disk(server)
    done, refused = 1, None
    for i in range(1, 200):
        if fc16(raw, 120 * i, [i] * 120, i + 1) != struct.pack(">BHH", 16, 120 * i, 120):
            refused = i
            break
        done += 1
    assert refused is not None, "the disk never filled"
    # FC11 (§6.9): the event counter counts successful completions only; FC08/0D (§6.8): exceptions returned
    assert raw.request("0B", transaction_id=900) == struct.pack(">BHH", 0x0B, 0, done)
    assert raw.request("08 000D 0000", transaction_id=901) == bytes.fromhex("08 000D 0001")

    def refusals() -> list[dict[str, object]]:
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        return [r for r in map(json.loads, lines) if r.get("by") == "state"]

    assert wait_until(lambda: len(refusals()) == 1)
    record = refusals()[0]
    assert (record["kind"], record["function"], record["address"], record["quantity"]) == ("write", 16, 120 * refused,
                                                                                            120)  # fmt: skip
    assert (record["outcome"], record["exception"]) == ("exception", 4)


def test_put_points_on_a_full_disk_is_a_json_503_logged_once(
    start_api: Callable[..., tuple[Server, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_web_hardening import call

    server, api = start_api(server_options={"state": tmp_path / "s.state"})
    assert call(api.port, "PUT", "/points/40001", {"value": 1})[0] == 200
    fill_the_disk(server)
    caplog.set_level(logging.INFO)
    status, answer = 200, {}
    for address in range(2, 3000):  # each write stores a row: a page fills within a few hundred
        status, answer, _ = call(api.port, "PUT", f"/points/{40000 + address}", {"value": address})
        if status != 200:
            break
    assert status == 503, answer
    assert answer["error"].startswith("the state file could not store the write: ")
    assert "database or disk is full; the value is undone" in answer["error"]
    assert server.read(f"{40000 + address}") == 0  # undone
    again, second, _ = call(api.port, "PUT", f"/points/{40001 + address}", {"value": 7})  # still full
    assert again == 503 and second["error"].startswith("the state file could not store the write: ")
    assert server.read(f"{40001 + address}") == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot be written (database or disk is full)" in errors[0].getMessage()
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
