"""Device: four tables in one of three layouts (issue 2, "Data tables"), identification, sizes."""

import pytest

from modbusd.model.device import Device, Layout
from modbusd.model.identification import Identification
from modbusd.protocol.errors import IllegalDataAddress


def test_device_layout_defaults_to_separate() -> None:
    assert Device().layout is Layout.SEPARATE


@pytest.mark.parametrize("layout", ["separate", "overlaid", "packed"])
def test_device_accepts_the_layout_by_name(layout: str) -> None:
    assert Device(layout).layout == Layout(layout)


def test_device_refuses_an_unknown_layout() -> None:
    with pytest.raises(ValueError, match="sideways"):
        Device("sideways")


def test_device_separate_tables_are_independent() -> None:
    device = Device()
    device.coils[10] = True
    device.holding_registers[10] = 0x1234
    assert device.discrete_inputs[10] is False
    assert device.input_registers[10] == 0
    device.discrete_inputs[11] = True
    device.input_registers[11] = 0x5678
    assert device.coils[11] is False
    assert device.holding_registers[11] == 0
    assert device.holding_registers.values(0, 16) == [0] * 10 + [0x1234] + [0] * 5  # bits never reach registers


@pytest.mark.parametrize("layout", [Layout.OVERLAID, Layout.PACKED])
def test_device_overlaid_coil_n_is_discrete_input_n(layout: Layout) -> None:
    device = Device(layout)
    device.coils[10] = True
    assert device.discrete_inputs[10] is True
    device.discrete_inputs[10] = False
    assert device.coils[10] is False


@pytest.mark.parametrize("layout", [Layout.OVERLAID, Layout.PACKED])
def test_device_overlaid_holding_register_n_is_input_register_n(layout: Layout) -> None:
    device = Device(layout)
    device.holding_registers[10] = 0x1234
    assert device.input_registers[10] == 0x1234
    device.input_registers[10] = 0x4321
    assert device.holding_registers[10] == 0x4321


def test_device_overlaid_keeps_bits_apart_from_registers() -> None:
    device = Device(Layout.OVERLAID)
    device.coils.write(0, [True] * 32)
    assert device.holding_registers.values(0, 2) == [0, 0]


@pytest.mark.parametrize(
    ("coil", "register", "value"),
    [(0, 0, 0x0001), (1, 0, 0x0002), (15, 0, 0x8000), (16, 1, 0x0001), (17, 1, 0x0002), (65535, 4095, 0x8000)],
)
def test_device_packed_coil_n_sets_bit_n_mod_16_of_register_n_div_16(coil: int, register: int, value: int) -> None:
    device = Device(Layout.PACKED)
    device.coils[coil] = True
    assert device.holding_registers[register] == value
    device.coils[coil] = False
    assert device.holding_registers[register] == 0


@pytest.mark.parametrize(
    ("register", "value", "bits_on"),
    [(0, 0x0001, [0]), (0, 0x8001, [0, 15]), (2, 0x00A0, [37, 39]), (4095, 0xC000, [65534, 65535])],
)
def test_device_packed_register_write_changes_the_coils(register: int, value: int, bits_on: list[int]) -> None:
    device = Device(Layout.PACKED)
    device.holding_registers[register] = value
    start = 16 * register
    assert [n for n in range(start, start + 16) if device.coils[n]] == bits_on
    assert [n for n in range(start, start + 16) if device.discrete_inputs[n]] == bits_on


def test_device_packed_65536_bits_fill_exactly_the_first_4096_registers() -> None:
    device = Device(Layout.PACKED)
    assert device.coils.size == 65536
    device.coils.write(0, [True] * 65536)
    assert device.holding_registers.values(0, 4096) == [0xFFFF] * 4096
    assert device.holding_registers[4096] == 0
    device.holding_registers[4096] = 0xFFFF
    assert device.coils.read(65520, 16) == [True] * 16  # register 4096 holds no bits


def test_device_packed_bits_shrink_to_what_the_registers_hold() -> None:
    device = Device(Layout.PACKED, holding_registers=100)
    assert device.coils.size == 1600
    with pytest.raises(IllegalDataAddress):
        device.coils[1600] = True


@pytest.mark.parametrize("layout", [Layout.OVERLAID, Layout.PACKED])
def test_device_shared_tables_take_the_coil_and_holding_register_sizes(layout: Layout) -> None:
    device = Device(layout, coils=100, holding_registers=50)
    assert len(device.coils) == len(device.discrete_inputs) == 100
    assert len(device.holding_registers) == len(device.input_registers) == 50
    with pytest.raises(IllegalDataAddress):
        device.coils.read_packed(99, 2)
    with pytest.raises(IllegalDataAddress):
        device.input_registers.read(50, 1)


def test_device_separate_sizes_each_table_on_its_own() -> None:
    device = Device(coils=10, discrete_inputs=20, holding_registers=30, input_registers=40)
    assert [len(device.coils), len(device.discrete_inputs), len(device.holding_registers),
            len(device.input_registers)] == [10, 20, 30, 40]  # fmt: skip
    with pytest.raises(IllegalDataAddress):
        device.coils.read_packed(10, 1)
    assert device.discrete_inputs.read_packed(10, 10) == b"\x00\x00"


def test_device_separate_tables_not_sized_span_the_whole_address_space() -> None:
    device = Device(coils=100, holding_registers=50)
    assert len(device.discrete_inputs) == len(device.input_registers) == 65536


def test_device_tables_default_to_the_whole_address_space() -> None:
    device = Device()
    assert {len(device.coils), len(device.discrete_inputs), len(device.holding_registers),
            len(device.input_registers)} == {65536}  # fmt: skip


@pytest.mark.parametrize("layout", [Layout.OVERLAID, Layout.PACKED])
@pytest.mark.parametrize("sizes", [{"discrete_inputs": 10}, {"input_registers": 10}])
def test_device_shared_tables_refuse_different_sizes(layout: Layout, sizes: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="cannot differ"):
        Device(layout, **sizes)


# -------------------------------------------------------------------------------------- identification


def test_device_identification_has_the_mandatory_basic_objects() -> None:
    identification = Device().identification
    assert {0x00, 0x01, 0x02} <= set(identification)
    assert all(identification[i] for i in (0x00, 0x01, 0x02))


def test_device_identification_is_settable_and_stored_as_utf8() -> None:
    device = Device()
    device.identification[0x00] = "Ächme GmbH"
    device.identification[0x80] = b"\x00\xff"
    assert device.identification[0x00] == "Ächme GmbH".encode()
    assert device.identification[0x80] == b"\x00\xff"


def test_device_identification_is_per_device() -> None:
    first, second = Device(), Device()
    first.identification[0x00] = "first"
    assert second.identification[0x00] != b"first"


def test_device_identification_refuses_an_object_too_long_for_one_response() -> None:
    identification = Device().identification
    identification[0x80] = "x" * 244  # 253 - 7 header bytes - object id and length
    with pytest.raises(ValueError, match="fit"):
        identification[0x81] = "x" * 245


@pytest.mark.parametrize("object_id", [-1, 256])
def test_device_identification_refuses_an_object_id_outside_a_byte(object_id: int) -> None:
    with pytest.raises(ValueError, match="object id"):
        Device().identification[object_id] = "x"


@pytest.mark.parametrize("object_id", [0x00, 0x01, 0x02])
def test_device_identification_refuses_to_delete_a_mandatory_object(object_id: int) -> None:
    with pytest.raises(ValueError, match="mandatory"):
        del Device().identification[object_id]


def test_device_identification_deletes_an_optional_object() -> None:
    identification = Device().identification
    identification[0x80] = "x"
    del identification[0x80]
    assert 0x80 not in identification


def test_device_identification_iterates_in_object_id_order() -> None:
    identification = Identification({0x80: "c", 0x02: "b", 0x00: "a", 0x01: "a"})
    assert list(identification) == [0x00, 0x01, 0x02, 0x80]


@pytest.mark.parametrize(
    ("extra", "level"),
    [({}, 0x81), ({0x03: "https://example.org"}, 0x82), ({0x06: "app"}, 0x82), ({0x80: "private"}, 0x83),
     ({0xFF: "private"}, 0x83)],
)  # fmt: skip
def test_device_conformity_level_is_the_highest_category_with_individual_access(
    extra: dict[int, str], level: int
) -> None:
    device = Device(identification={0x00: "vendor", 0x01: "code", 0x02: "1.0", **extra})
    assert device.identification.conformity_level == level


def test_device_conformity_level_follows_objects_set_later() -> None:
    device = Device(identification={0x00: "vendor", 0x01: "code", 0x02: "1.0"})
    device.identification[0x05] = "model"
    assert device.identification.conformity_level == 0x82
    device.identification[0x90] = "private"
    assert device.identification.conformity_level == 0x83
    del device.identification[0x90]
    assert device.identification.conformity_level == 0x82


def test_device_server_id_and_run_indicator_are_settable() -> None:
    device = Device(server_id=b"\x2a")
    assert device.server_id == b"\x2a"
    assert device.running is True


def test_device_starts_with_clear_diagnostics() -> None:
    diagnostics = Device().diagnostics
    assert diagnostics.bus_message == diagnostics.event_count == diagnostics.bus_exception_error == 0
    assert diagnostics.listen_only is False
    assert list(diagnostics.events) == []


def test_device_refuses_a_server_id_too_long_for_an_fc17_response() -> None:
    device = Device(additional_data=b"")
    device.server_id = b"x" * 250
    with pytest.raises(ValueError, match="at most 250"):
        device.server_id = b"x" * 251


def test_device_addresses_make_the_named_tables_sparse() -> None:
    device = Device(addresses={"holding_registers": [0, 5], "coils": [3]})
    assert device.holding_registers.sparse and device.coils.sparse
    assert not device.input_registers.sparse and not device.discrete_inputs.sparse
    assert list(device.holding_registers.addresses()) == [0, 5]


@pytest.mark.parametrize("layout", [Layout.OVERLAID, Layout.PACKED])
def test_device_shared_layouts_share_the_sparse_addresses(layout: Layout) -> None:
    device = Device(layout, addresses={"input_registers": [1, 2]})
    assert device.holding_registers is device.input_registers
    assert list(device.holding_registers.addresses()) == [1, 2]
    with pytest.raises(ValueError, match="shares one table"):
        Device(layout, addresses={"input_registers": [1], "holding_registers": [2]})


def test_device_refuses_addresses_for_an_unknown_table() -> None:
    with pytest.raises(ValueError, match="no table named 'holding'"):
        Device(addresses={"holding": [1]})
