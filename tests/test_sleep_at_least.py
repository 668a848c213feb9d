"""A fault's delay is at least what it says, by the clock, on uvloop too (`transport.tcp.sleep_at_least`).

libuv keeps its loop time in whole milliseconds, rounded down, and counts a timer from it: a sleep begun 0.8 ms
into a millisecond ends up to 0.8 ms early. A client testing its time-outs with delay:500ms must never get its
answer after 499.8 ms; the README's plant test once did, in CI.
"""

from __future__ import annotations

import asyncio
import time

import uvloop

from modbusd.transport.tcp import sleep_at_least

DELAY = 0.002
SLEEPS = 300


async def shortest_of_many() -> float:
    """The shortest of many delays, each begun at another point within a millisecond."""
    shortest = float("inf")
    for i in range(SLEEPS):
        phase_until = time.monotonic() + (i % 10) / 10_000
        while time.monotonic() < phase_until:
            pass
        started = time.monotonic()
        await sleep_at_least(DELAY)
        shortest = min(shortest, time.monotonic() - started)
    return shortest


def test_no_delay_is_short_on_uvloop() -> None:
    assert uvloop.run(shortest_of_many()) >= DELAY


def test_no_delay_is_short_on_asyncios_loop() -> None:
    assert asyncio.run(shortest_of_many()) >= DELAY
