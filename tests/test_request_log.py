"""The live request log: nothing recorded (and nothing observed) while nobody follows; while someone does, one
record per request over every transport; a bounded ring and follower queue; ``GET /log`` behind the API's rules.

Servers run in a background thread (conftest's `start_server`); the traffic comes from pymodbus or a raw socket.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient, ModbusUdpClient

from modbusd import Device, Server
from modbusd.hooks import WRITE_FUNCTIONS
from modbusd.server import TcpTarget
from modbusd.traffic import RequestLog, describe_request
from tests.conftest import HOST, TIMEOUT, RawClient, mbap_frame, wait_until

pytest.importorskip("aiohttp")
from modbusd.web import HttpApi  # after the skip: aiohttp is an optional extra

TOKEN = "a-long-enough-secret-token"


def in_loop(server: Server, call: Callable[[], Any]) -> Any:
    """`call()` in the server's loop, where the request log lives."""

    async def run() -> Any:
        return call()

    return asyncio.run_coroutine_threadsafe(run(), server._loop).result(TIMEOUT)


def traffic(server: Server) -> None:
    """A read, a write and a refused read over Modbus/TCP."""
    client = ModbusTcpClient(HOST, port=server.port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        assert not client.read_holding_registers(0, count=2).isError()
        assert not client.write_registers(3, [1, 2]).isError()
        assert client.read_input_registers(65535, count=2).exception_code == 2
    finally:
        client.close()


# ------------------------------------------------------------------------------------ the request path


def test_nobody_following_records_nothing_and_leaves_the_hot_path_as_it_was(
    start_server: Callable[..., Server],
) -> None:
    server = start_server(udp=0, rtu_over_tcp=0)
    traffic(server)
    assert server.requests.records() == []
    assert server._hub.observed == set()  # the answer functions' one set lookup finds nothing: no detour at all

    follower = in_loop(server, lambda: server.requests.follow(lambda: None))
    traffic(server)
    udp = ModbusUdpClient(HOST, port=server.udp_port, timeout=TIMEOUT, retries=0)
    rtu = ModbusTcpClient(HOST, port=server.rtu_over_tcp_port, framer=FramerType.RTU, timeout=TIMEOUT, retries=0)
    try:
        assert udp.connect() and rtu.connect()
        assert not udp.write_register(9, 99).isError()
        assert not rtu.write_coil(4, True, device_id=1).isError()
    finally:
        udp.close()
        rtu.close()
    records, dropped = in_loop(server, follower.take)
    assert dropped == 0
    assert [(r["transport"], r["function"], r.get("address"), r.get("values"), r["outcome"]) for r in records] == [
        ("tcp", 3, 0, None, "ok"),
        ("tcp", 16, 3, [1, 2], "ok"),
        ("tcp", 4, 65535, None, "exception"),
        ("udp", 6, 9, [99], "ok"),
        ("rtu-over-tcp", 5, 4, [1], "ok"),
    ]
    assert records[2]["exception"] == 2 and records[2]["exception_name"] == "ILLEGAL_DATA_ADDRESS"
    assert all(r["latency_ms"] >= 0 and r["client"].startswith("127.0.0.1:") for r in records)
    assert server.requests.records() == records

    in_loop(server, lambda: server.requests.unfollow(follower))
    assert server._hub.observed == set()
    traffic(server)
    assert len(server.requests.records()) == len(records)  # nobody follows: nothing more recorded


def test_following_ends_with_writes_still_observed_for_the_events_log(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server(events_log=tmp_path / "events.jsonl")
    assert server._hub.observed == set(WRITE_FUNCTIONS)
    follower = in_loop(server, lambda: server.requests.follow(lambda: None))
    assert server._hub.observed == set(range(256))
    in_loop(server, lambda: server.requests.unfollow(follower))
    assert server._hub.observed == set(WRITE_FUNCTIONS)


def test_requests_for_a_unit_without_a_device_and_hook_answers_are_recorded(
    start_server: Callable[..., Server],
) -> None:
    def hook(_server: str, _client: str, _unit: int, pdu: bytes) -> bytes | None:
        return bytes((pdu[0], 2, 0, 42)) if pdu[:3] == b"\x03\x00\x07" else None

    server = start_server({1: Device()}, hook=hook)
    follower = in_loop(server, lambda: server.requests.follow(lambda: None))
    client = ModbusTcpClient(HOST, port=server.port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(7, count=1, device_id=1).registers == [42]  # the hook answers
        assert client.read_holding_registers(0, count=1, device_id=5).exception_code == 0x0B
    finally:
        client.close()
    records, _ = in_loop(server, follower.take)
    assert [(r["unit_id"], r["address"], r["outcome"], r.get("exception")) for r in records] == [
        (1, 7, "ok", None), (5, 0, "exception", 0x0B)]  # fmt: skip


def test_a_forwarded_request_is_recorded_when_its_answer_comes(start_server: Callable[..., Server]) -> None:
    downstream = start_server()
    downstream.write("40001", 1234)
    gateway = start_server(Device(), forward={7: TcpTarget(HOST, downstream.port)})
    follower = in_loop(gateway, lambda: gateway.requests.follow(lambda: None))
    client = ModbusTcpClient(HOST, port=gateway.port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(0, count=1, device_id=7).registers == [1234]
    finally:
        client.close()
    records, _ = in_loop(gateway, follower.take)
    assert [(r["unit_id"], r["function"], r["outcome"]) for r in records] == [(7, 3, "ok")]
    assert records[0]["latency_ms"] > 0  # from the request to the downstream device's answer
    assert downstream.requests.records() == []  # nobody follows the downstream server


# ------------------------------------------------------------------------------------ records and rings


@pytest.mark.parametrize(
    ("pdu", "expected"),
    [
        pytest.param("05 00AC FF00", {"address": 172, "quantity": 1, "values": [1]}, id="FC05 on"),
        pytest.param("0F 0013 000A 02 CD01", {"address": 19, "quantity": 10,
                     "values": [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]}, id="FC15 spec example"),  # §6.11
        pytest.param("10 0001 0014 28" + "0007" * 20, {"address": 1, "quantity": 20, "values": [7] * 16,
                     "more_values": 4}, id="FC16 shortened"),
        pytest.param("16 0004 00F2 0025", {"address": 4, "quantity": 1, "values": [0xF2, 0x25]}, id="FC22 masks"),
        pytest.param("17 0003 0006 000E 0003 06 00FF 00FF 00FF", {"address": 3, "quantity": 6, "write_address": 14,
                     "values": [255, 255, 255]}, id="FC23 spec example"),  # §6.17
        pytest.param("41 0102", {"data": "0102"}, id="unknown function"),
    ],
)  # fmt: skip
def test_a_record_names_address_quantity_and_the_values_written(pdu: str, expected: dict[str, object]) -> None:
    described = describe_request(bytes.fromhex(pdu))
    assert described["function"] == int(pdu[:2], 16)
    assert {k: v for k, v in described.items() if k not in ("function", "function_name", "more_values")} | (
        {"more_values": described["more_values"]} if "more_values" in expected else {}) == expected  # fmt: skip


def test_a_follower_that_falls_behind_loses_the_oldest_records_and_is_told_how_many() -> None:
    log = RequestLog(size=4, follower_queue=3)
    woken: list[int] = []
    follower = log.follow(lambda: woken.append(1))
    for address in range(10):
        log.record("127.0.0.1:1", "tcp", 1, bytes((3, 0, address, 0, 1)), b"\x03\x02\x00\x00")
    records, dropped = follower.take()
    assert [r["address"] for r in records] == [7, 8, 9] and dropped == 7
    assert [r["address"] for r in log.records()] == [6, 7, 8, 9]  # the ring keeps the last `size`
    assert woken == [1]  # woken once, when its queue stopped being empty
    assert follower.take() == ([], 0)


def test_a_capped_follower_gets_its_records_a_second_spread_over_the_second_and_the_count_of_the_rest() -> None:
    now = [100.0]
    log = RequestLog(clock=lambda: now[0])

    def send(addresses: range) -> None:
        for address in addresses:
            log.record("127.0.0.1:1", "tcp", 1, bytes((3, 0, address, 0, 1)), b"\x03\x02\x00\x00")

    capped = log.follow(lambda: None, per_second=20)  # 2 in each tenth of a second
    send(range(10))
    assert [r["address"] for r in capped.take()[0]] == [0, 1] and capped.not_shown() == 8
    assert capped.not_shown() == 0  # told once
    now[0] += 0.1
    send(range(10, 15))
    assert [r["address"] for r in capped.take()[0]] == [10, 11] and capped.not_shown() == 3
    everything = log.follow(lambda: None)  # a follower that wants every request lifts the cap for all
    send(range(20, 25))
    assert [r["address"] for r in everything.take()[0]] == [20, 21, 22, 23, 24]
    assert [r["address"] for r in capped.take()[0]] == [20, 21, 22, 23, 24] and capped.not_shown() == 0
    log.unfollow(everything)
    now[0] += 0.1
    send(range(30, 33))
    assert [r["address"] for r in capped.take()[0]] == [30, 31] and capped.not_shown() == 1
    assert [r["address"] for r in log.records()][-2:] == [30, 31]  # the ring keeps what was recorded


def test_a_log_whose_observer_pauses_is_told_when_a_window_is_spent_and_counts_nothing_meanwhile() -> None:
    now = [100.0]
    log = RequestLog(clock=lambda: now[0])
    pauses: list[float] = []
    log.pause = lambda seconds: pauses.append(seconds) or True
    follower = log.follow(lambda: None, per_second=20)  # 2 in each tenth of a second
    now[0] += 0.04
    for address in range(5):
        log.record("127.0.0.1:1", "tcp", 1, bytes((3, 0, address, 0, 1)), b"\x03\x02\x00\x00")
    assert pauses == [pytest.approx(0.1)]  # the window opened by the first record, the second spending it
    assert [r["address"] for r in follower.take()[0]] == [0, 1]
    assert log.paused and log.skipped == 0  # the three others are the observer's to count


def test_past_the_cap_requests_take_the_unobserved_path_and_are_counted_from_the_servers_counts(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    follower = in_loop(server, lambda: server.requests.follow(lambda: None, 10))  # one record in each 0.1 s
    paused: list[bool] = []
    hub_pause = server.requests.pause
    assert hub_pause is not None
    server.requests.pause = lambda seconds: paused.append(hub_pause(seconds)) or paused[-1]
    raw = RawClient(server.port)
    try:  # 20 requests in one segment: one read, one window; the first is recorded, then the hub pauses
        raw.send(b"".join(mbap_frame(tid, 1, f"03 {tid:04X} 0001") for tid in range(20)))
        raw.recv_exact(20 * 11)
    finally:
        raw.sock.close()
    assert wait_until(lambda: in_loop(server, lambda: not server.requests.paused))  # resumed when the window ended
    assert paused == [True]  # the hub stopped observing: the 19 others took the path of nobody following
    records, dropped = in_loop(server, follower.take)
    assert [r["address"] for r in records] == [0] and dropped == 0
    assert in_loop(server, follower.not_shown) == 19  # counted from the server's own counts, on resuming
    assert server.stats.total() == 20
    in_loop(server, lambda: server.requests.unfollow(follower))


# ------------------------------------------------------------------------------------------ over HTTP


def start_api(server: Server, **options: Any) -> HttpApi:
    return asyncio.run_coroutine_threadsafe(HttpApi.start(server, port=0, **options), server._loop).result(TIMEOUT)


def test_get_log_follows_in_batches_reports_drops_and_obeys_the_api_rules(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    server.requests.follower_queue = 5
    api = start_api(server, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for headers, path, status in [({}, "/log", 401), ({}, "/log?follow=1", 401),
                                      ({**auth, "Host": "evil.example"}, "/log?follow=1", 421),
                                      ({**auth}, "/log?follow=yes", 400)]:  # fmt: skip
            connection = http.client.HTTPConnection(HOST, api.port, timeout=TIMEOUT)
            connection.request("GET", path, headers=headers)
            assert connection.getresponse().status == status, (headers, path)
            connection.close()
        assert server.requests.followers == []  # none of those got as far as following

        connection = http.client.HTTPConnection(HOST, api.port, timeout=TIMEOUT)
        connection.request("GET", "/log?follow=1", headers=auth)
        response = connection.getresponse()
        assert response.status == 200 and response.headers.get_content_type() == "application/x-ndjson"
        raw = RawClient(server.port)
        try:  # 20 requests in one segment: answered in one go, faster than any follower reads
            raw.send(b"".join(mbap_frame(tid, 1, f"03 {tid:04X} 0001") for tid in range(20)))
            raw.recv_exact(20 * 11)
        finally:
            raw.sock.close()
        lines: list[dict[str, Any]] = []
        while not lines or lines[-1].get("address") != 19:  # bounded: the socket's time-out ends a silent wait
            line = response.readline()
            if line.strip():
                lines.append(json.loads(line))
        connection.close()
        dropped = sum(line.get("dropped", 0) for line in lines)
        shown = [line["address"] for line in lines if "address" in line]
        assert dropped > 0 and dropped + len(shown) == 20  # 20 at once into a queue of 5: 15 lost (if read at once)
        assert shown == sorted(shown) and shown[-5:] == [15, 16, 17, 18, 19]

        connection = http.client.HTTPConnection(HOST, api.port, timeout=TIMEOUT)
        connection.request("GET", "/log", headers=auth)
        ring = connection.getresponse().read().decode().splitlines()
        connection.close()
        assert [json.loads(line)["address"] for line in ring] == list(range(20))
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), server._loop).result(TIMEOUT)
    assert server.requests.followers == []  # the stream ended with the API


def test_get_log_follow_with_a_cap_says_how_many_requests_it_did_not_show(start_server: Callable[..., Server]) -> None:
    server = start_server()
    api = start_api(server)
    try:
        connection = http.client.HTTPConnection(HOST, api.port, timeout=TIMEOUT)
        connection.request("GET", "/log?follow=1&per_second=0")
        assert connection.getresponse().status == 400
        connection.close()
        connection = http.client.HTTPConnection(HOST, api.port, timeout=TIMEOUT)
        connection.request("GET", "/log?follow=1&per_second=10")  # one record in each tenth of a second
        response = connection.getresponse()
        assert response.status == 200
        raw = RawClient(server.port)
        try:  # 20 requests in one segment, answered within far less than a tenth of a second on any machine
            raw.send(b"".join(mbap_frame(tid, 1, f"03 {tid:04X} 0001") for tid in range(20)))
            raw.recv_exact(20 * 11)
        finally:
            raw.sock.close()
        shown, not_shown = [], 0
        while len(shown) + not_shown < 20:  # bounded: the socket's time-out ends a silent wait
            line = response.readline()
            if line.strip():
                record = json.loads(line)
                not_shown += record.get("not_shown", 0)
                shown += [record["address"]] if "address" in record else []
        connection.close()
        assert shown[0] == 0 and len(shown) <= 3 and not_shown == 20 - len(shown), (shown, not_shown)
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), server._loop).result(TIMEOUT)
