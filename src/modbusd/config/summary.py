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
    lines.extend(_security(config))
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
    if s.state is not None:
        lines.append(f"server: state file {s.state} (synchronous={s.state_sync})")
    if config.http is not None:
        lines.append(f"http control API: {config.http.host} port {config.http.port}"
                     + (" (token required)" if config.http.token else ""))  # fmt: skip
    if config.metrics is not None:
        lines.append(f"metrics: GET /metrics on {config.metrics.host} port {config.metrics.port}")
    if config.mqtt is not None:
        m = config.mqtt
        lines.append(f"mqtt bridge: {m.url} prefix {m.prefix}, qos {m.qos}{', retained' if m.retain else ''}"
                     + (f"; also {', '.join(m.subscribe)}" if m.subscribe else "")
                     + (f"; CA {m.ca}" if m.ca else "")
                     + (f"; client certificate {m.cert}" if m.cert else ""))  # fmt: skip
    for endpoint in config.endpoints:
        units = ", ".join(unit_id_list(d.unit_ids) if d.unit_ids else "every unit id" for d in endpoint.devices)
        lines.append(f"endpoint {endpoint.name}: {endpoint.transport} {endpoint.host} port {endpoint.port}; "
                     f"unit ids {units}; {sum(len(d.points) for d in endpoint.devices)} data points")  # fmt: skip
    gateway = config.gateway
    lines.extend(f"gateway: {route}" for route in gateway.routes)
    if gateway.routes:
        lines.append(f"gateway: time-out {gateway.timeout:g} s, queue {gateway.queue} per downstream, "
                     f"{gateway.in_flight} in flight to a Modbus/TCP server")  # fmt: skip
    lines.extend(f"fault: {spec.text()}{'' if spec.enabled else ' (disabled)'}" for spec in config.faults)
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
        ranges = f"; {len(device.ranges)} value ranges" if device.ranges else ""
        lines.append(f"device ({units}): layout {device.layout}, {', '.join(tables)}; "
                     f"{len(device.points)} data points{ranges}")  # fmt: skip
        for point in device.points:
            value = device.values.get(point.name)
            shown = "" if value is None else f" = {value}"
            unit = f" {point.unit}" if point.unit else ""
            lines.append(f"  {point.name}: {point.location} {point.type}"
                         f"{'' if point.order is Order.ABCD else ' ' + point.order}{shown}{unit}")  # fmt: skip
    return lines


def _security(config: Config) -> list[str]:
    """Modbus/TCP Security, roles, allow-lists and read-only ranges (docs/security.md), when there are any."""
    s, lines = config.server, []
    if s.tls is not None:
        lines.append(f"server: tls {s.host} port {s.tls.port}, certificate {s.tls.cert}, clients' CA {s.tls.ca}"
                     + (f", no role: {s.tls.no_role}" if s.tls.no_role else ""))  # fmt: skip
    if config.roles is not None:
        lines.append(f"roles: {', '.join(sorted(config.roles.rights)) or '(none)'}")
    lines.extend(f"allow {'every endpoint' if e == '*' else e}: {', '.join(n)}" for e, n in s.allow.items())
    for device in config.devices:
        which = f"unit {', '.join(map(str, device.unit_ids))}" if device.unit_ids else "every unit id"
        if device.read_only:
            spans = ", ".join(f"{first}-{last}.{table.suffix}" for table, first, last in device.read_only)
            lines.append(f"read-only ({which}): {spans} (exception {device.read_only_exception:02d})")
        if device.allow is not None:
            lines.append(f"allow ({which}): {', '.join(device.allow)}")
    return lines
