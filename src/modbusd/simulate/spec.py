"""The generator spec language, shared by the command line, the device file, Python and the HTTP API.

Text in, values out; no I/O. A spec is a generator's name and its keyword arguments::

    sine(offset=20, amplitude=5, period=60s, phase=0)
    sequence(values=[0, 50, 100], hold=[5s, 10s, 5s], loop=false)
    expression("tank_level * 0.8 + gauss(0, 0.2)", every=500ms)

An argument's value is a number (``20``, ``-1.5``, ``1e3``, ``0x10``), a duration (a number and one of ``ms``, ``s``,
``m``, ``h``: ``500ms``, ``1.5s``, ``2m``), a word (``true``, ``false``, ``hold``, ``year``; also a file name such as
``profile.csv``), a quoted text (``"…"`` or ``'…'``, for an expression or a file name with spaces or commas), or a
list of those in brackets. One argument without ``key=`` may come first: it is the generator's main argument (the
formula of ``expression``, the file of ``csv``, the values of ``sequence``).
"""

import functools
import re
from dataclasses import dataclass, field

Scalar = float | int | str | bool
Argument = Scalar | list[Scalar]

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class GeneratorError(ValueError):
    """A spec or a generator's setting that cannot be used: the message says what is wrong and how to fix it."""


@dataclass(frozen=True, slots=True)
class Duration:
    """A number with a unit, kept apart from a plain number so that `period=60` can be refused as ambiguous."""

    seconds: float
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed spec: the generator's name, its main (positional) argument if any, and its keyword arguments."""

    name: str
    main: object = None
    arguments: dict[str, object] = field(default_factory=dict)
    text: str = ""

    def __str__(self) -> str:
        return self.text


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<punct>[()\[\],=])
      | (?P<atom>[^\s()\[\],="']+)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"[+-]?(?:0x[0-9a-f]+|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)", re.IGNORECASE)
_DURATION = re.compile(r"(?P<number>\d+\.?\d*|\.\d+)(?P<unit>ms|s|m|h)")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
MAX_SPEC = 4096  # characters: an expression is a line, not a program


def parse_duration(text: str) -> float:
    """``500ms`` / ``1s`` / ``2m`` / ``1h`` / ``1.5s`` → seconds; GeneratorError for anything else."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise GeneratorError(f"{text!r} is not a duration: write a number and ms, s, m or h (500ms, 1s, 2m)")
    return float(found["number"]) * UNITS[found["unit"]]


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        found = _TOKEN.match(text, at)
        if found is None:  # an unclosed quote: nothing else fails to match
            raise GeneratorError(f"{text!r}: a quote opened at character {at + 1} is never closed")
        kind = found.lastgroup or ""
        tokens.append((kind, found[kind]))
        at = found.end()
    return tokens


def _scalar(kind: str, raw: str) -> Scalar | Duration:
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _NUMBER.fullmatch(raw):
        return int(raw, 0) if re.fullmatch(r"[+-]?(?:0x[0-9a-f]+|\d+)", lowered) else float(raw)
    if _DURATION.fullmatch(lowered):
        return Duration(parse_duration(lowered), raw)
    return raw  # a word: hold, year, profile.csv


@functools.lru_cache(maxsize=256)
def parse_spec(text: str) -> Spec:
    """``name(arg, key=value, …)`` → Spec; GeneratorError naming what is wrong and where.

    Cached: 10,000 points generated alike parse their spec once (a Spec is never changed after this)."""
    source = text.strip()
    if len(source) > MAX_SPEC:
        raise GeneratorError(f"a generator spec may have {MAX_SPEC} characters at most, this one has {len(source)}")
    usage = "expected NAME(KEY=VALUE, …), e.g. sine(offset=20, amplitude=5, period=60s)"
    tokens = _tokens(source)
    if len(tokens) < 3 or tokens[0][0] != "atom" or tokens[1] != ("punct", "(") or tokens[-1] != ("punct", ")"):
        raise GeneratorError(f"{source!r}: {usage}")
    name = tokens[0][1].lower()
    if not _NAME.fullmatch(name):
        raise GeneratorError(f"{source!r}: {tokens[0][1]!r} is not a generator name; {usage}")
    body = tokens[2:-1]
    main: object = None
    arguments: dict[str, object] = {}
    for position, item in enumerate(_split(body, source)):
        if len(item) >= 2 and item[1] == ("punct", "="):
            key = item[0][1].lower()
            if item[0][0] != "atom" or not _NAME.fullmatch(key):
                raise GeneratorError(f"{source!r}: {item[0][1]!r} is not an argument name")
            if key in arguments:
                raise GeneratorError(f"{source!r}: {key} is given twice")
            arguments[key] = _value(item[2:], source, key)
        elif position == 0:
            main = _value(item, source, "the first argument")
        else:
            raise GeneratorError(f"{source!r}: only the first argument may go without KEY=: name this one "
                                 f"({' '.join(t for _, t in item)})")  # fmt: skip
    return Spec(name, main, arguments, source)


def _split(body: list[tuple[str, str]], source: str) -> list[list[tuple[str, str]]]:
    """The arguments between the parentheses, split at the commas outside brackets."""
    items: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for token in body:
        if token in (("punct", "["), ("punct", "(")):
            depth += 1
        elif token in (("punct", "]"), ("punct", ")")):
            depth -= 1
            if depth < 0:
                raise GeneratorError(f"{source!r}: {token[1]!r} closes nothing")
        if token == ("punct", ",") and depth == 0:
            items.append([])
        else:
            items[-1].append(token)
    if depth:
        raise GeneratorError(f"{source!r}: a bracket is never closed")
    if items == [[]]:
        return []
    if any(not item for item in items):
        raise GeneratorError(f"{source!r}: an empty argument (two commas in a row, or one at the end)")
    return items


def _value(tokens: list[tuple[str, str]], source: str, key: str) -> object:
    if not tokens:
        raise GeneratorError(f"{source!r}: {key} has no value")
    if tokens[0] == ("punct", "["):
        if tokens[-1] != ("punct", "]"):
            raise GeneratorError(f"{source!r}: {key}: a list is [A, B, …]")
        inner = tokens[1:-1]
        if not inner:
            return []
        values = []
        for i, token in enumerate(inner):
            if i % 2 == 1:
                if token != ("punct", ","):
                    raise GeneratorError(f"{source!r}: {key}: list items are separated by commas")
            elif token[0] == "punct":
                raise GeneratorError(f"{source!r}: {key}: {token[1]!r} cannot be a list item (no nested lists)")
            else:
                values.append(_scalar(*token))
        if len(inner) % 2 == 0:
            raise GeneratorError(f"{source!r}: {key}: the list ends with a comma")
        return values
    if len(tokens) != 1 or tokens[0][0] == "punct":
        shown = " ".join(t for _, t in tokens)
        raise GeneratorError(f"{source!r}: {key}={shown} is not one value (quote a text holding spaces, commas "
                             "or parentheses)")  # fmt: skip
    return _scalar(*tokens[0])
