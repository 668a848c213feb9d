"""Request → answer: the answer function of each transport's sessions, from the tables, the request hook or the gateway.

Two unit-id semantics meet here. Modbus/TCP and UDP: one device answers every unit id (the TCP guide's direct
device), or one device per unit id with a policy for the others (`UnknownUnit`), and forwarded unit ids go to the
gateway (`routing.py`) before any local device is looked up. Serial lines (RTU, ASCII, and RTU over TCP): the
`Bus` answers by slave id. The request hook (HSYCO's Modbus server's ``ModbusEvent``) goes in front of both.

Answer functions are on the hot path: they are made once per connection, with what they need in default
arguments, and cost one set lookup more than the tables' own answer while no write is observed.
"""

from __future__ import annotations  # annotations as strings: nested answer functions are made per connection

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from modbusd import handler
from modbusd.batch import batch_for
from modbusd.bus import Bus, LineErrors
from modbusd.durable import Durable
from modbusd.faults import Faults
from modbusd.forward import Downstream
from modbusd.hooks import HookFailure, RequestHook, check_response
from modbusd.hub import EventsHub
from modbusd.model.device import Device
from modbusd.protocol.adu import Adu
from modbusd.protocol.ascii import AsciiFramer
from modbusd.protocol.codes import BROADCAST_UNIT_ID, ExceptionCode
from modbusd.protocol.errors import ModbusError
from modbusd.protocol.mbap import DatagramFramer
from modbusd.protocol.pdu import exception_pdu
from modbusd.protocol.rtu import RtuFramer
from modbusd.protocol.serial_line import Framing, SerialLine
from modbusd.ratelimit import RateLimitedLog, host_of
from modbusd.session import AddressedAnswer, Answer, Batch, Session
from modbusd.stats import Stats

if TYPE_CHECKING:
    from modbusd.security import Security

log = logging.getLogger("modbusd.server")  # the name it logged under before it had a module of its own


class UnknownUnit(StrEnum):
    """What a request for a unit id without a device gets, in multi-device mode."""

    EXCEPTION = "exception"  # exception 0x0B, Gateway Target Device Failed to Respond: the client learns at once
    IGNORE = "ignore"  # no response, as a serial device that is not there; the client times out


_PASS: Final = object()  # the request hook returned None: the tables answer


async def _quiet(awaitable: Awaitable[object]) -> None:
    """A broadcast's hook answer: awaited, never sent."""
    await awaitable


class Hook:
    """The request hook in front of the tables: its response checked, its failures answered with exception 04.

    `forwarded`: the hook is also called for the unit ids the gateway forwards (a gateway that filters or inspects
    what passes through); otherwise it sees only the requests the server answers itself.
    """

    def __init__(self, hook: RequestHook, timeout: float, name: str, hub: EventsHub, *,
                 forwarded: bool = False, endpoint: str | None = None) -> None:  # fmt: skip
        self.endpoint = endpoint  # the endpoint whose requests it sees (None: the default one), for the events log
        self.hook = hook
        self.timeout = timeout
        self.name = name  # the server's, passed to the hook
        self.hub = hub
        self.forwarded = forwarded
        self.takes_role = _takes_role(hook)

    def __call__(
        self, peer: str, unit_id: int, pdu: bytes, tables: Callable[[int, bytes], object], transport: str, *,
        role: str | None = None,
    ) -> bytes | Awaitable[bytes | None] | object:  # fmt: skip
        """The hook's answer: a checked response, an awaitable of one, or _PASS when the tables answer.

        `transport`: for the request log's record of what the hook answered. `role`: the TLS client's, passed as
        ``role=`` to a hook whose signature takes it (the four-argument hooks written before roles still work)."""
        try:
            if self.takes_role:
                result = self.hook(self.name, peer, unit_id, pdu, role=role)  # type: ignore[call-arg]  # checked
            else:
                result = self.hook(self.name, peer, unit_id, pdu)
        except ModbusError as exc:  # a deliberate exception response
            reply = exception_pdu(pdu[0], exc.code)
        except Exception as exc:
            reply = self._failed(peer, pdu, f"raised {type(exc).__name__}: {exc}")
        else:
            if result is None:
                return _PASS
            if result.__class__ is not bytes and inspect.isawaitable(result):
                return self._await(result, peer, unit_id, pdu, tables, transport, role)
            reply = self._checked(peer, pdu, result)
        self.hub.log_write(pdu, reply, peer, unit_id, by="hook", transport=transport, role=role,
                           endpoint=self.endpoint)  # tables untouched: logged  # fmt: skip
        return reply

    async def _await(  # noqa: PLR0917  (the request's parts, as __call__ got them)
        self, awaitable: Awaitable[object], peer: str, unit_id: int, pdu: bytes, tables: Callable[[int, bytes], object],
        transport: str, role: str | None,
    ) -> bytes | None:  # fmt: skip
        try:
            result = await asyncio.wait_for(awaitable, self.timeout)
        except ModbusError as exc:
            reply = exception_pdu(pdu[0], exc.code)
        except TimeoutError:
            reply = self._failed(peer, pdu, f"took longer than {self.timeout:g} s")
        except Exception as exc:
            reply = self._failed(peer, pdu, f"raised {type(exc).__name__}: {exc}")
        else:
            if result is None:  # the tables answer, now: in this connection's order, after the hook
                answered = tables(unit_id, pdu)
                if inspect.isawaitable(answered):  # the gateway
                    answered = await answered
                return answered  # type: ignore[return-value]  # a response PDU or None
            reply = self._checked(peer, pdu, result)
        self.hub.log_write(pdu, reply, peer, unit_id, by="hook", transport=transport, role=role, endpoint=self.endpoint)
        return reply

    def _checked(self, peer: str, pdu: bytes, result: object) -> bytes:
        """The hook's own response, if it is a sane one for `pdu`; exception 04 otherwise."""
        try:
            return check_response(pdu, result)
        except HookFailure as exc:
            return self._failed(peer, pdu, str(exc))

    @staticmethod
    def _failed(peer: str, pdu: bytes, reason: str) -> bytes:
        log.error("request hook %s on %s from %s; answered with exception 04", reason, pdu.hex(" "), peer)
        return exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)


def _takes_role(hook: RequestHook) -> bool:
    """Whether `hook` accepts a ``role`` keyword (a parameter of that name, or ``**kwargs``)."""
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):  # a builtin or a callable without a signature: the four arguments only
        return False
    return any(p.name == "role" or p.kind is p.VAR_KEYWORD for p in parameters)


class UdpDrops:
    """What UDP datagrams held after their first request: dropped (`DatagramFramer`), counted, logged."""

    def __init__(self) -> None:
        self.datagrams = 0  # datagrams that held more than one request's bytes
        self.requests = 0  # whole requests after the first, never answered
        self.bytes = 0  # every byte after the first request

    def counters(self) -> dict[str, int]:
        return {"datagrams_trimmed": self.datagrams, "requests_dropped": self.requests, "bytes_dropped": self.bytes}


class Answers:
    """Every transport's sessions with their answer functions, over one server's devices, hub, bus and routes."""

    def __init__(
        self,
        single: Device | None,
        devices: dict[int, Device],
        *,
        unknown_unit: UnknownUnit,
        routes: dict[int, Downstream],
        hub: EventsHub,
        hook: Hook | None,
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
        """`security`: allow-lists per unit id and TLS roles in front of the Modbus/TCP, TLS and UDP sessions.
        `durable`: the state file (--state), which holds the responses to writes until they are stored.
        `endpoint`: the name of the endpoint these devices are served by (`endpoints.py`), for the events
        log; None for the server's default one. `faults`: the server's fault rules, which every session asks
        while there are any (`modbusd.faults`). `stats`: where every session counts its requests (per
        transport), and the connections and discarded frames are counted; a Stats of its own when not given."""
        self._endpoint = endpoint
        self._single = single
        self._faults = Faults() if faults is None else faults
        self._devices = devices  # the server's own dict: an address change on a serial line is seen here too
        self._unknown_unit = unknown_unit
        self._routes = routes
        self._hub = hub
        self._hook = hook
        self._bus = bus
        self._quit_word = quit_word
        self._on_quit = on_quit
        self._warnings = warnings  # the server's: one line per kind and client a minute
        self._security = security
        self._durable = durable
        self.stats = Stats() if stats is None else stats
        self.answer = self._make_answer()
        self._batches: dict[str, Batch | None] = {}  # by transport: see `_batch`
        # Bound once: a method bound per connection costs each of thousands of idle connections 64 bytes.
        self._discard_unit, self._observe = self._discarded, self._observed
        self.udp_drops = UdpDrops()

    def device_for(self, unit_id: int) -> Device | None:
        return self._single if self._single is not None else self._devices.get(unit_id)

    def _make_answer(self) -> Answer:
        local = self._make_local_answer()
        routes = self._routes
        if not routes:
            return local

        def gateway(unit_id: int, pdu: bytes) -> bytes | Awaitable[bytes | None] | None:
            downstream = routes.get(unit_id)
            if downstream is None:
                return local(unit_id, pdu)
            return downstream.forward(unit_id, pdu)  # a future: the session holds its place in line

        return gateway

    def _make_local_answer(self) -> Answer:
        single = self._single
        respond = handler.respond
        if single is not None:
            return lambda _unit_id, pdu: respond(single, pdu)  # TCP guide: a direct device ignores the unit id
        devices = self._devices
        silent = self._unknown_unit is UnknownUnit.IGNORE
        gateway_failure = ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND

        def answer(unit_id: int, pdu: bytes) -> bytes | None:
            device = devices.get(unit_id)
            if device is not None:
                return respond(device, pdu)
            log.debug("no device for unit id %d", unit_id)
            return None if silent else exception_pdu(pdu[0], gateway_failure)

        return answer

    def _discarded(self, unit_id: int) -> None:
        device = self.device_for(unit_id)
        if device is not None:
            handler.discarded(device)

    # ------------------------------------------------------------------------------ sessions, per transport

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
        single, batch = self._single, None
        plain = self._hook is None and self._security is None and self._durable is None and not self._routes
        if single is not None and plain:
            batch = self._batches[transport] = batch_for(single, self.stats.counts(transport).ok, self._hub.observed)
        return batch

    def udp_session(self, peer: str) -> Session:
        """One datagram's session: its first request answered, the rest dropped (`DatagramFramer`)."""
        framer = DatagramFramer(lambda requests, extra: self._udp_dropped(peer, requests, extra))
        answer = self._held(self._guarded(peer, "udp", None), peer, "udp")
        return Session(answer, framer=framer, peer=peer, discard=self._discarded,
                       faults=self._faults.point("udp", endpoint=self._endpoint),
                       counts=self.stats.counts("udp"))  # fmt: skip

    def _guarded(self, peer: str, transport: str, role: str | None) -> Answer:
        """The session's answer behind the access rules (`security.py`), when there are any."""
        answer = self._session_answer(peer, transport, role)
        if self._security is None:
            return answer
        return self._security.guard(answer, peer, role=role, tls=transport == "tls", absent=self._absent)

    def _absent(self, unit_id: int, pdu: bytes) -> bytes | None:
        """What a unit id without a device gets: exception 0x0B, or silence (`UnknownUnit.IGNORE`)."""
        if self._unknown_unit is UnknownUnit.IGNORE:
            return None
        return exception_pdu(pdu[0], ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)

    def _udp_dropped(self, peer: str, requests: list[Adu], extra: int) -> None:
        """Counted in `counters()["udp"]`, and each whole request on its device as a frame that reached it and was
        not acted on (FC08 bus message and bus communication error), as a protocol id other than 0 is."""
        drops = self.udp_drops
        drops.datagrams += 1
        drops.requests += len(requests)
        drops.bytes += extra
        for request in requests:
            self._discarded(request.unit_id)
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
            self._hook_addressed(peer, lambda unit_id, pdu: bus.answer(unit_id, pdu, peer), "rtu-over-tcp"),
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
                self._hook_addressed(peer, lambda unit_id, pdu: bus.answer(unit_id, pdu, peer), "rtu"), peer, "rtu"
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

        return Session(self._held_addressed(self._hook_addressed(peer, ascii_answer, "ascii"), peer, "ascii"),
                       framer=framer,
                       addressed=True, peer=peer, faults=self._faults.point("ascii", bus.units), counts=counts,
                       time_every_read=True)  # fmt: skip

    def _held(self, answer: Answer, peer: str, transport: str, role: str | None = None) -> Answer:
        """With a state file, responses to writes wait until the writes are stored; without, `answer` itself."""
        if self._durable is None:
            return answer
        return self._durable.wrap(answer, functools.partial(self._undone, peer, transport, role))

    def _held_addressed(self, answer: AddressedAnswer, peer: str, transport: str) -> AddressedAnswer:
        if self._durable is None:
            return answer
        return self._durable.wrap_addressed(answer, functools.partial(self._undone, peer, transport, None))

    def _undone(  # noqa: PLR0917  (the session's parts bound first, then what `Durable` tells)
        self, peer: str, transport: str, role: str | None, unit_id: int, pdu: bytes, refusal: bytes
    ) -> None:
        """A write the tables carried out and the state file could not store: undone, and answered with exception
        04 instead. The device's FC08 counters and FC12 log take the success back and count the exception
        (MODBUS Application Protocol §6.8, §6.9); the events log gets a second write record, "by": "state",
        and the request log (while followed) a second record, with the exception the client received."""
        device = self.device_for(unit_id)
        if device is not None:
            handler.refused_after_all(device, ExceptionCode.SERVER_DEVICE_FAILURE)
        self._hub.log_write(pdu, refusal, peer, unit_id, by="state", transport=transport, role=role,
                            endpoint=self._endpoint)  # fmt: skip

    # ------------------------------------------------------------------------------------- answer functions

    def _session_answer(self, peer: str, transport: str, role: str | None = None) -> Answer:
        """The answer function of one Modbus/TCP connection or UDP datagram (`transport`) from `peer`; `role`: a
        TLS client's, for the hook, the events log and the events.

        Without a hook it costs one set lookup more than the tables' own answer: a request is observed (a
        write's events and events log line; any request's record while the request log is followed) only while
        the hub's `observed` holds its function code.
        """
        # One function per connection: its context travels in default arguments, one tuple, rather than in
        # a closure's cells, one object each (memory per idle connection).
        single = self._single
        observed_write = self._observe
        if role is not None:

            def observed_write(
                unit_id: int, pdu: bytes, peer: str, transport: str
            ) -> bytes | Awaitable[bytes | None] | None:
                return self._observed(unit_id, pdu, peer, transport, role)

        if single is not None and not self._routes:

            def tables(  # noqa: PLR0917  (defaults, not a calling convention: callers pass two)
                unit_id: int, pdu: bytes, observed: set[int] = self._hub.observed,
                write: Callable[[int, bytes, str, str], object] = observed_write,
                respond: Callable[[Device, bytes], bytes | None] = handler.respond,
                device: Device = single, peer: str = peer, transport: str = transport,
            ) -> bytes | Awaitable[bytes | None] | None:  # fmt: skip
                if pdu[0] in observed:
                    return write(unit_id, pdu, peer, transport)
                return respond(device, pdu)  # TCP guide: a direct device ignores the unit id
        else:

            def tables(  # noqa: PLR0917  (as above)
                unit_id: int, pdu: bytes, observed: set[int] = self._hub.observed,
                write: Callable[[int, bytes, str, str], object] = observed_write,
                base: Answer = self.answer, peer: str = peer, transport: str = transport,
            ) -> bytes | Awaitable[bytes | None] | None:  # fmt: skip
                if pdu[0] in observed:
                    return write(unit_id, pdu, peer, transport)
                return base(unit_id, pdu)

        if self._hook is None:
            return tables
        hooked = self._hook
        routes = {} if hooked.forwarded else self._routes

        def answer(unit_id: int, pdu: bytes) -> bytes | Awaitable[bytes | None] | None:
            result = hooked(peer, unit_id, pdu, tables, transport, role=role)
            return tables(unit_id, pdu) if result is _PASS else result  # type: ignore[return-value]  # not _PASS

        if not routes:
            return answer

        def local_only(unit_id: int, pdu: bytes) -> bytes | Awaitable[bytes | None] | None:
            """Forwarded unit ids go past the hook: the downstream device answers them."""
            return tables(unit_id, pdu) if unit_id in routes else answer(unit_id, pdu)

        return local_only

    def _hook_addressed(self, peer: str, tables: AddressedAnswer, transport: str) -> AddressedAnswer:
        """A serial line's (or RTU over TCP's) answer with the request hook in front, for the bus's own unit ids
        and broadcasts (a request for another slave id is the other device's to answer, not the hook's)."""
        if self._hook is None:
            return tables
        assert self._bus is not None
        units = self._bus.units
        hooked = self._hook

        def pdu_only(unit_id: int, pdu: bytes) -> bytes | None:
            found = tables(unit_id, pdu)
            return None if found is None else found[1]  # type: ignore[index]  # the bus answers at once

        def answer(unit_id: int, pdu: bytes) -> tuple[int, bytes] | Awaitable[bytes | None] | None:
            if unit_id != BROADCAST_UNIT_ID and unit_id not in units:
                return tables(unit_id, pdu)
            result = hooked(peer, unit_id, pdu, pdu_only, transport)
            if result is _PASS:
                return tables(unit_id, pdu)
            if result is None:
                return None
            if result.__class__ is bytes:
                return None if unit_id == BROADCAST_UNIT_ID else (unit_id, result)  # type: ignore[return-value]
            return _quiet(result) if unit_id == BROADCAST_UNIT_ID else result  # type: ignore[arg-type,return-value]

        return answer

    def _observed(
        self, unit_id: int, pdu: bytes, peer: str, transport: str, role: str | None = None
    ) -> bytes | Awaitable[bytes | None] | None:  # fmt: skip
        """A request over Modbus/TCP or UDP whose function code is observed (`EventsHub.observed`)."""
        if unit_id in self._routes:  # forwarded: the downstream device's write, and its business
            forwarded = self.answer(unit_id, pdu)
            return self._hub.record_later(forwarded, peer, transport, unit_id, pdu, endpoint=self._endpoint)  # type: ignore[arg-type]  # a future
        device = self.device_for(unit_id)
        if device is None:  # no device has this unit id: exception 0x0B (logged) or silence, as ever
            reply = self.answer(unit_id, pdu)
            self._hub.log_write(pdu, reply, peer, unit_id, transport=transport,  # type: ignore[arg-type]  # at once
                                role=role, endpoint=self._endpoint)  # fmt: skip
            return reply
        return self._hub.observe(device, unit_id, pdu, peer, False, transport=transport, role=role,
                                 endpoint=self._endpoint)  # fmt: skip
