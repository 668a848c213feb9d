"""The state file: written values in SQLite (the standard library's `sqlite3`), in WAL mode.

A file modbusd made carries SQLite's application id "MBSD" in its header, so that `--reset-state` can tell its
own file (which it may empty or replace, however damaged) from any other (which it never touches). The file
names the devices it was made for, each with its layout and table sizes (`state.fingerprint`): values of
another memory map would land at the wrong addresses, so a difference stops the start with one line. Endpoints
are compared one by one (`state.device_keys` keys an endpoint's devices behind its name): one the file does not
know yet is added to it, since nothing stored changes; one the file knows and the server no longer serves, or
whose devices differ, stops the start, as for the default endpoint's devices.

It is opened in exclusive locking mode: a second server naming the same file is told so at start, rather than
both writing it. One `commit` is one transaction: the rows of every write of one turn of the loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Final

from modbusd.model.device import Device
from modbusd.state import Fingerprint, Row, endpoint_of, fingerprint, restore, unit_of

APPLICATION_ID: Final = 0x4D425344  # "MBSD", in the SQLite header's application id field (offset 68)
SCHEMA_VERSION: Final = 1  # PRAGMA user_version
_HEADER: Final = b"SQLite format 3\x00"
_LOCK_TIMEOUT: Final = 0.5  # seconds to wait for a file another process holds before saying so

_SCHEMA: Final = (
    "CREATE TABLE devices (device TEXT PRIMARY KEY, layout TEXT NOT NULL, coils INTEGER NOT NULL, "
    "discrete_inputs INTEGER NOT NULL, input_registers INTEGER NOT NULL, holding_registers INTEGER NOT NULL) "
    "WITHOUT ROWID",
    "CREATE TABLE written (device TEXT NOT NULL, memory TEXT NOT NULL, address INTEGER NOT NULL, "
    "value INTEGER NOT NULL, PRIMARY KEY (device, memory, address)) WITHOUT ROWID",
)
_TABLES: Final = {"devices", "written"}
_RESET_HINT: Final = "start with --reset-state to begin it afresh from the device file (its values are lost), " \
                     "or name another file with --state"  # fmt: skip


class StateError(ValueError):
    """A state file that cannot be used: what is wrong with it and what to do, in one line."""


class SyncMode(StrEnum):
    """SQLite's `synchronous` setting in WAL mode (https://sqlite.org/pragma.html#pragma_synchronous)."""

    FULL = "full"  # the WAL is synced at every commit: a write acknowledged survives a power cut too
    NORMAL = "normal"  # synced at checkpoints only: survives the process's end (kill -9), not the machine's


def _header(path: Path) -> bytes | None:
    """The file's first 100 bytes (SQLite's header), or None when there is no file yet."""
    try:
        with path.open("rb") as file:
            return file.read(100)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror or exc}") from None


def _ours(header: bytes) -> bool:
    return header.startswith(_HEADER) and len(header) >= 72 and int.from_bytes(header[68:72]) == APPLICATION_ID


class StateStore:
    """An open state file for `devices` (key → device, `state.device_keys`), their stored values restored."""

    def __init__(self, path: str | Path, devices: Mapping[str, Device], *, reset: bool = False,
                 sync: SyncMode | str = SyncMode.FULL) -> None:  # fmt: skip
        self.path = Path(path)
        self.sync = SyncMode(sync)
        header = _header(self.path)
        if header and not _ours(header):
            what = "another program's SQLite database" if header.startswith(_HEADER) else "not a SQLite file"
            raise StateError(f"{self.path} is not a modbusd state file ({what}): name another file with --state "
                             "(modbusd never overwrites a file it did not make)")  # fmt: skip
        if reset and header:
            self._remove()
            header = None
        wanted = {key: fingerprint(device) for key, device in devices.items()}
        self.added: list[str | None] = []  # the endpoints (None: the default one) the file did not know, added now
        self.connection = self._connect()
        try:
            if not header:
                self._create(wanted)
                new: Mapping[str, Fingerprint] = {}
            else:
                new = self._check(wanted)
                self._restore({key: device for key, device in devices.items() if key not in new})
                self.added = list(dict.fromkeys(endpoint_of(key) for key in new))
            self._lock(new)
        except sqlite3.Error as exc:
            self.connection.close()
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise StateError(_in_use(self.path, exc)) from None
            raise StateError(f"{self.path} cannot be used ({exc}): {_RESET_HINT}") from None
        except StateError:
            self.connection.close()
            raise

    def reopen(self) -> None:
        """Open the file again after `close` (a server started again): memory already holds its values."""
        self.connection = self._connect()
        try:
            self._lock()
        except (sqlite3.Error, StateError) as exc:
            self.connection.close()
            raise StateError(str(exc)) from None

    def _remove(self) -> None:
        """--reset-state on a file of ours: gone with its WAL, whatever state it is in, unless a server has it."""
        probe = self._connect()
        try:
            probe.execute("PRAGMA locking_mode = EXCLUSIVE")
            probe.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise StateError(_in_use(self.path, exc)) from None
        finally:
            probe.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").unlink()

    def _connect(self) -> sqlite3.Connection:
        try:
            # autocommit (isolation_level None): transactions are begun and ended here, one per commit group;
            # check_same_thread off: an owner serving from a thread (Server.start_thread) commits from either,
            # one at a time (durable.py's lock)
            return sqlite3.connect(self.path, timeout=_LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open it ({exc})") from None

    def _create(self, wanted: Mapping[str, Fingerprint]) -> None:
        """A new file: the schema and the devices in rollback-journal mode, so that the header (application id
        included) is in the main file before WAL mode begins, and a kill at any moment leaves a file we know."""
        db = self.connection
        db.execute("BEGIN")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        for statement in _SCHEMA:
            db.execute(statement)
        db.executemany("INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)", [(k, *fp) for k, fp in wanted.items()])
        db.execute("COMMIT")

    def _check(self, wanted: Mapping[str, Fingerprint]) -> dict[str, Fingerprint]:
        """The devices of the endpoints the file does not know yet, to add; StateError for any other difference."""
        db = self.connection
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version != SCHEMA_VERSION or not tables >= _TABLES:
            raise StateError(f"{self.path}: a modbusd state file of another version ({version}) or damaged "
                             f"(tables {', '.join(sorted(tables)) or 'none'}): {_RESET_HINT}")  # fmt: skip
        stored = {row[0]: tuple(row[1:]) for row in db.execute("SELECT * FROM devices")}
        there, here = _by_endpoint(stored), _by_endpoint(wanted)
        gone = [endpoint for endpoint in there if endpoint not in here]
        if gone:
            one = len(gone) == 1
            raise StateError(f"{self.path} keeps the values of {_endpoints(gone)}, which {'is' if one else 'are'} not "
                             f"served now: serve {'it' if one else 'them'} again, or {_RESET_HINT}")  # fmt: skip
        for endpoint, keys in here.items():
            if endpoint in there and set(there[endpoint]) != set(keys):
                whose = "the" if endpoint is None else f"{_endpoint(endpoint)}'s"
                raise StateError(f"{self.path} was made for {whose} devices {_units(there[endpoint])}, not "
                                 f"{_units(keys)}: {_RESET_HINT}")  # fmt: skip
        for key, fp in wanted.items():
            if key in stored and stored[key] != fp:
                raise StateError(f"{self.path} was made for another memory map: {_differences(key, stored[key], fp)}: "
                                 f"{_RESET_HINT}")  # fmt: skip
        return {key: fp for key, fp in wanted.items() if endpoint_of(key) not in there}

    def _restore(self, devices: Mapping[str, Device]) -> None:
        query = "SELECT address, value FROM written WHERE device = ? AND memory = ? ORDER BY address"
        for key, device in devices.items():
            memories = [m for (m,) in self.connection.execute(
                "SELECT DISTINCT memory FROM written WHERE device = ?", (key,))]  # fmt: skip
            for memory in memories:
                try:
                    restore(device, memory, self.connection.execute(query, (key, memory)))
                except ValueError as exc:
                    raise StateError(f"{self.path}: {_device(key)}: {exc}: {_RESET_HINT}") from None

    def _lock(self, new: Mapping[str, Fingerprint]) -> None:
        """WAL mode, the durability asked for, and the file's lock taken now, so another server is told at start;
        the devices of `new` endpoints written into the file in that first transaction."""
        db = self.connection
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StateError(f"{self.path}: SQLite cannot keep a write-ahead log there (journal mode {mode}): "
                             "name a file on a local disk with --state")  # fmt: skip
        db.execute(f"PRAGMA synchronous = {self.sync.value.upper()}")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(_in_use(self.path, exc)) from None
        db.executemany("INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)", [(k, *fp) for k, fp in new.items()])
        db.execute("COMMIT")

    def commit(self, rows: Sequence[Row]) -> None:
        """Store `rows` in one transaction; sqlite3.Error (the disk is full, the file went read-only) leaves the
        file as it was."""
        db = self.connection
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO written VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                db.execute("ROLLBACK")
            raise

    def stored(self) -> int:
        """How many items the file holds, for the start's log line."""
        return self.connection.execute("SELECT count(*) FROM written").fetchone()[0]

    def close(self) -> None:
        self.connection.close()


def _by_endpoint(keys: Iterable[str]) -> dict[str | None, list[str]]:
    """Device keys by endpoint (None: the default one's), each as its endpoint knows it ("*" or a unit id)."""
    found: dict[str | None, list[str]] = {}
    for key in keys:
        found.setdefault(endpoint_of(key), []).append(unit_of(key))
    return found


def _endpoint(endpoint: str | None) -> str:
    return "the default endpoint (the top-level [[device]] tables)" if endpoint is None else f"endpoint {endpoint}"


def _endpoints(endpoints: Sequence[str | None]) -> str:
    """`endpoint meter3`, `endpoints meter3, meter4`, `endpoints meter1, …, meter5 and 45 more` (one line)."""
    if len(endpoints) == 1:
        return _endpoint(endpoints[0])
    named = [e for e in endpoints if e is not None]
    shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
    default = f"{_endpoint(None)} and " if None in endpoints else ""
    return f"{default}endpoint{'s' if len(named) > 1 else ''} {shown}"


def _units(keys: Iterable[str]) -> str:
    return ", ".join("*" if k == "*" else f"unit {k}" for k in sorted(keys, key=lambda k: (len(k), k))) or "none"


def _device(key: str) -> str:
    """`unit 3`, `the device` (answering every unit id), `endpoint meter7`, `endpoint meter7 unit 3`."""
    endpoint, unit = endpoint_of(key), unit_of(key)
    if endpoint is None:
        return "the device" if unit == "*" else f"unit {unit}"
    return f"endpoint {endpoint}" if unit == "*" else f"endpoint {endpoint} unit {unit}"


def _differences(key: str, stored: Sequence[object], wanted: Sequence[object]) -> str:
    """`unit 3's layout separate there, packed here`: only what differs."""
    names = ("layout", "coils", "discrete inputs", "input registers", "holding registers")
    who = f"{_device(key)}'s"
    return "; ".join(f"{who} {name} {a} there, {b} here" for name, a, b in zip(names, stored, wanted, strict=True)
                     if a != b)  # fmt: skip


def _in_use(path: Path, exc: sqlite3.Error) -> str:
    return f"{path} is in use by another server ({exc}): one server per state file"
