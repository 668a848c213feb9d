"""Subscriptions and the request hook without Python: the device file's and the command line's, end to end.

Each test runs `python -m modbusd` as a child on a free port of 127.0.0.1, writes with pymodbus, stops the child
(the events log is flushed at stop) and reads the log's JSON lines. Mistakes are one line and exit code 2.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from modbusd import Device, Server
from modbusd.config import ConfigError, load, loads, summary
from tests.test_cli import HOST, SRC, Modbusd, assert_one_line_error, free_port

TIMEOUT = 5.0
Launch = Callable[..., Modbusd]

DEVICE_FILE = """
[server]
host = "127.0.0.1"
port = {port}
name = "plant"
eventslog = "events.jsonl"

[events]
subscribe = ["200.hr:float", "1.co"]

[[device]]
[[device.point]]
name = "setpoint"
address = "40001"
type = "float"
order = "CDAB"
subscribe = true

[[device.point]]
name = "quiet"
address = "40011"
"""


def write(port: int, action: Callable[[ModbusTcpClient], Any]) -> None:
    client = ModbusTcpClient(HOST, port=port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        reply = action(client)
        assert not reply.isError(), reply
    finally:
        client.close()


def stopped_log(child: Modbusd, path: Path) -> list[dict[str, Any]]:
    """Stop the child (SIGTERM: the log is written out first) and return the log's records."""
    assert child.stop(signal.SIGTERM) == 0, child.stderr
    return [json.loads(line) for line in path.read_text().splitlines()]


def events_of(records: list[dict[str, Any]]) -> list[tuple[str, str, object, object]]:
    return [(r["name"], r["type"], r["value"], r["previous"]) for r in records if r["kind"] == "event"]


def test_device_file_subscriptions_make_events_in_the_events_log(launch: Launch, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "plant.toml").write_text(DEVICE_FILE.format(port=port))
    child = launch("--config", str(tmp_path / "plant.toml"))
    child.running()
    write(port, lambda c: c.write_registers(0, [0x0000, 0x41AC], device_id=1))  # setpoint 21.5, word-swapped
    write(port, lambda c: c.write_registers(200, [0x4120, 0x0000], device_id=1))  # 10.0
    write(port, lambda c: c.write_register(10, 7, device_id=1))  # quiet: logged, no event
    write(port, lambda c: c.write_coils(0, [True, True, True], device_id=1))  # only coil 1 is subscribed
    records = stopped_log(child, tmp_path / "events.jsonl")
    assert [r["function"] for r in records if r["kind"] == "write"] == [16, 16, 6, 15]
    assert events_of(records) == [("plant.1.0.hr", "float", 21.5, 0.0), ("plant.1.200.hr", "float", 10.0, 0.0),
                                  ("plant.1.1.co", "bit", True, False)]  # fmt: skip


def test_subscribe_option_makes_events_in_the_events_log(launch: Launch, tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "events.jsonl"
    child = launch("-p", str(port), "--host", HOST, "--events-log", str(path), "--subscribe", "100.hr:float",
                   "--subscribe", "7.hr:bits")  # fmt: skip
    child.running()
    write(port, lambda c: c.write_registers(100, [0x41AC, 0x0000], device_id=3))
    write(port, lambda c: c.write_register(7, 0x0100, device_id=3))  # bit 1: the LSB of the first byte
    write(port, lambda c: c.write_register(50, 1, device_id=3))  # not subscribed
    events = events_of(stopped_log(child, path))
    assert events[0] == ("modbusd.3.100.hr", "float", 21.5, 0.0)
    assert [name for name, _, value, _ in events[1:] if value] == ["modbusd.3.7.hr.1"]
    assert len(events) == 17


def test_mqtt_subscribe_is_a_deprecated_alias_of_subscribe(launch: Launch, tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "events.jsonl"
    child = launch("-p", str(port), "--host", HOST, "--events-log", str(path), "--mqtt-subscribe", "5.co")
    child.running()
    write(port, lambda c: c.write_coil(5, True, device_id=1))
    assert events_of(stopped_log(child, path)) == [("modbusd.1.5.co", "bit", True, False)]
    assert len([line for line in child.stderr if "--mqtt-subscribe is deprecated: use --subscribe" in line]) == 1


def test_device_file_mqtt_subscribe_is_the_events_list_too(tmp_path: Path) -> None:
    path = tmp_path / "plant.toml"
    path.write_text('[mqtt]\nurl = "mqtt://127.0.0.1"\nsubscribe = ["3.hr:int"]\n[events]\nsubscribe = ["4.co"]\n')
    config = load(path)
    assert [str(s) for s in config.subscriptions] == ["4.co", "3.hr:int"]
    server = Server.from_config(config)
    assert [(s.table.suffix, s.address, str(s.type)) for s in server.subscriptions] == [("co", 4, "bit"),
                                                                                       ("hr", 3, "int")]  # fmt: skip
    assert "events: subscribed 4.co, 3.hr:int" in summary(config)


HOOK_MODULE = """
def on_request(name, client, unit_id, pdu):
    if pdu[0] == 3:                                   # FC03: one register holding 1000 + the unit id
        return bytes([3, 2]) + (1000 + unit_id).to_bytes(2, "big")
    return None
"""


def read(port: int, unit_id: int) -> int:
    client = ModbusTcpClient(HOST, port=port, timeout=TIMEOUT, retries=0)
    try:
        assert client.connect()
        reply = client.read_holding_registers(0, count=1, device_id=unit_id)
        assert not reply.isError(), reply
        return reply.registers[0]
    finally:
        client.close()


def with_hooks_on_path(tmp_path: Path) -> list[str]:
    (tmp_path / "cli_hooks.py").write_text(HOOK_MODULE)
    return [
        "env",
        f"PYTHONPATH={os.pathsep.join(filter(None, [str(tmp_path), str(SRC), os.environ.get('PYTHONPATH')]))}",
    ]


@pytest.mark.parametrize("forwarded", [False, True])
def test_hook_option_answers_and_sees_forwarded_unit_ids_only_when_asked(tmp_path: Path, forwarded: bool) -> None:
    plc = Device()
    plc.holding_registers[0] = 42
    downstream = Server(plc, host=HOST, port=0)
    downstream.start_thread()
    port = free_port()
    child = Modbusd(["-p", str(port), "--host", HOST, "--hook", "cli_hooks:on_request", "--forward",
                     f"7=tcp:{HOST}:{downstream.port}", *(["--hook-forwarded"] if forwarded else [])],
                    prefix=with_hooks_on_path(tmp_path))  # fmt: skip
    try:
        child.running()
        assert read(port, 1) == 1001  # local: the hook's answer
        assert read(port, 7) == (1007 if forwarded else 42)  # forwarded: the downstream's, unless the hook sees it
        assert child.stop(signal.SIGTERM) == 0
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
            child.finish()
        downstream.stop_thread()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(["--subscribe", "9.xx"], "argument --subscribe: '9.xx': unknown table 'xx'", id="table"),
        pytest.param(
            ["--subscribe", "9.hr:floot"], "argument --subscribe: '9.hr:floot': unknown type 'floot'", id="type"
        ),
        pytest.param(
            ["--subscribe", "9.ir"], "modbusd: --subscribe: 9.ir: only coils and holding registers", id="input"
        ),
        pytest.param(
            ["--subscribe", "9.hr:string:4"],
            "--subscribe: 9.hr:string:4: type string:4 cannot be subscribed",
            id="string",
        ),
        pytest.param(
            ["--subscribe", "pump"], "modbusd: --subscribe: pump: no data point named 'pump'", id="no such name"
        ),
        pytest.param(["--hook", "no_such_module_here:f"], "--hook no_such_module_here:f: cannot import", id="hook"),
        pytest.param(["--hook", "nocolon"], "--hook nocolon: 'nocolon' is not package.module:function", id="spec"),
    ],
)
def test_subscribe_and_hook_mistakes_are_one_line_and_exit_2(launch: Launch, args: list[str], words: str) -> None:
    line = assert_one_line_error(launch("-p", str(free_port()), "--host", HOST, *args))
    assert words in line, line


# ---------------------------------------------------------------------------------- device file checks


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('[events]\nsubscribe = "1.hr"\n', ":2: events.subscribe: expected a list", id="not a list"),
        pytest.param('[events]\nsubscribe = ["1.xx"]\n', ":2: events.subscribe: '1.xx': unknown table", id="table"),
        pytest.param('[events]\nsubscribe = ["1.hr:"]\n', ":2: events.subscribe: '1.hr:': no type", id="colon"),
        pytest.param('[events]\nsubscrib = ["1.hr"]\n', ":2: events.subscrib: unknown key (did you mean", id="key"),
        pytest.param(
            '[[device]]\n[[device.point]]\nname = "t"\naddress = "30001"\nsubscribe = true\n',
            ":5: device[0].point[0].subscribe: t is at 0.ir: only coils and holding registers",
            id="input register",
        ),
        pytest.param(
            '[[device]]\n[[device.point]]\nname = "t"\naddress = "40001"\nsubscribe = "yes"\n',
            ":5: device[0].point[0].subscribe: expected true or false",
            id="not a bool",
        ),
        pytest.param(
            "[server]\nhook_forwarded = 1\n", ":2: server.hook_forwarded: expected true or false", id="hook_forwarded"
        ),
    ],
)
def test_device_file_subscription_mistakes_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(text, "plant.toml")
    assert str(caught.value).startswith("plant.toml") and message in str(caught.value), str(caught.value)


def test_a_subscription_only_the_server_can_refuse_names_the_line_it_came_from() -> None:
    text = '[[device]]\n[device.size]\nholding_registers = 10\n[[device.point]]\nname = "label"\naddress = "40001"\n' \
           'type = "string:4"\nsubscribe = true\n[events]\nsubscribe = ["9.hr:float"]\n'  # fmt: skip
    with pytest.raises(ValueError, match=r"^plant.toml:8: device\[0\].point\[0\].subscribe: label: type string:4"):
        Server.from_config(loads(text, "plant.toml"))
    fixed = text.replace("subscribe = true\n", "")
    with pytest.raises(
        ValueError, match=r"^plant.toml:9: events.subscribe: 9.hr:float: registers 9\.\.10 outside 0\.\.9$"
    ):
        Server.from_config(loads(fixed, "plant.toml"))


def test_a_point_subscribed_twice_makes_one_event_per_write(tmp_path: Path) -> None:
    """Marked in the file and listed again (or subscribed by the MQTT bridge's named points): one subscription."""
    config = loads('[events]\nsubscribe = ["level"]\n[[device]]\n[[device.point]]\nname = "level"\n'
                   'address = "40001"\nsubscribe = true\n', "plant.toml")  # fmt: skip
    server = Server.from_config(config, port=0)
    again = server.subscribe("level")
    assert len(server.subscriptions) == 1 and server.subscriptions[0] is again
    server.unsubscribe(again)  # one of its three holders let go: it stays
    assert len(server.subscriptions) == 1


def test_device_file_mqtt_subscribe_still_works_and_says_it_is_deprecated(launch: Launch, tmp_path: Path) -> None:
    port, broker = free_port(), free_port()  # nobody listens on the broker's port: the bridge retries, quietly
    text = f'[server]\nhost = "{HOST}"\nport = {port}\neventslog = "events.jsonl"\n'
    (tmp_path / "plant.toml").write_text(text + f'[mqtt]\nurl = "mqtt://{HOST}:{broker}"\nsubscribe = ["3.hr:short"]\n')
    child = launch("--config", str(tmp_path / "plant.toml"))
    child.running()
    write(port, lambda c: c.write_register(3, 0xFFFF, device_id=1))
    assert events_of(stopped_log(child, tmp_path / "events.jsonl")) == [("modbusd.1.3.hr", "short", -1, 0)]
    assert len([line for line in child.stderr if "[mqtt] subscribe is deprecated: use [events] subscribe" in line]) == 1
