"""Serving from plain threaded code: a background thread with an event loop of its own (`Server.start_thread`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable


class ServingThread:
    """The thread a server serves from, named "modbusd"; at most one at a time."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None

    def start(self, start: Callable[[], Awaitable[None]], serve: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Run `start()` then `serve()` in a new thread's loop; return once started, or raise what `start` raised
        (TimeoutError if it takes longer than `timeout`)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            async def main() -> None:
                try:
                    await start()
                except BaseException as exc:  # handed to the caller of start_thread
                    failure.append(exc)
                    ready.set()
                    return
                ready.set()
                await serve()

            asyncio.run(main())

        self.thread = threading.Thread(target=run, name="modbusd", daemon=True)
        self.thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the server did not start in time")
        if failure:
            self.thread.join()
            raise failure[0]

    def stop(self, loop: asyncio.AbstractEventLoop | None, stopped: asyncio.Event | None, timeout: float) -> None:
        """Set `stopped` in `loop` (the server's), so that it stops serving, and wait for the thread to end."""
        if self.thread is None:
            return
        if loop is not None and stopped is not None:
            loop.call_soon_threadsafe(stopped.set)
        self.thread.join(timeout)
        self.thread = None
