"""Every transport's sessions: what a Modbus/TCP (or TLS) connection, a UDP datagram, an RTU over TCP connection or a
serial line gets to talk with, each around its answer function (`answers.py`).

A session maker picks the framer and the unit-id semantics of its transport (MBAP for Modbus/TCP and UDP, the `Bus`
for serial lines and RTU over TCP), and wraps the answer function in what stands between a client and the tables for
that transport: the access rules (`security.py`), the state file that holds responses to writes until they are
stored (`durable.py`), the fault rules (`modbusd.faults`) and the pipelined fast path (`batch.py`). Each wrapper is
applied once per connection, and only when it is configured: the request path costs nothing for what is not.
"""

from __future__ import annotations  # annotations as strings, as in answers.py

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from modbusd.answers import Answers
from modbusd.batch import batch_for
from modbusd.bus import Bus, LineErrors
from modbusd.durable import Durable
from modbusd.faults import Faults
from modbusd.protocol.adu import Adu
from modbusd.protocol.ascii import AsciiFramer
from modbusd.protocol.mbap import DatagramFramer
from modbusd.protocol.rtu import RtuFramer
from modbusd.protocol.serial_line import Framing, SerialLine
from modbusd.ratelimit import RateLimitedLog, host_of
from modbusd.session import AddressedAnswer, Answer, Batch, Session
from modbusd.stats import Stats

if TYPE_CHECKING:
    from modbusd.security import Security

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own


class UdpDrops:
    """What UDP datagrams held after their first request: dropped (`DatagramFramer`), counted, logged."""

    def __init__(self) -> None:
        self.datagrams = 0  # datagrams that held more than one request's bytes
        self.requests = 0  # whole requests after the first, never answered
        self.bytes = 0  # every byte after the first request

    def counters(self) -> dict[str, int]:
        return {"datagrams_trimmed": self.datagrams, "requests_dropped": self.requests, "bytes_dropped": self.bytes}


class Sessions:
    """Every transport's sessions over one server's (or endpoint's) `Answers`."""

    def __init__(
        self,
        answers: Answers,
        *,
        bus: Bus | None,
        quit_word: bytes | None,
        on_quit: Callable[[], None],
        warnings: RateLimitedLog,
        security: Security | None = None,
        durable: Durable | None = None,
        endpoint: str | None = None,
        faults: Faults | None = None,
        stats: Stats | None = None,
    ) -> None:
        """`bus`: the serial lines' and RTU over TCP's unit ids (the one `answers` was made with). `security`:
        allow-lists per unit id and TLS roles in front of the Modbus/TCP, TLS and UDP sessions. `durable`: the state
        file (--state), which holds the responses to writes until they are stored. `endpoint`: the name of the
        endpoint these sessions serve (`endpoints.py`), for the fault rules; None for the server's default one.
        `faults`: the server's fault rules, which every session asks while there are any (`modbusd.faults`).
        `stats`: where every session counts its requests (per transport), and the connections and discarded
        frames are counted; a Stats of its own when not given."""
        self.answers = answers
        self._endpoint = endpoint
        self._faults = Faults() if faults is None else faults
        self._bus = bus
        self._quit_word = quit_word
        self._on_quit = on_quit
        self._warnings = warnings  # the server's: one line per kind and client a minute
        self._security = security
        self._durable = durable
        self.stats = Stats() if stats is None else stats
        self._batches: dict[str, Batch | None] = {}  # by transport: see `_batch`
        # Bound once: a method bound per connection costs each of thousands of idle connections 64 bytes.
        self._discard_unit = answers.discarded
        self.udp_drops = UdpDrops()

    def tcp_session(self, peer: str, *, tls: bool = False, role: str | None = None) -> Session:
        """A Modbus/TCP connection's session (one per connection accepted, so counted as one here); `tls`: Modbus/TCP
        Security's, whose client has `role`."""
        transport = "tls" if tls else "tcp"
        self.stats.accept(transport)
        answer = self._held(self._guarded(peer, transport, role), peer, transport, role)
        counts = self.stats.counts(transport)
        return Session(answer, peer=peer, discard=self._discard_unit, quit_word=self._quit_word,
                       on_quit=self._on_quit, faults=self._faults.point("tcp", endpoint=self._endpoint), counts=counts,
                       batch=self._batch(transport))  # fmt: skip

    def _batch(self, transport: str) -> Batch | None:
        """Pipelined requests answered at once (`batch.batch_for`) where the answer function is the direct
        device's tables alone: no hook, no gateway, no access rules, no state file, one device. The function codes
        the hub observes (a subscribed write, the followed request log) still take the reference path. One function
        per transport, shared by its connections (memory per connection)."""
        if transport in self._batches:
            return self._batches[transport]
        single, batch = self.answers.tables_alone(), None
        if single is not None and self._security is None and self._durable is None:
            batch = self._batches[transport] = batch_for(single, self.stats.counts(transport).ok,
                                                         self.answers.observed)  # fmt: skip
        return batch

    def udp_session(self, peer: str) -> Session:
        """One datagram's session: its first request answered, the rest dropped (`DatagramFramer`)."""
        framer = DatagramFramer(lambda requests, extra: self._udp_dropped(peer, requests, extra))
        answer = self._held(self._guarded(peer, "udp", None), peer, "udp")
        return Session(answer, framer=framer, peer=peer, discard=self.answers.discarded,
                       faults=self._faults.point("udp", endpoint=self._endpoint),
                       counts=self.stats.counts("udp"))  # fmt: skip

    def _guarded(self, peer: str, transport: str, role: str | None) -> Answer:
        """The session's answer behind the access rules (`security.py`), when there are any."""
        answer = self.answers.session_answer(peer, transport, role)
        if self._security is None:
            return answer
        return self._security.guard(answer, peer, role=role, tls=transport == "tls", absent=self.answers.absent)

    def _udp_dropped(self, peer: str, requests: list[Adu], extra: int) -> None:
        """Counted in `counters()["udp"]`, and each whole request on its device as a frame that reached it and was
        not acted on (FC08 bus message and bus communication error), as a protocol id other than 0 is."""
        drops = self.udp_drops
        drops.datagrams += 1
        drops.requests += len(requests)
        drops.bytes += extra
        for request in requests:
            self.answers.discarded(request.unit_id)
        self._warnings.log(log, logging.WARNING, "UDP extra requests", host_of(peer), "%s: UDP datagram held %d more "
                           "requests (%d bytes) after its first; only the first is answered", peer, len(requests),
                           extra)  # fmt: skip

    def rtu_session(self, peer: str) -> Session:
        """RTU over TCP: a serial line's frames and unit-id rules, without its silences (so: resync)."""
        assert self._bus is not None
        bus = self._bus
        self.stats.accept("rtu-over-tcp")
        # Discards counted under one name for every client: a label per client address would grow without bound.
        errors = LineErrors(f"RTU over TCP from {peer}", bus, self._warnings, self.stats, "rtu-over-tcp")
        answer = self._held_addressed(
            self.answers.hook_addressed(peer, lambda unit_id, pdu: bus.answer(unit_id, pdu, peer), "rtu-over-tcp"),
            peer,
            "rtu-over-tcp",
        )
        return Session(answer, framer=RtuFramer(resync=True, on_discard=errors), addressed=True,
                       peer=peer, quit_word=self._quit_word, on_quit=self._on_quit,
                       faults=self._faults.point("rtu-over-tcp", bus.units, self._endpoint),
                       counts=self.stats.counts("rtu-over-tcp"))  # fmt: skip

    def serial_session(self, line: SerialLine) -> Session:
        assert self._bus is not None
        bus, peer = self._bus, line.device
        errors = LineErrors(line.device, bus, self._warnings, self.stats, line.device)
        counts = self.stats.counts(line.framing.value)
        if line.framing is Framing.RTU:
            answer = self._held_addressed(
                self.answers.hook_addressed(peer, lambda unit_id, pdu: bus.answer(unit_id, pdu, peer), "rtu"),
                peer,
                "rtu",
            )
            return Session(answer, framer=RtuFramer(on_discard=errors), addressed=True, peer=peer,
                           faults=self._faults.point("rtu", bus.units), counts=counts,
                           time_every_read=True)  # fmt: skip
        framer = AsciiFramer(on_discard=errors)

        def ascii_answer(unit_id: int, pdu: bytes) -> tuple[int, bytes] | None:
            found = bus.answer_from(unit_id, pdu, peer)
            if found is None:
                return None
            device, from_unit, reply = found
            framer.change_delimiter(device.diagnostics.ascii_delimiter)  # FC08/03, from the next frame on
            return from_unit, reply

        return Session(self._held_addressed(self.answers.hook_addressed(peer, ascii_answer, "ascii"), peer, "ascii"),
                       framer=framer,
                       addressed=True, peer=peer, faults=self._faults.point("ascii", bus.units), counts=counts,
                       time_every_read=True)  # fmt: skip

    def _held(self, answer: Answer, peer: str, transport: str, role: str | None = None) -> Answer:
        """With a state file, responses to writes wait until the writes are stored; without, `answer` itself."""
        if self._durable is None:
            return answer
        return self._durable.wrap(answer, functools.partial(self.answers.undone, peer, transport, role))

    def _held_addressed(self, answer: AddressedAnswer, peer: str, transport: str) -> AddressedAnswer:
        if self._durable is None:
            return answer
        return self._durable.wrap_addressed(answer, functools.partial(self.answers.undone, peer, transport, None))
