"""The rate-limited log on its own, with an injected clock: one line per kind and peer a window, then a count."""

import logging

import pytest

from modbusd.ratelimit import RateLimitedLog, host_of

log = logging.getLogger("modbusd.test_ratelimit")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_thousand_repeats_are_one_line_then_one_line_with_their_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limited = RateLimitedLog(60.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="modbusd.test_ratelimit"):
        for i in range(1000):
            limited.log(log, logging.WARNING, "bad", "192.0.2.1", "bad header %d", i)
            clock.now += 0.01  # ten seconds in all: inside one window
        assert warnings(caplog) == ["bad header 0"]
        assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 999  # still there for -v
        clock.now += 60
        limited.log(log, logging.WARNING, "bad", "192.0.2.1", "bad header %d", 1000)
    assert warnings(caplog)[1] == "bad header 1000 (999 more like this since the last such line)"


def test_each_kind_and_peer_has_its_own_line(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(60.0, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="modbusd.test_ratelimit"):
        for _ in range(3):
            for kind in ("bad", "limit"):
                for peer in ("192.0.2.1", "192.0.2.2"):
                    limited.log(log, logging.WARNING, kind, peer, "%s from %s", kind, peer)
    assert len(warnings(caplog)) == 4


def test_memory_stays_bounded_when_every_datagram_claims_a_new_peer(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limited = RateLimitedLog(60.0, max_peers=100, clock=clock)
    with caplog.at_level(logging.WARNING, logger="modbusd.test_ratelimit"):
        for i in range(10_000):
            limited.log(log, logging.WARNING, "bad", f"10.0.{i // 256}.{i % 256}", "bad from %d", i)
    assert len(limited._entries) <= 101  # the bound itself is what is tested
    assert len(warnings(caplog)) == 101  # one per remembered peer, then one for all the others
    assert "many peers" in warnings(caplog)[-1]
    clock.now += 61  # the window passes: the old keys are forgotten, new peers are told apart again
    with caplog.at_level(logging.WARNING, logger="modbusd.test_ratelimit"):
        assert limited.log(log, logging.WARNING, "bad", "10.1.0.1", "bad from a new peer")
    assert "many peers" not in warnings(caplog)[-1]


@pytest.mark.parametrize(
    ("peer", "host"),
    [("192.0.2.1:5020", "192.0.2.1"), ("::1:40000", "::1"), ("/dev/ttyUSB0", "/dev/ttyUSB0"),
     ("RTU over TCP from 127.0.0.1:5555", "RTU over TCP from 127.0.0.1")],
)  # fmt: skip
def test_a_peer_is_its_host_whatever_port_it_comes_from(peer: str, host: str) -> None:
    assert host_of(peer) == host
