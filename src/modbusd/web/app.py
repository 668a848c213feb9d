"""The aiohttp Application: routes, the guard every request passes, and the JSON body of a write.

Every answer is JSON, mistakes included (``{"error": "what is wrong"}`` with a 4xx); a failure of modbusd itself is
a 500 with the same shape, logged once with its traceback.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import modbusd
from modbusd import (
    GeneratorError,
    IllegalDataAddress,
    InvalidName,
    InvalidType,
    InvalidValue,
    Order,
    Point,
    Server,
    ServerDeviceFailure,
    UnknownGenerator,
    UnknownPoint,
    ValueType,
    parse_typed_value,
)
from modbusd.web import faults, generators
from modbusd.web.checks import HostCheck, is_json, same_origin, token_matches
from modbusd.web.log import NDJSON, LogStreams
from modbusd.web.metrics import exposition, make_registry, request_counts
from modbusd.web.points import Listing, Paging, describe, describe_range, range_count
from modbusd.web.snapshot import MEDIA_TYPE, snapshot
from modbusd.web.static import HEADERS, StaticFile, load, wants_html
from modbusd.web.window import Window, devices, parse_order, read_window

log = logging.getLogger("modbusd.web")

HEADER_TIMEOUT = 10.0  # seconds a connection may take to send a request's headers (or stay idle between requests)
BODY_TIMEOUT = 10.0  # seconds a request's body may take to arrive once its headers have
MAX_BODY = 64 * 1024  # bytes: a write is {"type": "string:240", "value": "…"} at most, a few hundred bytes
WRITES = ("PUT", "POST", "PATCH", "DELETE")
USAGE = (
    'expected {"value": V} or {"type": T, "value": V} (and "order": "CDAB" or another word order), '
    'e.g. {"type": "float", "value": 21.5}'
)
CONSOLE = "/console/"
MAX_PER_SECOND = 1_000_000  # a request log cap above any server's rate: the same as none


@dataclass(frozen=True, slots=True)
class Limits:
    """How long and how much a client may send, and how many points one listing answer holds."""

    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    max_body: int = MAX_BODY
    paging: Paging = field(default_factory=Paging)


DEFAULT_LIMITS = Limits()


class Refused(Exception):
    """A request answered with an error (a 4xx, or 503 when the state file cannot store a write): (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MissingDependency(RuntimeError):
    """aiohttp is not installed."""


def aiohttp_web() -> Any:
    """aiohttp.web, or MissingDependency: aiohttp is an optional extra."""
    try:
        from aiohttp import web
    except ImportError:
        raise MissingDependency("the HTTP control API needs aiohttp: pip install 'modbusd[http]'") from None
    return web


def check(request: Any, hosts: HostCheck | None, token: str | None) -> None:
    """Raise Refused unless the request may go on: the Host first (a rebound name learns nothing), then the token,
    then, for writes, where it comes from and what it carries. `hosts` None: any Host (`metrics.make_metrics_app`)."""
    host = request.headers.get("Host")
    if hosts is not None and not hosts.allows(host):
        raise Refused(421, f"this control API does not answer to the name {host!r}: use 127.0.0.1 or localhost, "
                           "or allow the name with --http-allow-host (allow_hosts in [http])")  # fmt: skip
    if token is not None and not public(request) and not token_matches(request.headers.get("Authorization"), token):
        raise Refused(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
    if request.method in WRITES and request.match_info.http_exception is None:  # a route that writes
        if not same_origin(request.headers.get("Origin"), host):
            raise Refused(403, "writes from another web site are refused (the Origin is not this API's own)")
        if not is_json(request.headers.get("Content-Type")):
            raise Refused(415, "a write needs Content-Type: application/json")


def public(request: Any) -> bool:
    """The console's files, and the way to them from ``/``: they hold no data, and a browser that navigates sends no
    token (the page asks for it once and sends it with each API request, in the Authorization header)."""
    if request.method not in ("GET", "HEAD"):
        return False
    return request.path.startswith(CONSOLE) or (request.path == "/" and wants_html(request.headers.get("Accept")))


async def read_json(request: Any, limits: Limits) -> object:
    """The body as JSON, read within the body time-out and size limit; Refused (400, 408, 413) otherwise."""
    if request.content_length is not None and request.content_length > limits.max_body:
        raise Refused(413, f"the body may have {limits.max_body} bytes at most")
    try:
        async with asyncio.timeout(limits.body_timeout):
            raw = await request.content.read(limits.max_body + 1)
            while len(raw) <= limits.max_body and not request.content.at_eof():
                raw += await request.content.read(limits.max_body + 1 - len(raw))
    except TimeoutError:
        raise Refused(408, f"the body did not arrive within {limits.body_timeout:g} s") from None
    if len(raw) > limits.max_body:
        raise Refused(413, f"the body may have {limits.max_body} bytes at most")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, a 5,000-digit number, nesting past the stack
        raise Refused(400, 'the body must be JSON such as {"type": "float", "value": 21.5}') from None


def typed_value(body: object) -> tuple[object, str | None]:
    """(value, type text or None) from a write's JSON body; Refused (400) for any other shape."""
    if not isinstance(body, dict) or "value" not in body or set(body) - {"type", "value", "order"}:
        raise Refused(400, USAGE)
    value, type_text = body["value"], body.get("type")
    if type_text is not None and not isinstance(type_text, str):
        raise Refused(400, f"type must be a text such as float, not {json.dumps(type_text)[:40]}")
    if type_text is None and isinstance(value, str) and ":" in value:
        try:
            vtype, value = parse_typed_value(value)
        except InvalidType:
            pass  # not TYPE:VALUE after all: a text value for the point's own type
        else:
            type_text = str(vtype)
    if value is None or isinstance(value, list | dict):
        raise Refused(400, f"value must be a number, true/false or a text, not {json.dumps(value)[:40]}")
    return value, type_text


def per_second(text: str | None) -> int | None:
    """``GET /log?follow=1&per_second=N``: the most records a second a follower wants (None: every one)."""
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_PER_SECOND:
        raise Refused(400, f"per_second must be a whole number from 1 to {MAX_PER_SECOND}, not {text[:20]!r}")
    return int(text)


def order_of(text: object) -> Order | None:
    """A request's word order (``?order=`` or ``"order"``), or None for the point's own; Refused (400) otherwise."""
    if text is not None and not isinstance(text, str):
        raise Refused(400, "order must be a text: ABCD, CDAB, BADC or DCBA")
    try:
        return parse_order(text)
    except ValueError as exc:
        raise Refused(400, str(exc)) from None


def make_app(
    server: Server, *, token: str | None = None, host: str = "127.0.0.1", allow_hosts: Iterable[str] = (),
    limits: Limits = DEFAULT_LIMITS,
) -> Any:  # fmt: skip
    """The aiohttp Application for `server`; run it with `HttpApi.start` or any aiohttp runner."""
    web = aiohttp_web()
    hosts = HostCheck.build(host, allow_hosts)
    listing = Listing(server, limits.paging)

    def error(status: int, message: str) -> Any:
        return web.json_response({"error": message}, status=status)

    @web.middleware
    async def guard(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            check(request, hosts, token)
            return await handler(request)
        except Refused as exc:
            if exc.status in (403, 421):  # someone is trying: worth one line
                log.warning("control API refused %s %s from %s: %s", request.method, request.path_qs[:100],
                            request.remote, exc)  # fmt: skip
            return error(exc.status, str(exc))
        except (UnknownPoint, UnknownGenerator) as exc:
            return error(404, str(exc.args[0]) if exc.args else "unknown data point")
        except IllegalDataAddress as exc:
            return error(404, f"no such address in the device: {exc}")
        except (InvalidName, InvalidType, InvalidValue, GeneratorError) as exc:
            return error(400, str(exc))
        except web.HTTPException as exc:
            return error(exc.status, exc.reason)
        except Exception:  # modbusd's own bug: one traceback, a JSON 500, and the API goes on
            log.exception("control API failed on %s %s", request.method, request.path_qs[:100])
            return error(500, "modbusd failed on this request; its log has the details")

    def lookup(text: str, type_text: str | None) -> tuple[Point, ValueType]:
        point = server.locate(text)[1]
        return point, (point.type if not type_text else ValueType.parse(type_text))

    async def list_points(request: Any) -> Any:
        try:
            offset, limit = limits.paging.parse(request.query.get("offset"), request.query.get("limit"))
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        return web.json_response(await listing.page(offset, limit))

    def point_text(request: Any) -> str:
        """The point of ``/points/{point}``, or ``ENDPOINT/POINT`` of ``/points/{endpoint}/{point}`` (the same
        name with its slash unescaped, as curl users type it)."""
        endpoint = request.match_info.get("endpoint")
        point = request.match_info["point"]
        return point if endpoint is None else f"{endpoint}/{point}"

    async def read_point(request: Any) -> Any:
        text = point_text(request)
        point, vtype = lookup(text, request.query.get("type"))
        order = order_of(request.query.get("order"))
        count = request.query.get("count")
        if count is None:
            return web.json_response(describe(point, vtype, server.read(text, vtype, order), order))
        try:
            number = range_count(count, point.location, vtype)
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        span = server.read_range(text, number, vtype, order)
        return web.json_response(describe_range(text, point, vtype, span, order))  # type: ignore[arg-type]  # values

    async def write_point(request: Any) -> Any:
        text = point_text(request)
        body = await read_json(request, limits)
        value, type_text = typed_value(body)
        order = order_of(body.get("order"))  # type: ignore[union-attr]  # typed_value made sure it is a dict
        point, vtype = lookup(text, type_text)
        if isinstance(value, bool) and vtype.kind.value != "bit":
            raise Refused(400, f"{vtype} takes a number or a text, not {json.dumps(value)}")
        if isinstance(value, float) and value.is_integer() and vtype.kind.value not in ("float", "double"):
            value = int(value)
        try:
            server.write(text, value, vtype, order)  # type: ignore[arg-type]  # a JSON scalar: its type's parser checks it
        except ServerDeviceFailure as exc:  # --state on a full disk: undone, and logged once by the state file
            raise Refused(503, f"the state file could not store the write: {exc}") from None
        return web.json_response(describe(point, vtype, server.read(text, vtype, order), order))

    async def counters(_request: Any) -> Any:
        return web.json_response(server.counters() | {"requests": request_counts(server)})

    async def download(_request: Any) -> Any:
        text, name = snapshot(server)
        return web.Response(text=text, content_type=MEDIA_TYPE, charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    async def endpoints(_request: Any) -> Any:
        return web.json_response({"endpoints": server.endpoints_info()})

    async def request_log(request: Any) -> Any:
        follow = request.query.get("follow", "0")
        if follow not in ("0", "1"):
            raise Refused(400, f"follow must be 0 or 1, not {follow[:20]!r}")
        if follow == "1":
            return await streams.follow(web, request, per_second(request.query.get("per_second")))
        return web.Response(body=streams.ring(), content_type=NDJSON)

    async def device_list(_request: Any) -> Any:
        return web.json_response(devices(server))

    async def connections(_request: Any) -> Any:
        return web.json_response({"connections": server.connections()})

    async def window(request: Any) -> Any:
        try:
            asked = Window.parse(request.query)
        except ValueError as exc:  # InvalidType included
            raise Refused(400, str(exc)) from None
        return web.json_response(read_window(server, asked))

    async def static(request: Any) -> Any:
        found = files.get(request.match_info.get("file") or "index.html")
        if found is None:
            raise Refused(404, "no such file in the console")
        return web.Response(body=found.body, content_type=found.content_type, charset=found.charset, headers=HEADERS)

    async def index(request: Any) -> Any:
        if wants_html(request.headers.get("Accept")):  # a browser: the console; programs keep getting the index
            return web.Response(status=302, headers={"Location": CONSOLE})
        return web.json_response({"modbusd": modbusd.__version__,
                                  "endpoints": ["GET /points?offset=N&limit=N", "GET /points/{point}?type=T&count=N",
                                                "PUT /points/{point}", "GET /counters",
                                                "GET /log?follow=1", "GET /devices",
                                                "GET /window?unit=U&table=hr&start=N&count=N&type=T&order=O",
                                                "GET /connections", "GET /endpoints", *faults.ENDPOINTS,
                                                "GET /metrics", "GET /generators", "POST /generators",
                                                "DELETE /generators/{id}", "GET /snapshot",
                                                "POST /generators/{id}/pause|resume|reset"],
                                  "console": CONSOLE, "served": server.endpoints_info()})  # fmt: skip

    files: dict[str, StaticFile] = load()

    async def metrics(_request: Any) -> Any:
        if registry is None:
            raise Refused(501, "GET /metrics needs prometheus-client: pip install 'modbusd[http]'")
        body, content_type = exposition(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    streams = LogStreams(server)
    try:
        registry = make_registry(server)
    except ImportError:  # an install from before prometheus-client joined the http extra: the rest still works
        registry = None
    app = web.Application(middlewares=[guard], client_max_size=limits.max_body)
    app.on_shutdown.append(streams.stop_following)
    app.router.add_get("/", index)
    app.router.add_get("/points", list_points)
    app.router.add_get("/points/{point}", read_point)
    app.router.add_put("/points/{point}", write_point)
    app.router.add_get("/points/{endpoint}/{point}", read_point)  # ENDPOINT/POINT, its slash as typed
    app.router.add_put("/points/{endpoint}/{point}", write_point)
    app.router.add_get("/endpoints", endpoints)
    app.router.add_get("/counters", counters)
    app.router.add_get("/log", request_log)
    app.router.add_get("/devices", device_list)
    app.router.add_get("/window", window)
    app.router.add_get("/connections", connections)
    app.router.add_get("/snapshot", download)
    app.router.add_get(CONSOLE, static)
    app.router.add_get(CONSOLE + "{file}", static)
    faults.add_routes(web, app.router, server, lambda request: read_json(request, limits), Refused)
    app.router.add_get("/metrics", metrics)
    app.router.add_routes(generators.routes(server, web, lambda request: read_json(request, limits), Refused))
    return app
