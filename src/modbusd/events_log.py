"""The events log: every client write and every event, one JSON line each, written by a thread of its own.

The standard library does the work: a `logging.handlers.QueueListener` thread takes the records from a bounded
queue and a `RotatingFileHandler` writes and rotates the file. What is added on top, each for a requirement that
docs/hooks-and-events.md (the events log) states:

- The loop puts plain dicts on the queue itself, not through `QueueHandler`: QueueHandler would build a LogRecord
  and format the JSON in the loop's thread, and on a full queue it reports every record (`handleError`) instead
  of counting it as lost. The JSON is made in the writer thread (`_Writer.prepare`).
- Sizes are counted in bytes of UTF-8, not in characters, and one file kept (`files=1`) starts the file over:
  RotatingFileHandler would let such a file grow for ever.
- A file that cannot be opened or written is reported once, then retried with back-off (`RETRY`: 0.5 s doubling
  to 60 s), and its return is said once: RotatingFileHandler's `handleError` would print a traceback per record.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import IO

from modbusd.config import EVENTS_LOG_FILES, EVENTS_LOG_MAX_BYTES

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own

QUEUE_LIMIT = 100_000  # records the loop may queue ahead of the writer; more are counted as lost
RETRY = (0.5, 60.0)  # seconds before the first retry of an unwritable file, and the most it doubles to


class EventsLog:
    """HSYCO's Modbus server's eventslog: every client write and every event, one JSON line each, in a file.

    Written by a thread of its own, so that a slow disk never holds up the event loop; the loop only queues
    records (at most `queue_limit`; beyond that they are counted as lost). Rotated by size: when the file would
    grow past `max_bytes` it becomes FILE.1 (FILE.1 becomes FILE.2 …), and `files` files are kept in all.

    A file that cannot be written (a full disk, no permission) is reported once, at ERROR. The writer then tries
    again after `retry[0]` seconds, doubling the wait after each failed try up to `retry[1]`; records wait in the
    queue meanwhile, and the ones that waited for a try that fails are counted as lost. One INFO line says when
    the file can be written again. The server goes on regardless.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = EVENTS_LOG_MAX_BYTES, files: int = EVENTS_LOG_FILES,
                 queue_limit: int = QUEUE_LIMIT, retry: tuple[float, float] = RETRY) -> None:  # fmt: skip
        if max_bytes < 1 or files < 1:
            raise ValueError("the events log needs max_bytes >= 1 and files >= 1")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.files = files
        self.retry = retry
        self.written = 0  # records written
        self.lost = 0  # records that could not be written or queued
        self.rotations = 0
        self.error: str | None = None  # the failure being reported, None while the file is writable
        self._queue: queue.Queue[dict[str, object] | None] = queue.Queue(queue_limit)
        self._file = _File(self)
        self._writer: _Writer | None = None

    def start(self) -> None:
        """Open the file (an unwritable one is reported now, once) and start the writer thread."""
        if self._writer is not None:
            return
        self._file.open_now()
        self._writer = _Writer(self._queue, self._file)
        self._writer.start()
        self._writer.name(f"modbusd events log {self.path}")

    def put(self, record: dict[str, object]) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.lost += 1
            if self.lost == 1 or self.error is None:
                self.report("the writer is too far behind; records are dropped (counted)")

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (one more try if the file is failing), then close the file."""
        if self._writer is None:
            return
        if self._writer.stop_within(timeout):
            self._file.close()  # else a disk that hangs holds the writer: it is a daemon thread, left to it
        self._writer = None

    def counters(self) -> dict[str, object]:
        return {"path": str(self.path), "written": self.written, "lost": self.lost, "rotations": self.rotations,
                "error": self.error}  # fmt: skip

    def report(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
            log.error("events log %s: %s; the server goes on, unlogged records are counted", self.path, reason)

    def drop_queued(self) -> None:
        """Count what waits in the queue as lost (it waited for a try that failed); the stop sentinel stays."""
        with contextlib.suppress(queue.Empty):
            while True:
                record = self._queue.get_nowait()
                if record is None:
                    self._queue.put_nowait(None)  # there is room: it was just taken
                    return
                self.lost += 1


class _Writer(logging.handlers.QueueListener):
    """The writer thread: takes the loop's records from the queue and hands them to the file as JSON lines."""

    def __init__(self, records: queue.Queue[dict[str, object] | None], file: _File) -> None:
        super().__init__(records, file)
        self._file = file

    def prepare(self, record: dict[str, object]) -> logging.LogRecord:  # type: ignore[override]  # a dict, not a LogRecord
        record["time"] = _iso(record["time"])  # type: ignore[arg-type]  # a float from the loop
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        return logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"})

    def name(self, name: str) -> None:
        if self._thread is not None:
            self._thread.name = name

    def stop_within(self, timeout: float) -> bool:
        """`stop()`, bounded: a disk that hangs cannot hold up the server's stop for more than `timeout`.
        True when the thread has ended."""
        self._file.closing.set()  # no more waiting for a retry: one last try for what is queued
        with contextlib.suppress(queue.Full):
            self.queue.put(self._sentinel, timeout=timeout)
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()


class _File(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler with the events log's sizes, counters, failure reports and retries (module docstring)."""

    def __init__(self, owner: EventsLog) -> None:
        super().__init__(owner.path, maxBytes=owner.max_bytes, backupCount=owner.files - 1, encoding="utf-8",
                         delay=True)  # fmt: skip
        self.owner = owner
        self.closing = threading.Event()
        self._size = 0  # bytes in the open file
        self._line_size = 0  # bytes of the line being written, with its newline
        self._failed = False  # the record being written failed
        self._retry_at = 0.0  # time.monotonic() before which the failing file is not tried again
        self._wait = owner.retry[0]

    def _open(self) -> IO[str]:
        stream: IO[str] = super()._open()
        self._size = stream.seek(0, os.SEEK_END)
        return stream

    def open_now(self) -> None:
        try:
            self.stream = self._open()
        except OSError as exc:
            self._fail(exc)

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802  (the standard library's name)
        """When the line would take the file past max_bytes, counted in bytes (the file's, UTF-8)."""
        if self.stream is None:
            self.stream = self._open()
        self._line_size = len(record.msg.encode()) + 1
        return bool(self._size) and self._size + self._line_size > self.maxBytes

    def doRollover(self) -> None:  # noqa: N802  (the standard library's name)
        if self.backupCount > 0:
            super().doRollover()
        else:  # one file kept: start it over
            if self.stream is not None:
                self.stream.close()
                self.stream = None  # type: ignore[assignment]  # reopened by the next write
            Path(self.baseFilename).unlink(missing_ok=True)
        self.owner.rotations += 1

    def emit(self, record: logging.LogRecord) -> None:
        owner = self.owner
        if owner.error is not None and self._retry_at:  # failing: the records wait in the queue for the next try
            self.closing.wait(max(0.0, self._retry_at - time.monotonic()))
        self._failed = False
        super().emit(record)  # rollover, write and flush; a failure comes back through handleError
        if self._failed:
            return
        self._size += self._line_size
        owner.written += 1
        if self._retry_at:
            log.info("events log %s is writable again (%d records lost meanwhile)", owner.path, owner.lost)
            owner.error = None
            self._retry_at, self._wait = 0.0, owner.retry[0]

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (the standard library's name)
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)  # our bug, not the disk's: the standard library's report
        self._failed = True
        self.owner.lost += 1
        self._fail(exc)
        self.owner.drop_queued()

    def _fail(self, exc: BaseException | None) -> None:
        """Report once, close the file (reopened at the next try), and wait longer before each new try."""
        strerror = getattr(exc, "strerror", None) or str(exc)
        self.owner.report(f"{'cannot open' if self.stream is None else 'cannot write'}: {strerror}")
        if self.stream is not None:
            with contextlib.suppress(OSError):
                self.stream.close()
            self.stream = None  # type: ignore[assignment]  # reopened by the next try
        if self._retry_at:
            self._wait = min(2 * self._wait, self.owner.retry[1])
        self._retry_at = time.monotonic() + self._wait

    def close(self) -> None:
        with contextlib.suppress(OSError):
            super().close()


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="microseconds")
