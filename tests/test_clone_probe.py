"""`clone.probe`: what to read next from what a device answered, driven by plain values (no device, no clock)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modbusd.clone.probe import TableProbe, run_text, split_report


def drive(probe: TableProbe, table: dict[int, int], limit: int = 100_000) -> list[tuple[int, int]]:
    """Answer the probe as a device holding `table` would (a read of any missing address is refused)."""
    reads = []
    while (read := probe.next()) is not None and len(reads) < limit:
        address, quantity = read
        reads.append(read)
        span = range(address, address + quantity)
        probe.answer([table[a] for a in span] if all(a in table for a in span) else None)
    assert probe.next() is None, "the probe did not end"
    return reads


def sparse_table(seed: int, size: int, shortest: int = 1) -> dict[int, int]:
    rng = random.Random(seed)
    table: dict[int, int] = {}
    address = rng.randrange(0, 50)
    while address < size:
        run = rng.randint(shortest, 200)
        table.update((a, rng.randrange(65536)) for a in range(address, min(address + run, size)))
        address += run + rng.randint(1, 300)
    return table


@pytest.mark.parametrize("seed", range(5))
def test_stride_one_finds_every_readable_address_and_value(seed: int) -> None:
    table = sparse_table(seed, 3000)
    probe = TableProbe([(0, 3099)], block=125, stride=1)
    reads = drive(probe, table)
    assert probe.values == table
    assert all(1 <= quantity <= 125 for _, quantity in reads)


@pytest.mark.parametrize("seed", range(5))
def test_a_stride_finds_every_run_as_long_as_it_and_costs_far_fewer_reads(seed: int) -> None:
    table = sparse_table(seed, 20_000, shortest=16)
    exact = drive(TableProbe([(0, 19_999)], block=125, stride=1), table)
    probe = TableProbe([(0, 19_999)], block=125, stride=16)
    sampled = drive(probe, table)
    assert probe.values == table
    assert len(sampled) * 4 < len(exact)


@settings(max_examples=200, deadline=None)
@given(
    readable=st.sets(st.integers(0, 299), max_size=300), values=st.integers(0, 65535),
    stride=st.integers(1, 9), block=st.integers(1, 40),
    ranges=st.lists(st.tuples(st.integers(0, 299), st.integers(0, 60)), min_size=1, max_size=3),
)  # fmt: skip
def test_a_probe_never_reads_past_its_ranges_nor_invents_an_address(
    readable: set[int], values: int, stride: int, block: int, ranges: list[tuple[int, int]]
) -> None:
    windows = [(first, first + extra) for first, extra in ranges]
    windows = [w for i, w in enumerate(windows) if all(w[0] > o[1] or w[1] < o[0] for o in windows[:i])]
    table = {a: values for a in readable}
    probe = TableProbe(windows, block=block, stride=stride)
    reads = drive(probe, table)
    inside = {a for first, last in windows for a in range(first, last + 1)}
    assert all(set(range(a, a + q)) <= inside and 1 <= q <= block for a, q in reads)
    assert set(probe.values) <= readable & inside
    if stride == 1:
        assert set(probe.values) == readable & inside


def test_a_table_with_nothing_costs_a_read_per_stride() -> None:
    reads = drive(TableProbe([(0, 9999)], block=2000, stride=16), {})
    assert 600 < len(reads) < 700  # 10000 / 16 samples, and a refused block read of 2000 first


def test_runs_and_their_text() -> None:
    probe = TableProbe([(0, 99)], block=125)
    drive(probe, {**dict.fromkeys(range(0, 10), 1), 20: 5, **dict.fromkeys(range(30, 40), 2)})
    assert probe.runs() == [(0, 9), (20, 20), (30, 39)]
    assert run_text(probe.runs()) == "0-9, 20, 30-39"
    assert run_text([(i, i) for i in range(0, 20, 2)], most=3) == "0, 2, 4, … 7 more"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("01 FF", (b"\x01", True, b""), id="modbusd's default"),
        pytest.param("2A 07 00 50 4C 43", (b"\x2a\x07", False, b"PLC"), id="two-byte id, off"),
        pytest.param("00 FF", (b"\x00", True, b""), id="id zero"),
    ],
)
def test_split_report_gives_back_the_same_bytes(body: str, expected: tuple[bytes, bool, bytes]) -> None:
    server_id, running, additional = split_report(bytes.fromhex(body))
    assert (server_id, running, additional) == expected
    assert server_id + (b"\xff" if running else b"\x00") + additional == bytes.fromhex(body)


def test_split_report_without_a_run_indicator_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no run indicator"):
        split_report(b"\x01\x02\x03")
