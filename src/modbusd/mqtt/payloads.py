"""What an MQTT message carries: the ``<unit>`` topic level, the JSON of a value, and a ``…/set`` message's payload
parsed into a type and a value (the formats are in the package docstring). No I/O, no aiomqtt."""

import json
import math
from typing import Any

from modbusd import InvalidType, InvalidValue, ValueType, format_value, parse_typed_value

ALL_UNITS = "all"  # the <unit> topic level of the device answering every unit id
SET_TABLES = {"co": "co", "di": "di", "hr": "hr", "ir": "ir"}


def _json_value(vtype: ValueType, value: object) -> object:
    """JSON has no NaN, infinity or bytes: those go as their text."""
    if isinstance(value, bytes) or (isinstance(value, float) and not math.isfinite(value)):
        return format_value(vtype, value)  # type: ignore[arg-type]  # a decoded Value
    return value


class BadPayload(ValueError):
    """A ``…/set`` message that cannot be carried out."""


def _point(unit: str, table: str, address: int, bit: int | None) -> str:
    """A point's address as `Server.locate` takes it, from the levels of its topic (``all``: no unit id)."""
    return ("" if unit == ALL_UNITS else f"{unit}.") + f"{address}.{table}" + ("" if bit is None else f".{bit}")


def _text(raw: object, *, lenient: bool = False) -> str:
    if isinstance(raw, bytes | bytearray):
        try:
            return bytes(raw).decode()
        except UnicodeDecodeError:
            if lenient:
                return bytes(raw).decode(errors="replace")
            raise BadPayload("the payload is not UTF-8 text") from None
    return "" if raw is None else str(raw)


def _parse_set(text: str) -> tuple[ValueType | None, Any]:
    """``TYPE:VALUE``, JSON ``{"type": T, "value": V}`` or a bare value → (type or None, value)."""
    text = text.strip()
    if not text:
        raise BadPayload('empty payload: expected TYPE:VALUE (float:21.5) or {"type": "float", "value": 21.5}')
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise BadPayload('not JSON: expected {"type": "float", "value": 21.5}') from None
        if not isinstance(body, dict) or "value" not in body or set(body) - {"type", "value"}:
            raise BadPayload('expected {"value": V} or {"type": T, "value": V}')
        value, type_text = body["value"], body.get("type")
        if type_text is not None and not isinstance(type_text, str):
            raise BadPayload(f"type must be a text such as float, not {json.dumps(type_text)}")
        if value is None or isinstance(value, list | dict):
            raise BadPayload(f"value must be a number, true/false or a text, not {json.dumps(value)}")
        try:
            return (ValueType.parse(type_text) if type_text else None), value
        except InvalidType as exc:
            raise BadPayload(str(exc)) from None
    if ":" in text:
        try:
            return parse_typed_value(text)
        except (InvalidType, InvalidValue) as exc:
            raise BadPayload(str(exc)) from None
    return None, text
