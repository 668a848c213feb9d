"""The simulator a server owns: its generators, added, listed, paused, resumed, reset and removed at run time, and
the one timer on the server's loop that drives them all (`scheduler.py` decides what is due).

Time is injected: `clock` (seconds, for the schedule; `time.monotonic` by default, the clock asyncio's loop keeps
too, and the timer waits `due - clock()` on it) and `wall` (Unix time, for the clock generator and `now`). A test
sets both and calls `run_due()` instead of starting a loop.

Its methods may be called from any thread: from another thread than the loop's (a program serving with
`Server.start_thread`), each call is handed to the loop and waited for, so that it never runs in the middle of an
update.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modbusd.model.device import Device
from modbusd.model.points import NAME, Point, UnknownPoint, default_type
from modbusd.model.values import Order, Value, ValueType
from modbusd.simulate.build import Context, WritePolicy, make
from modbusd.simulate.scheduler import SLICE, Entry, Scheduler
from modbusd.simulate.spec import GeneratorError
from modbusd.simulate.target import Target, check_target, limits

Locate = Callable[[str], tuple[Device, Point]]
CALL_TIMEOUT = 10.0  # seconds a call from another thread waits for the loop


def _in_loop(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run `method` in the simulator's loop when it is called from another thread while the loop runs."""

    @functools.wraps(method)
    def call(self: Simulator, *args: Any, **kwargs: Any) -> Any:
        loop = self._loop
        if loop is None or self._thread == threading.get_ident() or not loop.is_running():
            return method(self, *args, **kwargs)
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(method(self, *args, **kwargs))
            except Exception as exc:  # the caller's to see, in its own thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(CALL_TIMEOUT)

    return call


class UnknownGenerator(LookupError):
    """No generator has this id."""


class Simulator:
    """Every generator of one server, by id: a named point's name, or the address of an unnamed one (``1.0.ir``)."""

    def __init__(self, locate: Locate, read: Callable[[str], Value], *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._locate = locate
        self._read = read
        self.clock = clock
        self.wall = wall
        self._entries: dict[str, Entry] = {}
        self._claims: dict[tuple[int, str, int, int | None], str] = {}  # (device, table, address, bit) → id
        self._scheduler = Scheduler()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_due: float | None = None
        self._thread: int | None = None  # the loop's thread

    # ------------------------------------------------------------------------------------------ the API

    @_in_loop
    def add(self, point: str, spec: str, vtype: ValueType | str | None = None, order: Order | str | None = None,
            *, base: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
        """Generate `point`'s value (a name, or an address in any notation) by `spec` (``sine(period=60s)``), as
        the point's own type and order unless `vtype` / `order` say otherwise. The first value is written at once.

        `base`: where a csv file's relative path starts (default: the working directory). GeneratorError for a bad
        spec, a type that holds no number, or a point another generator already drives; UnknownPoint, InvalidName
        for a point that does not exist."""
        device, found = self._locate(point)
        chosen = ValueType.parse(vtype) if isinstance(vtype, str) else vtype
        chosen = chosen or (found.type if found.name else default_type(found.location))
        check_target(found.location, chosen)
        chosen_order = str(order or found.order).upper()
        if chosen_order not in tuple(Order):
            raise GeneratorError(f"{order!r} is not a word order: ABCD, CDAB, BADC or DCBA")
        scope = _scope(point)
        made = make(spec, Context(limits(chosen), Path(base) if base is not None else Path(),
                                  lambda name: self._read(scope + name),
                                  lambda name: self._is_point(name, scope)))  # fmt: skip
        target = Target(device, found.location, chosen, Order(chosen_order), made.generator.count,
                        hold=made.write is WritePolicy.HOLD)  # fmt: skip
        ident = found.name or scope + str(found.location)
        claims = self._claims_of(device, target)
        taken = next((self._claims[c] for c in claims if c in self._claims), None)
        if taken is not None:
            raise GeneratorError(f"{point}: generator {taken} already writes there: remove it first")
        now = self.clock()
        entry = Entry(ident, made, target, origin=now)
        entry.update(now, self.wall(), self._scheduler.warnings)
        self._entries[ident] = entry
        self._claims.update(dict.fromkeys(claims, ident))
        self._scheduler.add(entry, now)
        self._reschedule()
        return self.describe(entry)

    @_in_loop
    def remove(self, ident: str) -> None:
        """Stop generating; the point keeps its last value."""
        entry = self._entry(ident)
        self._scheduler.remove(entry)
        del self._entries[ident]
        for claim in self._claims_of(entry.target.device, entry.target):
            del self._claims[claim]

    @_in_loop
    def pause(self, ident: str) -> dict[str, Any]:
        """Stop updating, the generator's time stopped with it: `resume` goes on from the same value."""
        entry = self._entry(ident)
        if entry.paused_at is None:
            entry.paused_at = self.clock()
            entry.set_idle()
        return self.describe(entry)

    @_in_loop
    def resume(self, ident: str) -> dict[str, Any]:
        entry = self._entry(ident)
        if entry.paused_at is not None:
            entry.origin += self.clock() - entry.paused_at
            entry.paused_at = None
            entry.set_idle()
        return self.describe(entry)

    @_in_loop
    def reset(self, ident: str) -> dict[str, Any]:
        """Back to the generator's time 0 and its first value, written at once: ends a hold and a pause."""
        entry = self._entry(ident)
        now = self.clock()
        entry.made.generator.reset()
        entry.origin, entry.paused_at, entry.held = now, None, False
        entry.target.forget()
        entry.set_idle()
        entry.update(now, self.wall(), self._scheduler.warnings)
        return self.describe(entry)

    @_in_loop
    def get(self, ident: str) -> dict[str, Any]:
        return self.describe(self._entry(ident))

    @_in_loop
    def list(self) -> list[dict[str, Any]]:
        """Every generator with its state (running, paused, held), its last value, updates and errors."""
        return [self.describe(entry) for entry in self._entries.values()]

    @_in_loop
    def counts(self) -> list[tuple[str, int, int]]:
        """(id, updates, errors) of every generator: what a metrics scrape reads, without reading each point's
        value as `list` does."""
        return [(entry.id, entry.updates, entry.errors) for entry in self._entries.values()]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ident: object) -> bool:
        return ident in self._entries

    def describe(self, entry: Entry) -> dict[str, Any]:
        """What `list` shows of one generator; `value` is what its point holds now, as the target's type."""
        target = entry.target
        try:
            value = target.read()
        except ValueError as exc:  # the address is gone (an address change cannot move a table, so: not expected)
            value = str(exc)
        value = [_json(v) for v in value] if isinstance(value, list) else _json(value)
        return {"id": entry.id, "address": str(target.location), "type": f"{target.vtype}",
                "order": target.order.value, "spec": entry.made.spec.text, "every": entry.made.every,
                "write": entry.made.write.value, "state": entry.state, "value": value, "updates": entry.updates,
                "errors": entry.errors, "last_error": entry.last_error}  # fmt: skip

    # ------------------------------------------------------------------------------------- the timer

    def run_due(self, limit: float = math.inf) -> int:
        """Update whatever is due at `clock()`, `limit` generators at most (the timer calls this, a slice at a time;
        a test may too). Returns the generators visited."""
        return self._scheduler.run(self.clock(), self.wall(), limit)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drive the generators from `loop` (the server's) until `stop`."""
        self._loop, self._thread = loop, threading.get_ident()
        self._reschedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop, self._timer, self._timer_due = None, None, None

    def _tick(self) -> None:
        self._timer, self._timer_due = None, None
        self.run_due(SLICE)
        self._reschedule()

    def _reschedule(self) -> None:
        """One timer, at the earliest due bucket: moved earlier when a faster generator is added."""
        loop = self._loop
        if loop is None:
            return
        due = self._scheduler.next_due()
        if due is None or (self._timer_due is not None and self._timer_due <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        if due == -math.inf:  # a bucket half done: the rest after the loop's next turn (its clients first)
            self._timer = loop.call_soon(self._tick)
        else:
            self._timer = loop.call_later(max(0.0, due - self.clock()), self._tick)

    # ------------------------------------------------------------------------------------- helpers

    def _entry(self, ident: str) -> Entry:
        try:
            return self._entries[ident]
        except KeyError:
            raise UnknownGenerator(f"no generator {ident!r}") from None

    def _is_point(self, name: str, scope: str = "") -> bool:
        if not NAME.fullmatch(name):
            return False
        try:
            self._locate(scope + name)
        except UnknownPoint:
            return False
        return True

    @staticmethod
    def _claims_of(device: object, target: Target) -> list[tuple[int, str, int, int | None]]:
        where = target.location
        if where.table.is_bits or where.bit is not None:
            return [(id(device), where.table.value, where.address, where.bit)]
        width = target.vtype.registers * target.count
        return [(id(device), where.table.value, a, None) for a in range(where.address, where.address + width)]


def _scope(point: str) -> str:
    """``meter7/`` for an endpoint's point (``meter7/power``, the server's ``ENDPOINT/POINT`` names), "" for the
    default endpoint's: an expression's names are points of its own endpoint, since a name in a formula holds no
    slash."""
    endpoint, slash, _ = point.strip().partition("/")
    return f"{endpoint.strip()}/" if slash else ""


def _json(value: object) -> object:
    """JSON has no NaN nor infinity: those as their text."""
    return repr(value) if isinstance(value, float) and not math.isfinite(value) else value
