"""`modbusd init`, `check`, `--config`, the HTTP control API and `get`/`set`, as subprocesses on 127.0.0.1.

Each test starts its own children (the `launch` fixture of test_cli.py) on free ports and ends only them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd.config import EXAMPLE
from tests.test_cli import EXIT_TIMEOUT, HOST, SRC, Modbusd, assert_one_line_error, free_port

pytest.importorskip("aiohttp")

Launch = Callable[..., Modbusd]
TOKEN = "a-long-enough-secret-token"


def modbusd_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A short-lived `python -m modbusd SUBCOMMAND …` (check, init, get, set)."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "modbusd", *args], capture_output=True, text=True, timeout=30, check=False,
        cwd=cwd or "/", env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )  # fmt: skip


def example_on(tmp_path: Path, port: int, http: int) -> Path:
    path = tmp_path / "modbusd.toml"
    path.write_text(EXAMPLE.replace("port = 5020", f"port = {port}").replace("port = 8020", f"port = {http}"))
    return path


def http(method: str, url: str, body: object = None, token: str | None = None) -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


# ------------------------------------------------------------------------------------------ init, check


def test_init_writes_the_example_to_stdout_and_check_accepts_it(tmp_path: Path) -> None:
    printed = modbusd_cli("init")
    assert printed.returncode == 0 and printed.stdout == EXAMPLE
    written = modbusd_cli("init", str(tmp_path / "dev.toml"))
    assert written.returncode == 0 and (tmp_path / "dev.toml").read_text() == EXAMPLE
    again = modbusd_cli("init", str(tmp_path / "dev.toml"))
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.splitlines()) == 1
    checked = modbusd_cli("check", str(tmp_path / "dev.toml"))
    assert checked.returncode == 0, checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'dev.toml'}: OK"
    assert any("6 data points" in line for line in lines)
    assert "  temperature: 0.ir float = 21.5 °C" in lines


def test_check_gives_one_line_with_file_line_and_key_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[server]\nport = 5020\n\n[[device]]\n[[device.point]]\nname = "t"\naddress = "30001"\n'
                      'type = "float"\nvalue = 1e40\n')  # fmt: skip
    result = modbusd_cli("check", str(broken))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"modbusd: {broken}:9: device[0].point[0].value: 1e+40 is beyond the largest finite float (about 3.4e38)"
    ]


def test_check_names_the_csv_line_of_a_bad_row(tmp_path: Path) -> None:
    (tmp_path / "map.csv").write_text("name,address,type\nflow,30001,float\nlevel,30002,ushort\n")
    (tmp_path / "dev.toml").write_text('[[device]]\npoints_csv = "map.csv"\n')
    result = modbusd_cli("check", str(tmp_path / "dev.toml"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"modbusd: {tmp_path / 'map.csv'}:3: name: level at 1.ir overlaps data point")


def test_a_hook_module_beside_the_device_file_is_found_from_another_working_directory(
    launch: Launch, tmp_path: Path
) -> None:
    """`hook = "myhook:answer"` imports myhook.py from the device file's folder, as eventslog and points_csv."""
    (tmp_path / "myhook.py").write_text(
        "def answer(server_name, client, unit_id, pdu):\n"
        "    return bytes.fromhex('03 02 002A') if pdu[0] == 3 else None\n"
    )
    port = free_port()
    path = tmp_path / "plant.toml"
    path.write_text(f'[server]\nhost = "{HOST}"\nport = {port}\nhook = "myhook:answer"\n')
    checked = modbusd_cli("check", str(path))  # cwd "/": nothing on the path knows myhook
    assert checked.returncode == 0 and "request hook myhook:answer" in checked.stdout, checked.stderr
    child = launch("--config", str(path))  # cwd "/" too
    child.running()
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [42]  # the hook's answer
    finally:
        client.close()
    assert child.stop(signal.SIGTERM) == 0


def test_config_refuses_options_that_describe_devices(launch: Launch, tmp_path: Path) -> None:
    child = launch("--config", str(example_on(tmp_path, free_port(), free_port())), "-u", "1,2")
    assert "--unit-ids and --data-table describe devices" in assert_one_line_error(child)


def test_broken_config_stops_the_server_with_one_line(launch: Launch, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nprot = 5020\n")
    assert assert_one_line_error(launch("--config", str(path))) == (
        f"modbusd: {path}:2: server.prot: unknown key (did you mean 'port'?)"
    )


# ------------------------------------------------------------------------ the example runs; get and set


def test_init_example_runs_and_set_and_get_meet_a_pymodbus_client(launch: Launch, tmp_path: Path) -> None:
    port, api = free_port(), free_port()
    child = launch("--config", str(example_on(tmp_path, port, api)))
    lines = child.running()
    assert f"Starting server on 127.0.0.1 port {port}." in lines[1]
    assert lines[2] == f"Control API on http://127.0.0.1:{api}/"
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        registers = client.read_input_registers(0, count=2).registers
        assert client.convert_from_registers(registers, client.DATATYPE.FLOAT32) == 21.5  # the file's value

        done = modbusd_cli("set", "--http", str(api), "30001", "float:-3.25")  # an input register: owner-writable
        assert (done.returncode, done.stdout, done.stderr) == (0, "-3.25\n", "")
        registers = client.read_input_registers(0, count=2).registers
        assert client.convert_from_registers(registers, client.DATATYPE.FLOAT32) == -3.25

        text = "Pump 7".ljust(16, "\0")  # all 8 registers of the string:8 point, NUL-padded
        assert not client.write_registers(10, client.convert_to_registers(text, client.DATATYPE.STRING)).isError()
        assert not client.write_register(500, 1234).isError()
        got = modbusd_cli("get", "--http", str(api), "label")
        assert (got.returncode, got.stdout) == (0, "Pump 7\n")
        got = modbusd_cli("get", "--http", str(api), "40501")
        assert (got.returncode, got.stdout) == (0, "1234\n")
        got = modbusd_cli("get", "--http", str(api), "500.hr", "hex")
        assert (got.returncode, got.stdout) == (0, "04D2\n")

        assert client.read_input_registers(3, count=1).exception_code == 2  # a sparse gap
    finally:
        client.close()
    assert child.stop(signal.SIGTERM) == 0


def test_get_and_set_print_one_line_errors_and_exit_2(launch: Launch, tmp_path: Path) -> None:
    api = free_port()
    child = launch("--config", str(example_on(tmp_path, free_port(), api)))
    child.running()
    cases = [
        (("set", "humidity", "70000"), "modbusd: humidity: 70000 is outside ushort's range 0..65535"),
        (("get", "nosuchpoint"), "modbusd: nosuchpoint: no data point named 'nosuchpoint'"),
        (("get", "30010"), "modbusd: 30010: no such address in the device: register 9 is not implemented"),
        (("get", "40001", "flaot"), "modbusd: 40001: unknown type 'flaot'"),
        (("set", "40001", "float:abc"), "modbusd: 40001: 'abc' is not a number for float"),
    ]
    for args, start in cases:
        result = modbusd_cli(args[0], "--http", str(api), *args[1:])
        assert result.returncode == 2 and result.stdout == "", result
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(start), result.stderr
    assert child.stop(signal.SIGTERM) == 0
    nobody = modbusd_cli("get", "--http", str(free_port()), "40001")
    assert nobody.returncode == 2 and "no control API on 127.0.0.1 port" in nobody.stderr


# ------------------------------------------------------------------------------------------ the HTTP API


def test_http_api_lists_reads_writes_and_counts(launch: Launch) -> None:
    port, api = free_port(), free_port()
    child = launch("-p", str(port), "--host", HOST, "--http", str(api), "-u", "1,2")
    child.running()
    base = f"http://127.0.0.1:{api}"
    assert http("GET", f"{base}/points") == (
        200,
        {"points": [], "total": 0, "offset": 0, "limit": 100, "next_offset": None},
    )
    status, answer = http("PUT", f"{base}/points/2.30001", {"type": "float", "value": 21.5})
    assert status == 200 and answer["value"] == 21.5 and answer["address"]["5-digit"] == "30001"
    assert http("GET", f"{base}/points/2.0.ir?type=float")[1]["value"] == 21.5
    assert http("GET", f"{base}/points/1.0.ir?type=float")[1]["value"] == 0.0  # unit 1 is another device
    assert http("PUT", f"{base}/points/1.10001", {"value": "bit:on"})[1]["value"] is True
    client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
    try:
        assert client.connect()
        assert client.read_discrete_inputs(0, count=1, device_id=1).bits[0] is True
        status, counters = http("GET", f"{base}/counters")
        assert status == 200 and counters["connections"] == 1
        assert counters["devices"]["1"]["bus_message"] == 1 and counters["devices"]["2"]["bus_message"] == 0
    finally:
        client.close()
    assert child.stop(signal.SIGTERM) == 0


@pytest.fixture(scope="module")
def two_unit_api() -> Iterator[int]:
    """One modbusd with units 1 and 2 and the control API, shared by the mistake cases; yields the API port."""
    api = free_port()
    child = Modbusd(["-p", str(free_port()), "--host", HOST, "--http", str(api), "-u", "1,2"])
    try:
        child.running()
        yield api
    finally:
        child.proc.send_signal(signal.SIGTERM)
        child.finish(EXIT_TIMEOUT)


@pytest.mark.parametrize(
    "case",
    [
        ("GET", "/points/nothing", None, 404, "no data point named 'nothing'"),
        ("GET", "/points/100", None, 400, "names no table"),
        ("GET", "/points/1.30001?type=flaot", None, 400, "unknown type 'flaot'"),
        ("GET", "/points/30001", None, 404, "which device? name the unit id"),
        ("GET", "/points/9.30001", None, 404, "no device has unit id 9"),
        ("GET", "/points/1.0.co?type=float", None, 400, "its type is bit or bits"),
        ("PUT", "/points/1.40001", b"not json", 400, "must be JSON"),
        ("PUT", "/points/1.40001", {"type": "ushort"}, 400, 'expected {"value": V}'),
        ("PUT", "/points/1.40001", {"type": "ushort", "value": 70000}, 400, "outside ushort's range"),
        ("PUT", "/points/1.40001", {"type": "short", "value": True}, 400, "takes a number or a text"),
        ("PUT", "/points/1.40001", {"value": [1]}, 400, "must be a number"),
        ("PUT", "/points/1.65535.hr", {"type": "float", "value": 1.0}, 404, "outside 0..65535"),
        ("GET", "/nowhere", None, 404, "Not Found"),
        ("DELETE", "/points/1.40001", None, 405, "Method Not Allowed"),
    ],
)  # fmt: skip
def test_http_api_answers_mistakes_with_a_4xx_json_error(two_unit_api: int, case: tuple) -> None:
    method, path, body, status, message = case
    got, answer = http(method, f"http://127.0.0.1:{two_unit_api}{path}", body)
    assert got == status and message in answer["error"], answer


def test_http_api_off_loopback_needs_a_token(launch: Launch) -> None:
    refused = launch("-p", str(free_port()), "--host", HOST, "--http", str(free_port()), "--http-host", "0.0.0.0")
    assert "binding it to 0.0.0.0 (beyond this machine) needs --http-token" in assert_one_line_error(refused)

    api = free_port()
    child = launch("-p", str(free_port()), "--host", HOST, "--http", str(api), "--http-host", "0.0.0.0",
                   "--http-token", TOKEN)  # fmt: skip
    child.running()
    url = f"http://127.0.0.1:{api}/points/40001"
    assert http("GET", url) == (401, {"error": "missing or wrong bearer token (Authorization: Bearer <token>)"})
    assert http("GET", url, token="wrong")[0] == 401
    assert http("GET", url, token=TOKEN)[1]["value"] == 0
    refused_set = modbusd_cli("set", "--http", str(api), "40001", "ushort:5")
    assert refused_set.returncode == 2 and "bearer token" in refused_set.stderr
    assert modbusd_cli("set", "--http", str(api), "--token", TOKEN, "40001", "ushort:5").stdout == "5\n"
    assert modbusd_cli("get", "--http", str(api), "40001", env={"MODBUSD_HTTP_TOKEN": TOKEN}).stdout == "5\n"
    assert child.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_http_token_follows_the_device_files_rule_on_the_command_line(launch: Launch, host: str) -> None:
    """One rule for both: a token has at least 16 characters, as `token` in [http] must (config.check_http_access)."""
    short = launch("-p", str(free_port()), "--host", HOST, "--http", str(free_port()), "--http-host", host,
                   "--http-token", "x" * 15)  # fmt: skip
    line = assert_one_line_error(short)
    assert line == "modbusd: --http-token: a bearer token needs at least 16 characters (this one has 15)", line


def test_device_file_page_shows_the_init_example_verbatim() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "device-file.md").read_text(encoding="utf-8")
    assert f"```toml\n{EXAMPLE}```" in page
