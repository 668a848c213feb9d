"""Fault rules: what requests a rule matches, when it fires, and the one syntax every source of rules shares.

A rule is a set of ``key=value`` items, from a device file's ``[[fault]]`` table, the command line's ``--fault``
text, the control API's JSON or Python keyword arguments: `parse_rule` reads them all, so that each key means the
same everywhere and is checked in one place. Sans-I/O: a rule's random numbers come from its own `random.Random`,
seeded, so that a run is reproduced by the same seed and the same requests (ModbusPal and pymodbus's simulator
offer random values, not reproducible ones; that is what a test of a client needs).
"""

import fnmatch
import ipaddress
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from modbusd.faults.actions import Action, FaultError, parse_action
from modbusd.hooks import written_range
from modbusd.model.names import InvalidName, Table, parse_address
from modbusd.protocol.codes import ADDRESS_SPACE
from modbusd.ratelimit import host_of

KEYS: Final = ("name", "unit", "fc", "address", "client", "transport", "endpoint", "prob", "every", "first", "after",
               "seed", "action", "enabled")  # fmt: skip
COUNTS: Final = ("every", "first", "after")
TRANSPORT_NAMES: Final = {"tcp": "tcp", "udp": "udp", "rtu_over_tcp": "rtu-over-tcp", "rtu-over-tcp": "rtu-over-tcp",
                          "rtu": "rtu", "ascii": "ascii"}  # fmt: skip
_READS: Final = {0x01: Table.COILS, 0x02: Table.DISCRETE_INPUTS, 0x03: Table.HOLDING_REGISTERS,
                 0x04: Table.INPUT_REGISTERS, 0x17: Table.HOLDING_REGISTERS}  # fmt: skip
_TOKEN = re.compile(r"\S+")
_ENDPOINT = re.compile(r"[A-Za-z_*][A-Za-z0-9_\-*]*")  # an endpoint's name (docs/endpoints.md), * for any characters

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A checked rule, before it is served: what it matches, when it fires and what it does (`parse_rule`)."""

    action: Action
    units: frozenset[int] | None = None
    functions: frozenset[int] | None = None
    table: Table | None = None
    start: int = 0  # with `table`: the protocol addresses start … end - 1
    end: int = 0
    clients: tuple[Network, ...] | None = None
    transports: frozenset[str] | None = None
    endpoints: tuple[str, ...] | None = (
        None  # names or patterns (meter*) of endpoints; None: every one, the default too
    )
    prob: float = 1.0
    count_kind: str | None = None  # every, first or after
    count: int = 0
    seed: int | None = None
    name: str | None = None
    enabled: bool = True
    texts: tuple[tuple[str, str], ...] = ()  # the match keys as given, cleaned, for `text`

    def text(self, seed: int | None = None) -> str:
        """The rule in ``--fault`` syntax; `seed`: the one a rule without its own drew."""
        items = [f"name={self.name}"] if self.name else []
        items += [f"{key}={value}" for key, value in self.texts]
        if self.count_kind:
            items.append(f"{self.count_kind}={self.count}")
        if self.prob != 1.0:
            items.append(f"prob={self.prob:g}")
        seed = self.seed if self.seed is not None else seed
        if seed is not None:
            items.append(f"seed={seed}")
        items.append(f"action={self.action}")
        return " ".join(items)


def split_text(text: str) -> dict[str, str]:
    """``unit=3 fc=3 every=5 action=exception:06`` → {"unit": "3", …}; FaultError for a token without ``=``."""
    items: dict[str, str] = {}
    for token in _TOKEN.findall(text):
        key, equals, value = token.partition("=")
        if not equals or not key:
            raise FaultError("", f"{token!r} is not KEY=VALUE (e.g. unit=3 fc=3 action=exception:06)")
        key = key.lower()
        if key in items:
            raise FaultError(key, "given twice")
        items[key] = value
    return items


def parse_rule(rule: str | Mapping[str, object]) -> FaultSpec:
    """A rule from its text or its items (a TOML table, a JSON object, keyword arguments); FaultError naming the key
    that is wrong."""
    items = split_text(rule) if isinstance(rule, str) else dict(rule)
    for key in items:
        if key not in KEYS:
            raise FaultError(key, f"unknown key; expected one of: {', '.join(KEYS)}")
    if "action" not in items:
        raise FaultError("action", "missing: every rule needs one, e.g. action=delay:200ms or action=exception:06")
    options: dict[str, object] = {"action": _action(items["action"])}
    texts: list[tuple[str, str]] = []
    if "unit" in items:
        options["units"] = _numbers(items["unit"], "unit", 0, 255)
        texts.append(("unit", _joined(options["units"])))  # type: ignore[arg-type]  # a frozenset of ints
    if "fc" in items:
        options["functions"] = _numbers(items["fc"], "fc", 1, 127)
        texts.append(("fc", _joined(options["functions"])))  # type: ignore[arg-type]  # as above
    if "address" in items:
        table, start, end, unit = _address(items["address"])
        if unit is not None:
            if "units" in options:
                raise FaultError("address", "names a unit id and so does unit: give it once")
            options["units"] = frozenset((unit,))
            texts.insert(0, ("unit", str(unit)))
        options.update(table=table, start=start, end=end)
        texts.append(("address", f"{start}.{table.suffix}" + (f":{end - start}" if end - start > 1 else "")))
    if "client" in items:
        options["clients"] = _clients(items["client"])
        texts.append(("client", ",".join(map(str, options["clients"]))))  # type: ignore[call-overload]  # networks
    if "transport" in items:
        options["transports"] = _transports(items["transport"], options["action"])  # type: ignore[arg-type]
        texts.append(("transport", ",".join(sorted(options["transports"]))))  # type: ignore[call-overload]
    if "endpoint" in items:
        options["endpoints"] = _endpoints(items["endpoint"])
        texts.append(("endpoint", ",".join(options["endpoints"])))  # type: ignore[arg-type]  # a tuple of texts
    counts = [key for key in COUNTS if key in items]
    if len(counts) > 1:
        raise FaultError(counts[1], f"give one of every, first and after, not {' and '.join(counts)}")
    if counts:
        options.update(count_kind=counts[0], count=_integer(items[counts[0]], counts[0], 1, 2**31))
    if "prob" in items:
        options["prob"] = _probability(items["prob"])
    if "seed" in items:
        options["seed"] = _integer(items["seed"], "seed", 0, 2**63)
    if "name" in items:
        name = items["name"]
        if not isinstance(name, str) or not re.fullmatch(r"[\w.\-]{1,64}", name):
            raise FaultError("name", f"{name!r}: expected a word of letters, digits, '.', '-' or '_'")
        options["name"] = name
    if "enabled" in items:
        options["enabled"] = _boolean(items["enabled"])
    return FaultSpec(texts=tuple(texts), **options)  # type: ignore[arg-type]  # each checked above


def _action(value: object) -> Action:
    if not isinstance(value, str):
        raise FaultError("action", f"expected a text such as delay:200ms, got {value!r}")
    return parse_action(value)


def _items(value: object, key: str) -> list[str]:
    """A list from a list, a number or a comma-separated text."""
    if isinstance(value, bool):
        raise FaultError(key, f"expected a number, a list or a text, got {value!r}")
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    if isinstance(value, int | str):
        return [part for part in str(value).split(",") if part.strip()]
    raise FaultError(key, f"expected a number, a list or a text, got {value!r}")


def _number(text: str, key: str) -> int:
    word = text.strip().lower()
    try:
        return int(word, 16) if word.startswith("0x") else int(word, 10)
    except ValueError:
        raise FaultError(key, f"{text!r} is not a number") from None


def _numbers(value: object, key: str, low: int, high: int) -> frozenset[int]:
    """``3``, ``1-5,7``, ``[1, 2]`` → the numbers, each within low..high."""
    found: set[int] = set()
    parts = _items(value, key)
    if not parts:
        raise FaultError(key, "empty: name at least one")
    for part in parts:
        first, dash, last = part.partition("-")
        a = _number(first, key)
        b = _number(last, key) if dash else a
        if not low <= a <= b <= high:
            raise FaultError(key, f"{part.strip()} is not within {low}..{high} (ranges go low-high)")
        found.update(range(a, b + 1))
    return frozenset(found)


def _joined(numbers: frozenset[int]) -> str:
    """{1, 2, 3, 7} → ``1-3,7``."""
    ordered, ranges = sorted(numbers), []
    start = previous = ordered[0]
    for number in [*ordered[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        ranges.append(f"{start}-{previous}" if previous > start else str(start))
        if number is not None:
            start = previous = number
    return ",".join(ranges)


def _address(value: object) -> tuple[Table, int, int, int | None]:
    """``40001``, ``100.hr:10``, ``1.30001:4`` (any notation of `modbusd.model.names`, and a count) → table,
    first address, end, unit id or None."""
    if not isinstance(value, str):
        raise FaultError("address", f"expected a text such as 40001:10 or 100.hr, got {value!r}")
    point, colon, count_text = value.strip().partition(":")
    try:
        location = parse_address(point)
    except InvalidName as exc:
        raise FaultError("address", str(exc)) from None
    if location.bit is not None:
        raise FaultError("address", f"{value!r}: a request reads or writes whole registers: name the register")
    count = _integer(count_text, "address", 1, ADDRESS_SPACE) if colon else 1
    if location.address + count > ADDRESS_SPACE:
        raise FaultError("address", f"{value!r} runs past the last address, {ADDRESS_SPACE - 1}")
    return location.table, location.address, location.address + count, location.unit_id


def _clients(value: object) -> tuple[Network, ...]:
    networks = []
    for part in _items(value, "client"):
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise FaultError("client", f"{part.strip()!r} is not an IP address or network such as 10.0.0.0/8"
                             ) from None  # fmt: skip
    if not networks:
        raise FaultError("client", "empty: name at least one address or network")
    return tuple(networks)


def _transports(value: object, action: Action) -> frozenset[str]:
    names = set()
    for part in _items(value, "transport"):
        name = TRANSPORT_NAMES.get(part.strip().lower())
        if name is None:
            raise FaultError("transport", f"{part.strip()!r} is not one of tcp, udp, rtu_over_tcp, rtu, ascii")
        names.add(name)
    useless = sorted(name for name in names if not action.applies_to(name))
    if useless:
        raise FaultError("transport", f"{action} means nothing on {', '.join(useless)} (docs/faults.md)")
    return frozenset(names)


def _endpoints(value: object) -> tuple[str, ...]:
    """``meter7``, ``meter1,meter2``, ``meter*``: the endpoints (`modbusd.endpoints`) whose requests a rule matches."""
    names = [part.strip() for part in _items(value, "endpoint")]
    if not names:
        raise FaultError("endpoint", "empty: name at least one endpoint, such as meter7 or meter*")
    for name in names:
        if not _ENDPOINT.fullmatch(name):
            raise FaultError("endpoint", f"{name!r} is not an endpoint's name (letters, digits, _ and -; * for any)")
    return tuple(names)


def _integer(value: object, key: str, low: int, high: int) -> int:
    number = _number(value, key) if isinstance(value, str) else value
    if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
        raise FaultError(key, f"expected a whole number {low}..{high}, got {value!r}")
    return number


def _probability(value: object) -> float:
    try:
        number = float(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not 0 < number <= 1:
        raise FaultError("prob", f"expected a probability greater than 0 and at most 1, such as 0.3, got {value!r}")
    return number


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise FaultError("enabled", f"expected true or false, got {value!r}")


# ------------------------------------------------------------------------------------------ matching


def request_spans(pdu: bytes) -> list[tuple[Table, int, int]]:
    """(table, address, quantity) of what a request reads and writes; none for a request without addresses."""
    spans = []
    table = _READS.get(pdu[0])
    if table is not None and len(pdu) >= 5:
        spans.append((table, int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")))
    written = written_range(pdu)
    if written is not None:
        spans.append(written)
    return spans


class FaultRule:
    """A rule being served: its spec, its counts and its own random numbers. `id` names it in the control API."""

    def __init__(self, spec: FaultSpec, rule_id: int) -> None:
        self.spec = spec
        self.id = rule_id
        self.enabled = spec.enabled
        self.seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**32)
        self.rng = random.Random(self.seed)
        # where it applies: the transports it names (all by default) on which its action means something
        self.transports = frozenset(name for name in set(TRANSPORT_NAMES.values()) if spec.action.applies_to(name) and (
            spec.transports is None or name in spec.transports))  # fmt: skip
        # the endpoints it applies to, as one compiled pattern (None: every one, the default endpoint too)
        self.endpoint = None if spec.endpoints is None else re.compile(
            "|".join(fnmatch.translate(name) for name in spec.endpoints)).fullmatch  # fmt: skip
        self.matched = 0  # requests that matched the rule's keys (and were not taken by an earlier rule)
        self.applied = 0  # faults applied

    def reset(self) -> None:
        """Counts to 0 and the random numbers from the seed again: the next requests get the same faults."""
        self.rng.seed(self.seed)
        self.matched = self.applied = 0

    @property
    def action(self) -> Action:
        return self.spec.action

    @property
    def name(self) -> str:
        return self.spec.name or str(self.id)

    def matches(self, transport: str, peer: str, unit_id: int, pdu: bytes, endpoint: str | None = None) -> bool:
        """`endpoint`: the name of the endpoint the request came to, None for the server's default one."""
        if transport not in self.transports:
            return False
        if self.endpoint is not None and (endpoint is None or self.endpoint(endpoint) is None):
            return False
        spec = self.spec
        if spec.units is not None and unit_id not in spec.units:
            return False
        if spec.functions is not None and pdu[0] not in spec.functions:
            return False
        if spec.table is not None and not any(
            table is spec.table and address < spec.end and address + quantity > spec.start
            for table, address, quantity in request_spans(pdu)
        ):
            return False
        return spec.clients is None or _client_in(peer, spec.clients)

    def fires(self) -> bool:
        """Counted as matched; whether the fault applies this time (its count, then its probability)."""
        self.matched += 1
        spec = self.spec
        kind = spec.count_kind
        if kind is not None:
            n = self.matched
            if (kind == "every" and n % spec.count) or (kind == "first" and n > spec.count) or (
                    kind == "after" and n <= spec.count):  # fmt: skip
                return False
        return spec.prob >= 1.0 or self.rng.random() < spec.prob

    def describe(self) -> dict[str, object]:
        """What the control API lists: the rule in --fault syntax (with the seed it uses), its state and counts."""
        return {"id": self.id, "name": self.spec.name, "rule": self.spec.text(self.seed),
                "action": str(self.action), "enabled": self.enabled, "seed": self.seed, "matched": self.matched,
                "applied": self.applied}  # fmt: skip

    def __repr__(self) -> str:
        return f"<FaultRule {self.id}: {self.spec.text(self.seed)}{'' if self.enabled else ' (disabled)'}>"


def _client_in(peer: str, networks: tuple[Network, ...]) -> bool:
    """A network peer's address in one of `networks`; a serial line's peer (its device) is in none."""
    try:
        address = ipaddress.ip_address(host_of(peer))
    except ValueError:
        return False
    return any(address in network for network in networks)
