"""The control API's fault rules (docs/faults.md): the JSON each route takes and gives, over `Server.faults`.

Plain functions of the server and a parsed body, so that the routes in `app.py` stay one line each. A mistake in
the body is a ValueError (400), an unknown rule a LookupError (404).
"""

from modbusd import Server

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
