"""``GET /metrics``: the server's counters in Prometheus' text format, read at scrape time by a prometheus_client
Collector.

Why a Collector and not prometheus_client's Counter objects: a Counter's ``inc()`` takes a lock and a label lookup
on every request, where the server already keeps plain ints (`Server.stats`, `Server.counters()`, each gateway
downstream's): the request path pays for none of this, and a scrape turns those ints into families. Every family is
yielded at every scrape, with no samples while nothing was counted, so that a dashboard finds each name from the
start and docs/metrics.md can be checked against what is exported.

Uses the public API only (`modbusd`), as any embedding program could: ``make_registry(server)`` serves that
program's own exporter as well as the control API's route (`app.py`) and the ``--metrics-port`` listener
(`api.MetricsApi`).
"""

from collections.abc import Iterator
from typing import Any

import modbusd
from modbusd import ExceptionCode, FunctionCode, Server

OUTCOMES = ("ok", "exception", "silent")


def prometheus() -> Any:
    """prometheus_client, or ImportError saying how to install it: it comes with aiohttp in the ``http`` extra."""
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError:
        raise ImportError("GET /metrics needs prometheus-client: pip install 'modbusd[http]'") from None
    return prometheus_client


class ServerCollector:
    """The families of one server's counters (docs/metrics.md lists them: keep the two in step)."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def collect(self) -> Iterator[Any]:
        core = prometheus().core
        counter, gauge = core.CounterMetricFamily, core.GaugeMetricFamily
        server = self._server
        stats = server.stats
        counters = server.counters()
        yield _info(gauge, modbusd.__version__)
        yield from _requests(core, stats.requests)
        yield gauge("modbusd_connections_open", "TCP connections open now (Modbus/TCP and RTU over TCP)",
                    value=float(server.connection_count))  # fmt: skip
        accepted = counter(
            "modbusd_connections_accepted", "TCP connections accepted, per listener", labels=["transport"]
        )
        for transport, count in sorted(stats.accepted.items()):
            accepted.add_metric([transport], count)
        yield accepted
        yield from _events(counter, counters["events"])  # type: ignore[arg-type]  # the hub's dict
        yield from _gateway(counter, gauge, server)
        discarded = counter("modbusd_serial_frames_discarded",
                            "frames discarded for a bad CRC or LRC, a frame cut short or bytes between frames, per "
                            "serial line (its device) or rtu-over-tcp for every RTU-over-TCP client",
                            labels=["line"])  # fmt: skip
        for line, count in sorted(stats.discarded.items()):
            discarded.add_metric([line], count)
        yield discarded
        udp = counters["udp"]
        yield counter("modbusd_udp_requests_dropped", "requests a UDP datagram held after its first, never answered",
                      value=udp["requests_dropped"])  # type: ignore[index]  # fmt: skip
        yield from _simulator(counter, server)


def _simulator(counter: Any, server: Server) -> Iterator[Any]:
    """Each generator's updates and failed updates, each fault rule's matches and faults applied: read from the
    simulator's and the rules' own counts at scrape time, like the families above."""
    updates = counter("modbusd_generator_updates", "values a generator wrote, per generator (its id: the point's "
                      "name or address)", labels=["generator"])  # fmt: skip
    errors = counter("modbusd_generator_errors", "updates a generator could not make (an expression that failed, a "
                     "value that does not fit), per generator", labels=["generator"])  # fmt: skip
    for ident, updated, failed in server.simulator.counts():
        updates.add_metric([ident], updated)
        errors.add_metric([ident], failed)
    matched = counter("modbusd_fault_matched", "requests a fault rule matched, per rule (its id)", labels=["rule"])
    applied = counter("modbusd_fault_applied", "faults a rule applied (matched and fired), per rule", labels=["rule"])
    for rule in server.faults.rules:
        matched.add_metric([str(rule.id)], rule.matched)
        applied.add_metric([str(rule.id)], rule.applied)
    yield from (updates, errors, matched, applied)


def _info(gauge: Any, version: str) -> Any:
    info = gauge("modbusd_build_info", "modbusd's version, as a label; the value is always 1", labels=["version"])
    info.add_metric([version], 1)
    return info


def _requests(core: Any, requests: dict[str, Any]) -> Iterator[Any]:
    """Requests by transport, function and outcome; exceptions by code; bytes; the latency histogram."""
    counter = core.CounterMetricFamily
    total = counter("modbusd_requests", "requests answered (ok, exception) or not answered (silent), by transport "
                    "and function code", labels=["transport", "function", "outcome"])  # fmt: skip
    exceptions = counter("modbusd_exceptions", "exception responses, by transport, function code and exception code",
                         labels=["transport", "function", "code"])  # fmt: skip
    received = counter("modbusd_received_bytes", "bytes received from clients, by transport", labels=["transport"])
    sent = counter("modbusd_sent_bytes", "bytes of the responses sent, by transport", labels=["transport"])
    latency = core.HistogramMetricFamily(
        "modbusd_request_latency_seconds", "time from a request's arrival to its response, by transport: every "
        "answer that waits (gateway, coroutine hook) and serial frame; of the others, a read per KiB received",
        labels=["transport"],
    )  # fmt: skip
    for transport, counts in sorted(requests.items()):
        per_function = by_function(counts)
        for (function, code), count in by_exception(counts):
            exceptions.add_metric([transport, str(function), str(code)], count)
        for function, outcomes in per_function.items():
            for outcome, count in zip(OUTCOMES, outcomes, strict=True):
                if count:
                    total.add_metric([transport, str(function), outcome], count)
        received.add_metric([transport], counts.bytes_in)
        sent.add_metric([transport], counts.bytes_out)
        cumulative, buckets = 0, []
        for bound, count in zip((*(repr(b) for b in counts.BUCKETS), "+Inf"), counts.latency, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        latency.add_metric([transport], buckets, counts.latency_sum)
    yield from (total, exceptions, received, sent, latency)


def by_function(counts: Any) -> dict[int, list[int]]:
    """[ok, exception, silent] per function code that has any, in code order, from one transport's `RequestCounts`
    (`Server.stats`): what /metrics and ``GET /counters`` both show."""
    per_function: dict[int, list[int]] = {}
    for function in range(256):
        if counts.ok[function] or counts.silent[function]:
            per_function[function] = [counts.ok[function], 0, counts.silent[function]]
    for (function, _code), count in by_exception(counts):
        per_function.setdefault(function, [0, 0, 0])[1] += count
    return dict(sorted(per_function.items()))


def by_exception(counts: Any) -> list[tuple[tuple[int, int], int]]:
    """((function code, exception code), count) of one transport's exception responses, in code order."""
    return [((key >> 8, key & 0xFF), count) for key, count in sorted(counts.exceptions.items())]


def request_counts(server: Server) -> dict[str, object]:
    """The server's own request counts per transport as JSON, for ``GET /counters`` (the console's Connections
    panel): every request since the start, not only those a page saw."""
    answer: dict[str, object] = {}
    for transport, counts in sorted(server.stats.requests.items()):
        answer[transport] = {
            "functions": [{"function": function, "name": _name(FunctionCode, function),
                           **dict(zip(OUTCOMES, outcomes, strict=True))}
                          for function, outcomes in by_function(counts).items()],
            "exceptions": [{"function": function, "code": code, "name": _name(ExceptionCode, code), "count": count}
                           for (function, code), count in by_exception(counts)],
            "received_bytes": counts.bytes_in, "sent_bytes": counts.bytes_out,
        }  # fmt: skip
    return answer


def _name(codes: type[FunctionCode] | type[ExceptionCode], code: int) -> str | None:
    """The specification's name of a function or exception code (MODBUS Application Protocol §5.1, §7), if any."""
    try:
        return codes(code).name
    except ValueError:
        return None


def _events(counter: Any, events: dict[str, Any]) -> Iterator[Any]:
    yield counter("modbusd_events_published", "write events made for subscriptions", value=events["published"])
    dropped = counter("modbusd_events_dropped", "events a listener's full queue dropped, per listener",
                      labels=["listener"])  # fmt: skip
    per_listener: dict[str, int] = {}
    for listener in events["listeners"]:  # names may repeat (two listeners of one function): one series each name
        per_listener[listener["name"]] = per_listener.get(listener["name"], 0) + listener["dropped"]
    for name, count in sorted(per_listener.items()):
        dropped.add_metric([name], count)
    yield dropped
    log = events.get("log")
    written = counter("modbusd_events_log_written", "records written to the events log")
    lost = counter("modbusd_events_log_lost", "records the events log could not write or queue")
    if log is not None:
        written.add_metric([], log["written"])
        lost.add_metric([], log["lost"])
    yield from (written, lost)


def _gateway(counter: Any, gauge: Any, server: Server) -> Iterator[Any]:
    names = ("requests", "busy_refusals", "timeouts", "unavailable")
    families = [
        counter("modbusd_gateway_requests", "requests forwarded to a downstream", labels=["downstream"]),
        counter("modbusd_gateway_queue_full", "requests refused with exception 06: the downstream's queue was full",
                labels=["downstream"]),
        counter("modbusd_gateway_timeouts", "requests answered with exception 0x0B: no response in time",
                labels=["downstream"]),
        counter("modbusd_gateway_unavailable", "requests answered with exception 0x0A: the path was down",
                labels=["downstream"]),
    ]  # fmt: skip
    queued = gauge("modbusd_gateway_queued", "requests waiting for a downstream now", labels=["downstream"])
    in_flight = gauge("modbusd_gateway_in_flight", "requests sent to a downstream and not yet answered",
                      labels=["downstream"])  # fmt: skip
    for downstream in server.downstreams.values():
        for family, name in zip(families, names, strict=True):
            family.add_metric([downstream.name], getattr(downstream, name))
        queued.add_metric([downstream.name], downstream.queued)
        in_flight.add_metric([downstream.name], downstream.in_flight)
    yield from (*families, queued, in_flight)


def make_registry(server: Server) -> Any:
    """A prometheus_client registry of `server`'s counters and the process' own (CPU, memory, open files)."""
    client = prometheus()
    registry = client.CollectorRegistry()
    registry.register(ServerCollector(server))
    client.ProcessCollector(registry=registry)
    return registry


def exposition(registry: Any) -> tuple[bytes, str]:
    """The text a scrape gets, and its Content-Type."""
    client = prometheus()
    return client.generate_latest(registry), client.CONTENT_TYPE_LATEST
