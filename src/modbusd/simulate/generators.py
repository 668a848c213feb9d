"""The value generators: each one a small object, ``value(t, wall)`` → a number (or a tuple of numbers).

Sans-I/O: `t` is the generator's own time in seconds (0 when it starts or is reset; paused time does not count),
`wall` the Unix time of the update, both given by the caller (`scheduler.py`), so that a test gets exact values at
exact times without sleeping. Generators with state (random, the random walk) move on at each call and start
again at `reset`. What the numbers become in registers (the type, the fit rule) is `target.py`'s business.

The shapes follow what test tools offer (ModbusPal's automations, the pymodbus simulator's actions, ModRSsim2's
"training PLC"): counter, ramp/sawtooth, triangle, sine, square, random (uniform or a bounded random walk), clock,
sequence, csv (a time series from a file) and expression (`expression.py`).
"""

import bisect
import calendar
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Output = float | tuple[float, ...]

CLOCK_PARTS = ("year", "month", "day", "hour", "minute", "second", "weekday", "yearday")


class Generator:
    """The interface: `value` at generator time `t` (seconds) and Unix time `wall`; `reset` forgets any state."""

    def value(self, t: float, wall: float) -> Output:
        raise NotImplementedError

    def reset(self) -> None:
        """Back to the state at t = 0 (random generators restart their seeded sequence)."""

    @property
    def count(self) -> int:
        """How many values one update writes (consecutive values of the target's type)."""
        return 1


def _phase(t: float, period: float) -> float:
    """Where `t` is within its period, 0 ≤ p < 1."""
    return (t / period) % 1.0


@dataclass(slots=True)
class Counter(Generator):
    """start, start + step, … one step per `period`; past `maximum` it wraps to `minimum` (and below `minimum`, for a
    negative step, to `maximum`), as a register counter of a real device overflows."""

    start: float = 0
    step: float = 1
    period: float = 1.0
    minimum: float = 0
    maximum: float = 65535
    _span: float = field(init=False, repr=False)  # what a wrap takes off: max - min, + 1 for whole numbers

    def __post_init__(self) -> None:
        integral = all(float(x).is_integer() for x in (self.step, self.minimum, self.maximum))
        self._span = self.maximum - self.minimum + (1 if integral else 0)

    def value(self, t: float, wall: float) -> float:
        raw = self.start + self.step * math.floor(t / self.period + 1e-9)  # 1e-9: 0.3 / 0.1 is 2.9999999999999996
        if self.minimum <= raw <= self.maximum:
            return raw
        return self.minimum + (raw - self.minimum) % self._span


@dataclass(slots=True)
class Wave(Generator):
    """A shape between `minimum` and `maximum` that repeats every `period`: ramp and triangle share their settings
    (and build.py reads them once for both)."""

    minimum: float = 0
    maximum: float = 100
    period: float = 10.0


@dataclass(slots=True)
class Ramp(Wave):
    """Sawtooth: from `minimum` up to `maximum` in a straight line over `period`, then back to `minimum` at once."""

    def value(self, t: float, wall: float) -> float:
        return self.minimum + (self.maximum - self.minimum) * _phase(t, self.period)


@dataclass(slots=True)
class Triangle(Wave):
    """Up from `minimum` to `maximum` in the first half of `period`, down again in the second."""

    def value(self, t: float, wall: float) -> float:
        p = _phase(t, self.period)
        return self.minimum + (self.maximum - self.minimum) * (2 * p if p < 0.5 else 2 - 2 * p)


@dataclass(slots=True)
class Sine(Generator):
    """offset + amplitude · sin(2π t / period + phase), `phase` given in degrees (90: it starts at its top)."""

    offset: float = 0
    amplitude: float = 1
    period: float = 60.0
    phase: float = 0
    _speed: float = field(init=False, repr=False)  # radians per second
    _start: float = field(init=False, repr=False)  # the phase in radians

    def __post_init__(self) -> None:
        self._speed, self._start = 2 * math.pi / self.period, math.radians(self.phase)

    def value(self, t: float, wall: float) -> float:
        return self.offset + self.amplitude * math.sin(self._speed * t + self._start)


@dataclass(slots=True)
class Square(Generator):
    """`high` for the first `duty` fraction of each period, `low` for the rest."""

    low: float = 0
    high: float = 1
    period: float = 2.0
    duty: float = 0.5

    def value(self, t: float, wall: float) -> float:
        return self.high if _phase(t, self.period) < self.duty else self.low


@dataclass(slots=True)
class Random(Generator):
    """Uniform between `minimum` and `maximum` at each update; with `step`, a random walk from `start` instead: each
    update moves by at most `step` either way, held within `minimum`..`maximum`. `seed` makes a run repeatable."""

    minimum: float = 0
    maximum: float = 100
    step: float | None = None
    start: float | None = None
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _draw: Callable[[], float] = field(init=False, repr=False)
    _current: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._rng = random.Random(self.seed)
        self._draw = self._rng.random  # uniform(a, b) is a + (b - a) * random(): the same numbers, a call less
        self._current = (self.minimum + self.maximum) / 2 if self.start is None else self.start

    def value(self, t: float, wall: float) -> float:
        if self.step is None:
            return self.minimum + (self.maximum - self.minimum) * self._draw()
        moved = self._current + self._rng.uniform(-self.step, self.step)
        self._current = min(self.maximum, max(self.minimum, moved))
        return self._current


@dataclass(slots=True)
class Clock(Generator):
    """The wall clock: Unix time (seconds since 1970, UTC), or its `parts` (year, month, day, hour, minute, second,
    weekday 1 = Monday … 7, yearday 1…366) as consecutive values, in UTC or local time."""

    parts: tuple[str, ...] = ()
    utc: bool = False

    @property
    def count(self) -> int:
        return max(1, len(self.parts))

    def value(self, t: float, wall: float) -> Output:
        if not self.parts:
            return wall
        moment = time.gmtime(wall) if self.utc else time.localtime(wall)
        fields = {"year": moment.tm_year, "month": moment.tm_mon, "day": moment.tm_mday, "hour": moment.tm_hour,
                  "minute": moment.tm_min, "second": moment.tm_sec, "weekday": moment.tm_wday + 1,
                  "yearday": moment.tm_yday}  # fmt: skip
        values = tuple(float(fields[part]) for part in self.parts)
        return values[0] if len(values) == 1 else values


def unix_time(year: int, month: int, day: int, *, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """A UTC date as Unix time: for tests and examples that give the clock an exact moment."""
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


@dataclass(slots=True)
class Steps(Generator):
    """Values each held from its start time until the next one's: `sequence` and `csv` both play one.

    `starts` are increasing times from 0; the series lasts `length` seconds (past the last start), then starts over
    when `loop`, or stays on its last value when not.
    """

    starts: Sequence[float]
    values: Sequence[float]
    length: float
    loop: bool = True

    def value(self, t: float, wall: float) -> float:
        if self.loop and self.length > 0:
            t %= self.length
        index = bisect.bisect_right(self.starts, t + 1e-9) - 1  # 1e-9: a start reached by float steps counts
        return self.values[max(0, index)]
