"""`config.writer.device_file`: devices → a device file that loads back into devices equal in every address."""

import random
import tomllib

import pytest

from modbusd import Device, Layout
from modbusd.config import loads, summary
from modbusd.config.writer import device_file
from modbusd.model.tables import BitTable, WordTable
from modbusd.protocol.codes import ADDRESS_SPACE
from tests.conftest import assert_config_mistake


def seeded_device(seed: int, layout: Layout = Layout.SEPARATE) -> Device:
    """Sparse and dense tables with holes, runs of one value, random values, private objects, an FC17 answer."""
    rng = random.Random(seed)
    implemented = sorted({a for start in range(0, 3000, 250) for a in range(start, start + rng.randint(1, 180))})
    addresses = {"holding_registers": implemented} if layout is Layout.SEPARATE else {"coils": implemented}
    device = Device(layout, coils=4000, holding_registers=3000, addresses=addresses,
                    identification={0: "ACME", 1: "X-100", 2: "2.5", 0x80: b"\xff\x00raw", 0x81: 'quote " \\ \t'},
                    server_id=bytes([rng.randrange(256), 7]), additional_data=b"PLC \x01")  # fmt: skip
    device.running = False
    for name in ("coils", "discrete_inputs", "holding_registers", "input_registers"):
        table = getattr(device, name)
        for address in rng.sample(list(table.addresses()), 300):
            if isinstance(table, WordTable):
                table[address] = rng.choice([0, 1, rng.randrange(65536)])
            else:
                table[address] = rng.random() < 0.5
        if isinstance(table, WordTable) and table.implemented(2000):
            table.set_values(2000, [77] * 40)  # a run of one value
    return device


def assert_same_device(a: Device, b: Device) -> None:
    assert a.layout == b.layout
    for name in ("coils", "discrete_inputs", "holding_registers", "input_registers"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert (len(ta), list(ta.addresses())) == (len(tb), list(tb.addresses())), name
        assert [ta[address] for address in ta.addresses()] == [tb[address] for address in tb.addresses()], name
    assert dict(a.identification) == dict(b.identification)
    assert (a.server_id, a.running, a.additional_data) == (b.server_id, b.running, b.additional_data)


@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("seed", [1, 2])
def test_device_file_of_a_device_loads_back_equal_in_every_address(seed: int, layout: Layout) -> None:
    device = seeded_device(seed, layout)
    text = device_file(device, server={"host": "127.0.0.1", "port": 5020}, comment="a copy\nof a device")
    assert text.startswith('# a copy\n# of a device\n\n[server]\nhost = "127.0.0.1"\nport = 5020\n')
    config = loads(text, "copy.toml")
    built = config.build_devices()
    assert isinstance(built, Device)
    assert_same_device(device, built)


def test_device_file_is_compact_runs_are_counts_and_dense_zeros_are_left_out() -> None:
    device = Device(holding_registers=1000, addresses={"input_registers": range(10, 30)})
    device.holding_registers.set_values(100, [5] * 50 + [1, 2, 3])
    text = device_file(device)
    values = tomllib.loads(text)["device"][0]["values"]
    assert values["holding_registers"] == [{"address": 100, "count": 50, "value": 5},
                                           {"address": 150, "values": [1, 2, 3]}]  # fmt: skip
    assert values["input_registers"] == [{"address": 10, "count": 20}]  # sparse: its zeros say it exists
    assert "coils" not in values and len(text.splitlines()) < 30
    assert summary(loads(text, "copy.toml"))[-1].endswith("; 0 data points; 3 value ranges")  # modbusd check


def test_device_file_writes_one_device_per_group_of_unit_ids() -> None:
    pump, valve = Device(), Device()
    valve.holding_registers[3] = 9
    config = loads(device_file({1: pump, 2: pump, 7: valve}))
    assert [d.unit_ids for d in config.devices] == [(1, 2), (7,)]
    devices = config.build_devices()
    assert isinstance(devices, dict) and devices[1] is devices[2] and devices[7].holding_registers[3] == 9


def test_device_file_serial_unit_id_of_the_device_answering_every_unit_id() -> None:
    assert loads(device_file(Device(), serial_unit_id=17)).devices[0].serial_unit_id == 17


@pytest.mark.parametrize(
    ("values", "line", "key", "words"),
    [
        pytest.param("holding_registers = [{ address = 0, values = [70000] }]", 3,
                     "device[0].values.holding_registers[0].values", "0..65535", id="register range"),
        pytest.param('coils = [{ address = 0, values = "10x1" }]', 3, "device[0].values.coils[0].values",
                     "text of 0 and 1", id="bit text"),
        pytest.param("coils = [{ address = 0, values = [0, 2] }]", 3, "device[0].values.coils[0].values",
                     "list of bits", id="bit list"),
        pytest.param("holding_registers = [{ address = 0, count = 3, values = [1] }]", 3,
                     "device[0].values.holding_registers[0].count", "not both", id="both"),
        pytest.param("holding_registers = [{ values = [1] }]", 3, "device[0].values.holding_registers[0]",
                     "first address", id="no address"),
        pytest.param("holding_registers = [{ address = 65535, values = [1, 2] }]", 3,
                     "device[0].values.holding_registers[0]", "runs past", id="past the end"),
        pytest.param("holding_registers = [{ address = 0, count = 5 }, { address = 4, values = [1] }]", 3,
                     "device[0].values.holding_registers[1]", "overlap", id="overlap"),
        pytest.param("holding_register = []", 3, "device[0].values.holding_register", "did you mean",
                     id="table name"),
    ],
)  # fmt: skip
def test_value_range_mistakes_name_file_line_and_key(values: str, line: int, key: str, words: str) -> None:
    assert_config_mistake(f"[[device]]\n[device.values]\n{values}\n", line, key, words, "copy.toml")


def test_value_ranges_in_a_shared_layout_fill_the_shared_table_and_points_win() -> None:
    text = """
[[device]]
layout = "overlaid"
[device.values]
input_registers = [{ address = 0, values = [1, 2, 3] }]
[[device.point]]
name = "second"
address = "1.hr"
value = 20
"""
    device = loads(text).build_devices()
    assert isinstance(device, Device) and device.holding_registers.values(0, 3) == [1, 20, 3]
    assert len(device.coils) == ADDRESS_SPACE and isinstance(device.coils, BitTable)


def test_a_bit_text_over_several_lines_keeps_the_line_numbers_of_later_keys() -> None:
    text = """[[device]]
[device.values]
coils = [
    { address = 64, values = \"\"\"
10110000 11110000
11111111\"\"\" },
]
holding_registers = [{ address = 0, values = [
   1, 2,
   3] }]

[device.server_id]
id = 300
"""
    assert_config_mistake(text, 13, "device[0].server_id.id", "300 is outside 0..255", "copy.toml")
