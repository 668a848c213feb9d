"""What `modbusd check` prints about a device file: the server, then one line per device and per data point."""

from modbusd.config.schema import Config, unit_id_list
from modbusd.model.device import TABLES, Layout
from modbusd.model.values import Order
from modbusd.protocol.codes import ADDRESS_SPACE, MIN_UNIT_ID


def summary(config: Config) -> list[str]:
    """What `modbusd check` prints: the server, then one line per device and per data point."""
    s = config.server
    lines = [f"{config.path}: OK", f"server: tcp {s.host} port {s.port}" if s.port is not None else "server: tcp off"]
    if s.udp is not None:
        lines.append(f"server: udp {s.host} port {s.udp}")
    if s.rtu_over_tcp is not None:
        lines.append(f"server: rtu over tcp {s.host} port {s.rtu_over_tcp}")
    lines.extend(f"server: serial {line.framing} {line.device} {line.settings}" for line in s.serial)
    if not s.listen_only:
        lines.append("server: FC08/04 force listen only mode refused (exception 01)")
    if s.hook is not None:
        lines.append(f"server: request hook {s.hook} (time-out {s.hook_timeout:g} s)")
    if s.hook is not None and s.hook_forwarded:
        lines.append("server: the request hook sees forwarded unit ids too")
    if config.subscriptions:
        lines.append(f"events: subscribed {', '.join(map(str, config.subscriptions))}")
    if s.eventslog is not None:
        lines.append(f"server: events log {s.eventslog} (rotated at {s.eventslog_max_bytes} bytes, "
                     f"{s.eventslog_files} files)")  # fmt: skip
    if config.http is not None:
        lines.append(f"http control API: {config.http.host} port {config.http.port}"
                     + (" (token required)" if config.http.token else ""))  # fmt: skip
    if config.mqtt is not None:
        m = config.mqtt
        lines.append(f"mqtt bridge: {m.url} prefix {m.prefix}, qos {m.qos}{', retained' if m.retain else ''}"
                     + (f"; also {', '.join(m.subscribe)}" if m.subscribe else "")
                     + (f"; CA {m.ca}" if m.ca else "")
                     + (f"; client certificate {m.cert}" if m.cert else ""))  # fmt: skip
    lines.extend(f"generator: {g.point}{':' + g.type if g.type else ''} = {g.spec}" for g in config.generators)
    for device in config.devices:
        units = f"unit ids {unit_id_list(device.unit_ids)}" if device.unit_ids else "every unit id"
        if s.serves_serial and not device.unit_ids:
            units += f"; unit id {device.serial_unit_id or MIN_UNIT_ID} on serial lines"
        if device.address_register is not None:
            units += f"; address register {device.address_register} (0x{device.address_register:04X})"
        tables = []
        for table in TABLES:
            if device.layout is not Layout.SEPARATE and table in ("input_registers", "discrete_inputs"):
                continue
            size = device.sizes.get(table, ADDRESS_SPACE)
            tables.append(f"{table} {size}{' sparse' if table in device.sparse else ''}")
        lines.append(f"device ({units}): layout {device.layout}, {', '.join(tables)}; "
                     f"{len(device.points)} data points")  # fmt: skip
        for point in device.points:
            value = device.values.get(point.name)
            shown = "" if value is None else f" = {value}"
            unit = f" {point.unit}" if point.unit else ""
            lines.append(f"  {point.name}: {point.location} {point.type}"
                         f"{'' if point.order is Order.ABCD else ' ' + point.order}{shown}{unit}")  # fmt: skip
    return lines
