"""The device file's access rules: ``[roles.NAME]`` (Modbus/TCP Security's roles-to-rights rules) and each
``[[device]]``'s read_only, read_only_exception and allow. The checks are `modbusd.authorize`'s; this reads them."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from modbusd.authorize import READ_ONLY_CODES, ReadOnly, Rights, Roles, Span, parse_network, parse_spans
from modbusd.config.reader import Path_, Reader
from modbusd.model.names import InvalidName
from modbusd.protocol.codes import ExceptionCode

RIGHTS_KEYS = ("functions", "read", "write")


class AccessTables(Reader):
    """Reads ``[roles]``, the access keys of a ``[[device]]``, and the allow-lists of ``[server]`` and its
    endpoints."""

    def networks(self, raw: Mapping[str, Any], path: Path_) -> tuple[str, ...]:
        """An ``allow`` list: client addresses or networks, each checked (``"192.0.2.7"``, ``"10.0.0.0/8"``)."""
        where = (*path, "allow")
        found = raw["allow"]
        if not isinstance(found, list) or not all(isinstance(n, str) for n in found):
            raise self.error(where, f'expected a list of addresses or networks such as ["10.0.0.0/8", "192.0.2.7"], '
                                    f"got {found!r}")  # fmt: skip
        for text in found:
            try:
                parse_network(text)
            except ValueError as exc:
                raise self.error(where, str(exc)) from None
        return tuple(found)

    def roles(self, data: object, no_role: str | None) -> Roles:
        """[roles.NAME] tables: functions (default: all but FC08), read and write (ranges; default none)."""
        path: Path_ = ("roles",)
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise self.error(path, 'each role is a table of its own: [roles.operator] with read = ["*"], '
                                   'write = ["100-199.hr"]')  # fmt: skip
        rights: dict[str, Rights] = {}
        for name, item in data.items():
            where: Path_ = (*path, name)
            raw = self.table(item, where, RIGHTS_KEYS)
            options: dict[str, Any] = {}
            if "functions" in raw:
                codes = raw["functions"]
                if not isinstance(codes, list) or not all(type(c) is int and 1 <= c <= 127 for c in codes):
                    raise self.error((*where, "functions"), f"expected function codes 1..127 such as [3, 6, 16], got "
                                                            f"{codes!r}")  # fmt: skip
                options["functions"] = frozenset(codes)
            for key in ("read", "write"):
                if key in raw:
                    options[key] = self.spans(raw, where, key)
            rights[name] = Rights(**options)
        if no_role is not None and no_role not in rights:
            raise self.error(("server", "tls", "no_role"), f"{no_role!r} is no role of [roles]: name one of "
                                                           f"{', '.join(sorted(rights)) or '(none)'}")  # fmt: skip
        return Roles(MappingProxyType(rights), no_role)

    def spans(self, raw: Mapping[str, Any], path: Path_, key: str) -> tuple[Span, ...]:
        texts = raw[key]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise self.error((*path, key), f'expected a list of ranges such as ["*"], ["hr"], ["100-199.hr", '
                                           f'"40001-40010"], got {texts!r}')  # fmt: skip
        try:
            return parse_spans(texts)
        except InvalidName as exc:
            raise self.error((*path, key), str(exc)) from None

    def device_access(self, raw: Mapping[str, Any], path: Path_, unit_ids: tuple[int, ...]) -> dict[str, Any]:
        """A [[device]]'s read_only ranges (coils and holding registers), read_only_exception (2, 1 or 4), allow."""
        options: dict[str, Any] = {}
        if "read_only" in raw:
            spans = self.spans(raw, path, "read_only")
            try:
                ReadOnly(spans)
            except ValueError as exc:
                raise self.error((*path, "read_only"), str(exc)) from None
            options["read_only"] = spans
        if "read_only_exception" in raw:
            code = self.integer(raw, path, "read_only_exception", 1, 4)
            if code not in READ_ONLY_CODES:
                raise self.error(
                    (*path, "read_only_exception"),
                    "expected 2 (illegal data address, the default), 1 (illegal function) or 4 (server device failure)",
                )
            options["read_only_exception"] = int(ExceptionCode(code))
        if "allow" in raw:
            if not unit_ids:
                raise self.error((*path, "allow"), "allow in [[device]] is per unit id: give the device unit_id or "
                                                   "unit_ids, or use [server] allow for every client")  # fmt: skip
            options["allow"] = self.networks(raw, path)
        return options
