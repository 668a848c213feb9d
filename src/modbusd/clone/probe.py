"""What to read next from a device's table, given what it answered: finding its readable addresses, sans I/O.

A read either answers every address it asks for or none (exception 02, §6.1–6.4): so a readable stretch is found
with few requests (large reads, then bisection for where it ends), while an unreadable address is known only from
a read of it alone. A table that is mostly unimplemented would cost one request per address; instead an
unreadable stretch is sampled every `stride` addresses, and a readable run found there is widened by bisection to
its exact ends. A readable island shorter than `stride` lying wholly between two samples may be missed;
``stride = 1`` reads every address and misses nothing.

`TableProbe` is driven by plain values: `next()` says what to read, `answer()` gives it the values read (or None:
the device refused it), so the tests need neither a device nor a clock.
"""

from collections.abc import Generator, Sequence
from typing import Final

Read = tuple[int, int]
"""(address, quantity): one read request."""

Probe = Generator[Read, Sequence[int] | None, None]


class TableProbe:
    """The readable addresses of one table within `ranges` ((first, last) inclusive), read `block` at a time."""

    def __init__(self, ranges: Sequence[tuple[int, int]], block: int, stride: int = 1) -> None:
        if block < 1 or stride < 1:
            raise ValueError(f"block {block} and stride {stride} must be 1 at least")
        self.values: dict[int, int] = {}  # every readable address found → its value
        self.requests = 0
        self._stride = min(stride, block)  # a run's start is found by reads from a sample back to the one before
        self._steps = self._all(sorted(ranges), block)
        self._pending: Read | None = next(self._steps, None)

    def next(self) -> Read | None:
        """The read to make now, the same until `answer` is called; None when the table is done."""
        return self._pending

    def answer(self, values: Sequence[int] | None) -> None:
        """The values the device answered to `next()`'s read, or None when it refused it (exception 02, 03)."""
        if self._pending is None:
            raise RuntimeError("nothing was asked")
        if values is not None and len(values) != self._pending[1]:
            raise ValueError(f"{len(values)} values for a read of {self._pending[1]}")
        self.requests += 1
        try:
            self._pending = self._steps.send(values)
        except StopIteration:
            self._pending = None

    def _all(self, ranges: Sequence[tuple[int, int]], block: int) -> Probe:
        for first, last in ranges:
            yield from self._range(first, last + 1, block)

    def _range(self, start: int, end: int, block: int) -> Probe:
        p = start
        while p < end:
            n = min(block, end - p)
            got = yield p, n
            if got is not None:
                self._keep(p, got)
                p += n
                continue
            first = (yield p, 1) if n > 1 else None
            if first is not None:  # a readable run starts here and ends before p + n: find its end
                good, bad, values = 1, n, first
                while bad - good > 1:
                    mid = (good + bad) // 2
                    got = yield p, mid
                    if got is None:
                        bad = mid
                    else:
                        good, values = mid, got
                self._keep(p, values)
                p += good + 1  # p + good is unreadable: [p, p + good] was refused, [p, p + good) was not
                continue
            found = yield from self._sample(p, end)
            if found is None:
                return
            p = yield from self._run_start(*found)

    def _sample(self, unreadable: int, end: int) -> Generator[Read, Sequence[int] | None, tuple[int, int] | None]:
        """Samples after `unreadable`, every `stride` addresses and the range's last, until one is readable:
        (the unreadable sample before it, it); None when none is."""
        before = q = unreadable
        while q < end - 1:
            before, q = q, min(q + self._stride, end - 1)
            got = yield q, 1
            if got is not None:
                return before, q
        return None

    def _run_start(self, unreadable: int, readable: int) -> Generator[Read, Sequence[int] | None, int]:
        """The first address of the readable run holding `readable`, after the unreadable address `unreadable`:
        reads ending at `readable` succeed exactly when they start inside the run."""
        bad, good = unreadable, readable
        while good - bad > 1:
            mid = (bad + good) // 2
            got = yield mid, readable - mid + 1
            if got is None:
                bad = mid
            else:
                good = mid
        return good

    def _keep(self, address: int, values: Sequence[int]) -> None:
        self.values.update(zip(range(address, address + len(values)), values, strict=True))

    def runs(self) -> list[tuple[int, int]]:
        """The readable addresses found, as (first, last) runs."""
        found: list[tuple[int, int]] = []
        for address in sorted(self.values):
            if found and found[-1][1] == address - 1:
                found[-1] = (found[-1][0], address)
            else:
                found.append((address, address))
        return found


def run_text(runs: Sequence[tuple[int, int]], most: int = 6) -> str:
    """``0-99, 200, 300-310`` (the first `most`, then how many more), for the progress lines."""
    shown = [str(a) if a == b else f"{a}-{b}" for a, b in runs[:most]]
    if len(runs) > most:
        shown.append(f"… {len(runs) - most} more")
    return ", ".join(shown)


FC17_RUNNING: Final = (0x00, 0xFF)  # §6.13's run indicator: OFF, ON


def split_report(body: bytes) -> tuple[bytes, bool, bytes]:
    """FC17's byte count's bytes → (server id, running, additional data).

    The server id's length is the device's own (§6.13), so the first byte after it that can be a run indicator
    (0x00 or 0xFF) is taken as one: the bytes come out the same when the copy answers, wherever the split falls.
    ValueError when no byte can be the run indicator.
    """
    for length in range(1, len(body)):
        if body[length] in FC17_RUNNING:
            return body[:length], body[length] == 0xFF, body[length + 1 :]
    raise ValueError(f"no run indicator (00 or FF) after the server id in {body.hex(' ')}")
