"""The MQTT bridge over TLS (mqtts://) to a mosquitto whose TLS listener this test configures, requiring a client
certificate; the certificates are made here (tests/certificates.py)."""

from __future__ import annotations

import asyncio
import getpass
import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pymodbus.client import AsyncModbusTcpClient

from modbusd import Device, Server
from modbusd.config import ConfigError, MqttConfig, load, loads, mqtt_tls_context
from modbusd.mqtt import MqttBridge
from tests.certificates import Authority
from tests.conftest import Mosquitto, free_port
from tests.test_mqtt import HOST, Watcher, retained, until


@dataclass
class Pki:
    folder: Path
    ca: Authority
    other_ca: Authority  # signed nothing the broker uses
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    watcher: tuple[Path, Path]  # the test's own MQTT client

    def context(self, *, ca: Path | None = None, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        """A client context through modbusd's own builder, as the command line and the device file make it."""
        context = mqtt_tls_context(MqttConfig(tls=True, ca=str(ca or self.ca.path),
                                              cert=str(client[0]) if client else None,
                                              key=str(client[1]) if client else None))  # fmt: skip
        assert context is not None
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = Authority(tmp_path)
    return Pki(tmp_path, ca, Authority(tmp_path, "other-ca"), ca.issue("broker", ip=HOST), ca.issue("bridge"),
               ca.issue("watcher"))  # fmt: skip


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    """A mosquitto with one TLS listener on 127.0.0.1 that requires a client certificate from the test CA."""
    mosquitto = Mosquitto(tmp_path)
    mosquitto.conf.write_text(  # user: run as root, mosquitto would drop to its own user, who cannot read tmp_path
        f"listener {mosquitto.port} {HOST}\nallow_anonymous true\npersistence false\nuser {getpass.getuser()}\n"
        f"cafile {pki.ca.path}\ncertfile {pki.server[0]}\nkeyfile {pki.server[1]}\nrequire_certificate true\n"
    )
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


def test_mqtt_tls_the_bridge_publishes_with_its_client_certificate(tls_broker: Mosquitto, pki: Pki) -> None:
    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port())
        server.write("100.hr", 21.5, "float")
        await server.start()
        bridge = await MqttBridge.start(server, HOST, tls_broker.port, points=["100.hr:float"], min_backoff=0.1,
                                        tls=pki.context(client=pki.client))  # fmt: skip
        modbus = AsyncModbusTcpClient(HOST, port=server.port, timeout=5, retries=0)
        try:
            await until(lambda: bridge.connected, what="the bridge's TLS connection")
            assert repr(bridge).startswith(f"<MqttBridge mqtts://{HOST}:{tls_broker.port} ")
            async with Watcher(tls_broker.port, "modbusd/#", pki.context(client=pki.watcher)) as watcher:
                await until(lambda: watcher.on("modbusd/all/hr/100"), what="the retained state")
                assert watcher.on("modbusd/all/hr/100")[0]["value"] == 21.5
                assert await modbus.connect()
                assert not (await modbus.write_registers(100, [0x41C8, 0x0000], device_id=1)).isError()  # 25.0
                await until(lambda: watcher.written("modbusd/all/hr/100"), what="the write's event")
                assert watcher.written("modbusd/all/hr/100")[0]["value"] == 25.0
        finally:
            modbus.close()
            await bridge.stop()
            await server.stop()

    asyncio.run(asyncio.wait_for(main(), 40))


REFUSALS = {
    # TLS 1.3: the broker refuses the handshake's missing certificate only after it; aiomqtt sees a time-out
    "no client certificate": ({}, "certificate required"),
    "the broker's certificate does not verify": ({"ca": "other"}, "CERTIFICATE_VERIFY_FAILED"),
}


@pytest.mark.parametrize(("case", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
def test_mqtt_tls_a_refused_connection_is_logged_once_with_the_reason(
    tls_broker: Mosquitto, pki: Pki, caplog: pytest.LogCaptureFixture, case: dict[str, str], reason: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="modbusd.mqtt")
    context = pki.context(ca=pki.other_ca.path, client=pki.client) if case.get("ca") else pki.context()

    def attempts() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "modbusd.mqtt" and "cannot reach" in r.getMessage()]

    async def main() -> None:
        server = Server(Device(), host=HOST, port=free_port())
        await server.start()
        bridge = await MqttBridge.start(server, HOST, tls_broker.port, points=["0.hr"], min_backoff=0.05,
                                        max_backoff=0.1, connect_timeout=1.0, tls=context)  # fmt: skip
        try:
            await until(lambda: len(attempts()) >= 3, timeout=20, what="three refused attempts")
            assert not bridge.connected and bridge.connections == 0
            assert asyncio.get_running_loop().get_exception_handler() is not None  # the race's filter
        finally:
            await bridge.stop()
            await server.stop()
        assert asyncio.get_running_loop().get_exception_handler() is None  # the loop's own, put back

    asyncio.run(asyncio.wait_for(main(), 40))
    warnings = [r.getMessage() for r in attempts() if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert reason in warnings[0] and f"mqtts://{HOST}:{tls_broker.port}" in warnings[0], warnings[0]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "modbusd.mqtt"] == []


# ---------------------------------------------------------------------------------------- settings at start


def _encrypted_key(pki: Pki) -> Path:
    key = serialization.load_pem_private_key(pki.client[1].read_bytes(), None)
    path = pki.folder / "encrypted.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"secret")))  # fmt: skip
    return path


SETTINGS_ERRORS: dict[str, tuple[Callable[[Pki], str], str]] = {
    "a missing CA file": (lambda p: 'ca = "nope.pem"', "f.toml:3: mqtt.ca: {folder}/nope.pem: no such file"),
    "a key not matching": (lambda p: 'cert = "bridge.crt"\nkey = "watcher.key"',
                           "f.toml:4: mqtt.key: {folder}/watcher.key: this key does not match the certificate "
                           "{folder}/bridge.crt"),
    "a key as the CA": (lambda p: 'ca = "bridge.key"', "f.toml:3: mqtt.ca: {folder}/bridge.key: not a PEM "
                                                       "certificate (no BEGIN CERTIFICATE in it)"),
    "a certificate without its key": (lambda p: 'cert = "bridge.crt"', "f.toml:3: mqtt.cert: {folder}/bridge.crt: "
                                                                       "not a PEM private key"),
    "a key without its certificate": (lambda p: 'key = "bridge.key"', "f.toml:3: mqtt.key: a key without its "
                                                                      "certificate: give cert too"),
    "an encrypted key": (lambda p: f'cert = "bridge.crt"\nkey = "{_encrypted_key(p).name}"',
                         "f.toml:4: mqtt.key: the private key is encrypted"),
}  # fmt: skip


@pytest.mark.parametrize(("lines", "message"), SETTINGS_ERRORS.values(), ids=SETTINGS_ERRORS.keys())
def test_mqtt_tls_settings_of_the_device_file_are_checked_when_it_is_read(
    pki: Pki, lines: Callable[[Pki], str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(f'[mqtt]\nurl = "mqtts://{HOST}"\n{lines(pki)}\n', "f.toml", base=pki.folder)
    assert str(caught.value).startswith(message.format(folder=pki.folder)), str(caught.value)


def test_mqtt_tls_files_are_relative_to_the_device_file_and_need_mqtts(pki: Pki) -> None:
    (pki.folder / "plant.toml").write_text('[mqtt]\nurl = "mqtts://broker"\nca = "ca.pem"\ncert = "bridge.crt"\n'
                                           'key = "bridge.key"\n')  # fmt: skip
    config = load(str(pki.folder / "plant.toml")).mqtt
    assert config is not None and config.url == "mqtts://broker:8883"
    assert (config.ca, config.cert, config.key) == tuple(str(pki.folder / n) for n in ("ca.pem", "bridge.crt",
                                                                                         "bridge.key"))  # fmt: skip
    with pytest.raises(ConfigError, match=r"^f\.toml:3: mqtt\.ca: only for TLS: give the broker as mqtts://"):
        loads('[mqtt]\nurl = "mqtt://broker"\nca = "ca.pem"\n', "f.toml", base=pki.folder)


def test_mqtt_tls_command_line_errors_are_one_line_and_exit_2(pki: Pki, launch: Callable[..., Any]) -> None:
    port = str(free_port())
    cases = {
        ("--mqtt", f"mqtts://{HOST}", "--mqtt-ca", str(pki.folder / "nope.pem")):
            f"modbusd: --mqtt-ca / [mqtt] ca: {pki.folder}/nope.pem: no such file",
        ("--mqtt", f"mqtts://{HOST}", "--mqtt-cert", str(pki.client[0]), "--mqtt-key", str(pki.watcher[1])):
            f"modbusd: --mqtt-key / [mqtt] key: {pki.watcher[1]}: this key does not match the certificate "
            f"{pki.client[0]}",
        ("--mqtt", f"mqtt://{HOST}", "--mqtt-cert", str(pki.client[0])):
            "modbusd: --mqtt-cert / [mqtt] cert: only for TLS: give the broker as mqtts://",
        ("--mqtt-ca", str(pki.ca.path)): "modbusd: --mqtt-prefix, --mqtt-ca, --mqtt-cert and --mqtt-key "
                                         "need --mqtt URL",
    }  # fmt: skip
    children = {message: launch("-p", port, "--host", HOST, *args) for args, message in cases.items()}
    for message, child in children.items():
        assert child.finish() == 2
        assert len(child.stderr) == 1 and child.stderr[0].startswith(message), child.stderr
        assert child.stdout == []


def test_mqtt_tls_the_device_file_bridge_publishes_over_tls(tls_broker: Mosquitto, pki: Pki,
                                                            launch: Callable[..., Any]) -> None:  # fmt: skip
    (pki.folder / "plant.toml").write_text(
        f'[server]\nhost = "{HOST}"\nport = {free_port()}\n\n'
        f'[mqtt]\nurl = "mqtts://{HOST}:{tls_broker.port}"\nca = "ca.pem"\ncert = "bridge.crt"\nkey = "bridge.key"\n\n'
        '[[device]]\n[[device.point]]\nname = "setpoint"\naddress = "100.hr"\ntype = "float"\nvalue = 19.5\n'
    )
    child = launch("--config", str(pki.folder / "plant.toml"))
    banner = child.running()
    assert f"MQTT bridge to mqtts://{HOST}:{tls_broker.port}, topics modbusd/<unit>/<table>/<address>" in banner
    context = pki.context(client=pki.watcher)

    def state() -> dict[str, Any]:
        return retained(tls_broker.port, "modbusd/#", 0.3, context)

    held: dict[str, Any] = {}
    for _ in range(50):  # the bridge connects in the background: until its state is there, bounded
        if (held := state()).get("modbusd/all/hr/100"):
            break
    assert held["modbusd/all/hr/100"]["value"] == 19.5 and held["modbusd/all/hr/100"]["client"] is None
    child.proc.terminate()
    assert child.finish() == 0
