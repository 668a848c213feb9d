"""What a fault rule does to a request: the action's syntax, and how it turns a framed response into what is sent.

Sans-I/O: `plan` takes the bytes the session would have sent and returns what to send now, what to send later (after
which gap) and whether to close or reset the connection afterwards; the transport does the sending and the waiting.
The actions are those of the simulators users compare modbusd with: ModRSsim2's "training" faults (late, missing and
corrupted responses), Modbus Slave's error simulation (skip response, exception, CRC error), diagslave's delays.

Actions that *replace* the response (silent, exception, close, reset) are decided before the request is carried
out, and it is not: a busy or failed device does not do what it answers it cannot do. The others (delay, corrupt,
split, twice) act on the response of a request carried out as usual.
"""

import random
import re
from dataclasses import dataclass
from typing import Final

from modbusd.protocol.adu import Adu, Framer
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.pdu import exception_pdu

KINDS: Final = ("delay", "silent", "exception", "corrupt", "split", "twice", "close", "reset")
REPLACING: Final = frozenset(("silent", "exception", "close", "reset"))
CORRUPTIONS: Final = ("tid", "unit", "fc", "crc", "lrc", "count", "truncate", "before", "after")
MBAP_TRANSPORTS: Final = frozenset(("tcp", "udp"))
SERIAL_TRANSPORTS: Final = frozenset(("rtu", "rtu-over-tcp", "ascii"))
CONNECTIONS: Final = frozenset(("tcp", "rtu-over-tcp"))  # the transports with a connection to close or reset
MAX_SECONDS: Final = 3600.0  # the longest delay or gap: a rule that waits longer is a mistake, not a test
MAX_BYTES: Final = 253  # garbage added or bytes cut, at most: a PDU's worth

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s)")

Plan = tuple[bytes, list[tuple[float, bytes]], str | None]
"""(bytes to send now, in the connection's order; (gap in seconds, bytes) pieces sent later, each after the one
before; "close", "reset" or None: what to do to the connection after the last piece)."""


class FaultError(ValueError):
    """A fault rule that cannot be: `key` names the part that is wrong (for a device file's FILE:LINE)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def parse_duration(text: str, key: str = "action") -> float:
    """``200ms``, ``1.5s`` → seconds. A unit is required: a bare 200 could mean either, off by a thousand."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise FaultError(key, f"{text!r} is not a duration such as 200ms or 1.5s")
    seconds = float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)
    if seconds > MAX_SECONDS:
        raise FaultError(key, f"{text} is longer than {MAX_SECONDS:g} s, the most a fault waits")
    return seconds


def _seconds_text(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def parse_exception_code(text: str) -> int:
    """``06``, ``0x0A``, ``0B``, ``11`` or ``server-device-busy`` → the code. Two characters with a leading 0 are
    hexadecimal, as the specification writes codes (§7: 01 … 0B); other digits are decimal."""
    word = text.strip().lower()
    name = word.upper().replace("-", "_")
    if name in ExceptionCode.__members__:
        return int(ExceptionCode[name])
    try:
        code = int(word, 16 if word.startswith("0x") or (len(word) == 2 and word[0] == "0") else 10)
    except ValueError:
        raise FaultError("action", f"exception:{text}: expected a code such as 06, 0x0A or server-device-busy"
                         ) from None  # fmt: skip
    if not 1 <= code <= 255:
        raise FaultError("action", f"exception code {code} outside 1..255")
    return code


@dataclass(frozen=True, slots=True)
class Action:
    """One action and its arguments, as ``KIND[:ARG[:ARG]]`` gives them (`parse_action`)."""

    kind: str
    code: int = 0  # exception
    low: float = 0.0  # delay: fixed, or uniform low..high, or normal mean (low) and standard deviation (spread)
    high: float = 0.0
    spread: float = 0.0
    corruption: str = ""  # corrupt: one of CORRUPTIONS
    count: int = 0  # corrupt truncate/before/after: bytes; split: bytes per piece
    gap: float = 0.0  # split: seconds between pieces

    @property
    def replaces(self) -> bool:
        """The response is replaced (and the request not carried out), rather than changed."""
        return self.kind in REPLACING

    def applies_to(self, transport: str) -> bool:
        """Whether this action means anything on `transport` (a rule with it matches only there)."""
        if self.kind in ("close", "reset"):
            return transport in CONNECTIONS
        if self.kind == "corrupt" and self.corruption == "tid":
            return transport in MBAP_TRANSPORTS
        if self.kind == "corrupt" and self.corruption in ("crc", "lrc"):
            return transport in SERIAL_TRANSPORTS
        return True

    def __str__(self) -> str:
        if self.kind == "exception":
            return f"exception:{self.code:02X}"
        if self.kind == "delay":
            if self.spread:
                return f"delay:{_seconds_text(self.low)}~{_seconds_text(self.spread)}"
            if self.high != self.low:
                return f"delay:{_seconds_text(self.low)}..{_seconds_text(self.high)}"
            return f"delay:{_seconds_text(self.low)}"
        if self.kind == "corrupt":
            return f"corrupt:{self.corruption}" + (f":{self.count}" if self.count else "")
        if self.kind == "split":
            return f"split:{_seconds_text(self.gap)}" + (f":{self.count}" if self.count != 1 else "")
        return self.kind


def parse_action(text: str) -> Action:
    """``KIND[:ARG[:ARG]]``: delay:200ms, delay:100ms..300ms, delay:200ms~50ms, silent, exception:06,
    corrupt:tid|unit|fc|crc|lrc|count, corrupt:truncate[:N], corrupt:before[:N], corrupt:after[:N],
    split:GAP[:BYTES], twice, close, reset."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise FaultError("action", f"unknown action {kind!r}: expected one of {', '.join(KINDS)}")
    args = rest.split(":") if rest else []
    if kind in ("silent", "twice", "close", "reset"):
        if args:
            raise FaultError("action", f"{kind} takes no argument, got {rest!r}")
        return Action(kind)
    if not args:
        example = {"delay": "delay:200ms", "exception": "exception:06", "corrupt": "corrupt:crc",
                   "split": "split:20ms"}[kind]  # fmt: skip
        raise FaultError("action", f"{kind} needs an argument, e.g. {example}")
    if kind == "exception":
        return Action(kind, code=parse_exception_code(rest))
    if kind == "delay":
        return _delay(rest)
    if kind == "split":
        if len(args) > 2:
            raise FaultError("action", f"split:{rest}: expected split:GAP or split:GAP:BYTES, e.g. split:20ms:4")
        gap = parse_duration(args[0])
        return Action(kind, gap=gap, count=_byte_count(args[1], "split") if len(args) == 2 else 1)
    corruption = args[0].lower()
    if corruption not in CORRUPTIONS:
        raise FaultError("action", f"unknown corruption {args[0]!r}: expected one of {', '.join(CORRUPTIONS)}")
    if corruption in ("truncate", "before", "after"):
        if len(args) > 2:
            raise FaultError("action", f"corrupt:{rest}: expected corrupt:{corruption}[:BYTES]")
        count = _byte_count(args[1], f"corrupt:{corruption}") if len(args) == 2 else (1 if corruption == "truncate"
                                                                                        else 3)  # fmt: skip
        return Action(kind, corruption=corruption, count=count)
    if len(args) > 1:
        raise FaultError("action", f"corrupt:{corruption} takes no argument, got {rest!r}")
    return Action(kind, corruption=corruption)


def _delay(text: str) -> Action:
    if "~" in text:
        mean, _, spread = text.partition("~")
        return Action("delay", low=parse_duration(mean), high=parse_duration(mean), spread=parse_duration(spread))
    if ".." in text:
        low, _, high = text.partition("..")
        first, last = parse_duration(low), parse_duration(high)
        if last < first:
            raise FaultError("action", f"delay:{text}: the range must go from the shorter delay to the longer")
        return Action("delay", low=first, high=last)
    seconds = parse_duration(text)
    return Action("delay", low=seconds, high=seconds)


def _byte_count(text: str, what: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= MAX_BYTES:
        raise FaultError("action", f"{what}:{text}: expected a number of bytes 1..{MAX_BYTES}")
    return int(text)


# ------------------------------------------------------------------------------------------- applying


def delay_of(action: Action, rng: random.Random) -> float:
    """The delay this time: fixed, uniform or normal (never below 0), drawn from the rule's own generator."""
    if action.spread:
        return min(MAX_SECONDS, max(0.0, rng.gauss(action.low, action.spread)))
    if action.high != action.low:
        return rng.uniform(action.low, action.high)
    return action.low


def replacement(action: Action, pdu: bytes) -> bytes | None:
    """The response PDU a replacing action gives instead of the device's: an exception, or none at all."""
    return exception_pdu(pdu[0], action.code) if action.kind == "exception" else None


def plan(action: Action, rng: random.Random, out: bytes, adu: Adu, *, framer: Framer, framing: str) -> Plan:
    """What to send for the framed response `out` (the request `adu`'s) under `action`.

    `framing`: "mbap", "rtu" or "ascii", the envelope `out` is in; `framer` frames changed PDUs in it again, so
    that every corruption but the one asked for leaves a well-formed frame (a wrong unit id comes with a good CRC).
    """
    kind = action.kind
    if kind == "delay":
        return b"", [(delay_of(action, rng), out)], None
    if kind == "twice":
        return out, [(0.0, out)], None  # a piece of its own: over UDP, a second datagram
    if kind == "split":
        size = action.count
        return out[:size], [(action.gap, out[i : i + size]) for i in range(size, len(out), size)], None
    if kind in ("close", "reset"):
        return b"", [], kind
    return _corrupted(action, rng, out, adu, framer=framer, framing=framing), [], None


def _corrupted(action: Action, rng: random.Random, out: bytes, adu: Adu, *, framer: Framer, framing: str) -> bytes:
    what = action.corruption
    if what == "truncate":
        return out[: max(1, len(out) - action.count)]
    if what == "before":
        return rng.randbytes(action.count) + out
    if what == "after":
        return out + rng.randbytes(action.count)
    if what in ("crc", "lrc"):
        if framing == "ascii":  # the two hex characters before CR LF
            wrong = (int(out[-4:-2], 16) + 1) & 0xFF
            return out[:-4] + f"{wrong:02X}".encode() + out[-2:]
        return out[:-2] + bytes((out[-2] ^ 0xFF, out[-1]))  # the CRC's low byte, flipped
    unit, pdu = unframe(out, framing)
    request = adu._replace(unit_id=unit)
    if what == "tid":
        return framer.frame(request._replace(transaction_id=(adu.transaction_id + 1) & 0xFFFF), pdu)
    if what == "unit":
        return framer.frame(request._replace(unit_id=(unit + 1) & 0xFF), pdu)
    if what == "fc":  # the next function code, keeping the exception bit: 03 → 04, 0x83 → 0x84
        function = pdu[0]
        return framer.frame(request, bytes(((function & 0x80) | ((function & 0x7F) % 0x7F + 1),)) + pdu[1:])
    return framer.frame(request, miscounted(pdu))


def miscounted(pdu: bytes) -> bytes:
    """The PDU with a byte count that does not match what follows: one more than the bytes it counts.

    The responses with a byte count right after the function code are the reads (§6.1–6.4), FC12, FC17, FC20, FC21
    and FC23; any other response (an echo, an exception) gets one byte more than its function code implies.
    """
    if pdu[0] in (0x01, 0x02, 0x03, 0x04, 0x0C, 0x11, 0x14, 0x15, 0x17) and len(pdu) >= 2:
        return pdu[:1] + bytes(((pdu[1] + 1) & 0xFF,)) + pdu[2:]
    return pdu + b"\x00"


def unframe(out: bytes, framing: str) -> tuple[int, bytes]:
    """(unit id, PDU) of a response framed by one of modbusd's own framers."""
    if framing == "mbap":
        return out[6], out[7:]
    if framing == "rtu":
        return out[0], out[1:-2]
    raw = bytes.fromhex(out[1:-4].decode("ascii"))  # ':' … LRC CR LF
    return raw[0], raw[1:]
