"""The README's "Secure deployment", as written: its openssl commands make the certificates, its device file is
served by `modbusd --config`, pymodbus's TLS client with the operator's certificate finds the role's rights, and
what it wrote is still there after `kill -9` and a restart (the device file's state file)."""

from __future__ import annotations

import signal
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

from pymodbus.client import ModbusTlsClient

from tests.conftest import free_port
from tests.test_cli import Modbusd
from tests.test_docs import RUN_TIMEOUT, blocks, commands, only

SECTION = "## Secure deployment"
HOST = "127.0.0.1"


def test_readme_secure_deployment_serves_roles_over_tls(launch: Callable[..., Modbusd], tmp_path: Path) -> None:
    make, serve = blocks("sh", "README.md", SECTION)
    done = subprocess.run(["sh", "-ec", make.code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    toml = only(blocks("toml", "README.md", SECTION)).code
    port = free_port()
    assert "port = 8802" in toml and 'state = "plant.state"' in toml
    (tmp_path / "secure.toml").write_text(toml.replace("port = 8802", f"port = {port}"), encoding="utf-8")
    assert commands(serve)[-1] == ["modbusd", "--config", "secure.toml"]
    server = launch("--config", str(tmp_path / "secure.toml"), "--host", HOST)
    assert f"TLS on {HOST} port {port}" in "\n".join(server.running())

    context = ssl.create_default_context(cafile=tmp_path / "ca.pem")  # the README's CA: the server's chain checks
    context.check_hostname = False  # pymodbus's TLS client gives no server name; the chain is verified all the same
    context.load_cert_chain(tmp_path / "operator.crt", tmp_path / "operator.key")
    client = ModbusTlsClient(HOST, port=port, sslctx=context, timeout=5, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(0, count=10).registers == [0] * 10
        assert not client.write_register(150, 7).isError()
        assert client.read_holding_registers(150, count=1).registers == [7]
        assert client.write_register(50, 7).exception_code == 1  # outside the operator's rights: R-31
        assert client.write_register(5, 7).exception_code == 1  # the read-only range: not the operator's either
    finally:
        client.close()
    server.proc.kill()  # a crash: the acknowledged write is in plant.state, beside secure.toml
    assert server.finish() == -signal.SIGKILL
    assert (tmp_path / "plant.state").exists()
    server = launch("--config", str(tmp_path / "secure.toml"), "--host", HOST)
    server.running()
    client = ModbusTlsClient(HOST, port=port, sslctx=context, timeout=5, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(150, count=1).registers == [7]
    finally:
        client.close()

    chain = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-CAfile", str(tmp_path / "ca.pem")],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                             check=False)  # fmt: skip
    assert "Verify return code: 0 (ok)" in chain.stdout  # server-chain.pem, as the README makes it, verifies
