"""Request → answer: the answer functions behind every transport's sessions, from the tables, the request hook or the
gateway.

Two unit-id semantics meet here. Modbus/TCP and UDP: one device answers every unit id (the TCP guide's direct
device), or one device per unit id with a policy for the others (`UnknownUnit`), and forwarded unit ids go to the
gateway (`routing.py`) before any local device is looked up. Serial lines (RTU, ASCII, and RTU over TCP): the
`Bus` answers by slave id. The request hook (HSYCO's Modbus server's ``ModbusEvent``) goes in front of both. The
sessions that carry these answers, per transport, are `sessions.py`'s.

Answer functions are on the hot path: they are made once per connection, with what they need in default
arguments, and cost one set lookup more than the tables' own answer while no write is observed.
"""

from __future__ import annotations  # annotations as strings: nested answer functions are made per connection

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Final

from modbusd import handler
from modbusd.bus import Bus
from modbusd.forward import Downstream
from modbusd.hooks import HookFailure, RequestHook, check_response
from modbusd.hub import EventsHub
from modbusd.model.device import Device
from modbusd.protocol.codes import BROADCAST_UNIT_ID, ExceptionCode
from modbusd.protocol.errors import ModbusError
from modbusd.protocol.pdu import exception_pdu
from modbusd.session import AddressedAnswer, Answer

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


class Answers:
    """The answer functions over one server's (or endpoint's) devices, hub, request hook and routes: the base one
    (`answer`), and one per connection (`session_answer`, `hook_addressed`) that `sessions.py` wraps in a session."""

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
        endpoint: str | None = None,
    ) -> None:
        """`bus`: the serial lines' and RTU over TCP's, whose own unit ids the request hook sees. `endpoint`: the name
        of the endpoint these devices are served by (`endpoints.py`), for the events log; None for the server's
        default one."""
        self._endpoint = endpoint
        self._single = single
        self._devices = devices  # the server's own dict: an address change on a serial line is seen here too
        self._unknown_unit = unknown_unit
        self._routes = routes
        self._hub = hub
        self.observed = hub.observed  # the function codes the hub observes: one set, updated in place
        self._hook = hook
        self._bus = bus
        self.answer = self._make_answer()
        # Bound once: a method bound per connection costs each of thousands of idle connections 64 bytes.
        self._observe = self._observed

    def device_for(self, unit_id: int) -> Device | None:
        return self._single if self._single is not None else self._devices.get(unit_id)

    def tables_alone(self) -> Device | None:
        """The direct device, when its tables alone answer (no request hook, no gateway); None otherwise."""
        return self._single if self._hook is None and not self._routes else None

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

    def discarded(self, unit_id: int) -> None:
        """A frame for `unit_id` that reached its device and was not acted on: counted there (FC08)."""
        device = self.device_for(unit_id)
        if device is not None:
            handler.discarded(device)

    def absent(self, unit_id: int, pdu: bytes) -> bytes | None:
        """What a unit id without a device gets: exception 0x0B, or silence (`UnknownUnit.IGNORE`)."""
        if self._unknown_unit is UnknownUnit.IGNORE:
            return None
        return exception_pdu(pdu[0], ExceptionCode.GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND)

    def undone(  # noqa: PLR0917  (the session's parts bound first, then what `Durable` tells)
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

    # ------------------------------------------------------------------------------ one connection's answer

    def session_answer(self, peer: str, transport: str, role: str | None = None) -> Answer:
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

    def hook_addressed(self, peer: str, tables: AddressedAnswer, transport: str) -> AddressedAnswer:
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
