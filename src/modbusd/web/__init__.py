"""The HTTP control API: JSON over aiohttp, in the same asyncio loop as the Modbus server.

It uses only the public API (`modbusd`), as any program embedding modbusd could. aiohttp is an optional extra
(``pip install 'modbusd[http]'``): the server core needs nothing beyond the standard library.

Endpoints (every answer is JSON; a mistake is a 4xx with ``{"error": "what is wrong"}``):

- ``GET /points``: every data point with its addresses in each notation, type, order, unit, comment and value.
- ``GET /points/{point}[?type=T]``: a point by name, or any address in any notation, read as its type or as T.
- ``PUT /points/{point}`` with ``{"value": V}``, ``{"type": T, "value": V}`` or ``{"value": "T:V"}``: write it, any
  table included (discrete inputs and input registers are read-only for clients, not for the owner).
- ``GET /counters``: open connections and each device's FC08 counters.

With a token, every request needs ``Authorization: Bearer <token>``. Binding an address other than loopback
without a token is refused, since this API can write anything.
"""

import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import modbusd
from modbusd import (
    IllegalDataAddress,
    InvalidName,
    InvalidType,
    InvalidValue,
    Point,
    Server,
    UnknownPoint,
    ValueType,
    format_value,
    parse_typed_value,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 8020
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class MissingDependency(RuntimeError):
    """aiohttp is not installed."""


def _aiohttp() -> Any:
    try:
        from aiohttp import web
    except ImportError:
        raise MissingDependency("the HTTP control API needs aiohttp: pip install 'modbusd[http]'") from None
    return web


def _json_value(vtype: ValueType, value: object) -> object:
    """JSON has no NaN, infinity or bytes: those go as their text."""
    if isinstance(value, bytes) or (isinstance(value, float) and not math.isfinite(value)):
        return format_value(vtype, value)  # type: ignore[arg-type]  # value came from Server.read
    return value


def _describe(point: Point, vtype: ValueType, value: object) -> dict[str, object]:
    return {
        "name": point.name or None,
        "unit_id": point.location.unit_id,
        "table": point.location.table.value,
        "address": point.notations(),
        "type": str(vtype),
        "order": point.order.value,
        "value": _json_value(vtype, value),
        "text": format_value(vtype, value),  # type: ignore[arg-type]  # value came from Server.read
        "unit": point.unit,
        "comment": point.comment,
    }


def make_app(server: Server, *, token: str | None = None) -> Any:
    """The aiohttp Application for `server`; run it with `start_http` or any aiohttp runner."""
    web = _aiohttp()

    def error(status: int, message: str) -> Any:
        return web.json_response({"error": message}, status=status)

    @web.middleware
    async def guard(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
        try:
            return await handler(request)
        except UnknownPoint as exc:
            return error(404, str(exc.args[0]) if exc.args else "unknown data point")
        except IllegalDataAddress as exc:
            return error(404, f"no such address in the device: {exc}")
        except (InvalidName, InvalidType, InvalidValue) as exc:
            return error(400, str(exc))
        except web.HTTPException as exc:
            return error(exc.status, exc.reason)

    def lookup(text: str, type_text: str | None) -> tuple[Point, ValueType]:
        point = server.locate(text)[1]
        return point, (point.type if not type_text else ValueType.parse(type_text))

    async def list_points(_request: Any) -> Any:
        return web.json_response({"points": [_describe(p, p.type, server.read(p.name)) for p in server.data_points()]})

    async def read_point(request: Any) -> Any:
        text = request.match_info["point"]
        point, vtype = lookup(text, request.query.get("type"))
        return web.json_response(_describe(point, vtype, server.read(text, vtype)))

    async def write_point(request: Any) -> Any:
        text = request.match_info["point"]
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, 'the body must be JSON such as {"type": "float", "value": 21.5}')
        if not isinstance(body, dict) or "value" not in body or set(body) - {"type", "value"}:
            return error(400, 'expected {"value": V} or {"type": T, "value": V}, e.g. {"type": "float", "value": 21.5}')
        value, type_text = body["value"], body.get("type")
        if type_text is not None and not isinstance(type_text, str):
            return error(400, f"type must be a text such as float, not {type_text!r}")
        if type_text is None and isinstance(value, str) and ":" in value:
            try:
                vtype, value = parse_typed_value(value)
            except InvalidType:
                vtype = None  # not TYPE:VALUE after all: a text value for the point's own type
            else:
                type_text = str(vtype)
        if value is None or isinstance(value, list | dict):
            return error(400, f"value must be a number, true/false or a text, not {json.dumps(value)}")
        point, vtype = lookup(text, type_text)
        if isinstance(value, bool) and vtype.kind.value != "bit":
            return error(400, f"{vtype} takes a number or a text, not {json.dumps(value)}")
        if isinstance(value, float) and value.is_integer() and vtype.kind.value not in ("float", "double"):
            value = int(value)
        server.write(text, value, vtype)
        return web.json_response(_describe(point, vtype, server.read(text, vtype)))

    async def counters(_request: Any) -> Any:
        return web.json_response(server.counters())

    async def index(_request: Any) -> Any:
        return web.json_response({"modbusd": modbusd.__version__,
                                  "endpoints": ["GET /points", "GET /points/{point}?type=T", "PUT /points/{point}",
                                                "GET /counters"]})  # fmt: skip

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", index)
    app.router.add_get("/points", list_points)
    app.router.add_get("/points/{point}", read_point)
    app.router.add_put("/points/{point}", write_point)
    app.router.add_get("/counters", counters)
    return app


class HttpApi:
    """The running control API: `await HttpApi.start(...)`, then `await api.stop()`."""

    def __init__(self, runner: Any, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port

    @classmethod
    async def start(
        cls, server: Server, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None
    ) -> "HttpApi":
        """Listen in the running loop. ValueError without a token off loopback; OSError when it cannot bind."""
        if host not in LOOPBACK and not token:
            raise ValueError(f"the control API can write anything: binding it to {host} needs a token "
                             "(--http-token, or token in the file's [http])")  # fmt: skip
        web = _aiohttp()
        runner = web.AppRunner(make_app(server, token=token), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("control API on http://%s:%d/", host, bound)
        return cls(runner, host, bound)

    async def stop(self) -> None:
        await self._runner.cleanup()
