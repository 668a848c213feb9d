"""The device file's ``[[fault]]`` tables: fault rules (docs/faults.md), read by the same parser as ``--fault``'s
text and the control API's JSON (`modbusd.faults.parse_rule`), with the mistakes placed at FILE:LINE: key."""

from modbusd.config.reader import Reader
from modbusd.faults import FaultError, FaultSpec, parse_rule
from modbusd.faults.rules import KEYS

__all__ = ["FaultSpec", "FaultTables", "parse_fault"]


def parse_fault(text: str) -> FaultSpec:
    """``--fault``'s text (``unit=3 fc=3 every=5 action=exception:06``) → FaultSpec; ValueError saying what is wrong."""
    try:
        return parse_rule(text)
    except FaultError as exc:
        raise ValueError(f"{text!r}: {exc}") from None


class FaultTables(Reader):
    """Reads ``[[fault]]``, one table per rule, in order (the order rules are tried in)."""

    def faults(self, data: object) -> tuple[FaultSpec, ...]:
        if not isinstance(data, list):
            raise self.error(("fault",), "fault rules are [[fault]] tables (double brackets), one per rule")
        specs = []
        for i, raw in enumerate(data):
            path = ("fault", i)
            self.table(raw, path, KEYS)  # unknown keys, with a "did you mean"
            try:
                specs.append(parse_rule(raw))
            except FaultError as exc:
                raise self.error((*path, exc.key) if exc.key else path, exc.message) from None
        return tuple(specs)
