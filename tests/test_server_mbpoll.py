"""modbusd seen by two well-known C masters: the mbpoll command and a tiny libmodbus client compiled at test time.

Both are installed by .ci/run (apt: mbpoll, libmodbus-dev, gcc); a missing one fails these tests, it does not skip
them. mbpoll counts references from 1 by default (-r 1 is address 0); most calls here pass -0 for protocol addresses.
"""

from __future__ import annotations

import logging
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modbusd import Device, Server

if TYPE_CHECKING:
    StartServer = Callable[..., Server]

HOST = "127.0.0.1"
RUN_TIMEOUT = 20.0  # seconds one mbpoll or compiled-client run may take


def mbpoll(port: int, *args: str, values: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """One poll (-1) over TCP with a 2 s response time-out; `values` makes it a write."""
    mbpoll_path = shutil.which("mbpoll")
    assert mbpoll_path is not None, "mbpoll is not installed (apt-get install mbpoll)"
    command = [mbpoll_path, "-m", "tcp", "-p", str(port), "-1", "-o", "2", *args, HOST, *values]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)


def polled(result: subprocess.CompletedProcess[str]) -> dict[int, str]:
    """mbpoll's `[reference]: value` lines."""
    assert result.returncode == 0, result.stderr
    return {int(ref): value for ref, value in re.findall(r"^\[(\d+)\]:\s+(\S+)\s*$", result.stdout, re.MULTILINE)}


@pytest.fixture
def request_log(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The server's per-request debug lines ("... unit=1 fc=6 address=100 value=7 -> ok"), to see what mbpoll sent.

    Sessions check the debug level once, when the connection opens: this fixture turns it on before any does.
    """
    caplog.set_level(logging.DEBUG, logger="modbusd.session")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "modbusd.session" and "unit=" in r.getMessage()]


# ------------------------------------------------------------------------------------------------ mbpoll


def test_mbpoll_reads_holding_registers_the_device_holds(start_server: StartServer) -> None:
    server = start_server()
    server.device.holding_registers.set_values(0, [11, 22, 33])
    assert polled(mbpoll(server.port, "-0", "-r", "0", "-c", "3", "-t", "4")) == {0: "11", 1: "22", 2: "33"}
    assert polled(mbpoll(server.port, "-r", "1", "-c", "2", "-t", "4")) == {1: "11", 2: "22"}  # 1-based: address 0


def test_mbpoll_reads_input_registers_coils_and_discrete_inputs(start_server: StartServer) -> None:
    server = start_server()
    server.device.input_registers.set_values(5, [0x1234, 0xFFFF])
    server.device.coils.write(10, [True, False, True])
    server.device.discrete_inputs.write(3, [False, True])
    assert polled(mbpoll(server.port, "-0", "-r", "5", "-c", "2", "-t", "3:hex")) == {5: "0x1234", 6: "0xFFFF"}
    assert polled(mbpoll(server.port, "-0", "-r", "10", "-c", "3", "-t", "0")) == {10: "1", 11: "0", 12: "1"}
    assert polled(mbpoll(server.port, "-0", "-r", "3", "-c", "2", "-t", "1")) == {3: "0", 4: "1"}


def test_mbpoll_reads_a_big_endian_float_across_two_registers(start_server: StartServer) -> None:
    server = start_server()
    server.device.holding_registers.write(20, struct.pack(">f", 21.5))  # ABCD: high word first
    assert polled(mbpoll(server.port, "-0", "-r", "20", "-t", "4:float", "-B")) == {20: "21.5"}


def test_mbpoll_writes_registers_that_the_device_then_holds(
    start_server: StartServer, request_log: Callable[[], list[str]]
) -> None:
    server = start_server()
    assert mbpoll(server.port, "-0", "-r", "100", "-t", "4", values=("7",)).returncode == 0
    assert mbpoll(server.port, "-0", "-r", "200", "-t", "4", values=("1", "65535", "3")).returncode == 0
    assert server.device.holding_registers[100] == 7
    assert server.device.holding_registers.values(200, 3) == [1, 65535, 3]
    log = request_log()
    assert any("fc=6 address=100 value=7 -> ok" in line for line in log), log
    assert any("fc=16 address=200 quantity=3 values=[1, 65535, 3] -> ok" in line for line in log), log


def test_mbpoll_writes_coils_that_the_device_then_holds(
    start_server: StartServer, request_log: Callable[[], list[str]]
) -> None:
    server = start_server()
    assert mbpoll(server.port, "-0", "-r", "7", "-t", "0", values=("1",)).returncode == 0
    assert mbpoll(server.port, "-0", "-r", "50", "-t", "0", values=("1", "0", "1", "1")).returncode == 0
    assert server.device.coils[7] is True
    assert server.device.coils.read(49, 6) == [False, True, False, True, True, False]
    log = request_log()
    assert any("fc=5 address=7" in line and "-> ok" in line for line in log), log
    assert any("fc=15 address=50 quantity=4 values=[1, 0, 1, 1] -> ok" in line for line in log), log


def test_mbpoll_reports_illegal_data_address_past_the_table_end(start_server: StartServer) -> None:
    server = start_server(Device(holding_registers=100))
    result = mbpoll(server.port, "-0", "-r", "99", "-c", "2", "-t", "4")
    assert result.returncode != 0
    assert "Illegal data address" in result.stderr


@pytest.mark.parametrize("unit_id", [1, 2])
def test_mbpoll_reads_the_table_of_the_unit_it_addresses(start_server: StartServer, unit_id: int) -> None:
    units = {1: Device(), 2: Device()}
    units[1].holding_registers[0], units[2].holding_registers[0] = 1111, 2222
    server = start_server(units)
    assert polled(mbpoll(server.port, "-a", str(unit_id), "-0", "-r", "0", "-t", "4")) == {0: f"{unit_id}" * 4}


@pytest.mark.parametrize("unit_id", [0, 255])
def test_mbpoll_reaches_a_single_device_with_unit_id_0_and_255(start_server: StartServer, unit_id: int) -> None:
    server = start_server()
    server.device.holding_registers[0] = 4321
    assert polled(mbpoll(server.port, "-a", str(unit_id), "-0", "-r", "0", "-t", "4")) == {0: "4321"}


# --------------------------------------------------------------------------------------------- libmodbus

LIBMODBUS_CLIENT = r"""
/* A small libmodbus master: one request of each kind we care about, one output line per request. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <modbus.h>

static void show_words(const char *name, int rc, const uint16_t *words) {
    printf("%s", name);
    if (rc < 0) { printf(" error %s\n", modbus_strerror(errno)); return; }
    for (int i = 0; i < rc; i++) printf(" %u", words[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s port\n", argv[0]); return 2; }
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", atoi(argv[1]));
    if (ctx == NULL || modbus_connect(ctx) == -1) {
        fprintf(stderr, "connect: %s\n", modbus_strerror(errno));
        return 1;
    }
    modbus_set_response_timeout(ctx, 2, 0);
    modbus_set_slave(ctx, 1);

    uint16_t words[16] = {0};
    uint8_t bits[16] = {0};
    show_words("fc03", modbus_read_registers(ctx, 0, 3, words), words);
    show_words("fc04", modbus_read_input_registers(ctx, 5, 1, words), words);

    const uint16_t block[3] = {100, 200, 300};
    printf("fc16 %d\n", modbus_write_registers(ctx, 10, 3, block));
    printf("fc06 %d\n", modbus_write_register(ctx, 13, 0xBEEF));
    printf("fc22 %d\n", modbus_mask_write_register(ctx, 4, 0x00F2, 0x0025));

    const uint16_t pair[2] = {7, 8};
    show_words("fc23", modbus_write_and_read_registers(ctx, 20, 2, pair, 19, 4, words), words);

    const uint8_t pattern[5] = {1, 0, 1, 1, 0};
    printf("fc15 %d\n", modbus_write_bits(ctx, 30, 5, pattern));
    printf("fc05 %d\n", modbus_write_bit(ctx, 36, 1));
    int rc = modbus_read_bits(ctx, 30, 7, bits);
    printf("fc01");
    for (int i = 0; i < rc; i++) printf(" %u", bits[i]);
    printf("\n");

    uint8_t id[256] = {0};
    rc = modbus_report_slave_id(ctx, (int)sizeof id, id);
    printf("fc17");
    for (int i = 0; i < rc; i++) printf(" %02x", id[i]);
    printf("\n");

    rc = modbus_read_registers(ctx, 65535, 2, words);
    printf("past-end %d %s\n", rc, rc == -1 && errno == EMBXILADD ? "EMBXILADD" : modbus_strerror(errno));

    modbus_set_slave(ctx, MODBUS_TCP_SLAVE);
    show_words("unit255", modbus_read_registers(ctx, 10, 1, words), words);

    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}
"""


@pytest.fixture(scope="module")
def libmodbus_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client above, compiled once per test run."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None, "no C compiler (apt-get install gcc)"
    assert Path("/usr/include/modbus/modbus.h").exists(), "libmodbus headers missing (apt-get install libmodbus-dev)"
    build = tmp_path_factory.mktemp("libmodbus")
    (build / "client.c").write_text(LIBMODBUS_CLIENT)
    binary = build / "client"
    compiled = subprocess.run(
        [cc, "-std=c99", "-Wall", "-o", str(binary), str(build / "client.c"), "-I/usr/include/modbus", "-lmodbus"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    return binary


def run_libmodbus(binary: Path, port: int) -> dict[str, list[str]]:
    result = subprocess.run([str(binary), str(port)], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    return {name: rest for name, *rest in (line.split() for line in result.stdout.splitlines())}


def test_libmodbus_client_reads_writes_and_reads_back_through_fc23(
    start_server: StartServer, libmodbus_client: Path
) -> None:
    device = Device(server_id=b"\x2a")
    device.holding_registers.set_values(0, [11, 22, 33])
    device.holding_registers[4] = 0x12
    device.holding_registers[19] = 19
    device.holding_registers[22] = 22
    device.input_registers[5] = 55
    out = run_libmodbus(libmodbus_client, start_server(device).port)
    assert out["fc03"] == ["11", "22", "33"]
    assert out["fc04"] == ["55"]
    assert out["fc16"] == ["3"] and out["fc06"] == ["1"] and out["fc22"] == ["1"]
    assert out["fc23"] == ["19", "7", "8", "22"]  # written before it was read
    assert out["fc15"] == ["5"] and out["fc05"] == ["1"]
    assert out["fc01"] == ["1", "0", "1", "1", "0", "0", "1"]
    assert out["past-end"] == ["-1", "EMBXILADD"]
    assert out["unit255"] == ["100"]
    assert device.holding_registers.values(10, 4) == [100, 200, 300, 0xBEEF]
    assert device.holding_registers[4] == 0x17
    assert device.holding_registers.values(20, 2) == [7, 8]
    assert device.coils.read(30, 7) == [True, False, True, True, False, False, True]


def test_libmodbus_report_slave_id_sees_server_id_then_run_indicator(
    start_server: StartServer, libmodbus_client: Path
) -> None:
    device = Device(server_id=b"\x2a")
    assert run_libmodbus(libmodbus_client, start_server(device).port)["fc17"] == ["2a", "ff"]
    stopped = Device(server_id=b"modbusd")
    stopped.running = False
    # A longer server id comes first, whole, then the run indicator (§6.13: the id's length is device specific).
    assert run_libmodbus(libmodbus_client, start_server(stopped).port)["fc17"] == [f"{b:02x}" for b in b"modbusd\x00"]
