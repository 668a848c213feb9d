"""Reading a device file's tables with errors that name the place: ``FILE:LINE: key: message``.

tomllib reports no positions for keys, so `KeyLines` scans the text for table headers and keys to find the line;
for a CSV point file the line is the CSV line. `Reader` holds the checks every table uses (known keys, with a
"did you mean" for typos; types; ranges; choices); `loader.py` puts the tables' own readers on top of it.
"""

import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

MAX_FILE_BYTES: Final = 16 * 1024 * 1024
"""The most read of a device file, and of each CSV point file: a thousand times a large real one. Past it the file
is refused, so that a mistaken path (a log, a disk image) costs a bounded read and no memory to speak of."""

MAX_NESTING: Final = 32
"""Arrays and inline tables nest at most this deep in a device file (real ones: 2 or 3). Deeper would exhaust the
TOML reader's recursion (a RecursionError near 500 levels), so the text is checked before it is parsed."""


class ConfigError(ValueError):
    """One mistake in a device file: ``FILE:LINE: KEY: what is wrong``."""

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        where = f"{path}:{line}" if line else path
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        super().__init__(one_line(text))


def one_line(text: str) -> str:
    """`text` with its line breaks and other control characters escaped: a key or a CSV cell quoted in an error may
    hold them, and the error is always one line on the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# ------------------------------------------------------------------------------------------- reading


class UnreadableFile(ValueError):
    """A file that is not read: what is wrong with it, for a ConfigError to name."""


_KINDS: Final = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                 (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def read_text(path: str | Path, encoding: str = "utf-8", limit: int = MAX_FILE_BYTES) -> str:
    """The text of a regular file of at most `limit` bytes; UnreadableFile saying why not.

    The file is opened without blocking and checked before anything is read, so a FIFO (whose open would wait
    for a writer) or a device such as /dev/zero (which never ends) is refused at once, even one swapped in
    after a check by name would have passed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnreadableFile(exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            raise UnreadableFile(f"not a regular file but {kind}")
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise UnreadableFile(exc.strerror or str(exc)) from None
    if len(data) > limit:
        raise UnreadableFile(f"larger than {limit // (1024 * 1024)} MiB, the most a device or CSV file may hold")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None


_NESTING_TOKENS: Final = re.compile(
    r'''"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|#[^\n]*|[\[\]{}]''', re.DOTALL
)  # strings and comments (skipped whole, brackets and all), and the brackets outside them


def nesting_line(text: str, limit: int = MAX_NESTING) -> int | None:
    """The line where arrays and inline tables first nest deeper than `limit`, or None."""
    if text.count("[") + text.count("{") <= limit:
        return None  # too few brackets to nest that deep: most files, and no scan
    depth = 0
    for token in _NESTING_TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return text.count("\n", 0, token.start()) + 1
        elif char in "]}":
            depth = max(0, depth - 1)
    return None


# ---------------------------------------------------------------------------------------- line numbers

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_key(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""", text)]


def _depth(line: str) -> int:
    """Net change of bracket depth on a line, outside strings and comments."""
    depth, quote = 0, ""
    for char in line:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return depth


class KeyLines:
    """Line of each table header and key, by path: ("device", 0, "point", 2, "type") → 37."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[object, ...], int] = {}
        counts: dict[tuple[object, ...], int] = {}
        table: tuple[object, ...] = ()
        depth, in_string = 0, ""
        for number, line in enumerate(text.splitlines(), 1):
            if in_string:
                if line.count(in_string) % 2:  # the string ends here: what follows may close an array or table
                    rest = line[line.rindex(in_string) + len(in_string) :]
                    in_string = ""
                    if depth > 0:
                        depth = max(0, depth + _depth(rest))
                continue
            for quotes in ('"""', "'''"):
                if line.count(quotes) % 2:
                    in_string = quotes
            if depth > 0:
                depth += _depth(line)
                continue
            header = _HEADER.match(line)
            if header:
                parts = _split_key(header.group(2))
                path: tuple[object, ...] = ()
                for i, part in enumerate(parts):
                    path = (*path, part)
                    if i == len(parts) - 1 and header.group(1) == "[[":
                        counts[path] = counts.get(path, 0) + 1
                    if path in counts:
                        path = (*path, counts[path] - 1)
                table = path
                self._lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self._lines.setdefault((*table, *_split_key(key.group(1))), number)
                depth = max(0, _depth(line[key.end() :]))

    def line(self, path: Sequence[object]) -> int:
        """The line of `path`, or of the nearest enclosing table or key that has one; 1 when nothing matches."""
        key = tuple(path)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return 1


Path_ = tuple[object, ...]
"""Where a key is: ("device", 0, "point", 2, "type") for device[0].point[2].type."""


class Reader:
    """The checks every table of a device file uses; each failure is a ConfigError naming file, line and key."""

    def __init__(self, name: str, text: str, base: Path) -> None:
        self.name = name
        self.lines = KeyLines(text)
        self.base = base

    def error(self, path: Path_, message: str, line: int | None = None) -> ConfigError:
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        return ConfigError(self.name, line or self.lines.line(path), key, message)

    def where(self, path: Path_) -> str:
        """``FILE:LINE: key``, for a mistake in `path` that only the server can find later."""
        error = self.error(path, "")
        return f"{error.path}:{error.line}: {error.key}"

    # -------------------------------------------------------------------------------------------- helpers

    def table(self, data: object, path: Path_, known: Sequence[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.error(path, f"expected a table ([{'.'.join(p for p in path if isinstance(p, str))}]), "
                                   f"got {type(data).__name__}")  # fmt: skip
        for key in data:
            if key not in known:
                close = sorted((k for k in known if _similar(k, key)), key=lambda k: _closeness(k, key))
                hint = f" (did you mean {close[0]!r}?)" if close else f"; expected one of: {', '.join(known)}"
                raise self.error((*path, key), f"unknown key{hint}")
        return data

    def typed(self, data: Mapping[str, Any], path: Path_, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self.error((*path, key), f"expected {what}, got {value!r}")
        return value

    def integer(self, data: Mapping[str, Any], path: Path_, key: str, low: int, high: int) -> int:
        value = self.typed(data, path, key, int, f"a whole number {low}..{high}")
        if not low <= value <= high:
            raise self.error((*path, key), f"{value} is outside {low}..{high}")
        return value

    def choice(self, data: Mapping[str, Any], path: Path_, key: str, choices: Sequence[str]) -> str:
        value = self.typed(data, path, key, str, f"one of {', '.join(choices)}")
        if value not in choices:
            raise self.error((*path, key), f"{value!r} is not one of {', '.join(choices)}")
        return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _similar(a: str, b: str) -> bool:
    """Close enough to be a typo: one a prefix of the other, or at most two letters changed, added or dropped
    (`stop_bits` for stopbits, `prot` for port)."""
    return a.startswith(b) or b.startswith(a) or _distance(a, b) <= 2


def _closeness(a: str, b: str) -> int:
    """For ranking likely keys: 0 for a prefix, else the edit distance."""
    return 0 if a.startswith(b) or b.startswith(a) else _distance(a, b)


def _distance(a: str, b: str) -> int:
    """Edit distance: the fewest letters to change, add or drop to turn `a` into `b`."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]
