"""The device file: the example loads and builds, and each kind of mistake gets its own message on the right line."""

from pathlib import Path

import pytest

from modbusd import Server
from modbusd.config import EXAMPLE, ConfigError, load, loads, summary
from modbusd.model.names import Table
from modbusd.protocol.errors import IllegalDataAddress
from tests.conftest import assert_config_mistake


def test_config_example_loads_and_builds_a_server_with_its_initial_values() -> None:
    config = loads(EXAMPLE, "example.toml")
    assert config.server.port == 5020 and config.http is not None and config.http.port == 8020
    server = Server.from_config(config)
    assert server.read("temperature") == 21.5
    assert server.read("setpoint") == 20.0
    assert server.device.holding_registers.values(0, 2) == [0, 0x41A0]  # 20.0 word-swapped (CDAB)
    assert server.read("label") == "Living room"
    assert server.read("heating") is True
    assert server.device.identification[0x00] == b"ACME"
    assert [p.name for p in server.data_points()][:2] == ["heating", "window_open"]
    assert summary(config)[0] == "example.toml: OK"


def test_config_sparse_table_implements_only_its_points() -> None:
    server = Server.from_config(loads(EXAMPLE, "example.toml"))
    table = server.device.input_registers
    assert list(table.addresses()) == [0, 1, 2]
    with pytest.raises(IllegalDataAddress):
        table.read(2, 2)


def test_config_unit_ids_make_one_device_per_unit_and_points_know_their_unit() -> None:
    text = """
[[device]]
unit_ids = [1, 2]
[[device.point]]
name = "a"
address = "40001"
value = 7
[[device]]
unit_id = 3
layout = "overlaid"
[[device.point]]
name = "b"
address = "3.5.ir"
value = 9
"""
    config = loads(text)
    devices = config.build_devices()
    assert isinstance(devices, dict) and devices[1] is devices[2] and devices[3] is not devices[1]
    assert devices[3].holding_registers[5] == 9  # overlaid: input register 5 is holding register 5
    server = Server(devices, host="127.0.0.1", port=0)
    assert server.read("a") == 7 and server.read("2.0.hr") == 7 and server.read("3.30006") == 9


def test_config_reads_points_from_a_csv_file_next_to_it(tmp_path: Path) -> None:
    (tmp_path / "map.csv").write_text(
        "Name,Address,Type,Order,Value,Unit,Comment\n# a comment row\n"
        "flow,30001,float,CDAB,12.5,m3/h,main flow\ncount,30003,uint,,70000,,\n\npump,00001,bit,,on,,\n"
    )
    (tmp_path / "dev.toml").write_text('[[device]]\nsparse = true\npoints_csv = "map.csv"\n')
    server = Server.from_config(load(tmp_path / "dev.toml"))
    assert server.read("flow") == 12.5 and server.read("count") == 70000 and server.read("pump") is True
    assert server.device.input_registers.values(0, 2) == [0, 0x4148]  # CDAB
    assert list(server.device.coils.addresses()) == [0]


BROKEN = [
    pytest.param("[server]\nport = \n", 2, "", "not valid TOML", id="toml syntax"),
    pytest.param('[server]\nhost = "127.0.0.1"\nprot = 5020\n', 3, "server.prot", "did you mean 'port'", id="typo"),
    pytest.param("[server]\nport = 70000\n", 2, "server.port", "outside 0..65535", id="port range"),
    pytest.param('[server]\nlayout = "flat"\n', 2, "server.layout", "not one of separate", id="layout"),
    pytest.param("[server]\nidle_timeout = -1\n", 2, "server.idle_timeout", "greater than 0", id="idle time-out"),
    pytest.param("[server]\nport = true\n", 2, "server.port", "or false for no Modbus/TCP", id="port true"),
    pytest.param("[server]\nport = false\n", 2, "server.port", "nothing would be served", id="no transport at all"),
    pytest.param("[server]\nport = 5020\n[server.udp]\nprot = 5021\n", 4, "server.udp.prot",
                 "did you mean 'port'", id="udp typo"),
    pytest.param("[server]\nport = 5020\n\n[server.udp]\n", 4, "server.udp", "needs a port", id="udp without port"),
    pytest.param("[server.rtu_over_tcp]\nport = 70000\n", 2, "server.rtu_over_tcp.port", "outside 0..65535",
                 id="rtu over tcp port range"),
    pytest.param("[server]\nport = 5020\n[server.rtu_over_tcp]\nport = 5020\n", 4, "server.rtu_over_tcp.port",
                 "Modbus/TCP's already", id="rtu over tcp on the tcp port"),
    pytest.param("[server]\nudp = 5021\n", 2, "server.udp", "expected a table ([server.udp])", id="udp not a table"),
    pytest.param('[server]\nport = false\n[server.serial]\ndevice = "/dev/ttyUSB0"\n', 3, "server.serial",
                 "[[server.serial]] tables (double brackets)", id="serial single brackets"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyUSB0"\n\n[[server.serial]]\nbaudrate = 9600\n', 4,
                 "server.serial[1]", "needs a device", id="serial without device"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyUSB0"\nbaudrate = 0\n', 3, "server.serial[0].baudrate",
                 "must be positive", id="serial baud rate"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyUSB0"\nbaudrate = "fast"\n', 3,
                 "server.serial[0].baudrate", "expected a whole number", id="serial baud rate text"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyUSB0"\nparity = "X"\n', 3, "server.serial[0].parity",
                 "none of E, O, N", id="serial parity"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyUSB0"\nframing = "rtu"\nbytesize = 7\n', 4,
                 "server.serial[0].bytesize", "RTU needs 8", id="serial rtu bytesize"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyS0"\nstopbits = 3\n', 3, "server.serial[0].stopbits",
                 "1 or 2", id="serial stop bits"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyS0"\nframing = "modbus"\n', 3, "server.serial[0].framing",
                 "not one of rtu, ascii", id="serial framing"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyS0"\nstop_bits = 2\n', 3, "server.serial[0].stop_bits",
                 "did you mean 'stopbits'", id="serial typo"),
    pytest.param('[[server.serial]]\ndevice = "/dev/ttyS0"\n[[server.serial]]\nframing = "ascii"\n'
                 'device = "/dev/ttyS0"\n', 5, "server.serial[1].device", "served by server.serial[0] already",
                 id="serial device twice"),
    pytest.param('[server.rtu_over_tcp]\nport = 5022\n[[device]]\nunit_ids = [1, 248]\n', 4,
                 "device[0].unit_ids", "unit id 248 is outside 1..247", id="unit id beyond serial slave ids"),
    pytest.param("[[device]]\nunit_id = 3\nserial_unit_id = 4\n", 3, "device[0].serial_unit_id", "answers at those",
                 id="serial unit id with unit id"),
    pytest.param("[[device]]\nserial_unit_id = 248\n", 2, "device[0].serial_unit_id", "outside 1..247",
                 id="serial unit id range"),
    pytest.param("[[device]]\naddress_register = 2000\n[device.size]\nholding_registers = 100\n", 2,
                 "device[0].address_register", "outside the holding registers, addresses 0..99",
                 id="address register outside the table"),
    pytest.param('[[device]]\nsparse = true\naddress_register = 5\n[[device.point]]\nname = "a"\n'
                 'address = "40001"\n', 3, "device[0].address_register", "table is sparse",
                 id="address register in a sparse gap"),
    pytest.param('[http]\nhost = "0.0.0.0"\n', 2, "http.host", "needs a token", id="http without token"),
    pytest.param('[http]\nhost = "0.0.0.0"\ntoken = "short"\n', 3, "http.token", "16 characters", id="short token"),
    pytest.param('[[device]]\nunit_id = 1\nlayuot = "separate"\n', 3, "device[0].layuot", "did you mean 'layout'",
                 id="device typo"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "40001"\ntpye = "float"\n', 5,
                 "device[0].point[0].tpye", "did you mean 'type'", id="point typo"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "100"\n', 4, "device[0].point[0].address",
                 "names no table", id="bare number"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "40001"\n\n[[device.point]]\nname = "b"\n'
                 'address = "40002"\ntype = "short"\nvalue = 40000\n', 10, "device[0].point[1].value",
                 "outside short's range", id="value out of range"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "40001"\ntype = "float"\n\n'
                 '[[device.point]]\nname = "b"\naddress = "40002"\n', 8, "device[0].point[1].name",
                 "overlaps data point 'a'", id="overlap"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "0.hr.3"\n[[device.point]]\nname = "b"\n'
                 'address = "0.hr.3"\ntype = "bit"\n', 6, "device[0].point[1].name", "overlaps", id="bit overlap"),
    pytest.param('[[device]]\n[device.size]\nholding_registers = 10\n[[device.point]]\nname = "a"\n'
                 'address = "40010"\ntype="float"\n', 5, "device[0].point[0].name", "outside the holding registers",
                 id="outside the table"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "40001"\n[[device.point]]\nname = "a"\n'
                 'address = "40002"\n', 6, "device[0].point[1].name", "already defined", id="duplicate name"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "00001"\ntype = "float"\n', 5,
                 "device[0].point[0].type", "bit or bits", id="type for the table"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "40001"\ntype = "flaot"\n', 5,
                 "device[0].point[0].type", "unknown type 'flaot'", id="unknown type"),
    pytest.param('[[device]]\n[[device.point]]\nname = "a"\naddress = "40001"\norder = "ABDC"\n', 5,
                 "device[0].point[0].order", "ABCD, CDAB", id="order"),
    pytest.param("[[device]]\nunit_id = 1\n[[device]]\n", 3, "device[1]", "needs unit_id", id="device without id"),
    pytest.param("[[device]]\nunit_id = 1\n[[device]]\nunit_ids = [2, 1]\n", 4, "device[1].unit_ids",
                 "already belongs", id="unit id twice"),
    pytest.param('[[device]]\nsparse = ["holding"]\n', 2, "device[0].sparse", "no table named 'holding'",
                 id="sparse table name"),
    pytest.param('[[device]]\n[device.identification]\nvendor = "x"\n', 3, "device[0].identification.vendor",
                 "vendor_name", id="identification key"),
    pytest.param('[[device]]\n[[device.point]]\nname = "9lives"\naddress = "40001"\n', 3,
                 "device[0].point[0].name", "is not a name", id="name that looks like an address"),
    pytest.param('[server]\nhost = """\nx"""\n[[device]]\n[[device.point]]\nname = "a"\naddress = "40001"\n'
                 "value = [\n1,\n2]\nunit = 3\n", 11, "device[0].point[0].unit", "expected a text",
                 id="line count past multi-line values"),
    pytest.param('[[device]]\npoints_csv = "nope.csv"\n', 2, "device[0].points_csv", "cannot read", id="no csv"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "key", "message"), BROKEN)
def test_config_mistake_names_file_line_key_and_what_is_wrong(text: str, line: int, key: str, message: str) -> None:
    assert_config_mistake(text, line, key, message)


BROKEN_CSV = [
    pytest.param("name,address,kind\n", 1, "kind", "unknown column", id="unknown column"),
    pytest.param("name,type\n", 1, "address", "no address column", id="missing column"),
    pytest.param("name,address,type\n\na,30001,ushort\nb,30002,ushort,x\n", 4, "row", "header has 3", id="long row"),
    pytest.param("name,address,value\na,30001,70000\n", 2, "value", "outside ushort's range", id="range"),
    pytest.param("name,address,type\na,30001,float\nb,30002,ushort\n", 3, "name", "overlaps", id="overlap"),
    pytest.param("name,address\na,3000x\n", 2, "address", "not an address", id="address"),
    pytest.param("name,address\n,30001\n", 2, "name", "empty", id="empty name"),
    pytest.param("name,address,order\na,30001,XYZW\n", 2, "order", "ABCD", id="order"),
]  # fmt: skip


@pytest.mark.parametrize(("csv_text", "line", "key", "message"), BROKEN_CSV)
def test_config_csv_mistake_names_the_csv_file_and_line(
    tmp_path: Path, csv_text: str, line: int, key: str, message: str
) -> None:
    (tmp_path / "map.csv").write_text(csv_text)
    (tmp_path / "dev.toml").write_text('[[device]]\npoints_csv = "map.csv"\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "dev.toml")
    error = caught.value
    assert (error.path, error.line, error.key) == (str(tmp_path / "map.csv"), line, key), str(error)
    assert message in error.message


def test_config_server_read_and_write_every_table_by_name_or_address() -> None:
    server = Server.from_config(loads(EXAMPLE))
    server.write("window_open", "on")  # a discrete input: read-only for clients only
    assert server.read("10001") is True
    server.write("30003", 46)
    assert server.read("humidity") == 46
    server.write("100.hr.9", True)
    assert server.device.holding_registers[100] == 1
    located = server.locate("0.ir")[1]
    assert located.name == "temperature" and located.location.table is Table.INPUT_REGISTERS
