"""The console's side of the control API, over real sockets: where browsers land, the files and the headers that
keep other sites out, the grid's window of typed values, the connections, and writes in a chosen word order.

The page itself runs in a browser in `test_console_browser.py`.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from modbusd import Device, Server
from modbusd.config import loads
from tests.conftest import HOST, TIMEOUT
from tests.test_web_hardening import TOKEN, Started, call

pytest.importorskip("aiohttp")
from modbusd.web.static import load

ROOT = Path(__file__).resolve().parents[1]


def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """(status, headers, body) of one GET, whatever its content type."""
    connection = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    try:
        connection.request("GET", path, headers={"Host": f"{HOST}:{port}", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_browsers_are_sent_to_the_console_and_programs_keep_the_json_index(start_api: Callable[..., Started]) -> None:
    _, api = start_api(token=TOKEN)
    status, headers, _ = fetch(api.port, "/", BROWSER)  # no token: the way to the page holds no data
    assert (status, headers["Location"]) == (302, "/console/")
    assert fetch(api.port, "/")[0] == 401  # a program asking for the index still needs the token
    got, index, _ = call(api.port, "GET", "/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert got == 200 and "GET /window?unit=U&table=hr&start=N&count=N&type=T&order=O" in index["endpoints"]


def test_console_files_come_with_headers_that_keep_other_sites_out(start_api: Callable[..., Started]) -> None:
    _, api = start_api(token=TOKEN)
    status, headers, body = fetch(api.port, "/console/")
    assert status == 200 and headers.get_content_type() == "text/html" and b"console.js" in body
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy  # no framing, nothing from afar
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert fetch(api.port, "/console/grid.js")[1].get_content_type() == "text/javascript"
    for path in ("/console/__init__.py", "/console/..%2Fapp.py", "/console/../app.py", "/console/nothing.js"):
        assert fetch(api.port, path)[0] == 404, path
    assert fetch(api.port, "/window?table=hr&start=0&count=1")[0] == 401  # the data still needs the token


def test_every_file_the_page_names_is_shipped_in_the_package() -> None:
    files = load()
    named = set(re.findall(r'(?:src|href)="([\w.]+)"', files["index.html"].body.decode()))
    for name, found in files.items():
        if name.endswith(".js"):
            named |= set(re.findall(r'from "\./([\w.]+)"', found.body.decode()))
    assert {"console.js", "grid.js", "uPlot.iife.min.js", "uPlot.min.css", "style.css"} <= named
    assert named <= set(files), named - set(files)
    assert "MIT License" in files["uPlot.LICENSE.txt"].body.decode()  # the vendored library's licence ships too


def test_window_reads_typed_values_in_any_word_order(start_api: Callable[..., Started]) -> None:
    server, api = start_api()
    server.write("40003", 21.5, "float", "CDAB")
    got, window, _ = call(api.port, "GET", "/window?table=hr&start=0&count=3&type=float&order=cdab")
    assert got == 200, window
    assert (window["step"], window["order"], window["values"]) == (2, "CDAB", ["0.0", "21.5", "0.0"])
    got, window, _ = call(api.port, "GET", "/window?table=hr&start=2&count=2&type=hex")
    assert window["values"] == ["0000", "41AC"]  # CDAB: the low word first
    got, window, _ = call(api.port, "GET", "/window?table=hr&start=65533&count=3&type=float")
    assert window["values"] == ["0.0", None, None]  # the second float would run past the table


def test_window_shows_a_sparse_tables_gaps_and_each_units_own_device(start_api: Callable[..., Started]) -> None:
    sparse = Device(holding_registers=100, addresses={"holding_registers": [0, 1, 2, 5, 6]})
    server, api = start_api({1: sparse, 2: Device()})
    server.write("1.5.hr", 77)
    got, window, _ = call(api.port, "GET", "/window?unit=1&table=hr&start=0&count=8")
    assert got == 200 and window["values"] == ["0", "0", "0", None, None, "77", "0", None]
    got, window, _ = call(api.port, "GET", "/window?unit=1&table=hr&start=0&count=4&type=float")
    assert window["values"] == ["0.0", None, None, None]  # 2..3 and 4..5 cross the gap, 7 is not implemented
    assert call(api.port, "GET", "/window?unit=1&table=hr&start=5&count=1&type=int")[1]["values"] == ["5046272"]
    got, listed, _ = call(api.port, "GET", "/devices")
    assert [(d["unit_id"], d["tables"]["hr"]["size"], d["tables"]["hr"]["sparse"]) for d in listed["devices"]] == [
        (1, 100, True), (2, 65536, False)]  # fmt: skip
    assert call(api.port, "GET", "/window?unit=3&table=hr&start=0&count=1")[0] == 404
    assert call(api.port, "GET", "/window?table=hr&start=0&count=1")[0] == 404  # which device?


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("table=xx&start=0&count=1", "table must be"),
        ("table=hr&start=70000&count=1", "start must be"),
        ("table=hr&start=0&count=0", "count must be"),
        ("table=hr&start=0&count=2001", "count must be"),
        ("table=hr&start=0&count=1001&type=float", "count must be a whole number 1..1000"),
        ("table=hr&start=0&count=1&type=floot", "floot"),
        ("table=hr&start=0&count=1&order=ABDC", "order must be"),
        ("table=co&start=0&count=1&type=float", "float"),
    ],
)  # fmt: skip
def test_window_says_what_is_wrong_with_a_query(start_api: Callable[..., Started], query: str, message: str) -> None:
    _, api = start_api()
    got, answer, _ = call(api.port, "GET", f"/window?{query}")
    assert got == 400 and message in answer["error"], answer


def test_connections_lists_each_client_and_counters_the_servers_own_counts_per_function_and_exception(
    start_api: Callable[..., Started], connect_client: Callable[..., object]
) -> None:
    """GET /counters: every request since the start, counted by the server (what /metrics reads), not only those a
    page saw."""
    server, api = start_api()
    client = connect_client(server)
    for _ in range(3):
        assert not client.read_holding_registers(0, count=1).isError()  # type: ignore[attr-defined]
    got, listed, _ = call(api.port, "GET", "/connections")
    assert got == 200 and [c["requests"] for c in listed["connections"]] == [3]
    assert listed["connections"][0]["peer"].startswith(f"{HOST}:")
    assert client.read_holding_registers(65535, count=2).isError()  # type: ignore[attr-defined]  # exception 2
    assert not client.write_register(1, 7).isError()  # type: ignore[attr-defined]
    got, counters, _ = call(api.port, "GET", "/counters")
    assert got == 200, counters
    tcp = counters["requests"]["tcp"]
    assert tcp["functions"] == [
        {"function": 3, "name": "READ_HOLDING_REGISTERS", "ok": 3, "exception": 1, "silent": 0},
        {"function": 6, "name": "WRITE_SINGLE_REGISTER", "ok": 1, "exception": 0, "silent": 0},
    ]
    assert tcp["exceptions"] == [{"function": 3, "code": 2, "name": "ILLEGAL_DATA_ADDRESS", "count": 1}]
    assert tcp["received_bytes"] == 5 * 12 and tcp["sent_bytes"] == 3 * 11 + 9 + 12
    assert counters["devices"]  # the FC08 counters are still there


def test_snapshot_is_a_device_file_of_each_unit_ids_device_with_a_dated_file_name(
    start_api: Callable[..., Started],
) -> None:
    server, api = start_api({1: Device(), 2: Device()}, token=TOKEN)
    server.write("1.5.hr", 1234)
    server.write("2.0.co", True)
    assert fetch(api.port, "/snapshot")[0] == 401  # the values are data: the token is needed
    status, headers, body = fetch(api.port, "/snapshot", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and headers.get_content_type() == "application/toml"
    assert re.fullmatch(r'attachment; filename="modbusd-snapshot-\d{8}-\d{6}\.toml"', headers["Content-Disposition"])
    copy = Server(loads(body.decode()).build_devices(), host=HOST, port=0)
    assert copy.read("1.5.hr") == 1234 and copy.read("2.5.hr") == 0
    assert copy.read("2.0.co") is True and copy.read("1.0.co") is False


def test_a_write_and_a_read_take_a_word_order(start_api: Callable[..., Started]) -> None:
    server, api = start_api()
    got, answer, _ = call(api.port, "PUT", "/points/40001", {"type": "float", "value": "21.5", "order": "CDAB"})
    assert (got, answer["order"], answer["text"]) == (200, "CDAB", "21.5")
    assert server.read("40001", "hex") == bytes.fromhex("0000") and server.read("40002", "hex") == b"\x41\xac"
    got, answer, _ = call(api.port, "GET", "/points/40001?type=float&order=BADC")
    assert (got, answer["order"]) == (200, "BADC") and answer["text"] != "21.5"
    got, answer, _ = call(api.port, "PUT", "/points/40001", {"type": "float", "value": 1, "order": "XYZW"})
    assert got == 400 and "order must be" in answer["error"]


def test_docs_show_the_console_screenshot_the_browser_tests_make() -> None:
    png = ROOT / "docs" / "console.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # made by test_traffic_log_shows_requests_with_their_outcome
    assert "(docs/console.png)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "console.png" in (ROOT / "docs" / "console.md").read_text(encoding="utf-8")


def test_server_connections_is_empty_without_clients() -> None:
    assert Server(Device(), host=HOST, port=0).connections() == []
