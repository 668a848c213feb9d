"""Delivery of the server's write events: one `Listener` per subscriber, each with its own bounded queue.

The events hub (`hub.py`) makes the events (`writes.py` says what an event is) and pushes each to every listener;
a listener hands them on, to a callback run by a task of the server's loop or to `async for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from modbusd.hooks import EventQueue, WriteEvent

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own


class Owner(Protocol):
    """What a listener needs of the hub (or server) it listens to: a way to be taken off its list."""

    def remove_listener(self, listener: Listener) -> None: ...


EVENT_QUEUE = 1000  # events a subscriber may fall behind by before new ones are dropped (and counted)
_DRAIN_GRACE = 1.0  # seconds subscribers get at stop to take the events already queued for them


class Listener:
    """A subscriber to the server's write events (`Server.add_listener`, `Server.events`).

    Every event goes to every listener, in the order the writes were applied, through this listener's own
    bounded queue: a slow listener only loses its own events (counted in `dropped`, logged once per burst),
    and never delays a Modbus response. With a callback, a task of the server's loop calls it for each event
    (a coroutine function is awaited: the next event waits for it); without one, `async for` takes them.
    """

    def __init__(self, server: Owner, callback: Callable[[WriteEvent], object] | None, limit: int,
                 name: str) -> None:  # fmt: skip
        self.server = server
        self.callback = callback
        self.name = name
        self.queue = EventQueue(limit)
        self.failures = 0  # events whose callback raised
        self.closed = False
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    @property
    def delivered(self) -> int:
        return self.queue.delivered

    def __repr__(self) -> str:
        return f"<Listener {self.name} queued={len(self.queue)} dropped={self.dropped}>"

    def _push(self, event: WriteEvent) -> None:
        result = self.queue.put(event)
        if result == 1:
            log.warning("listener %s is %d events behind: dropping new events until it catches up (counted)",
                        self.name, self.queue.limit)  # fmt: skip
        elif result < 0:
            log.warning("listener %s caught up; %d events were dropped (%d in all)", self.name, -result,
                        self.dropped)  # fmt: skip
        if result <= 0:
            self._ready.set()

    def _start(self) -> None:
        if self.callback is not None and self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self._deliver(self.callback))

    async def _deliver(self, callback: Callable[[WriteEvent], object]) -> None:
        take = self.queue.take
        while True:
            event = take()
            if event is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1  # the traceback once; then one line each
                log.error("listener %s failed on event %s: %s: %s (%d failures)", self.name, event.name,
                          type(exc).__name__, exc, self.failures, exc_info=self.failures == 1)  # fmt: skip

    def __aiter__(self) -> AsyncIterator[WriteEvent]:
        return self

    async def __anext__(self) -> WriteEvent:
        while True:
            event = self.queue.take()
            if event is not None:
                return event
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        """Stop receiving events; `async for` ends once the queued ones are taken."""
        self.server.remove_listener(self)

    async def _stop(self) -> None:
        self.closed = True
        self._ready.set()
        task, self._task = self._task, None
        if task is not None:
            deadline = time.monotonic() + _DRAIN_GRACE
            while len(self.queue) and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.01)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
