"""GET /metrics: what a Prometheus scrape reads, parsed by prometheus_client's own text parser, equals what clients
sent: requests by transport, function and outcome, exceptions by code, bytes, connections, events, the gateway's
downstream counts, discarded RTU frames. Over the control API in-process, and through --metrics-port on the real
command line; and the names docs/metrics.md lists are exactly the names exported.
"""

import asyncio
import re
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient

from modbusd import Device, Server
from modbusd.config import ConfigError, MetricsConfig, loads, summary
from modbusd.protocol.rtu import with_crc
from modbusd.server import TcpTarget
from modbusd.web import HttpApi, MetricsApi, make_metrics_app
from modbusd.web.api import HttpApi as Runner
from modbusd.web.app import DEFAULT_LIMITS
from tests.conftest import HOST, free_port, mbap_frame
from tests.test_cli import Modbusd
from tests.test_cli_config import modbusd_cli

TIMEOUT = 5.0
DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape, by (sample name, labels), as prometheus_client's parser reads them."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def of(found: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (sample, labels), value in found.items() if sample == name}


def labels(**given: str) -> frozenset[tuple[str, str]]:
    return frozenset(given.items())


async def scrape(port: int, host: str | None = None) -> tuple[int, str]:
    headers = {"Host": host} if host else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        session.get(f"http://{HOST}:{port}/metrics", headers=headers) as response,
    ):
        return response.status, await response.text()


async def raw(port: int, data: bytes, answer: int) -> tuple[asyncio.StreamWriter, bytes]:
    """Send `data` on a new connection and read `answer` bytes back; the connection stays open."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    return writer, await asyncio.wait_for(reader.readexactly(answer), TIMEOUT)


def datagram(port: int | None, data: bytes) -> bytes:
    assert port is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(data, (HOST, port))
        return sock.recv(300)


async def clients_send_a_known_mix(server: Server) -> list[AsyncModbusTcpClient | asyncio.StreamWriter]:
    """Connections left open: pymodbus's, a raw MBAP one, an RTU-over-TCP one.

    pymodbus: 5 reads, 3 writes to 1.hr, one FC16, one read past the table (02). Raw MBAP: an unknown function (01)
    and a read of 0 registers (03). RTU over TCP: a frame with a bad CRC, then a good read, in one write. UDP: a read.
    """
    client = AsyncModbusTcpClient(HOST, port=server.port, timeout=TIMEOUT, retries=0)
    await client.connect()
    for _ in range(5):
        assert not (await client.read_holding_registers(0, count=10)).isError()
    for _ in range(3):
        assert not (await client.write_register(1, 7)).isError()
    assert not (await client.write_registers(10, [1, 2, 3])).isError()
    assert (await client.read_holding_registers(65535, count=3)).exception_code == 2
    tcp, reply = await raw(server.port, mbap_frame(1, 1, "41") + mbap_frame(2, 1, "03 0000 0000"), 18)
    assert reply == mbap_frame(1, 1, "C1 01") + mbap_frame(2, 1, "83 03")
    good = with_crc(bytes.fromhex("01 03 0000 0002"))
    bad = good[:-1] + bytes((good[-1] ^ 0xFF,))
    rtu, reply = await raw(server.rtu_over_tcp_port, bad + good, 9)  # type: ignore[arg-type]  # served
    assert reply == with_crc(bytes.fromhex("01 03 04 0000 0007"))  # 1.hr: written 7 above
    assert await asyncio.to_thread(datagram, server.udp_port, mbap_frame(9, 1, "03 0000 0001")) == mbap_frame(
        9, 1, "03 02 0000")  # fmt: skip
    return [client, tcp, rtu]


def test_metrics_over_the_control_api_count_exactly_what_clients_sent() -> None:
    async def main() -> Samples:
        server = Server(Device(), host=HOST, port=0, rtu_over_tcp=0, udp=0)
        server.subscribe("1.hr")
        async with server:
            api = await HttpApi.start(server, port=0)
            try:
                writers = await clients_send_a_known_mix(server)
                status, text = await scrape(api.port)
                assert status == 200, text
                for writer in writers:
                    writer.close()
            finally:
                await api.stop()
        return samples(text)

    found = asyncio.run(main())
    assert of(found, "modbusd_requests_total") == {
        labels(transport="tcp", function="3", outcome="ok"): 5,
        labels(transport="tcp", function="6", outcome="ok"): 3,
        labels(transport="tcp", function="16", outcome="ok"): 1,
        labels(transport="tcp", function="3", outcome="exception"): 2,
        labels(transport="tcp", function="65", outcome="exception"): 1,
        labels(transport="rtu-over-tcp", function="3", outcome="ok"): 1,
        labels(transport="udp", function="3", outcome="ok"): 1,
    }
    assert of(found, "modbusd_exceptions_total") == {
        labels(transport="tcp", function="3", code="2"): 1,
        labels(transport="tcp", function="3", code="3"): 1,
        labels(transport="tcp", function="65", code="1"): 1,
    }
    # MBAP requests: 5 x 12 (FC03) + 3 x 12 (FC06) + 19 (FC16) + 12 (FC03) + 8 (FC65) + 12 (FC03, 0 registers)
    assert of(found, "modbusd_received_bytes_total") == {labels(transport="tcp"): 147, labels(transport="udp"): 12,
                                                         labels(transport="rtu-over-tcp"): 16}  # fmt: skip
    # responses: 5 x 29 + 3 x 12 + 12 + 3 exceptions x 9; RTU: 1 + 1 + 1 + 4 + 2
    assert of(found, "modbusd_sent_bytes_total") == {labels(transport="tcp"): 220, labels(transport="udp"): 11,
                                                     labels(transport="rtu-over-tcp"): 9}  # fmt: skip
    # one read per KiB of a transport's bytes is timed: here (147, 12 and 16 bytes) the first read of each
    assert of(found, "modbusd_request_latency_seconds_count") == {
        labels(transport="tcp"): 1, labels(transport="udp"): 1, labels(transport="rtu-over-tcp"): 1}  # fmt: skip
    assert of(found, "modbusd_connections_accepted_total") == {labels(transport="tcp"): 2,
                                                               labels(transport="rtu-over-tcp"): 1}  # fmt: skip
    assert of(found, "modbusd_connections_open") == {labels(): 3}  # closed after the scrape
    assert of(found, "modbusd_serial_frames_discarded_total") == {labels(line="rtu-over-tcp"): 1}
    assert of(found, "modbusd_events_published_total") == {labels(): 3}
    assert of(found, "modbusd_build_info") and of(found, "modbusd_udp_requests_dropped_total") == {labels(): 0}


def test_metrics_count_the_gateways_forwarded_timed_out_refused_and_unavailable_requests() -> None:
    """A downstream that never answers: the first request times out (0x0B) and, with one in flight and no queue, the
    second is refused (06); a downstream whose port is closed: 0x0A. Each forwarded answer is timed, from request to
    response."""

    async def main() -> tuple[Samples, int, int]:
        silent = await asyncio.start_server(lambda r, w: None, HOST, 0)
        closed = free_port()
        silent_port = silent.sockets[0].getsockname()[1]
        forward = {5: TcpTarget(HOST, silent_port), 6: TcpTarget(HOST, closed)}
        server = Server(Device(), host=HOST, port=0, forward=forward, forward_timeout=0.3, forward_queue=0,
                        forward_in_flight=1)  # fmt: skip
        async with server:
            first, reply = await raw(server.port, mbap_frame(1, 5, "03 0000 0001") + mbap_frame(2, 5, "03 0000 0001"),
                                     18)  # fmt: skip
            assert reply == mbap_frame(1, 5, "83 0B") + mbap_frame(2, 5, "83 06")
            second, reply = await raw(server.port, mbap_frame(3, 6, "03 0000 0001"), 9)
            assert reply == mbap_frame(3, 6, "83 0A")
            text = generate(server)
            first.close()
            second.close()
        silent.close()
        return samples(text), silent_port, closed

    found, silent_port, closed = asyncio.run(main())
    requests = of(found, "modbusd_gateway_requests_total")
    assert sorted(requests.values()) == [1, 2]
    by_name = {dict(key)["downstream"]: value for key, value in requests.items()}
    silent_name = next(name for name, value in by_name.items() if value == 2)
    dead_name = next(name for name, value in by_name.items() if value == 1)
    assert (silent_name, dead_name) == (f"TCP {HOST}:{silent_port}", f"TCP {HOST}:{closed}")
    assert of(found, "modbusd_gateway_timeouts_total") == {labels(downstream=silent_name): 1,
                                                           labels(downstream=dead_name): 0}  # fmt: skip
    assert of(found, "modbusd_gateway_queue_full_total") == {labels(downstream=silent_name): 1,
                                                             labels(downstream=dead_name): 0}  # fmt: skip
    assert of(found, "modbusd_gateway_unavailable_total") == {labels(downstream=silent_name): 0,
                                                              labels(downstream=dead_name): 1}  # fmt: skip
    assert of(found, "modbusd_exceptions_total") == {
        labels(transport="tcp", function="3", code="11"): 1,
        labels(transport="tcp", function="3", code="6"): 1,
        labels(transport="tcp", function="3", code="10"): 1,
    }
    # the two forwarded answers are timed (the refusal, answered at once, is the 2nd request: not sampled)
    latency = of(found, "modbusd_request_latency_seconds_bucket")
    assert latency[labels(transport="tcp", le="+Inf")] == 2
    assert latency[labels(transport="tcp", le="0.25")] <= 1  # the time-out took 0.3 s at least
    assert of(found, "modbusd_request_latency_seconds_sum")[labels(transport="tcp")] >= 0.3


def generate(server: Server) -> str:
    from prometheus_client import generate_latest

    from modbusd.web.metrics import make_registry

    return generate_latest(make_registry(server)).decode()


def test_metrics_port_on_the_command_line_counts_what_pymodbus_sent() -> None:
    port, metrics = free_port(), free_port()
    child = Modbusd(["-p", str(port), "--host", HOST, "--metrics-port", str(metrics)])
    try:
        assert f"Metrics on http://127.0.0.1:{metrics}/metrics" in child.running()
        client = ModbusTcpClient(HOST, port=port, timeout=TIMEOUT, retries=0)
        assert client.connect()
        for _ in range(4):
            assert not client.read_holding_registers(0, count=2).isError()
        assert client.write_coil(65535, True).isError() is False
        assert client.read_coils(65535, count=2).exception_code == 2
        client.close()
        with urllib.request.urlopen(f"http://{HOST}:{metrics}/metrics", timeout=TIMEOUT) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            found = samples(response.read().decode())
        request = urllib.request.Request(f"http://{HOST}:{metrics}/metrics", headers={"Host": "rebound.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=TIMEOUT)
        assert refused.value.code == 421  # loopback: a page on another name (DNS rebinding) reads nothing
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://{HOST}:{metrics}/points", timeout=TIMEOUT)
        assert missing.value.code == 404  # the metrics port serves /metrics only: no control API there
    finally:
        assert child.stop(signal.SIGTERM) == 0
    assert of(found, "modbusd_requests_total") == {
        labels(transport="tcp", function="3", outcome="ok"): 4,
        labels(transport="tcp", function="5", outcome="ok"): 1,
        labels(transport="tcp", function="1", outcome="exception"): 1,
    }
    assert of(found, "modbusd_exceptions_total") == {labels(transport="tcp", function="1", code="2"): 1}
    assert of(found, "modbusd_received_bytes_total") == {labels(transport="tcp"): 6 * 12}
    assert of(found, "modbusd_sent_bytes_total") == {labels(transport="tcp"): 4 * 13 + 12 + 9}
    assert of(found, "modbusd_connections_accepted_total") == {labels(transport="tcp"): 1}


def test_metrics_port_off_loopback_answers_any_host_name() -> None:
    """Bound beyond loopback the network reaches it anyway, and Prometheus sends the name its configuration has."""

    async def main() -> tuple[int, int]:
        async with Server(Device(), host=HOST, port=0) as server:
            wide = await Runner.serve(make_metrics_app(server, host="0.0.0.0"), HOST, 0, DEFAULT_LIMITS)
            narrow = await MetricsApi.start(server, host=HOST, port=0)
            try:
                return (await scrape(wide.port, "plant.example:9502"))[0], (await scrape(narrow.port, "plant.example"))[
                    0
                ]
            finally:
                await wide.stop()
                await narrow.stop()

    assert asyncio.run(main()) == (200, 421)


def test_metrics_port_in_use_is_one_line_naming_the_option_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        done = modbusd_cli("-p", str(free_port()), "--host", HOST, "--metrics-port", str(taken))
    assert done.returncode == 2
    assert f"modbusd: port {taken} on 127.0.0.1 is already in use by another program" in done.stderr
    assert "--metrics-port" in done.stderr.splitlines()[-1] and "Traceback" not in done.stderr


def test_metrics_host_without_a_port_is_one_line_and_exit_2() -> None:
    done = modbusd_cli("--metrics-host", "127.0.0.1")
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "modbusd: --metrics-host needs --metrics-port PORT (or [metrics] port in the device file)"
    )


def test_metrics_table_of_the_device_file() -> None:
    assert loads("[metrics]\nport = 9502\n").metrics == MetricsConfig(9502, "127.0.0.1")
    assert loads('[metrics]\nport = 9502\nhost = "0.0.0.0"\n').metrics == MetricsConfig(9502, "0.0.0.0")
    assert loads("[server]\nport = 5020\n").metrics is None
    with pytest.raises(ConfigError, match=r"port is missing"):
        loads('[metrics]\nhost = "127.0.0.1"\n')
    assert "metrics: GET /metrics on 127.0.0.1 port 9502" in summary(loads("[metrics]\nport = 9502\n"))


def documented() -> set[str]:
    """The metric names of docs/metrics.md's table (its first column)."""
    return set(re.findall(r"^\| `(modbusd_\w+)` \|", DOCS.read_text(encoding="utf-8"), re.MULTILINE))


def exported() -> set[str]:
    """The names a scrape shows: counters with their _total, as their samples are named."""
    server = Server(Device(), host=HOST, port=0)
    names = set()
    for family in text_string_to_metric_families(generate(server)):
        if family.name.startswith("modbusd_"):
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def test_metrics_every_exported_name_is_documented() -> None:
    assert exported() - documented() == set()


def test_metrics_every_documented_name_is_exported() -> None:
    assert documented() - exported() == set()
    assert len(documented()) >= 19


def test_metrics_count_each_generators_updates_and_errors_and_each_fault_rules_faults() -> None:
    """Generators on an injected clock: a counter updates at t = 0, 1, 2 s; an expression divides by zero at t = 1 s
    (one error, two updates). A rule faulting every 2nd FC03: four reads match it, two get exception 06."""

    async def main() -> tuple[Server, Samples]:
        server = Server(Device(), host=HOST, port=0)
        clock = [0.0]
        server.simulator.clock = lambda: clock[0]
        server.simulator.add("0.hr", "counter(step=1, every=1s)")
        server.simulator.add("1.hr", 'expression("10 / (t - 1)", every=1s)', "short")
        for clock[0] in (1.0, 2.0):
            server.simulator.run_due()
        server.faults.add("fc=3 every=2 action=exception:06")
        server.faults.add("fc=6 action=exception:04")  # never matched: its counts are there, at 0
        async with server:
            client = AsyncModbusTcpClient(HOST, port=server.port, timeout=TIMEOUT, retries=0)
            await client.connect()
            outcomes = [(await client.read_holding_registers(0, count=1)).isError() for _ in range(4)]
            client.close()
            assert outcomes == [False, True, False, True]
            return server, samples(generate(server))

    server, found = asyncio.run(main())
    assert of(found, "modbusd_generator_updates_total") == {labels(generator="0.hr"): 3, labels(generator="1.hr"): 2}
    assert of(found, "modbusd_generator_errors_total") == {labels(generator="0.hr"): 0, labels(generator="1.hr"): 1}
    assert [(g["id"], g["updates"], g["errors"]) for g in server.simulator.list()] == [("0.hr", 3, 0), ("1.hr", 2, 1)]
    assert of(found, "modbusd_fault_matched_total") == {labels(rule="1"): 4, labels(rule="2"): 0}
    assert of(found, "modbusd_fault_applied_total") == {labels(rule="1"): 2, labels(rule="2"): 0}
