"""The events log writer: every client write and every event, one JSON line each, by a thread of its own."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

from modbusd.config import EVENTS_LOG_FILES, EVENTS_LOG_MAX_BYTES

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own


class EventsLog:
    """Seed 003's eventslog: every client write and every event, one JSON line each, appended to a file.

    Written by a thread of its own, so that a slow disk never holds up the event loop; the loop only queues
    records (at most `queue_limit`; beyond that they are counted as lost). Rotated by size: when the file would
    grow past `max_bytes` it becomes FILE.1 (FILE.1 becomes FILE.2 …), and `files` files are kept in all. A file
    that cannot be written (a full disk, no permission) is reported once, its records are counted as lost, and
    writing resumes, with one line saying so, when the file can be written again. The server goes on regardless.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = EVENTS_LOG_MAX_BYTES, files: int = EVENTS_LOG_FILES,
                 queue_limit: int = 100_000) -> None:  # fmt: skip
        if max_bytes < 1 or files < 1:
            raise ValueError("the events log needs max_bytes >= 1 and files >= 1")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.files = files
        self.written = 0  # records written
        self.lost = 0  # records that could not be written or queued
        self.rotations = 0
        self.error: str | None = None  # the failure being reported, None while the file is writable
        self._queue: queue.Queue[dict[str, object] | None] = queue.Queue(queue_limit)
        self._file: Any = None
        self._size = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the file (an unwritable one is reported now, once) and start the writer thread."""
        if self._thread is not None:
            return
        self._open()
        self._thread = threading.Thread(target=self._run, name=f"modbusd events log {self.path}", daemon=True)
        self._thread.start()

    def put(self, record: dict[str, object]) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.lost += 1
            if self.lost == 1 or self.error is None:
                self._fail("the writer is too far behind; records are dropped (counted)")

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then close the file."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def counters(self) -> dict[str, object]:
        return {"path": str(self.path), "written": self.written, "lost": self.lost, "rotations": self.rotations,
                "error": self.error}  # fmt: skip

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
            log.error("events log %s: %s; the server goes on, unlogged records are counted", self.path, reason)

    def _open(self) -> bool:
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  (kept open by the writer)
            self._size = self._file.tell()
        except OSError as exc:
            self._file = None
            self._fail(f"cannot open: {exc.strerror or exc}")
            return False
        if self.error is not None:
            log.info("events log %s is writable again (%d records lost meanwhile)", self.path, self.lost)
            self.error = None
        return True

    def _run(self) -> None:
        take = self._queue.get
        while True:
            batch = [take()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < 1000 and batch[-1] is not None:
                    batch.append(self._queue.get_nowait())
            stop = batch[-1] is None
            self._write([r for r in batch if r is not None])
            if stop:
                if self._file is not None:
                    with contextlib.suppress(OSError):
                        self._file.close()
                return

    def _write(self, records: list[dict[str, object]]) -> None:
        if not records:
            return
        if self._file is None and not self._open():
            self.lost += len(records)
            return
        pending = 0  # written to the file's buffer, not flushed yet
        done = 0  # flushed, so counted as written
        try:
            for record in records:
                record["time"] = _iso(record["time"])  # type: ignore[arg-type]  # a float from the loop
                line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
                size = len(line.encode())
                if self._size and self._size + size > self.max_bytes:
                    self._file.flush()
                    self.written += pending
                    done += pending
                    pending = 0
                    self._rotate()
                self._file.write(line)
                self._size += size
                pending += 1
            self._file.flush()
            self.written += pending
        except OSError as exc:
            self.lost += len(records) - done
            self._fail(f"cannot write: {exc.strerror or exc}")
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
            self._file = None

    def _rotate(self) -> None:
        self._file.close()
        self._file = None
        for number in range(self.files - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            newer = self.path if number == 1 else self.path.with_name(f"{self.path.name}.{number - 1}")
            if newer.exists():
                os.replace(newer, older)
        if self.files == 1:
            self.path.unlink(missing_ok=True)
        self.rotations += 1
        if not self._open():
            raise OSError(self.error)


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="microseconds")
