"""A spec (`spec.py`) → a generator (`generators.py`) and its settings: every argument checked, one error each.

Sans-I/O but for ``csv``, whose file is read here (through `read_text`, which a test may replace), once, when the
generator is made. Arguments every generator takes:

- ``every``: the update period (default 1 s, at least 10 ms: below that the loop would do little else);
- ``write``: what a write by anyone else (a client, the owner) does to the generated point: ``hold`` (default) keeps
  the written value until the generator is reset; ``overwrite`` lets the next update replace it.
"""

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from modbusd.simulate.expression import Expression
from modbusd.simulate.generators import CLOCK_PARTS, Clock, Counter, Generator, Ramp, Random, Sine, Square, Steps, Wave
from modbusd.simulate.generators import Triangle as TriangleWave
from modbusd.simulate.spec import Duration, GeneratorError, Spec, parse_duration, parse_spec

DEFAULT_EVERY = 1.0  # seconds between updates
MIN_EVERY = 0.010  # the shortest update period: 100 updates a second per generator
MAX_CSV_BYTES = 16 * 1024 * 1024  # as a device file: a mistaken path costs a bounded read
COMMON = ("every", "write")


class WritePolicy(StrEnum):
    """What a write by anyone but the generator does to a generated point."""

    HOLD = "hold"  # the written value stays until reset: what a client testing a write expects to read back
    OVERWRITE = "overwrite"  # the next update replaces it: the process wins, as a real sensor input would


@dataclass(frozen=True, slots=True)
class Made:
    """A generator with its settings, and the spec it was made from."""

    generator: Generator
    every: float
    write: WritePolicy
    spec: Spec


@dataclass(frozen=True, slots=True)
class Context:
    """What making a generator may need beyond its spec: the target type's range (a counter wraps there), the
    folder a csv file's relative path starts from, and the data points an expression may name."""

    limits: tuple[float, float] = (-math.inf, math.inf)
    base: Path = Path()
    read: Callable[[str], object] = lambda name: 0
    is_point: Callable[[str], bool] = lambda name: False
    read_text: Callable[[Path], str] | None = None


class _Arguments:
    """A spec's arguments, taken one by one; whatever is left at the end is an unknown argument."""

    def __init__(self, spec: Spec, known: tuple[str, ...]) -> None:
        self.spec = spec
        self.left = dict(spec.arguments)
        self.known = (*known, *COMMON)
        for key in self.left:
            if key not in self.known:
                raise self.error(f"unknown argument {key!r}; {spec.name} takes {', '.join(self.known)}")

    def error(self, message: str) -> GeneratorError:
        return GeneratorError(f"{self.spec.text}: {message}")

    def number(self, key: str, default: float | None = None) -> float:
        raw = self.left.pop(key, default)
        if raw is None:
            raise self.error(f"{key} is required, e.g. {key}=10")
        if isinstance(raw, Duration):
            raise self.error(f"{key}={raw} is a duration; {key} is a plain number")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise self.error(f"{key}={raw!r} is not a number")
        return raw

    def optional(self, key: str) -> float | None:
        return self.number(key) if key in self.left else None

    def duration(self, key: str, default: float | None = None) -> float:
        raw = self.left.pop(key, None)
        if raw is None:
            if default is None:
                raise self.error(f"{key} is required, e.g. {key}=10s")
            seconds = default
        elif isinstance(raw, Duration):
            seconds = raw.seconds
        elif isinstance(raw, str):
            seconds = self._parsed(key, raw)
        else:
            raise self.error(f"{key}={raw!r} needs a unit: {raw}s, or {raw}ms (ms, s, m or h)")
        if not seconds > 0:
            raise self.error(f"{key} must be longer than 0")
        return seconds

    def _parsed(self, key: str, text: str) -> float:
        try:
            return parse_duration(text)
        except GeneratorError as exc:
            raise self.error(f"{key}: {exc}") from None

    def flag(self, key: str, default: bool) -> bool:
        raw = self.left.pop(key, default)
        if not isinstance(raw, bool):
            raise self.error(f"{key}={raw!r}: expected true or false")
        return raw

    def seed(self) -> int | None:
        raw = self.left.pop("seed", None)
        if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
            raise self.error(f"seed={raw!r}: expected a whole number")
        return raw


KNOWN: dict[str, tuple[str, ...]] = {
    "counter": ("start", "step", "period", "min", "max"),
    "ramp": ("min", "max", "period"),
    "sawtooth": ("min", "max", "period"),
    "triangle": ("min", "max", "period"),
    "sine": ("offset", "amplitude", "period", "phase"),
    "square": ("low", "high", "period", "duty"),
    "random": ("min", "max", "step", "start", "seed"),
    "clock": ("parts", "utc"),
    "sequence": ("values", "hold", "loop"),
    "csv": ("file", "loop", "length"),
    "expression": ("formula", "seed"),
}
MAIN = {"sequence": "values", "csv": "file", "expression": "formula"}  # what a first argument without KEY= is


def make(spec: Spec | str, context: Context = Context()) -> Made:
    """The generator a spec describes, with its `every` and `write`; GeneratorError for any mistake."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.name not in KNOWN:
        raise GeneratorError(f"{spec.text}: no generator named {spec.name!r}; expected {', '.join(KNOWN)}")
    if spec.main is not None:
        if spec.name not in MAIN:
            raise GeneratorError(f"{spec.text}: {spec.name} takes only KEY=VALUE arguments")
        if MAIN[spec.name] in spec.arguments:
            raise GeneratorError(f"{spec.text}: {MAIN[spec.name]} is given twice")
        spec = Spec(spec.name, None, {MAIN[spec.name]: spec.main, **spec.arguments}, spec.text)
    args = _Arguments(spec, KNOWN[spec.name])
    generator = _BUILDERS[spec.name](args, context)
    every = args.duration("every", DEFAULT_EVERY)
    if every < MIN_EVERY:
        raise args.error(f"every={spec.arguments['every']} is shorter than {MIN_EVERY * 1000:g} ms, the shortest "
                         "update period")  # fmt: skip
    write = args.left.pop("write", WritePolicy.HOLD.value)
    if write not in tuple(WritePolicy):
        raise args.error(f"write={write!r}: expected hold or overwrite")
    assert not args.left, args.left  # every known argument is taken by its builder
    return Made(generator, every, WritePolicy(write), spec)


def _bounds(args: _Arguments, low: str, high: str, low_default: float, high_default: float) -> tuple[float, float]:
    lo, hi = args.number(low, low_default), args.number(high, high_default)
    if not lo < hi:
        raise args.error(f"{low}={lo:g} must be below {high}={hi:g}")
    return lo, hi


def _counter(args: _Arguments, context: Context) -> Generator:
    low_limit, high_limit = context.limits
    start, step = args.number("start", 0), args.number("step", 1)
    period = args.duration("period", 1.0)
    lo = args.number("min", low_limit if math.isfinite(low_limit) else 0)
    hi = args.number("max", high_limit if math.isfinite(high_limit) else 65535)
    if not lo < hi:
        raise args.error(f"min={lo:g} must be below max={hi:g}")
    if step == 0:
        raise args.error("step=0 would never count")
    return Counter(start, step, period, lo, hi)


def _wave(kind: type[Wave]) -> Callable[[_Arguments, Context], Generator]:
    def build(args: _Arguments, context: Context) -> Generator:
        lo, hi = _bounds(args, "min", "max", 0, 100)
        return kind(lo, hi, args.duration("period", 10.0))

    return build


def _sine(args: _Arguments, context: Context) -> Generator:
    return Sine(args.number("offset", 0), args.number("amplitude", 1), args.duration("period", 60.0),
                args.number("phase", 0))  # fmt: skip


def _square(args: _Arguments, context: Context) -> Generator:
    low, high = args.number("low", 0), args.number("high", 1)
    period = args.duration("period", 2.0)
    duty = args.number("duty", 0.5)
    if not 0 < duty < 1:
        raise args.error(f"duty={duty:g} must be between 0 and 1 (the fraction of the period spent high)")
    return Square(low, high, period, duty)


def _random(args: _Arguments, context: Context) -> Generator:
    lo, hi = _bounds(args, "min", "max", 0, 100)
    step, start = args.optional("step"), args.optional("start")
    if step is not None and step <= 0:
        raise args.error(f"step={step:g}: a random walk's step must be above 0")
    if start is not None and step is None:
        raise args.error("start is the random walk's first value: give step too")
    if start is not None and not lo <= start <= hi:
        raise args.error(f"start={start:g} is outside min..max ({lo:g}..{hi:g})")
    return Random(lo, hi, step, start, args.seed())


def _clock(args: _Arguments, context: Context) -> Generator:
    raw = args.left.pop("parts", [])
    parts = [raw] if isinstance(raw, str) else raw
    if not isinstance(parts, list) or any(p not in CLOCK_PARTS for p in parts):
        raise args.error(f"parts={raw!r}: expected a list of {', '.join(CLOCK_PARTS)}, e.g. "
                         "parts=[hour, minute, second]")  # fmt: skip
    return Clock(tuple(str(p) for p in parts), args.flag("utc", False))


def _sequence(args: _Arguments, context: Context) -> Generator:
    values = args.left.pop("values", None)
    if not isinstance(values, list) or not values:
        raise args.error("values is required: a list such as values=[0, 50, 100]")
    if any(isinstance(v, bool | Duration | str) for v in values):
        raise args.error(f"values={values!r}: each value must be a number")
    raw_hold = args.left.pop("hold", Duration(1.0, "1s"))
    holds = raw_hold if isinstance(raw_hold, list) else [raw_hold] * len(values)
    if len(holds) != len(values):
        raise args.error(f"hold has {len(holds)} durations for {len(values)} values: give one, or one per value")
    seconds = []
    for hold in holds:
        if not isinstance(hold, Duration) or hold.seconds <= 0:
            raise args.error(f"hold={hold!r}: expected a duration above 0 such as 1s, or a list of them")
        seconds.append(hold.seconds)
    starts = [sum(seconds[:i]) for i in range(len(seconds))]
    return Steps(starts, [float(v) for v in values], sum(seconds), args.flag("loop", True))


def _csv(args: _Arguments, context: Context) -> Generator:
    name = args.left.pop("file", None)
    if not isinstance(name, str) or not name:
        raise args.error("file is required: csv(file=profile.csv), rows of time,value")
    path = context.base / name
    try:
        text = context.read_text(path) if context.read_text else _read(path)
    except (OSError, UnicodeDecodeError, GeneratorError) as exc:
        raise args.error(f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    starts, values = _series(text, str(path))
    loop = args.flag("loop", True)
    gap = starts[-1] - starts[-2] if len(starts) > 1 else 1.0
    length = args.duration("length", None) if "length" in args.left else starts[-1] + gap
    if length <= starts[-1]:
        raise args.error(f"length={length:g}s ends before the last row, at {starts[-1]:g} s")
    return Steps(starts, values, length, loop)


def _read(path: Path) -> str:
    with path.open("rb") as file:
        data = file.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise GeneratorError(f"larger than {MAX_CSV_BYTES // 2**20} MiB")
    return data.decode("utf-8-sig")


def _series(text: str, name: str) -> tuple[list[float], list[float]]:
    """Rows of ``time,value`` (time in seconds, or a duration such as 1.5s); a header row and ``#`` lines skipped."""
    starts: list[float] = []
    values: list[float] = []
    header_seen = False
    for line, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise GeneratorError(f"{name}:{line}: expected time,value")
        when_text, value_text = row[0].strip(), row[1].strip()
        try:
            when = float(when_text) if when_text.replace(".", "", 1).isdigit() else parse_duration(when_text)
            value = float(value_text)
        except (ValueError, GeneratorError):
            if not starts and not header_seen:
                header_seen = True
                continue  # the header row
            raise GeneratorError(f"{name}:{line}: expected time,value such as 1.5,20 or 500ms,20") from None
        if not math.isfinite(value):
            raise GeneratorError(f"{name}:{line}: {value_text} is not a finite number")
        if starts and when <= starts[-1]:
            raise GeneratorError(f"{name}:{line}: time {when:g} s is not after the row before ({starts[-1]:g} s)")
        starts.append(when)
        values.append(value)
    if not starts:
        raise GeneratorError(f"{name}: no rows of time,value")
    if starts[0] != 0:
        starts, values = [0.0, *starts], [values[0], *values]  # before the first row: its value
    return starts, values


def _expression(args: _Arguments, context: Context) -> Generator:
    formula = args.left.pop("formula", None)
    if not isinstance(formula, str):
        raise args.error('the formula is required, quoted: expression("level * 0.8 + gauss(0, 0.1)")')
    try:
        return Expression(formula, context.read, context.is_point, args.seed())
    except GeneratorError as exc:
        raise args.error(str(exc)) from None


_BUILDERS: dict[str, Callable[[_Arguments, Context], Generator]] = {
    "counter": _counter, "ramp": _wave(Ramp), "sawtooth": _wave(Ramp), "triangle": _wave(TriangleWave),
    "sine": _sine, "square": _square, "random": _random, "clock": _clock, "sequence": _sequence, "csv": _csv,
    "expression": _expression,
}  # fmt: skip
