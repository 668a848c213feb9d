"""The control API under load and under attack: a long listing never holds up Modbus clients, a web page cannot
reach it (DNS rebinding, cross-site writes), and no request, however malformed or slow, gets a 500 or a
connection held open forever.

The API runs in the loop of a Server served from a background thread (conftest's `start_server`), as under
`modbusd --http`; requests go over real sockets on 127.0.0.1 with http.client, which sends headers exactly as given.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modbusd import Device, Location, Point, Server, Table, ValueType
from modbusd.config import ConfigError, loads
from tests.conftest import HOST, TIMEOUT, RawClient
from tests.test_cli import Modbusd, assert_one_line_error, free_port
from tests.test_cli_config import modbusd_cli

pytest.importorskip("aiohttp")
from modbusd.web import MAX_BODY, HttpApi, Limits  # after the skip: aiohttp is an optional extra
from modbusd.web.checks import HostCheck, same_origin, token_matches

TOKEN = "a-long-enough-secret-token"
Started = tuple[Server, HttpApi]


def call(
    port: int, method: str, path: str, body: object = None, *, host: str | None = None,
    headers: dict[str, str] | None = None, timeout: float = TIMEOUT,
) -> tuple[int, dict, http.client.HTTPMessage]:  # fmt: skip
    """One request, with Host 127.0.0.1:PORT and, with a body, Content-Type application/json unless told otherwise;
    (status, JSON answer, response headers). Any answer that is not JSON fails the test."""
    sent = {"Host": host if host is not None else f"{HOST}:{port}"}
    if body is not None:
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, data, {k: v for k, v in sent.items() if v != ""})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert response.headers.get_content_type() == "application/json", payload[:200]
    return response.status, json.loads(payload), response.headers


def named_points(count: int) -> Device:
    """A device with `count` named points: every holding register, then input registers, coils, discrete inputs."""
    device = Device()
    tables = (Table.HOLDING_REGISTERS, Table.INPUT_REGISTERS, Table.COILS, Table.DISCRETE_INPUTS)
    word, bit = ValueType.parse("ushort"), ValueType.parse("bit")
    for i in range(count):
        table = tables[i // 65536]
        device.points[f"p{i}"] = Point(f"p{i}", Location(table, i % 65536), bit if table.is_bits else word)
    return device


def page_through(port: int, limit: int, timeout: float = 60.0) -> list[str]:
    """Every point's name, following next_offset from 0 to the end."""
    names: list[str] = []
    offset: int | None = 0
    while offset is not None:
        status, answer, _ = call(port, "GET", f"/points?offset={offset}&limit={limit}", timeout=timeout)
        assert status == 200, answer
        assert answer["offset"] == offset and answer["total"] >= len(names)
        names += [p["name"] for p in answer["points"]]
        offset = answer["next_offset"]
    return names


# ------------------------------------------------------------------------ item 6: listing, paged and sliced


def test_modbus_clients_are_answered_while_a_client_pages_through_20000_points(
    start_api: Callable[..., Started], open_raw: Callable[..., RawClient]
) -> None:
    count = 20_000
    server, api = start_api(named_points(count))
    raw = open_raw(server, timeout=5.0)
    listed: list[list[str]] = []
    pager = threading.Thread(target=lambda: listed.append(page_through(api.port, 1000)), daemon=True)
    pager.start()
    delays = []
    while pager.is_alive() or not delays:
        sent = time.monotonic()
        assert raw.request("03 0000 0001") == bytes.fromhex("03 02 0000")
        delays.append(time.monotonic() - sent)
    pager.join(TIMEOUT)
    assert listed and listed[0] == [f"p{i}" for i in range(count)]  # each point once, in address order
    assert max(delays) < 1.0, f"a Modbus request waited {max(delays):.2f} s for the control API"


def test_listing_every_point_takes_time_in_proportion_to_their_number(start_api: Callable[..., Started]) -> None:
    times = {}
    for count in (10_000, 100_000):
        _, api = start_api(named_points(count))
        began = time.monotonic()
        assert len(page_through(api.port, 1000)) == count
        times[count] = time.monotonic() - began
    # linear: about 10 times as long; the quadratic listing took 100 times as long (and minutes)
    assert times[100_000] < 30 * times[10_000], times


@pytest.mark.parametrize(
    ("query", "status", "shown"),
    [
        ("", 200, (0, 100, 100)),
        ("?offset=150&limit=50", 200, (150, 50, 200)),
        ("?offset=230&limit=50", 200, (230, 20, None)),
        ("?offset=999", 200, (999, 0, None)),
        ("?limit=1001", 400, "limit must be a whole number 1..1000"),
        ("?limit=0", 400, "limit must be a whole number 1..1000"),
        ("?offset=-1", 400, "offset must be a whole number 0 or more"),
        ("?offset=%C3%A9", 400, "offset must be a whole number"),
    ],
)  # fmt: skip
def test_points_are_listed_a_page_at_a_time(
    start_api: Callable[..., Started], query: str, status: int, shown: tuple | str
) -> None:
    _, api = start_api(named_points(250))
    got, answer, _ = call(api.port, "GET", f"/points{query}")
    assert got == status, answer
    if isinstance(shown, str):
        assert shown in answer["error"]
    else:
        offset, size, next_offset = shown
        assert (answer["offset"], len(answer["points"]), answer["next_offset"], answer["total"]) == (
            offset, size, next_offset, 250)  # fmt: skip
        assert all(p["name"] == f"p{offset + i}" for i, p in enumerate(answer["points"]))


# ------------------------------------------------------------- item 7: DNS rebinding and cross-site writes


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:{port}", 200),
        ("localhost:{port}", 200),
        ("LocalHost:{port}", 200),
        ("[::1]:{port}", 200),
        ("localhost", 200),
        ("plant.example:{port}", 200),  # allowed below, as --http-allow-host plant.example
        ("attacker.example:{port}", 421),  # a rebound name
        ("127.0.0.1.attacker.example:{port}", 421),
        ("localhost.attacker.example", 421),
        ("attacker.example:{port}@localhost", 421),
        ("", 421),  # present but empty
    ],
)  # fmt: skip
def test_api_answers_only_to_the_names_of_its_own_address(
    start_api: Callable[..., Started], host: str, status: int
) -> None:
    _, api = start_api(allow_hosts=["plant.example"])
    sent = host.format(port=api.port)
    got, answer, _ = call(api.port, "GET", "/points/40001", host=sent or " ")
    assert got == status, answer
    if status == 421:
        assert "does not answer to the name" in answer["error"] and "--http-allow-host" in answer["error"]
    assert call(api.port, "PUT", "/points/40001", {"value": 7}, host=sent or " ")[0] == status


def test_host_check_on_a_wildcard_address_takes_ip_addresses_but_no_other_name() -> None:
    check = HostCheck.build("0.0.0.0", ["plant.example"])
    assert check.allows("192.0.2.7:8020") and check.allows("[2001:db8::1]:8020") and check.allows("PLANT.example")
    assert not check.allows("attacker.example:8020") and not check.allows("192.0.2.7.nip.io")
    own = HostCheck.build("192.0.2.7")
    assert own.allows("192.0.2.7:8020") and own.allows("localhost") and not own.allows("192.0.2.8")


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Content-Type": "application/json; charset=utf-8"}, 200, None),
        ({"Origin": "http://127.0.0.1:{port}"}, 200, None),  # a page the API itself served
        ({"Content-Type": "text/plain"}, 415, "Content-Type: application/json"),  # a "simple" cross-site fetch
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"),
        ({"Content-Type": ""}, 415, "Content-Type: application/json"),  # none at all
        ({"Origin": "http://attacker.example"}, 403, "another web site"),
        ({"Origin": "http://localhost:{port}"}, 403, "another web site"),  # another origin, though the same machine
        ({"Origin": "null"}, 403, "another web site"),  # a sandboxed frame or a file: page
    ],
)  # fmt: skip
def test_writes_need_json_and_no_foreign_origin(
    start_api: Callable[..., Started], headers: dict[str, str], status: int, message: str | None
) -> None:
    server, api = start_api()
    sent = {k: v.format(port=api.port) for k, v in headers.items()}
    got, answer, _ = call(api.port, "PUT", "/points/40001", {"type": "ushort", "value": 7}, headers=sent)
    assert got == status, answer
    assert server.read("40001") == (7 if status == 200 else 0)  # a refused write wrote nothing
    if message is not None:
        assert message in answer["error"]


def test_reads_from_another_origin_are_answered_without_letting_the_page_see_them(
    start_api: Callable[..., Started],
) -> None:
    _, api = start_api()
    got, _, headers = call(api.port, "GET", "/points/40001", headers={"Origin": "http://attacker.example"})
    assert got == 200 and "Access-Control-Allow-Origin" not in headers  # so a browser keeps the answer from it


def test_get_and_set_pass_the_checks(start_api: Callable[..., Started]) -> None:
    server, api = start_api(token=TOKEN)
    done = modbusd_cli("set", "--http", str(api.port), "--token", TOKEN, "40001", "ushort:513")
    assert (done.returncode, done.stdout, done.stderr) == (0, "513\n", "")
    assert server.read("40001") == 513
    got = modbusd_cli("get", "--http", str(api.port), "--token", TOKEN, "40001", "hex")
    assert (got.returncode, got.stdout) == (0, "0201\n")


def test_cli_allow_host_adds_a_name_and_refuses_a_pattern(launch: Callable[..., Modbusd]) -> None:
    api = free_port()
    child = launch("-p", str(free_port()), "--host", HOST, "--http", str(api), "--http-allow-host", "Plant.Example")
    child.running()
    assert call(api, "GET", "/points/40001", host=f"plant.example:{api}")[0] == 200
    assert call(api, "GET", "/points/40001", host=f"other.example:{api}")[0] == 421
    refused = launch("-p", str(free_port()), "--host", HOST, "--http", str(free_port()), "--http-allow-host", "*:80")
    assert "--http-allow-host: '*:80' is not a host name" in assert_one_line_error(refused)


def test_device_file_allow_hosts_is_read_and_checked() -> None:
    assert loads('[http]\nallow_hosts = ["Plant.example", "[::1]", "10.0.0.5"]\n').http.allow_hosts == (
        "plant.example", "::1", "10.0.0.5")  # fmt: skip
    for text in ('[http]\nallow_hosts = "plant.example"\n', '[http]\nallow_hosts = ["plant.example:8020"]\n',
                 '[http]\nallow_hosts = ["*.example"]\n', "[http]\nallow_hosts = [1]\n"):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            loads(text, "web.toml")
        assert str(caught.value).startswith("web.toml:2: http.allow_hosts: "), str(caught.value)


# ------------------------------------------------------------------- item 14: hostile input, slow clients


def body_request(port: int, body: bytes, headers: str = "") -> bytes:
    return (f"PUT /points/40001 HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n{headers}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        (b'{"value": ' + b"9" * 5000 + b"}", {}, 400, "must be JSON"),
        (b'{"value": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", {}, 400, "must be JSON"),
        (b"\xff\xfe{}", {}, 400, "must be JSON"),
        (b'{"value": "' + b"x" * MAX_BODY + b'"}', {}, 413, f"{MAX_BODY} bytes at most"),
        (b"{}", {"Authorization": "Bearer \xe9\xff"}, 401, "bearer token"),
    ],
    ids=["5000-digit integer", "deep nesting", "not UTF-8", "too large",
         "non-ASCII Authorization"],
)  # fmt: skip
def test_hostile_bodies_and_headers_get_a_4xx_json_answer_and_no_traceback(
    start_api: Callable[..., Started], caplog: pytest.LogCaptureFixture, case: tuple
) -> None:
    body, headers, status, message = case
    _, api = start_api(token=TOKEN)
    caplog.set_level(logging.DEBUG)
    sent = {"Authorization": f"Bearer {TOKEN}", **headers}
    got, answer, _ = call(api.port, "PUT", "/points/40001", body, headers=sent)
    assert got == status and message in answer["error"], answer
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 1


def test_a_body_without_length_past_the_limit_is_refused(start_api: Callable[..., Started]) -> None:
    _, api = start_api()
    connection = http.client.HTTPConnection(HOST, api.port, timeout=TIMEOUT)
    try:
        chunks = iter([b'{"value": "', b"x" * MAX_BODY, b'"}'])
        connection.request("PUT", "/points/40001", chunks, {"Content-Type": "application/json"}, encode_chunked=True)
        response = connection.getresponse()
        assert (response.status, json.load(response)["error"]) == (413, f"the body may have {MAX_BODY} bytes at most")
    finally:
        connection.close()


def test_a_request_that_stops_halfway_through_its_headers_is_closed(start_api: Callable[..., Started]) -> None:
    _, api = start_api(limits=Limits(header_timeout=0.5))
    raw = RawClient(api.port, timeout=TIMEOUT)
    try:
        began = time.monotonic()
        raw.send(f"GET /points HTTP/1.1\r\nHost: {HOST}:{api.port}\r\nX-Slow: ".encode())
        assert raw.closed_by_peer(TIMEOUT)
        assert time.monotonic() - began >= 0.4
    finally:
        raw.close()


def test_a_body_that_stops_halfway_gets_408_and_the_connection_is_closed(start_api: Callable[..., Started]) -> None:
    server, api = start_api(limits=Limits(body_timeout=0.5))
    with socket.create_connection((HOST, api.port), timeout=TIMEOUT) as sock:
        sock.sendall(body_request(api.port, b'{"value": 1}')[:-4])  # the length promises 4 bytes more
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"application/json" in head
    assert json.loads(payload)["error"] == "the body did not arrive within 0.5 s"
    assert server.read("40001") == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.integers(min_value=10**30, max_value=10**300),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
TYPES = st.none() | st.sampled_from(["float", "double", "ushort", "short", "uint", "long", "bit", "bits", "hex",
                                     "string:4", "flaot", "string:0", "string:999", ""]) | st.integers()  # fmt: skip
BODIES = (
    st.fixed_dictionaries({"value": JSON_VALUES}, optional={"type": TYPES}).map(lambda b: json.dumps(b).encode())
    | JSON_VALUES.map(lambda b: json.dumps(b).encode())
    | st.integers(1, 6000).map(lambda n: b'{"value": ' + b"9" * n + b"}")  # past Python's 4300-digit limit
    | st.integers(1, 30_000).map(lambda n: b'{"value": ' + b"[" * n + b"]" * n + b"}")  # past the stack
    | st.binary(max_size=100)
)  # fmt: skip
POINTS = st.sampled_from(["40001", "1.40001", "30001", "00001", "65535.hr", "0.hr.3", "x", "0.co"]) | st.text(
    max_size=12)  # fmt: skip


def test_any_write_is_answered_2xx_or_4xx_json_never_500(start_api: Callable[..., Started]) -> None:
    """The general lesson of the 5,000-digit integer: whatever JSON a client sends, at whatever point, it is
    written or told what is wrong; nothing it sends is modbusd's failure."""
    _, api = start_api()

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(point=POINTS, body=BODIES)
    def write(point: str, body: bytes) -> None:
        path = "/points/" + urllib.parse.quote(point, safe="")
        status, answer, _ = call(api.port, "PUT", path, body)
        assert status == 200 or (400 <= status < 500 and isinstance(answer["error"], str)), (status, answer)

    write()


def test_token_is_compared_whole_and_as_bytes() -> None:
    assert token_matches(f"Bearer {TOKEN}", TOKEN)
    for given_header in (None, "", TOKEN, f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer \udce9\udcff"):
        assert not token_matches(given_header, TOKEN)
    assert same_origin(None, "localhost:8020") and same_origin("HTTP://LOCALHOST:8020", "localhost:8020")
    assert not same_origin("http://localhost:8020", None) and not same_origin(
        "https://localhost:8020", "localhost:8020"
    )


def test_control_api_page_documents_the_limits() -> None:
    page = (Path(__file__).parent.parent / "docs" / "control-api.md").read_text()
    for words in ("?offset=", "next_offset", "--http-allow-host", "allow_hosts", "DNS rebinding", "415", "Origin",
                  "413", "408", "421"):  # fmt: skip
        assert words in page, words
