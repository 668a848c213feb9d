"""The control API's fault rules (docs/faults.md): the routes, and the JSON each takes and gives, over `Server.faults`.

The functions below are plain functions of the server and a parsed body; `add_routes` puts them behind aiohttp
routes, where a mistake in the body (a ValueError) is a 400 and an unknown rule (a LookupError) a 404. Every route
passes the application's guard first (`app.py`, `checks.py`): Host, token, and for writes Origin and JSON.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from modbusd import Server

ENDPOINTS = ("GET /faults", "POST /faults", "GET /faults/{id}", "PATCH /faults/{id}", "DELETE /faults/{id}")

ADD_USAGE = 'expected {"rule": "unit=3 fc=3 action=exception:06"} or the rule\'s keys, e.g. {"unit": 3, "action": ' \
    '"delay:200ms"}'  # fmt: skip
CHANGE_USAGE = 'expected {"enabled": true} or {"enabled": false}, and/or {"reset": true}'


def listing(server: Server) -> dict[str, object]:
    return {"faults": server.faults.counters()}


def add(server: Server, body: object) -> dict[str, object]:
    """A new rule from ``{"rule": TEXT}`` (``--fault``'s syntax) or from its keys as a JSON object."""
    if not isinstance(body, dict) or not body:
        raise ValueError(ADD_USAGE)
    if "rule" in body:
        if set(body) != {"rule"} or not isinstance(body["rule"], str):
            raise ValueError(ADD_USAGE)
        return server.faults.add(body["rule"]).describe()
    return server.faults.add(body).describe()


def change(server: Server, rule: str, body: object) -> dict[str, object]:
    """Enable or disable a rule, or start its counts and random numbers over (``{"reset": true}``)."""
    if not isinstance(body, dict) or not body or set(body) - {"enabled", "reset"}:
        raise ValueError(CHANGE_USAGE)
    enabled, reset = body.get("enabled"), body.get("reset", False)
    if (enabled is not None and not isinstance(enabled, bool)) or not isinstance(reset, bool):
        raise ValueError(CHANGE_USAGE)
    found = server.faults.get(rule)
    if reset:
        server.faults.reset(found)
    if enabled is not None:
        server.faults.enable(found, enabled)
    return found.describe()


def remove(server: Server, rule: str) -> dict[str, object]:
    return server.faults.remove(rule).describe()


def read(server: Server, rule: str) -> dict[str, object]:
    return server.faults.get(rule).describe()


def add_routes(
    web: Any, router: Any, server: Server, read_body: Callable[[Any], Awaitable[object]],
    refused: Callable[[int, str], Exception],
) -> None:  # fmt: skip
    """Add the fault routes to `router` (aiohttp's `web` and the application's `read_body` and `refused`)."""

    def answer(call: Callable[..., dict[str, object]], *args: object, status: int = 200) -> Any:
        try:
            return web.json_response(call(server, *args), status=status)
        except LookupError as exc:
            raise refused(404, str(exc.args[0]) if exc.args else "no such fault rule") from None
        except ValueError as exc:
            raise refused(400, str(exc)) from None

    async def list_faults(_request: Any) -> Any:
        return answer(listing)

    async def add_fault(request: Any) -> Any:
        return answer(add, await read_body(request), status=201)

    async def read_fault(request: Any) -> Any:
        return answer(read, request.match_info["rule"])

    async def change_fault(request: Any) -> Any:
        return answer(change, request.match_info["rule"], await read_body(request))

    async def remove_fault(request: Any) -> Any:
        return answer(remove, request.match_info["rule"])

    router.add_get("/faults", list_faults)
    router.add_post("/faults", add_fault)
    router.add_get("/faults/{rule}", read_fault)
    router.add_patch("/faults/{rule}", change_fault)
    router.add_delete("/faults/{rule}", remove_fault)
