"""The web console in a real browser: Debian's headless Chromium, driven by Playwright's Python API.

One browser for the module, a fresh page (browser context) per test, each against its own server and control API
on free 127.0.0.1 ports; Modbus traffic comes from pymodbus, a client we did not write. A test that fails leaves
``failure.png`` (what the page showed) in its tmp directory.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Device, Server
from modbusd.config import loads
from modbusd.endpoints import Endpoint
from tests.conftest import HOST, TIMEOUT

pytest.importorskip("aiohttp")
from modbusd.web import HttpApi  # after the skip: aiohttp is an optional extra

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it): Playwright cannot download browsers here
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
TOKEN = "a-long-enough-secret-token"
WAIT_MS = 5000  # the most any step of the page may take (the machine is shared; the 1 s promise is checked apart)
DEVICE = """
[[device]]
[[device.point]]
name = "temperature"
address = "30001"
type = "float"
value = 21.5
unit = "°C"
comment = "boiler flow"

[[device.point]]
name = "setpoint"
address = "40101"
type = "float"
order = "CDAB"
value = 20.0
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert shutil.which(CHROMIUM), "chromium is not installed: apt-get install chromium (.ci/run does)"
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@dataclass
class Console:
    """A console page open on a server: what it logged to its console, and the requests it made."""

    page: Any
    server: Server
    api: HttpApi
    errors: list[str] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.api.port}/"

    def open(self) -> None:
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)

    def value(self, address: int) -> Any:
        return self.page.locator(f'#grid-body .row[data-address="{address}"] .value')

    def row_address(self, address: int) -> Any:
        return self.page.locator(f'#grid-body .row[data-address="{address}"] .addr')

    def unexpected_errors(self) -> list[str]:
        """What the page logged, less the browser's line for each 400 the test asked for."""
        return [e for e in self.errors if "the server responded with a status of 400" not in e]

    def tab(self, name: str) -> None:
        self.page.click(f'#tabs button[data-tab="{name}"]')


@pytest.fixture
def open_console(
    browser: Any, start_server: Callable[..., Server], request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Console]]:
    """open_console(token=None, **options) → a Console on a new server (`Server` options) with the DEVICE points; its
    page not yet loaded."""
    made: list[tuple[Console, Any]] = []

    def open_(token: str | None = None, **options: Any) -> Console:
        server = start_server(loads(DEVICE).build_devices(), **options)  # the points hold their initial values
        api = asyncio.run_coroutine_threadsafe(HttpApi.start(server, port=0, token=token), server._loop).result(TIMEOUT)
        context = browser.new_context(viewport={"width": 1280, "height": 720})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        console = Console(page, server, api)
        page.on("console", lambda m: m.type in ("error", "warning") and console.errors.append(m.text))
        page.on("pageerror", lambda e: console.errors.append(str(e)))
        page.on("request", lambda r: console.requests.append(r))  # noqa: PLW0108  # Playwright marks its handlers
        made.append((console, context))
        return console

    yield open_
    failed = getattr(request.node, "report_call", None)
    for console, context in made:
        if failed is not None and failed.failed:
            console.page.screenshot(path=tmp_path / "failure.png")
        context.close()
        asyncio.run_coroutine_threadsafe(console.api.stop(), console.server._loop).result(TIMEOUT)


def modbus_client(server: Server) -> ModbusTcpClient:
    client = ModbusTcpClient(HOST, port=server.port, timeout=TIMEOUT, retries=0)
    assert client.connect()
    return client


def test_console_loads_with_no_console_errors_and_draws_its_grid(open_console: Callable[..., Console]) -> None:
    console = open_console()
    console.open()
    sync_api.expect(console.value(0)).to_have_text("0")
    sync_api.expect(console.page.locator("#points-body")).to_contain_text("temperature")
    rows = console.page.locator("#grid-body .row").count()
    assert 10 < rows < 100  # of 65,536 registers, only those on screen are in the page
    assert console.page.evaluate("document.getElementById('grid-body').offsetHeight") == 65536 * 22
    assert console.errors == []


def test_a_client_write_shows_in_the_grid_within_a_second(open_console: Callable[..., Console]) -> None:
    console = open_console()
    console.open()
    sync_api.expect(console.value(5)).to_have_text("0")
    client = modbus_client(console.server)
    try:
        written = time.monotonic()
        assert not client.write_register(5, 4242).isError()
        console.page.wait_for_function(
            "() => document.querySelector('#grid-body .row[data-address=\"5\"] .value').textContent === '4242'",
            timeout=WAIT_MS, polling=20)  # fmt: skip
        shown = time.monotonic() - written
    finally:
        client.close()
    assert shown < 1.0, f"the write took {shown:.2f} s to show"
    sync_api.expect(console.value(5)).to_have_class("value changed")  # highlighted for a moment
    sync_api.expect(console.value(5)).to_have_class("value", timeout=3000)
    assert console.errors == []


def test_a_value_edited_in_the_grid_is_read_back_by_a_client(open_console: Callable[..., Console]) -> None:
    console = open_console()
    console.open()
    console.value(7).click()
    editor = console.page.locator("#grid-body input.edit")
    editor.fill("70000")  # does not fit a ushort: the server says so, and nothing is written
    editor.press("Enter")
    sync_api.expect(console.page.locator("#grid-body .error")).to_contain_text("70000")
    assert console.server.read("7.hr") == 0
    editor.fill("1234")
    editor.press("Enter")
    sync_api.expect(console.value(7)).to_have_text("1234")
    client = modbus_client(console.server)
    try:
        assert client.read_holding_registers(7, count=1).registers == [1234]
    finally:
        client.close()
    console.page.select_option("#table", "ir")  # read-only for clients, not for the console
    console.value(3).click()
    console.page.locator("#grid-body input.edit").fill("17")
    console.page.keyboard.press("Enter")
    sync_api.expect(console.value(3)).to_have_text("17")
    assert console.server.read("3.ir") == 17
    assert console.unexpected_errors() == []


def test_notation_type_and_word_order_switch_at_any_time(open_console: Callable[..., Console]) -> None:
    console = open_console()
    console.open()
    console.server.write("40003", 21.5, "float")
    console.page.select_option("#notation", "5-digit")
    sync_api.expect(console.row_address(0)).to_have_text("40001")
    console.page.select_option("#type", "float")
    sync_api.expect(console.row_address(2)).to_have_text("40003")
    sync_api.expect(console.value(2)).to_have_text("21.5")
    console.tab("selection")  # a range, read by the server as every type
    console.row_address(2).click()
    console.row_address(4).click(modifiers=["Shift"])
    sync_api.expect(console.page.locator("#selection-body")).to_contain_text("21.5  0.0")
    sync_api.expect(console.page.locator("#selection-body")).to_contain_text("41AC  0000  0000  0000")
    console.page.select_option("#notation", "hex")
    sync_api.expect(console.row_address(2)).to_have_text("0x0002")
    console.page.fill("#goto", "setpoint")  # a name, parsed by the server: its float in CDAB order
    console.page.press("#goto", "Enter")
    sync_api.expect(console.value(100)).to_have_text("20.0")
    assert console.page.input_value("#order") == "CDAB"
    console.page.fill("#goto", "400201")  # a 6-digit number, odd: the grid starts its floats there
    console.page.press("#goto", "Enter")
    sync_api.expect(console.row_address(200)).to_have_text("0x00C8")
    console.page.fill("#goto", "40100x")
    console.page.press("#goto", "Enter")
    sync_api.expect(console.page.locator("#goto-error")).to_contain_text("not an address")
    assert console.unexpected_errors() == []


def test_traffic_log_shows_requests_with_their_outcome(open_console: Callable[..., Console], tmp_path: Path) -> None:
    console = open_console()
    console.open()
    console.page.select_option("#notation", "5-digit")
    console.page.fill("#goto", "temperature")
    console.page.press("#goto", "Enter")
    sync_api.expect(console.value(0)).to_have_text("21.5")
    console.tab("traffic")
    client = modbus_client(console.server)
    try:
        assert console.server.requests.followers or _wait(lambda: console.server.requests.followers)
        assert not client.write_registers(0, [16812, 0]).isError()  # 21.5 as a float, in 40001
        assert not client.read_holding_registers(0, count=3).isError()
        assert client.read_holding_registers(65535, count=2).isError()  # past the table: exception 2
        body = console.page.locator("#traffic-body")
        sync_api.expect(body).to_contain_text("exception 2 (ILLEGAL_DATA_ADDRESS)")
        sync_api.expect(body).to_contain_text("ok")
        console.page.screenshot(path=tmp_path / "console.png")  # docs/console.png is one of these
        console.page.select_option("#filter-outcome", "exception")
        sync_api.expect(body.locator("tr")).to_have_count(1)
        sync_api.expect(body.locator("tr td").nth(5)).to_have_text("65535")
        console.tab("connections")
        sync_api.expect(console.page.locator("#connections-body")).to_contain_text(HOST)
        sync_api.expect(console.page.locator("#functions-body")).to_contain_text("READ_HOLDING_REGISTERS")
        sync_api.expect(console.page.locator("#diagnostics-body")).to_contain_text("bus message")
    finally:
        client.close()
    console.tab("points")  # the log is followed only while it is shown: recording stops with it
    assert _wait(lambda: not console.server.requests.followers)
    assert console.errors == []


def test_traffic_log_names_the_endpoint_a_request_came_to(open_console: Callable[..., Console]) -> None:
    console = open_console(endpoints=[Endpoint("meter7", Device(), host=HOST, port=0)])
    console.open()
    console.tab("traffic")
    clients = [ModbusTcpClient(HOST, port=p, timeout=TIMEOUT, retries=0)
               for p in (console.server.port, console.server.endpoints["meter7"].port)]  # fmt: skip
    try:
        assert console.server.requests.followers or _wait(lambda: console.server.requests.followers)
        assert all(client.connect() for client in clients)
        assert not clients[0].read_holding_registers(11, count=1).isError()  # the default endpoint
        assert not clients[1].read_holding_registers(22, count=1).isError()
        rows = console.page.locator("#traffic-body tr")
        sync_api.expect(rows).to_have_count(2)
        sync_api.expect(rows.nth(0).locator("td").nth(2)).to_have_text("tcp meter7")  # newest first
        sync_api.expect(rows.nth(1).locator("td").nth(2)).to_have_text("tcp")
    finally:
        for client in clients:
            client.close()
    assert console.errors == []


def test_connections_panel_shows_the_servers_own_counts_of_requests_the_page_never_saw(
    open_console: Callable[..., Console],
) -> None:
    console = open_console()
    client = modbus_client(console.server)
    try:  # before the page opens: only the server's own counts can know of these
        for _ in range(5):
            assert not client.read_holding_registers(0, count=2).isError()
        assert client.read_holding_registers(65535, count=2).isError()  # exception 2
        assert not client.write_register(3, 9).isError()
        console.open()
        console.tab("connections")
        functions = console.page.locator("#functions-body tr")
        sync_api.expect(functions).to_have_count(2)
        sync_api.expect(functions.nth(0).locator("td")).to_have_text(["tcp", "3 READ_HOLDING_REGISTERS", "5", "1", "0"])
        sync_api.expect(functions.nth(1).locator("td")).to_have_text(["tcp", "6 WRITE_SINGLE_REGISTER", "1", "0", "0"])
        exceptions = console.page.locator("#exceptions-body tr td")
        sync_api.expect(exceptions).to_have_text(["tcp", "3", "2 ILLEGAL_DATA_ADDRESS", "1"])
        sync_api.expect(console.page.locator("#connections-body")).to_contain_text("7")  # the client's requests
        assert not client.read_holding_registers(0, count=1).isError()  # the panel refreshes every second
        sync_api.expect(functions.nth(0).locator("td").nth(2)).to_have_text("6")
    finally:
        client.close()
    assert not console.server.requests.followers  # counts, not the request log: nothing recorded for them
    assert console.errors == []


def test_a_chart_draws_a_point_over_time(open_console: Callable[..., Console]) -> None:
    console = open_console()
    console.open()
    console.tab("charts")
    console.page.fill("#chart-point", "temperature")
    console.page.press("#chart-point", "Enter")
    for value in (22.0, 25.0, 19.0, 23.0):
        console.server.write("temperature", value)
        time.sleep(0.3)
    console.page.wait_for_function(
        "() => parseInt(document.getElementById('chart-status').textContent) >= 4", timeout=WAIT_MS)  # fmt: skip
    drawn = console.page.evaluate("""() => {
        const canvas = document.querySelector('#chart canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let line = 0;  // pixels of the first series' colour, #1f77b4
        for (let i = 0; i < data.length; i += 4)
            if (Math.abs(data[i] - 31) < 40 && Math.abs(data[i + 1] - 119) < 40 && Math.abs(data[i + 2] - 180) < 40)
                line++;
        return line;
    }""")
    assert drawn > 20, drawn
    assert console.errors == []


def test_a_generator_added_in_the_simulator_panel_moves_its_value_in_the_grid(
    open_console: Callable[..., Console], tmp_path: Path
) -> None:
    console = open_console()
    console.open()
    console.tab("simulator")
    sync_api.expect(console.page.locator("#generators-none")).to_be_visible()
    console.page.fill("#generator-point", "40011")
    console.page.fill("#generator-spec", "counter(step=1, steps=9)")  # a key counter() does not take
    console.page.click("#generator-form button[type=submit]")
    sync_api.expect(console.page.locator("#generator-error")).to_contain_text("steps")  # the server's own words
    assert len(console.server.simulator) == 0
    console.page.fill("#generator-spec", "counter(step=1, period=100ms, every=100ms)")
    console.page.click("#generator-form button[type=submit]")
    sync_api.expect(console.page.locator("#generator-error")).to_have_text("")
    row = console.page.locator('#generators-body tr[data-id="10.hr"]')
    sync_api.expect(row.locator("td.state")).to_have_text("running")
    first = int(console.value(10).text_content() or "0")
    shown = "document.querySelector('#grid-body .row[data-address=\"10\"] .value').textContent"
    console.page.wait_for_function(f"() => Number({shown}) >= {first + 3}", timeout=WAIT_MS)  # the grid counts
    console.server.faults.add("unit=9 action=exception:06")  # one rule listed beside it, for the picture
    sync_api.expect(console.page.locator('#faults-body tr[data-id="1"]')).to_be_visible()
    console.page.screenshot(path=tmp_path / "simulator.png")  # how the panel looks, to see after a change
    row.locator("button[data-action=pause]").click()
    sync_api.expect(row.locator("td.state")).to_have_text("paused")
    paused = console.server.read("10.hr")
    time.sleep(0.4)  # four of its periods: a paused generator writes nothing
    assert console.server.read("10.hr") == paused
    row.locator("button[data-action=resume]").click()
    sync_api.expect(row.locator("td.state")).to_have_text("running")
    assert _wait(lambda: console.server.read("10.hr") != paused)
    sync_api.expect(row.locator("td.updates")).not_to_have_text("0")
    row.locator("button[data-action=remove]").click()
    sync_api.expect(row).to_have_count(0)
    assert len(console.server.simulator) == 0
    sync_api.expect(console.page.locator("#generators-none")).to_be_visible()
    assert console.unexpected_errors() == []


def test_a_fault_rule_disabled_in_the_simulator_panel_lets_a_client_get_answers_again(
    open_console: Callable[..., Console],
) -> None:
    console = open_console()
    console.open()
    console.tab("simulator")
    console.page.fill("#fault-rule", "fc=3 action=explode")
    console.page.press("#fault-rule", "Enter")
    sync_api.expect(console.page.locator("#fault-error")).to_contain_text("explode")
    console.page.fill("#fault-rule", "fc=3 action=exception:04")
    console.page.press("#fault-rule", "Enter")
    row = console.page.locator('#faults-body tr[data-id="1"]')
    sync_api.expect(row.locator("td.state")).to_have_text("on")
    client = modbus_client(console.server)
    try:
        answer = client.read_holding_registers(0, count=1)
        assert answer.isError() and answer.exception_code == 4
        sync_api.expect(row.locator("td.applied")).to_have_text("1")  # the panel refreshes its counts
        row.locator("button[data-action=disable]").click()
        sync_api.expect(row.locator("td.state")).to_have_text("off")
        assert client.read_holding_registers(0, count=1).registers == [0]
        row.locator("button[data-action=enable]").click()
        sync_api.expect(row.locator("td.state")).to_have_text("on")
        assert client.read_holding_registers(0, count=1).isError()
        row.locator("button[data-action=remove]").click()
        sync_api.expect(row).to_have_count(0)
        assert client.read_holding_registers(0, count=1).registers == [0]
    finally:
        client.close()
    assert console.server.faults.rules == []
    assert console.unexpected_errors() == []


def test_a_snapshot_downloaded_from_the_page_serves_the_same_values(
    open_console: Callable[..., Console], start_server: Callable[..., Server], tmp_path: Path
) -> None:
    console = open_console(token=TOKEN)  # the download carries the token too, in its header
    console.page.goto(console.url)
    console.page.fill("#token-input", TOKEN)
    console.page.press("#token-input", "Enter")
    console.page.wait_for_selector("body[data-ready=true]")
    client = modbus_client(console.server)
    try:
        assert not client.write_registers(20, [1, 2, 3, 65535]).isError()
        assert not client.write_coils(5, [True, False, True]).isError()
    finally:
        client.close()
    console.server.write("3.ir", 77)
    with console.page.expect_download() as download:
        console.page.click("#snapshot")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.startswith("modbusd-snapshot-") and saved.suffix == ".toml"
    copy = start_server(loads(saved.read_text(encoding="utf-8")).build_devices())
    client, original = modbus_client(copy), modbus_client(console.server)
    try:
        for address in (0, 100):  # the written registers, and the setpoint's 20.0 in CDAB at 40101
            assert (client.read_holding_registers(address, count=120).registers
                    == original.read_holding_registers(address, count=120).registers)  # fmt: skip
        assert client.read_holding_registers(20, count=4).registers == [1, 2, 3, 65535]
        assert client.read_coils(0, count=8).bits[5:8] == [True, False, True]
        assert client.read_input_registers(0, count=4).registers == [0x41AC, 0, 0, 77]  # temperature's 21.5 too
    finally:
        client.close()
        original.close()
    assert [e for e in console.errors if "status of 401" not in e] == []  # the first load, before the token


def test_the_token_is_asked_once_and_sent_in_a_header_never_in_a_url(open_console: Callable[..., Console]) -> None:
    console = open_console(token=TOKEN)
    console.page.goto(console.url)
    sync_api.expect(console.page.locator("#token-dialog")).to_be_visible()
    console.page.fill("#token-input", TOKEN)
    console.page.press("#token-input", "Enter")
    console.page.wait_for_selector("body[data-ready=true]")
    sync_api.expect(console.value(0)).to_have_text("0")
    console.page.reload()  # kept for the session: no second prompt
    console.page.wait_for_selector("body[data-ready=true]")
    assert console.page.locator("#token-dialog").is_hidden()
    api_calls = [r for r in console.requests if "/window?" in r.url]
    assert api_calls and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api_calls)
    assert not any(TOKEN in r.url for r in console.requests)


class _Attacker(BaseHTTPRequestHandler):
    """A page on another origin (another port of 127.0.0.1) that tries every way a page has to write."""

    target = 0

    def do_GET(self) -> None:
        url = f"http://{HOST}:{self.target}/points/40010"
        page = f"""<!doctype html><title>attacker</title>
<iframe name="sink"></iframe>
<form id="form" method="POST" action="{url}" target="sink" enctype="text/plain">
<input name='{{"value": 99, "x": "' value='"}}'></form>
<script>
const results = [];
const attempt = (name, promise) => promise.then(r => results.push(name + ':' + r.status + ':' + r.type),
                                                e => results.push(name + ':blocked'));
Promise.all([
  attempt('put-json', fetch('{url}', {{method: 'PUT', headers: {{'Content-Type': 'application/json'}},
                                       body: '{{"value": 99}}'}})),
  attempt('post-no-cors', fetch('{url}', {{method: 'POST', mode: 'no-cors', headers: {{'Content-Type': 'text/plain'}},
                                           body: '{{"value": 99}}'}})),
]).then(() => {{
  document.getElementById('form').submit();
  setTimeout(() => document.title = results.join(' '), 500);
}});
</script>"""
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_page_from_another_origin_cannot_write(open_console: Callable[..., Console]) -> None:
    console = open_console()
    handler = type("Attacker", (_Attacker,), {"target": console.api.port})
    attacker = ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    try:
        console.page.goto(f"http://{HOST}:{attacker.server_address[1]}/")
        console.page.wait_for_function("() => document.title.includes('put-json')", timeout=WAIT_MS)
        title = console.page.title()
    finally:
        attacker.shutdown()
        attacker.server_close()
    assert "put-json:blocked" in title  # the pre-flight is refused: the PUT is never sent
    assert console.server.read("40010") == 0, title  # and neither the no-cors POST nor the form wrote anything


def _wait(condition: Callable[[], object], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
