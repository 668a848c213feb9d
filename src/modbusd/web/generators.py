"""The control API's generator routes (docs/simulator.md): list, add, remove, pause, resume, reset.

Through `Server.simulator`, as any program embedding modbusd would. Writes pass the same guard as ``PUT /points``
(`app.check`: token, Host, Origin, ``Content-Type: application/json``).

- ``GET /generators``: every generator with its state and last value;
- ``POST /generators`` with ``{"point": P, "generate": SPEC}`` (and optionally ``"type"``, ``"order"``): add one;
  201 with its description;
- ``GET /generators/{id}``; ``DELETE /generators/{id}``;
- ``POST /generators/{id}/pause``, ``…/resume``, ``…/reset``;
- an endpoint's generator's id holds a slash (``meter7/power``): the same routes take it as typed.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from modbusd import Server

ADD_USAGE = 'expected {"point": P, "generate": SPEC} and optionally "type" and "order", e.g. ' \
            '{"point": "30001", "type": "float", "generate": "sine(period=60s)"}'  # fmt: skip
ACTIONS = ("pause", "resume", "reset")


def routes(server: Server, web: Any, read_json: Callable[[Any], Awaitable[object]],
           refused: Callable[[int, str], Exception]) -> list[Any]:  # fmt: skip
    """The route definitions, for `app.make_app` to add; `read_json` and `refused` are the app's own."""
    simulator = server.simulator

    async def list_generators(_request: Any) -> Any:
        return web.json_response({"generators": simulator.list()})

    async def add_generator(request: Any) -> Any:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) - {"point", "generate", "type", "order"}:
            raise refused(400, ADD_USAGE)
        if any(not isinstance(body.get(key), str) for key in ("point", "generate")):
            raise refused(400, ADD_USAGE)
        if any(key in body and not isinstance(body[key], str) for key in ("type", "order")):
            raise refused(400, "type and order are texts, such as float and CDAB")
        added = simulator.add(body["point"], body["generate"], body.get("type"), body.get("order"))
        return web.json_response(added, status=201)

    def ident_of(request: Any) -> str:
        """The generator's id: ``meter7/power`` for an endpoint's point, its slash as typed (as ``/points``)."""
        found = request.match_info
        return f"{found['endpoint']}/{found['id']}" if "endpoint" in found else found["id"]

    async def get_generator(request: Any) -> Any:
        return web.json_response(simulator.get(ident_of(request)))

    async def remove_generator(request: Any) -> Any:
        ident = ident_of(request)
        simulator.remove(ident)
        return web.json_response({"removed": ident})

    async def act(request: Any) -> Any:
        action = request.match_info["action"]
        if action not in ACTIONS:
            raise refused(404, f"no action {action[:20]!r}: expected {', '.join(ACTIONS)}")
        return web.json_response(getattr(simulator, action)(ident_of(request)))

    return [
        web.get("/generators", list_generators),
        web.post("/generators", add_generator),
        web.get("/generators/{id}", get_generator),
        web.delete("/generators/{id}", remove_generator),
        web.post("/generators/{id}/{action}", act),
        web.get("/generators/{endpoint}/{id}", get_generator),  # an endpoint's: ENDPOINT/POINT
        web.delete("/generators/{endpoint}/{id}", remove_generator),
        web.post("/generators/{endpoint}/{id}/{action}", act),
    ]
