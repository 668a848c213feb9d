"""The HTTP control API: JSON over aiohttp, in the same asyncio loop as the Modbus server.

It uses only the public API (`modbusd`), as any program embedding modbusd could. aiohttp is an optional extra
(``pip install 'modbusd[http]'``): the server core needs nothing beyond the standard library.

Endpoints (every answer is JSON; a mistake is a 4xx with ``{"error": "what is wrong"}``):

- ``GET /points?offset=N&limit=N``: a page of the data points, with their addresses in each notation, type,
  order, unit, comment and value, the total and the next page's offset.
- ``GET /points/{point}[?type=T]``: a point by name, or any address in any notation, read as its type or as T.
- ``PUT /points/{point}`` with ``{"value": V}``, ``{"type": T, "value": V}`` or ``{"value": "T:V"}``: write it, any
  table included (discrete inputs and input registers are read-only for clients, not for the owner).
- ``GET /points/{point}?count=N[&type=T]``: N values laid end to end from there (at most 125 registers' or 2,000
  bits' worth), each with its address in the notation of ``{point}``, its raw registers and its value.
- ``GET /counters``: open connections and each device's FC08 counters.
- ``GET /log[?follow=1]``: the live request log as JSON lines; ``follow=1`` streams it (`log.py`).
- ``GET /metrics``: the counters in Prometheus' text format (`metrics.py`); also alone on a port of its own
  (`MetricsApi`, ``--metrics-port``) when the control API is off.

With a token, every request needs ``Authorization: Bearer <token>``. Binding an address other than loopback
without a token is refused, since this API can write anything. Whatever the token, browsers are kept out: see
`checks.py` (Host, Origin, Content-Type) and `app.Limits` (time-outs, body size).

Modules: `checks` (header rules, no HTTP), `points` (JSON, ranges and the paged listing), `log` (the request log),
`metrics` (Prometheus), `app` (routes and the guard),
`api` (the runner).
"""

from modbusd.web.api import DEFAULT_PORT, LOOPBACK, HttpApi, MetricsApi, make_metrics_app
from modbusd.web.app import BODY_TIMEOUT, HEADER_TIMEOUT, MAX_BODY, Limits, MissingDependency, make_app
from modbusd.web.points import Paging

__all__ = [
    "BODY_TIMEOUT",
    "DEFAULT_PORT",
    "HEADER_TIMEOUT",
    "LOOPBACK",
    "MAX_BODY",
    "HttpApi",
    "Limits",
    "MetricsApi",
    "MissingDependency",
    "Paging",
    "make_app",
    "make_metrics_app",
]
