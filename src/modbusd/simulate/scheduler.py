"""One scheduler for every generator of a server: buckets by update period, a heap of the buckets by due time.

Sans-I/O: the caller says what time it is (`run(now, wall)`) and asks when to come back (`next_due`); the asyncio
side (`simulator.py`) keeps one timer for that. Generators with the same update period share a bucket, updated
together, so 10,000 points at 10 Hz are one heap entry and one timer every 100 ms (then ten calls of a slice of
1,000 each, the loop's clients served in between), not 10,000 tasks.

A late run (a busy loop) updates each due bucket once, at the latest of its update times that has passed: missed
updates are skipped, never bunched up. A value is the generator's value at that scheduled time, not at the moment
the loop got round to it, so that the signal has no jitter and a test with an injected clock gets exact values.
"""

import heapq
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from modbusd.ratelimit import RateLimitedLog
from modbusd.simulate.build import Made
from modbusd.simulate.generators import Output
from modbusd.simulate.target import Target

log = logging.getLogger("modbusd.simulate")


@dataclass(slots=True, eq=False)
class Entry:
    """One generator on one target, and its run-time state.

    `origin` is the scheduler time at which the generator's own time was 0; pausing moves it on by the time spent
    paused, so a resumed generator continues where it stopped. Under the hold policy the target refuses to write
    over a value someone else wrote (`Target.put`): the entry is then held until reset. The two callables are
    taken from the generator and the target once, for the update that runs 100,000 times a second with 10,000
    points at 10 Hz.
    """

    id: str
    made: Made
    target: Target
    origin: float = 0.0
    paused_at: float | None = None
    held: bool = False
    joined: int = 0  # its bucket's `runs` when it joined: the runs since then each updated it, but for `misses`
    misses: int = 0  # bucket runs that did not update it (paused, held, failed)
    extra: int = 0  # updates outside the bucket's runs (when added, when reset)
    errors: int = 0
    last_error: str = ""
    bucket: "Bucket | None" = field(default=None, repr=False)
    idle: bool = field(default=False, repr=False)  # paused or held: skipped
    _value: Callable[[float, float], Output] = field(init=False, repr=False)
    _put: Callable[[Output], bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._value, self._put = self.made.generator.value, self.target.put

    @property
    def updates(self) -> int:
        """How often it was written: counted per bucket run, not per update, which saves the hot loop an integer
        object a time (a run under way is counted when it ends)."""
        runs = self.bucket.runs - self.joined if self.bucket is not None else 0
        return self.extra + runs - self.misses

    @property
    def state(self) -> str:
        return "paused" if self.paused_at is not None else "held" if self.held else "running"

    def set_idle(self) -> None:
        self.idle = self.paused_at is not None or self.held

    def update(self, at: float, wall: float, warnings: RateLimitedLog) -> None:
        """Write the generator's value at scheduler time `at`, unless held by a write from elsewhere.

        `Scheduler.run` does the same inline, for speed: a change here goes there too."""
        try:
            if not self._put(self._value(at - self.origin, wall)):
                self.on_held()
                self.misses -= 1  # not a bucket run: nothing to take off
                return
        except Exception as exc:  # an expression reading a point that is gone, a NaN for an integer …
            self.failed(exc, warnings)
            self.misses -= 1
            return
        self.extra += 1

    def on_held(self) -> None:
        self.held = self.idle = True
        self.misses += 1
        log.info("generator %s: the point was written by someone else: held until reset", self.id)

    def failed(self, exc: Exception, warnings: RateLimitedLog) -> None:
        self.misses += 1
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        warnings.log(log, logging.WARNING, "update", self.id, "generator %s: %s", self.id, self.last_error)


@dataclass(slots=True, eq=False)
class Bucket:
    """The generators updated every `every` seconds, next at `due` = `start` + `index` · `every` (computed, not
    summed, so that a thousand periods later the time has not drifted by the rounding of a thousand additions)."""

    every: float
    start: float
    index: int = 1
    runs: int = 0  # completed runs: each updated every entry that was not paused, held or failing
    entries: dict[str, Entry] = field(default_factory=dict)

    @property
    def due(self) -> float:
        return self.start + self.index * self.every


@dataclass(slots=True, eq=False)
class Job:
    """A bucket's update under way: its entries as they were when it began, how far it got, and its time."""

    bucket: Bucket
    entries: list[Entry]
    due: float
    moment: float  # the Unix time of `due`
    position: int = 0


SLICE = 1000  # entries updated before the loop gets a turn: a few milliseconds, the longest a client waits for them


class Scheduler:
    """Buckets of entries, by update period, in a heap by due time.

    `run` updates at most `limit` entries a call (`SLICE` when the timer calls it) and then leaves the rest of the
    bucket for the next call, which `next_due` asks for at once: 10,000 updates never hold up the loop's clients
    for the 20 ms or so they take together.
    """

    def __init__(self) -> None:
        self._buckets: dict[float, Bucket] = {}
        self._heap: list[tuple[float, int, Bucket]] = []
        self._order = itertools.count()
        self._job: Job | None = None
        self.warnings = RateLimitedLog()

    def add(self, entry: Entry, now: float) -> None:
        """Schedule `entry` in the bucket of its period (made, due one period from `now`, if there is none)."""
        every = entry.made.every
        bucket = self._buckets.get(every)
        if bucket is None:
            bucket = self._buckets[every] = Bucket(every, now)
            heapq.heappush(self._heap, (bucket.due, next(self._order), bucket))
        bucket.entries[entry.id] = entry
        entry.bucket = bucket
        entry.joined = bucket.runs + (1 if self._job is not None and self._job.bucket is bucket else 0)

    def remove(self, entry: Entry) -> None:
        """Take `entry` out (a job under way skips it); an empty bucket is dropped the next time it comes due."""
        if entry.bucket is not None:
            entry.bucket.entries.pop(entry.id, None)
            entry.bucket = None
            entry.idle = True

    def next_due(self) -> float | None:
        """When `run` next has work (-inf: at once, a bucket is half done), or None with no generator at all."""
        if self._job is not None:
            return -math.inf
        while self._heap and not self._heap[0][2].entries:  # emptied buckets leave here
            _, _, bucket = heapq.heappop(self._heap)
            del self._buckets[bucket.every]
        return self._heap[0][0] if self._heap else None

    def run(self, now: float, wall: float, limit: float = math.inf) -> int:
        """Update every bucket due by `now`, each once, at the latest of its update times not after `now` (so a
        late loop skips the periods it missed rather than showing an old value), `limit` entries at most;
        returns the entries visited."""
        visited = 0
        while visited < limit:
            job = self._job
            if job is None:
                if not self._heap or self._heap[0][0] > now:
                    break
                _, _, bucket = heapq.heappop(self._heap)
                if not bucket.entries:
                    del self._buckets[bucket.every]
                    continue
                bucket.index = max(bucket.index, math.floor((now - bucket.start) / bucket.every + 1e-9))
                job = self._job = Job(bucket, list(bucket.entries.values()), bucket.due, wall + (bucket.due - now))
            visited += self._work(job, limit - visited)
            if job.position == len(job.entries):
                self._job = None
                job.bucket.runs += 1
                job.bucket.index += 1
                heapq.heappush(self._heap, (job.bucket.due, next(self._order), job.bucket))
        return visited

    def _work(self, job: Job, limit: float) -> int:
        """Update the job's next entries, `limit` at most (`Entry.update`, inline: a call less for each of 100,000
        updates a second)."""
        due, moment, warnings = job.due, job.moment, self.warnings
        start = job.position
        entries = job.entries[start : start + int(limit)] if limit < len(job.entries) - start else job.entries[start:]
        for entry in entries:
            if entry.idle:
                entry.misses += 1
                continue
            try:
                if not entry._put(entry._value(due - entry.origin, moment)):
                    entry.on_held()
            except Exception as exc:  # an expression reading a point that is gone, a NaN for an integer …
                entry.failed(exc, warnings)
        job.position = start + len(entries)
        return len(entries)
