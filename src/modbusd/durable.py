"""Writes that survive a crash: a write's response waits until the write is in the state file.

Group commit. The writes of one turn of the event loop — every request that turn's reads brought in, over all
connections — are one transaction: the first write of a turn schedules the commit (`call_soon`), which runs
after that turn's reads, and every response to a write is held (a future the session keeps in its line,
`session.Pending`) until the commit is done. So a client never sees the response to a write that a crash could
still take back, and the cost of the sync is shared by all the writes that came together. Reads are not held:
a read in the same turn may see a value whose commit is under way.

A commit that fails (the disk is full, the file went read-only) is logged once, its writes are undone in memory
(`state.rollback`; the subscribers of the points that went back get an event with the value put back: `undoing`)
and their responses become exception 04 (Server Device Failure, MODBUS Application Protocol §7): refused, never
acknowledged and then lost. Each refusal is told to the wrapper's `Refused` callback (the answers put it right
in the FC08 counters and the events log, which saw the write done). The next turn tries again; the log says when
it works again.

The owner's writes (`Server.write`, the control API's set) are committed before `Server.write` returns; a
program's own writes to a device's tables are committed with the next turn's group.

One `Durable` serves every endpoint of the server (`endpoints.py`): one journal over all their devices, one
group commit, each endpoint's answer functions wrapped the same way.

Nothing here runs unless the server keeps state: without `--state` the answer functions are not wrapped and the
tables' journal is None, so the request path pays one comparison per write.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from modbusd.model.device import Device
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.errors import ServerDeviceFailure
from modbusd.session import AddressedAnswer, Answer
from modbusd.state import ANY_UNIT, Devices, Entry, Journal, device_keys, rollback, rows, unit_of
from modbusd.state_store import StateStore, SyncMode

log = logging.getLogger(__name__)

Undoing = Callable[[list[tuple[Device, int]]], Callable[[], object] | None]
"""Told before a rollback whose devices it puts back (each with the unit id its key names, 0 for "*"); what it
returns, if anything, is called once they are back (the events hub's: the subscribers are told, `hub.py`)."""

Refused = Callable[[int, bytes, bytes], object]
"""Told of each write refused after all (unit id, request PDU, the exception 04 sent instead of its response)."""

_Held = tuple["asyncio.Future[bytes | None]", bytes, int, bytes, Refused | None]  # future, reply, unit, request, told


def _unit(key: str) -> int:
    """The unit id a device key names within its endpoint ("plc/3": 3); 0 for a device answering every unit id."""
    unit = unit_of(key)
    return 0 if unit == ANY_UNIT else int(unit)


def _refused(reply: bytes) -> bytes:
    """The exception 04 answer to the request that `reply` answered (its function code, without the 0x80 bit)."""
    return bytes((reply[0] & 0x7F | 0x80, ExceptionCode.SERVER_DEVICE_FAILURE))


def _answer(held: list[_Held], ok: bool) -> None:
    for future, reply, unit_id, pdu, refused in held:
        answer = reply if ok else _refused(reply)
        if not future.done():  # a future whose connection closed is cancelled: nobody to answer
            future.set_result(answer)
        if not ok and refused is not None:  # undone all the same
            refused(unit_id, pdu, answer)


class Durable:
    """The state file of one server, its journal, and the responses held until their writes are committed."""

    def __init__(self, path: str | Path, *, reset: bool = False, sync: SyncMode | str = SyncMode.FULL) -> None:
        """The state file to `open` once the devices are made: the answer functions of every endpoint are wrapped
        in this object while they are being made, and the endpoints' devices exist only then."""
        self._path, self._reset, self._sync = path, reset, SyncMode(sync)
        self.journal = Journal(self._wake)
        self._held: list[_Held] = []
        self._lock = threading.Lock()  # one commit at a time: the loop's, or an owner's from its own thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._failing = False
        self._closed = False  # after stop(): writes wait in the journal for the next start
        self.commits = 0
        self.failed = 0
        # (writes noted when a commit took them, stored or not) of the last commits: an owner's commit_now learns from
        # it the fate of its write even when the loop's commit took it first, from another thread
        self._outcomes: deque[tuple[int, bool]] = deque(maxlen=64)
        self.last_error: sqlite3.Error | None = None  # why the last commit that failed did
        self.undoing: Undoing | None = None  # set by the server: its subscribers are told of the values put back
        self._devices: dict[str, Device] = {}  # by journal key

    def open(self, default: Devices | None, endpoints: Mapping[str, Devices]) -> None:
        """Open (or make) the state file for the default endpoint's devices (None: it serves none) and each
        endpoint's, by name; put its values into them and journal their writes from now on; StateError if it
        cannot be used."""
        devices = self._devices = device_keys(default, endpoints)
        self.store = StateStore(self._path, devices, reset=self._reset, sync=self._sync)
        for key, device in devices.items():
            self.journal.attach(key, device)
        log.info("state file %s (synchronous=%s): %d stored values restored", self.store.path, self.store.sync,
                 self.store.stored())  # fmt: skip
        if self.store.added:  # one line, however many instances a template added
            names = ", ".join("the default endpoint" if e is None else e for e in self.store.added)
            log.info("state file %s keeps new endpoints from now on, their values starting from the device file's: "
                     "%s", self.store.path, names)  # fmt: skip

    # ------------------------------------------------------------------------------------------ timing

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serving from `loop`; the file opened again if a `stop` closed it (and what was written since, stored)."""
        if self._closed:
            self.store.reopen()
            self._closed = False
        self._loop = loop
        self._loop_thread = threading.get_ident()
        if self.journal.waiting:
            self.flush()

    def stop(self) -> None:
        """Commit what is left (the responses still held are answered if their connections are open), then close
        the file, for another server (or this one, started again) to open."""
        self.flush()
        self._loop = None
        self.store.close()
        self._closed = True

    def _wake(self) -> None:
        """The first write since the last commit: commit after this turn's reads; at once when not serving."""
        loop = self._loop
        if loop is None:
            self.flush()
        elif threading.get_ident() == self._loop_thread:
            loop.call_soon(self.flush)
        else:
            loop.call_soon_threadsafe(self.flush)

    def flush(self) -> bool:
        """Commit every write noted so far, then answer the responses held for them; False if the commit failed."""
        with self._lock:
            if self._closed:
                return True  # stopped: the writes wait in the journal for the next start
            noted = self.journal.writes
            entries = self.journal.take()
            held, self._held = self._held, []
            ok = True
            if entries:
                try:
                    self.store.commit(rows(entries))
                except sqlite3.Error as exc:
                    ok = False
                    self._undo(entries)
                    self._failed(exc, len(held))
                self._outcomes.append((noted, ok))
                if ok:
                    self.commits += 1
                    if self._failing:
                        self._failing = False
                        log.warning("state file %s is written again: writes are accepted", self.store.path)
        if held:
            loop = self._loop
            if loop is None or threading.get_ident() == self._loop_thread:
                _answer(held, ok)
            else:  # an owner's commit from its own thread: futures are the loop's to complete
                loop.call_soon_threadsafe(_answer, held, ok)
        return ok

    def _undo(self, entries: list[Entry]) -> None:
        """Memory as it was before `entries`; whoever `undoing` tells, told of the values put back."""
        undoing = self.undoing
        if undoing is None:
            rollback(entries)
            return
        keys = {memory.device for memory, *_ in entries}
        undone = undoing([(self._devices[key], _unit(key)) for key in keys])
        rollback(entries)
        if undone is not None:
            undone()

    def _failed(self, exc: sqlite3.Error, refused: int) -> None:
        self.failed += 1
        self.last_error = exc
        if not self._failing:
            self._failing = True
            log.error("state file %s cannot be written (%s): writes are undone and refused with exception 04 "
                      "until it can", self.store.path, exc)  # fmt: skip
        else:
            log.debug("state file %s still cannot be written (%s): %d writes refused", self.store.path, exc, refused)

    def commit_now(self) -> None:
        """The owner's write, stored before it returns: ServerDeviceFailure (and the write undone) if it cannot be.

        The loop's own commit may have taken the write first (an owner writing from its own thread wakes it too):
        the first commit that took the writes noted up to now tells whether this one was stored."""
        mine = self.journal.writes
        self.flush()
        with self._lock:
            stored = next((ok for noted, ok in self._outcomes if noted >= mine), True)
        if not stored:
            raise ServerDeviceFailure(f"{self.store.path}: {self.last_error}; the value is undone")

    # ------------------------------------------------------------------------------- answer functions

    def hold(self, reply: bytes, unit_id: int = 0, pdu: bytes = b"", refused: Refused | None = None,
             ) -> asyncio.Future[bytes | None]:  # fmt: skip
        """`reply` to `pdu`, once the writes before it are committed (exception 04 if the commit fails, and then
        `refused` is told)."""
        assert self._loop is not None
        future: asyncio.Future[bytes | None] = self._loop.create_future()
        self._held.append((future, reply, unit_id, pdu, refused))
        return future

    async def _after(self, awaitable: Awaitable[bytes | None], unit_id: int, pdu: bytes,
                     refused: Refused | None) -> bytes | None:  # fmt: skip
        """An answer that took time (a hook, the gateway): held too if writes are still uncommitted by then."""
        reply = await awaitable
        if reply is not None and self.journal.waiting:
            return await self.hold(reply, unit_id, pdu, refused)
        return reply

    def wrap(self, answer: Answer, refused: Refused | None = None) -> Answer:
        """`answer`, its responses to writes held until they are committed; `refused` told of each refused."""
        journal = self.journal

        def durable(unit_id: int, pdu: bytes) -> bytes | Awaitable[bytes | None] | None:
            before = journal.writes
            reply = answer(unit_id, pdu)
            if reply is None:
                return None
            if reply.__class__ is bytes or isinstance(reply, (bytearray, memoryview)):
                if journal.writes == before:
                    return reply  # type: ignore[return-value]  # bytes-like
                return self.hold(bytes(reply), unit_id, pdu, refused)  # type: ignore[arg-type]  # bytes-like
            return self._after(reply, unit_id, pdu, refused)  # type: ignore[arg-type]  # an awaitable

        return durable

    def wrap_addressed(self, answer: AddressedAnswer, refused: Refused | None = None) -> AddressedAnswer:
        """The same for a serial line's answer, whose responses name the unit id they come from."""
        journal = self.journal

        def durable(unit_id: int, pdu: bytes) -> tuple[int, bytes] | Awaitable[bytes | None] | None:
            before = journal.writes
            found = answer(unit_id, pdu)
            if found is None:
                return None
            if found.__class__ is not tuple:  # a coroutine hook: the tables may be written when it is awaited
                return self._after(found, unit_id, pdu, refused)  # type: ignore[arg-type]  # an awaitable
            if journal.writes == before:
                return found
            from_unit, reply = found  # type: ignore[misc]  # a tuple, as checked
            if from_unit == unit_id:
                return self.hold(reply, unit_id, pdu, refused)  # answered from the request's unit id, as held
            # the address change: answered from the old unit id, which a held answer cannot do; commit now
            if self.flush():
                return found
            if refused is not None:
                refused(from_unit, pdu, _refused(reply))
            return from_unit, _refused(reply)

        return durable
