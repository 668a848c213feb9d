"""A server's fault rules: added, removed, enabled and disabled at run time, counted, and asked by every session.

Sessions hold a `FaultPoint`, one per transport, and its `rules`: the list of enabled rules, shared by every session
and changed in place. While it is empty a session pays one truthiness check per request and nothing more (the
project's speed is not given up for a feature that is off), and a rule added over the control API reaches every open
connection at its next request.
"""

import time
from collections.abc import Collection, Mapping
from typing import Final, Protocol

from modbusd.faults.actions import Plan, plan, replacement
from modbusd.faults.rules import FaultRule, FaultSpec, parse_rule
from modbusd.protocol.adu import Adu, Framer

FRAMINGS: Final = {"tcp": "mbap", "udp": "mbap", "rtu-over-tcp": "rtu", "rtu": "rtu", "ascii": "ascii"}


class Records(Protocol):
    """Where applied faults are written: the events log (`modbusd.events_log.EventsLog.put`)."""

    def put(self, record: dict[str, object]) -> None: ...


class Fault:
    """One rule's fault, picked for one request: the session hands it the response (None for a replacing action,
    decided before the request is carried out) and sends what it says."""

    __slots__ = ("_point", "peer", "replaces", "rule")

    def __init__(self, rule: FaultRule, point: "FaultPoint", peer: str) -> None:
        self.rule = rule
        self._point = point
        self.peer = peer
        self.replaces = rule.action.replaces

    def replacement(self, pdu: bytes) -> bytes | None:
        """The response PDU a replacing action gives the request `pdu`: its exception, or None (no response)."""
        return replacement(self.rule.action, pdu)

    def apply(self, out: bytes | None, adu: Adu, framer: Framer) -> Plan:
        """What to send instead of `out`, the framed response to `adu` (None: replaced, so never made)."""
        rule, point = self.rule, self._point
        action = rule.action
        if out is None:
            reply = self.replacement(adu.pdu)
            result: Plan = (b"" if reply is None else framer.frame(adu, reply), [], action.kind
                            if action.kind in ("close", "reset") else None)  # fmt: skip
        else:
            result = plan(action, rule.rng, out, adu, framer=framer, framing=point.framing)
        rule.applied += 1
        point.faults.record(rule, point.transport, self.peer, adu, result, endpoint=point.endpoint)
        return result

    def __str__(self) -> str:
        return f"fault {self.rule.name}: {self.rule.action}"


class FaultPoint:
    """The rules as one transport's sessions see them. `units`: on a serial bus (and RTU over TCP), the unit ids it
    serves (live: the address change moves them); a request for another slave, or a broadcast, gets no fault, since
    it gets no response from this device either. `endpoint`: the endpoint these sessions serve (None: the default one),
    which rules with ``endpoint=`` match."""

    __slots__ = ("endpoint", "faults", "framing", "rules", "transport", "units")

    def __init__(self, faults: "Faults", transport: str, units: Collection[int] | None,
                 endpoint: str | None = None) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.faults = faults
        self.rules = faults.active  # the same list object: changed in place
        self.transport = transport
        self.framing = FRAMINGS[transport]
        self.units = units

    def decide(self, peer: str, adu: Adu) -> Fault | None:
        """The fault for this request: the first enabled rule that matches it and fires, in the order added."""
        _, protocol_id, unit_id, pdu = adu
        if protocol_id or (self.units is not None and unit_id not in self.units):
            return None
        transport, endpoint = self.transport, self.endpoint
        for rule in self.rules:
            if rule.matches(transport, peer, unit_id, pdu, endpoint) and rule.fires():
                return Fault(rule, self, peer)
        return None


class Faults:
    """The fault rules of one server (`Server.faults`). Rules are tried in the order they were added; each request
    gets at most one fault.

    ``server.faults.add("unit=3 fc=3 every=5 action=exception:06")``, or the same as keywords:
    ``server.faults.add(unit=3, fc=3, every=5, action="exception:06")``. Safe to call from another thread than the
    server's (`start_thread`): the list sessions read is replaced whole, in one step.
    """

    def __init__(self, events_log: Records | None = None) -> None:
        self.events_log = events_log
        self.active: list[FaultRule] = []  # the enabled rules, in order: what sessions read
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._points: dict[tuple[str, str | None], FaultPoint] = {}

    def add(self, rule: str | Mapping[str, object] | FaultSpec | None = None, /, **items: object) -> FaultRule:
        """Add a rule (its text, its items, a parsed `FaultSpec`, or keyword arguments); FaultError (a ValueError)
        naming what is wrong."""
        spec = rule if isinstance(rule, FaultSpec) else parse_rule(items if rule is None else rule)
        added = FaultRule(spec, self._next_id)
        self._next_id += 1
        self._rules.append(added)
        self._update()
        return added

    def get(self, rule: int | str | FaultRule) -> FaultRule:
        """A rule by its id (or its id's text, or its name); LookupError if there is none."""
        if isinstance(rule, FaultRule):
            if rule in self._rules:
                return rule
        else:
            for found in self._rules:
                if str(found.id) == str(rule) or (found.spec.name is not None and found.spec.name == rule):
                    return found
        raise LookupError(f"no fault rule {rule if not isinstance(rule, FaultRule) else rule.id}")

    def remove(self, rule: int | str | FaultRule) -> FaultRule:
        found = self.get(rule)
        self._rules = [r for r in self._rules if r is not found]
        self._update()
        return found

    def enable(self, rule: int | str | FaultRule, enabled: bool = True) -> FaultRule:
        found = self.get(rule)
        found.enabled = enabled
        self._update()
        return found

    def disable(self, rule: int | str | FaultRule) -> FaultRule:
        return self.enable(rule, False)

    def reset(self, rule: int | str | FaultRule | None = None) -> None:
        """Counts to 0 and random numbers from the seed again, for one rule or all: a run can be repeated."""
        for found in self._rules if rule is None else [self.get(rule)]:
            found.reset()

    def clear(self) -> None:
        self._rules = []
        self._update()

    @property
    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def counters(self) -> list[dict[str, object]]:
        return [rule.describe() for rule in self._rules]

    def point(self, transport: str, units: Collection[int] | None = None, endpoint: str | None = None) -> FaultPoint:
        """What a session of `transport` on `endpoint` (None: the default one) asks, shared by its sessions."""
        found = self._points.get((transport, endpoint))
        if found is None or found.units is not units:
            found = self._points[transport, endpoint] = FaultPoint(self, transport, units, endpoint)
        return found

    def record(self, rule: FaultRule, transport: str, peer: str, adu: Adu, result: Plan, *,
               endpoint: str | None = None) -> None:  # fmt: skip
        """An applied fault's line in the events log, when there is one (with the endpoint, as write records)."""
        events_log = self.events_log
        if events_log is None:
            return
        record: dict[str, object] = {
            "time": time.time(), "kind": "fault", "rule": rule.id, "name": rule.spec.name, "action": str(rule.action),
            "client": peer, "transport": transport, "unit": adu.unit_id, "function": adu.pdu[0],
        }  # fmt: skip
        if endpoint is not None:
            record["endpoint"] = endpoint
        if rule.action.kind == "delay":
            record["delay"] = round(result[1][0][0], 6)
        events_log.put(record)

    def _update(self) -> None:
        self.active[:] = [rule for rule in self._rules if rule.enabled]  # in place: sessions hold this list
