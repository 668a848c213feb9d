"""Value generators without I/O: the spec language, each generator's value at exact times, the fit rule, and the
scheduler and simulator driven by an injected clock (no sleeping, no loop)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modbusd import Device, Location, Point, Table, ValueType
from modbusd.access import PointAccess
from modbusd.model.values import Kind, Order, encode, integer_range, packer, packer_into
from modbusd.simulate import GeneratorError, Simulator, UnknownGenerator, fitter, make, parse_duration, parse_spec
from modbusd.simulate.build import Context
from modbusd.simulate.generators import unix_time
from modbusd.simulate.scheduler import Scheduler
from modbusd.simulate.target import Unfit
from tests.test_layers import NO_IO, imports, within

# --------------------------------------------------------------------------------------------- the language


def test_spec_reads_numbers_durations_words_texts_and_lists() -> None:
    spec = parse_spec('sequence([0, -1.5, 0x10, 1e3], hold=[500ms, 2m], loop=false, name="a, b", file=p.csv)')
    assert spec.name == "sequence" and spec.main == [0, -1.5, 16, 1000.0]
    assert [d.seconds for d in spec.arguments["hold"]] == [0.5, 120.0]  # type: ignore[attr-defined]
    assert spec.arguments["loop"] is False and spec.arguments["name"] == "a, b" and spec.arguments["file"] == "p.csv"


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("1s", 1.0), ("2m", 120.0), ("1h", 3600.0),
                                                ("1.5s", 1.5), ("10ms", 0.01)])  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "says"), [
    ("sine", "expected NAME(KEY=VALUE"),
    ("sine(period=60s", "expected NAME(KEY=VALUE"),
    ("sine(period=60s,)", "empty argument"),
    ("sine(period=60s, period=1s)", "given twice"),
    ("sine(offset=1 2)", "not one value"),
    ("expression(\"a * 2)", "never closed"),
    ("sine(1, 2)", "only the first argument"),
    ("wobble(period=1s)", "no generator named 'wobble'"),
    ("sine(perod=60s)", "unknown argument 'perod'"),
    ("sine(period=60)", "needs a unit"),
    ("sine(offset=5s)", "is a duration"),
    ("sine(every=5ms)", "shorter than 10 ms"),
    ("sine(write=keep)", "expected hold or overwrite"),
    ("ramp(min=10, max=1)", "must be below"),
    ("square(duty=1.5)", "between 0 and 1"),
    ("counter(step=0)", "never count"),
    ("random(start=5)", "give step too"),
    ("clock(parts=[hour, fortnight])", "expected a list of year"),
    ("sequence(values=[1, 2], hold=[1s])", "one per value"),
    ("sequence()", "values is required"),
    ("expression(\"a +\")", "bad syntax"),
    ("expression(\"open('x')\")", "unknown name 'open'"),
    ("expression(\"level * 2\")", "unknown name 'level'"),
    ("csv(file=missing.csv)", "cannot read"),
])  # fmt: skip
def test_bad_specs_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(GeneratorError, match=None) as caught:
        make(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------------- values at exact times


def values(spec: str, times: list[float], context: Context | None = None, wall: float = 0.0) -> list[object]:
    generator = make(spec, context or Context()).generator
    return [generator.value(t, wall) for t in times]


def test_counter_steps_once_a_period_and_wraps_at_the_type_range() -> None:
    ushort = Context(limits=(0, 65535))
    assert values("counter(start=65534, step=1, period=1s)", [0, 0.99, 1, 2, 3], ushort) == [65534, 65534, 65535, 0, 1]
    assert values("counter(start=5, step=5, period=500ms, min=0, max=10)", [0, 0.5, 1.0, 1.5]) == [5, 10, 4, 9]
    assert values("counter(start=1, step=-1, period=1s, min=0, max=3)", [0, 1, 2, 3]) == [1, 0, 3, 2]
    assert values("counter(step=1, period=100ms, max=1000)", [0.3]) == [3]  # 0.3 / 0.1 is 2.9999999999999996


def test_ramp_triangle_sine_and_square_at_exact_times() -> None:
    assert values("ramp(min=0, max=100, period=10s)", [0, 2.5, 5, 9.9, 10, 12.5]) == pytest.approx(
        [0, 25, 50, 99, 0, 25]
    )
    assert values("sawtooth(min=-10, max=10, period=4s)", [0, 1, 3]) == pytest.approx([-10, -5, 5])
    assert values("triangle(min=0, max=100, period=10s)", [0, 2.5, 5, 7.5, 10]) == pytest.approx([0, 50, 100, 50, 0])
    assert values("sine(offset=20, amplitude=5, period=60s)", [0, 15, 30, 45, 60]) == pytest.approx(
        [20, 25, 20, 15, 20]
    )
    assert values("sine(offset=0, amplitude=1, period=4s, phase=90)", [0, 1, 2]) == pytest.approx([1, 0, -1], abs=1e-12)
    assert values("square(low=0, high=1, period=2s, duty=0.25)", [0, 0.49, 0.5, 1.9, 2.0]) == [1, 1, 0, 0, 1]


def test_random_is_within_bounds_and_the_same_for_the_same_seed() -> None:
    times = [i * 0.1 for i in range(200)]
    first = values("random(min=10, max=20, seed=7)", times)
    assert first == values("random(min=10, max=20, seed=7)", times)
    assert first != values("random(min=10, max=20, seed=8)", times)
    assert all(10 <= v <= 20 for v in first) and len(set(first)) > 150  # type: ignore[operator]


def test_random_walk_moves_at_most_a_step_and_stays_within_bounds_and_restarts_on_reset() -> None:
    generator = make("random(min=0, max=10, step=1, start=9.5, seed=3)").generator
    walk = [generator.value(0, 0) for _ in range(500)]
    assert all(0 <= v <= 10 for v in walk)
    assert all(abs(b - a) <= 1 for a, b in zip([9.5, *walk], walk, strict=False))
    assert max(walk) == 10  # it reached the bound from 9.5 and was held there
    generator.reset()
    assert [generator.value(0, 0) for _ in range(5)] == walk[:5]


def test_clock_gives_unix_time_or_its_parts() -> None:
    moment = unix_time(2026, 12, 3, hour=14, minute=5, second=9)
    assert values("clock()", [0], wall=moment) == [moment]
    parts = "clock(parts=[year, month, day, hour, minute, second, weekday, yearday], utc=true)"
    assert values(parts, [0], wall=moment) == [(2026, 12, 3, 14, 5, 9, 4, 337)]  # a Thursday
    assert values("clock(parts=[second], utc=true)", [0], wall=moment + 0.9) == [9]


def test_sequence_holds_each_value_and_loops_or_stays_on_the_last() -> None:
    looped = "sequence([0, 50, 100], hold=[5s, 10s, 5s])"
    assert values(looped, [0, 4.9, 5, 14.9, 15, 19.9, 20, 25]) == [0, 0, 50, 50, 100, 100, 0, 50]
    once = "sequence(values=[1, 2], hold=1s, loop=false)"
    assert values(once, [0, 0.5, 1, 2, 100]) == [1, 1, 2, 2, 2]


def test_csv_plays_a_time_series_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "profile.csv").write_text("time,value\n# warm-up\n0,10\n1.5,20\n3s,30\n", encoding="utf-8")
    context = Context(base=tmp_path)
    assert values("csv(file=profile.csv)", [0, 1.49, 1.5, 3, 4.4, 4.5, 6], context) == [10, 10, 20, 30, 30, 10, 20]
    assert values("csv(profile.csv, loop=false)", [0, 3, 100], context) == [10, 30, 30]
    assert values("csv(profile.csv, length=10s)", [5, 9.9, 10], context) == [30, 30, 10]
    (tmp_path / "bad.csv").write_text("0,1\n1,x\n", encoding="utf-8")
    with pytest.raises(GeneratorError, match=r"bad\.csv:2: expected time,value"):
        make("csv(bad.csv)", context)
    (tmp_path / "back.csv").write_text("0,1\n2,2\n1,3\n", encoding="utf-8")
    with pytest.raises(GeneratorError, match=r"back\.csv:3: time 1 s is not after"):
        make("csv(back.csv)", context)


def test_expression_reads_points_and_time_and_its_seeded_noise_repeats() -> None:
    points = {"tank_level": 50.0, "pump_on": True}
    context = Context(read=points.__getitem__, is_point=points.__contains__)
    assert values('expression("tank_level * 0.8 + t")', [0, 2], context) == [40, 42]
    assert values('expression("100 if pump_on else 0")', [0], context) == [100]
    assert values('expression("max(0, sin(pi * t / 2)) * 10")', [1, 3], context) == pytest.approx([10, 0], abs=1e-9)
    noisy = 'expression("tank_level + gauss(0, 1)", seed=4)'
    assert values(noisy, [0, 1, 2], context) == values(noisy, [0, 1, 2], context)
    points["tank_level"] = 60.0  # read at every update, not once
    assert values('expression("tank_level / 2")', [0], context) == [30]


def test_expression_is_never_python_eval() -> None:
    for formula, says in (("__import__('os').system('true')", "a call names one of the functions"),
                          ("(1).__class__", "attribute is not allowed"), ("[x for x in ()]", "listcomp is not"),
                          ("round(2.5, ndigits=0)", "no KEY= arguments")):  # fmt: skip
        with pytest.raises(GeneratorError, match=says):
            make(f'expression("{formula}")', Context(is_point=lambda name: True)).generator.value(0, 0)


# --------------------------------------------------------------------------------------------- the fit rule


@pytest.mark.parametrize(("type_name", "given", "stored"), [
    ("ushort", 21.5, 22), ("ushort", 20.5, 20), ("ushort", -3.0, 0), ("ushort", 70000.0, 65535),
    ("short", -40000.0, -32768), ("uint", 1e12, 2**32 - 1), ("long", -math.inf, -(2**63)),
    ("float", 1e39, struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]), ("float", -1e39, -3.4028234663852886e38),
    ("double", math.inf, math.inf), ("bit", 0.0, False), ("bit", -2.5, True),
])  # fmt: skip
def test_values_that_do_not_fit_are_rounded_then_clamped(type_name: str, given: float, stored: object) -> None:
    assert fitter(ValueType.parse(type_name))(given) == stored


def test_nan_has_no_integer_or_bit_but_a_float_stores_it() -> None:
    for name in ("ushort", "long", "bit"):
        with pytest.raises(Unfit):
            fitter(ValueType.parse(name))(math.nan)
    assert math.isnan(fitter(ValueType.parse("float"))(math.nan))  # type: ignore[arg-type]


NUMBER_TYPES = [ValueType(k) for k in (Kind.USHORT, Kind.SHORT, Kind.UINT, Kind.INT, Kind.ULONG, Kind.LONG)]


@given(st.sampled_from(NUMBER_TYPES), st.sampled_from(list(Order)), st.data())
def test_packer_gives_the_bytes_encode_gives_for_integers(vtype: ValueType, order: Order, data: st.DataObject) -> None:
    low, high = integer_range(vtype)
    value = data.draw(st.integers(low, high))
    assert packer(vtype, order)(value) == encode(vtype, value, order)
    buffer = bytearray(b"\xee" * 12)
    packer_into(vtype, order)(buffer, 2, value)
    assert buffer == b"\xee" * 2 + encode(vtype, value, order) + b"\xee" * (10 - 2 * vtype.registers)


@given(st.sampled_from([ValueType(Kind.FLOAT), ValueType(Kind.DOUBLE)]), st.sampled_from(list(Order)),
       st.floats(width=32))  # fmt: skip
def test_packer_gives_the_bytes_encode_gives_for_floats(vtype: ValueType, order: Order, value: float) -> None:
    assert packer(vtype, order)(value) == encode(vtype, value, order)
    buffer = bytearray(2 * vtype.registers)
    packer_into(vtype, order)(buffer, 0, value)
    assert buffer == encode(vtype, value, order)


# --------------------------------------------------------------------------- the scheduler, time injected


class Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulator(device: Device) -> tuple[Simulator, Clock, PointAccess]:
    access = PointAccess(device, {}, lambda unit: device)
    clock = Clock()
    return Simulator(access.locate, access.read, clock=clock, wall=lambda: 1e9 + clock.now), clock, access


def test_simulator_writes_exact_values_at_exact_simulated_times() -> None:
    device = Device()
    device.points["level"] = Point("level", Location(Table.INPUT_REGISTERS, 10), ValueType.parse("float"))
    sim, clock, access = simulator(device)
    sim.add("level", "sine(offset=20, amplitude=5, period=60s, every=100ms)")
    sim.add("30001", "ramp(min=0, max=100, period=10s, every=500ms)")
    assert access.read("level") == 20 and access.read("30001") == 0  # the first value at once
    seen = []
    for step in range(1, 151):  # 15 simulated seconds, in 100 ms steps
        clock.now = step * 0.1
        sim.run_due()
        seen.append((access.read("level"), access.read("30001")))
    assert seen[149][0] == pytest.approx(25)  # a quarter of the sine's period, t = 15 s: its top
    assert seen[4][1] == 5 and seen[5][1] == 5 and seen[9][1] == 10  # t = 0.5 s, 0.6 s (not due), 1.0 s
    assert seen[24][1] == 25 and seen[99][1] == 0  # t = 2.5 s; t = 10 s: the ramp starts over


def test_one_bucket_per_update_period_whatever_the_number_of_generators() -> None:
    sim, clock, access = simulator(Device())
    for address in range(1000):
        sim.add(f"{address}.hr", "counter(period=100ms, every=100ms)")
    for address in range(1000, 1010):
        sim.add(f"{address}.hr", "counter(every=1s)")
    assert len(sim._scheduler._heap) == 2  # two periods: two heap entries, and one timer for both
    clock.now = 0.1
    assert sim.run_due() == 1000 and access.read("999.hr") == 1 and access.read("1000.hr") == 0
    clock.now = 1.0
    assert sim.run_due() == 1010 and access.read("0.hr") == 10 and access.read("1009.hr") == 1


def test_a_bucket_is_updated_a_slice_at_a_time_all_at_its_scheduled_time() -> None:
    sim, clock, access = simulator(Device())
    for address in range(1000):
        sim.add(f"{address}.ir", "counter(period=100ms, every=100ms)")
    sim.remove("999.ir")
    clock.now = 0.1
    assert sim.run_due(limit=300) == 300
    assert sim._scheduler.next_due() == -math.inf  # the rest at once, after the loop's clients had a turn
    assert access.read("299.ir") == 1 and access.read("300.ir") == 0
    clock.now = 0.15  # later, but the slices left still write the value of 0.1 s
    sim.run_due(limit=300)
    sim.add("999.ir", "ramp(every=1s)")  # added during the job: not part of it
    assert sim.run_due() == 399  # 999 entries: 999.ir was removed before the job began
    assert [access.read(f"{a}.ir") for a in (0, 599, 998)] == [1, 1, 1]
    assert sim.get("999.ir")["updates"] == 1 and sim._scheduler.next_due() == pytest.approx(0.2)


def test_a_late_run_updates_once_and_skips_the_missed_periods() -> None:
    scheduler_clock = Clock()
    device = Device()
    access = PointAccess(device, {}, lambda unit: device)
    sim = Simulator(access.locate, access.read, clock=scheduler_clock)
    sim.add("0.hr", "counter(period=100ms, every=100ms)")
    scheduler_clock.now = 0.95  # the loop was busy for nine periods
    assert sim.run_due() == 1 and access.read("0.hr") == 9  # once, at its latest update time: 0.9 s
    assert sim._scheduler.next_due() == pytest.approx(1.0)
    scheduler_clock.now = 1.0
    sim.run_due()
    assert access.read("0.hr") == 10


def test_pause_stops_the_generators_time_and_resume_goes_on_from_there() -> None:
    sim, clock, access = simulator(Device())
    sim.add("0.ir", "counter(period=1s, every=1s)")
    clock.now = 3.0
    sim.run_due()
    assert access.read("0.ir") == 3
    assert sim.pause("0.ir")["state"] == "paused"
    for clock.now in (4.0, 5.0, 6.0):
        sim.run_due()
    assert access.read("0.ir") == 3
    sim.resume("0.ir")
    clock.now = 7.0
    sim.run_due()
    assert access.read("0.ir") == 4  # 4 s of its own time: the 3 paused seconds did not count
    assert sim.reset("0.ir")["value"] == 0
    assert sim.get("0.ir")["updates"] == 4  # at add, at 3 s (once: 1 and 2 s were missed), at 7 s, at reset


def test_a_write_from_elsewhere_is_held_until_reset_by_default() -> None:
    sim, clock, access = simulator(Device())
    sim.add("5.hr", "counter(period=1s, every=1s)")
    clock.now = 1.0
    sim.run_due()
    access.write("5.hr", 500)  # a client, or the owner
    for clock.now in (2.0, 3.0):
        sim.run_due()
    assert access.read("5.hr") == 500 and sim.get("5.hr")["state"] == "held"
    sim.reset("5.hr")
    assert access.read("5.hr") == 0 and sim.get("5.hr")["state"] == "running"


def test_with_write_overwrite_the_next_update_replaces_a_write() -> None:
    sim, clock, access = simulator(Device())
    sim.add("1.co", "square(period=2s, every=1s, write=overwrite)")
    assert access.read("1.co") is True
    access.write("1.co", False)
    clock.now = 2.0
    sim.run_due()
    assert access.read("1.co") is True and sim.get("1.co")["state"] == "running"


def test_clock_parts_fill_consecutive_registers_in_the_targets_type() -> None:
    sim, clock, access = simulator(Device())
    moment = unix_time(2026, 12, 3, hour=14, minute=5, second=9)
    sim.wall = lambda: moment + clock.now
    sim.add("100.hr", "clock(parts=[year, month, day, hour, minute, second], utc=true)")
    assert [access.read(f"{a}.hr") for a in range(100, 106)] == [2026, 12, 3, 14, 5, 9]
    assert sim.get("100.hr")["value"] == [2026, 12, 3, 14, 5, 9]
    sim.add("200.hr", "clock()", "uint", "CDAB")
    assert int.from_bytes(device_words(access, 200, 2, swap=True)) == int(moment)


def device_words(access: PointAccess, address: int, count: int, *, swap: bool) -> bytes:
    raw = b"".join(access.read(f"{address + i}.hr").to_bytes(2, "big") for i in range(count))  # type: ignore[union-attr]
    return raw[2:] + raw[:2] if swap else raw


def test_expression_over_a_generated_point_and_errors_are_counted_not_raised() -> None:
    device = Device()
    device.points["tank_level"] = Point("tank_level", Location(Table.INPUT_REGISTERS, 0), ValueType.parse("float"))
    sim, clock, access = simulator(device)
    sim.add("tank_level", "ramp(min=0, max=100, period=10s)")
    sim.add("10.ir", 'expression("tank_level * 0.8")', "float")
    sim.add("20.ir", 'expression("tank_level / (t - 1)")')  # divides by zero at t = 1 s
    clock.now = 1.0
    sim.run_due()
    assert access.read("10.ir", "float") == pytest.approx(8)
    assert sim.get("20.ir")["errors"] == 1 and "ZeroDivisionError" in sim.get("20.ir")["last_error"]
    with pytest.raises(GeneratorError, match="unknown name 'tank'"):
        sim.add("30.ir", 'expression("tank * 2")')


def test_add_refuses_what_cannot_be_generated() -> None:
    device = Device(holding_registers=10)
    sim, _, _ = simulator(device)
    sim.add("0.hr", "sine()", "float")
    with pytest.raises(GeneratorError, match=r"generator 0\.hr already writes there"):
        sim.add("1.hr", "ramp()")  # the float's second register
    with pytest.raises(GeneratorError, match="string:2: a generator writes numbers"):
        sim.add("5.hr", "ramp()", "string:2")
    with pytest.raises(GeneratorError, match="needs registers"):
        sim.add("3.co", "clock(parts=[hour, minute])")
    with pytest.raises(GeneratorError, match=r"outside 0\.\.9"):
        sim.add("9.hr", "ramp()", "float")  # past the table's end
    with pytest.raises(UnknownGenerator):
        sim.pause("7.hr")
    assert [g["id"] for g in sim.list()] == ["0.hr"]
    sim.remove("0.hr")
    sim.add("1.hr", "ramp()")  # the claim went with it
    assert len(sim) == 1


def test_scheduler_drops_a_bucket_whose_generators_are_all_removed() -> None:
    sim, _clock, _ = simulator(Device())
    sim.add("0.hr", "ramp(every=100ms)")
    sim.remove("0.hr")
    assert sim._scheduler.next_due() is None
    assert isinstance(sim._scheduler, Scheduler)


@pytest.mark.parametrize("module", ["spec", "generators", "expression", "build", "target", "scheduler"])
def test_the_generators_and_the_scheduler_are_sans_io(module: str) -> None:
    """Only `simulator.py` knows the event loop: the rest is driven by the time it is given."""
    found = imports(f"modbusd.simulate.{module}")
    assert not [name for name in found if within(name, NO_IO)], found
