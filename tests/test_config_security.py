"""The device file's access rules ([server.tls], [roles.NAME], allow lists, a device's read_only) and the TLS
start-up checks: each mistake is one line naming the file, the line and the key; the command line's is one line
and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from modbusd import Server
from modbusd.authorize import ReadOnly
from modbusd.config import ConfigError, TlsConfig, TlsSettingError, loads, server_tls_context, summary
from modbusd.model.names import Table
from modbusd.protocol.codes import ExceptionCode
from tests.certificates import Authority
from tests.conftest import free_port
from tests.test_cli import SRC, Modbusd

HR = Table.HOLDING_REGISTERS


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    authority = Authority(tmp_path)
    authority.issue("server", ip="127.0.0.1", chain=True)
    return authority


def test_a_device_file_with_tls_roles_read_only_ranges_and_allow_lists(tmp_path: Path, ca: Authority) -> None:
    config = loads(
        """
        [server]
        port = false
        allow = ["10.0.0.0/8"]
        [server.tls]
        port = 8802
        cert = "server.crt"
        key = "server.key"
        ca = "ca.pem"
        no_role = "viewer"
        allow = ["10.1.0.0/16"]
        [server.udp]
        port = 5021
        allow = ["192.0.2.7"]
        [roles.operator]
        read = ["*"]
        write = ["100-199.hr"]
        [roles.viewer]
        read = ["*"]
        functions = [1, 2, 3, 4]
        [[device]]
        unit_id = 1
        read_only = ["0-9.hr", "00001-00008"]
        read_only_exception = 4
        allow = ["10.0.0.5"]
        """,
        "plant.toml",
        base=tmp_path,
    )
    tls = config.server.tls
    assert tls is not None and (tls.port, tls.no_role) == (8802, "viewer")
    assert tls.cert == str(tmp_path / "server.crt")
    assert dict(config.server.allow) == {"*": ("10.0.0.0/8",), "tls": ("10.1.0.0/16",), "udp": ("192.0.2.7",)}
    assert config.roles is not None and set(config.roles.rights) == {"operator", "viewer"}
    assert config.roles.rights["operator"].write == ((HR, 100, 199),)
    assert config.roles.rights["viewer"].functions == frozenset({1, 2, 3, 4})
    assert config.allow_units == {1: ("10.0.0.5",)}
    device = config.build_devices()[1]  # type: ignore[index]  # one device per unit id
    assert isinstance(device.guard, ReadOnly) and device.guard.code is ExceptionCode.SERVER_DEVICE_FAILURE
    server = Server.from_config(config)
    assert server.counters()["security"]["denied"] == 0  # type: ignore[index]
    shown = summary(config)  # what modbusd check prints
    assert "roles: operator, viewer" in shown and "read-only (unit 1): 0-9.hr, 0-7.co (exception 04)" in shown
    assert "allow (unit 1): 10.0.0.5" in shown and "allow udp: 192.0.2.7" in shown


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ('[[device]]\nread_only = ["0-9.ir"]', 2, "read-only for clients already"),
        ('[[device]]\nread_only = ["9-0.hr"]', 2, "ends before it starts"),
        ('[[device]]\nread_only = ["0-9.hr"]\nread_only_exception = 3', 3, "2 (illegal data address"),
        ('[[device]]\nallow = ["10.0.0.0/8"]', 2, "per unit id"),
        ('[server]\nallow = ["10.0.0.1/8"]', 2, "host bits set"),
        ('[server]\nallow = "10.0.0.0/8"', 2, "expected a list"),
        ('[roles.operator]\nwrite = ["100-199"]', 2, "names no table"),
        ("[roles.operator]\nfunctions = [300]", 2, "function codes 1..127"),
        ('[roles.operator]\nread = ["*"]\nwrite_all = true', 3, "write_all"),
        ("[roles]\noperator = 1", 1, "a table of its own"),
    ],
)
def test_access_rules_mistakes_are_one_line_with_file_line_and_key(text: str, line: int, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(text, "plant.toml")
    assert f"plant.toml:{line}:" in str(caught.value) and says in str(caught.value)


def test_no_role_must_name_a_role(tmp_path: Path, ca: Authority) -> None:
    text = ('[server.tls]\ncert = "server.crt"\nkey = "server.key"\nca = "ca.pem"\nno_role = "guest"\n'
            '[roles.viewer]\nread = ["*"]\n')  # fmt: skip
    with pytest.raises(ConfigError, match="'guest' is no role of \\[roles\\]: name one of viewer"):
        loads(text, "plant.toml", base=tmp_path)


def tls(folder: Path, cert: str = "server.crt", key: str | None = "server.key") -> TlsConfig:
    return TlsConfig(0, str(folder / cert), None if key is None else str(folder / key), str(folder / "ca.pem"))


def test_tls_start_up_checks_name_what_is_wrong(tmp_path: Path, ca: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    ca.issue("old", ip="127.0.0.1", expired=True)
    ca.issue("locked", ip="127.0.0.1", passphrase=b"s3cret")
    other = Authority(tmp_path, "other")
    other.issue("stranger", ip="127.0.0.1")
    cases = {
        "no such file": tls(tmp_path, "missing.crt"),
        "expired on": tls(tmp_path, "old.crt", "old.key"),
        "does not match the certificate": tls(tmp_path, "server.crt", "stranger.key"),
        "encrypted: give its passphrase in the environment variable MODBUSD_KEY_PASSWORD": tls(
            tmp_path, "locked.crt", "locked.key"),
        "needs the CA": TlsConfig(0, str(tmp_path / "server.crt"), str(tmp_path / "server.key")),
    }  # fmt: skip
    for says, config in cases.items():
        with pytest.raises(TlsSettingError, match=says):
            server_tls_context(config)
    monkeypatch.setenv("MODBUSD_KEY_PASSWORD", "wrong")
    with pytest.raises(TlsSettingError, match="does not decrypt this key"):
        server_tls_context(tls(tmp_path, "locked.crt", "locked.key"))
    monkeypatch.setenv("MODBUSD_KEY_PASSWORD", "s3cret")
    assert server_tls_context(tls(tmp_path, "locked.crt", "locked.key")).minimum_version.name == "TLSv1_2"


def run_modbusd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "modbusd", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env, check=False, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (("missing.crt", "server.key"), "--cert / [server.tls] cert: "),
        (("old.crt", "old.key"), "the certificate expired on"),
        (("server.crt", "other.key"), "this key does not match the certificate"),
    ],
)
def test_the_command_line_refuses_unusable_certificates_in_one_line_with_exit_2(
    tmp_path: Path, ca: Authority, files: tuple[str, str], says: str
) -> None:
    ca.issue("old", ip="127.0.0.1", expired=True)
    ca.issue("other", ip="127.0.0.1")
    done = run_modbusd("--tls", "0", "--host", "127.0.0.1", "--cert", files[0], "--key", files[1], "--ca", "ca.pem",
                       cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modbusd: ") and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_the_command_line_wants_tls_for_certificates(tmp_path: Path, ca: Authority) -> None:
    done = run_modbusd("--cert", "server.crt", cwd=tmp_path)
    assert done.returncode == 2 and "give --tls [PORT] too" in done.stderr


def test_the_command_line_serves_tls_alone_when_only_tls_is_named(
    tmp_path: Path, ca: Authority, launch: Callable[..., Modbusd]
) -> None:
    port = free_port()
    files = ["--cert", str(tmp_path / "server.crt"), "--key", str(tmp_path / "server.key"), "--ca", str(ca.path)]
    banner = launch("--tls", str(port), "--host", "127.0.0.1", *files).running()
    assert f"Starting server with TLS on 127.0.0.1 port {port}." in banner[1]  # no plain Modbus/TCP beside it
