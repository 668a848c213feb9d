"""Serving: the device file with the command line laid over it, then the server, its banner and its end."""

import argparse
import asyncio
import dataclasses
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from modbusd import config as device_file
from modbusd.cli.errors import (
    DEFAULT_LISTENER,
    EXIT_OK,
    EXIT_USAGE,
    Listener,
    _bind_error,
    _fail,
    _start_error,
    quiet_stdout,
)
from modbusd.model.device import Layout
from modbusd.server import SerialLine, Server, StartError
from modbusd.version import __version__


def _stamp() -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y")


def _say(*lines: str) -> None:
    """The banner's lines, at once. Output nobody reads any more (a closed pipe or terminal) never stops the server.

    Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError, and one to a hung-up terminal EIO:
    the rest of the output goes to /dev/null, and the server goes on serving.
    """
    try:
        print(*lines, sep="\n", flush=True)
    except OSError:
        quiet_stdout()


SERIAL_SETTINGS = ("baudrate", "parity", "bytesize", "stopbits")


def _serial_lines(args: argparse.Namespace) -> list[SerialLine]:
    """--rtu and --ascii with the settings given; settings without a line are refused, since they would change
    nothing and the server would start on Modbus/TCP as if they had been understood."""
    settings = {name: getattr(args, name) for name in SERIAL_SETTINGS if getattr(args, name) is not None}
    if settings and not (args.rtu or args.ascii):
        given = " and ".join(f"--{name}" for name in settings)
        raise ValueError(f"{given} {'sets' if len(settings) == 1 else 'set'} a serial line: name it with "
                         "--rtu DEVICE or --ascii DEVICE (a device file's [[server.serial]] has its own "
                         "baudrate, parity, bytesize and stopbits)")  # fmt: skip
    return [SerialLine(device, framing, **settings)
            for framing, devices_named in (("rtu", args.rtu), ("ascii", args.ascii))
            for device in devices_named]  # fmt: skip


def _listeners(args: argparse.Namespace) -> dict[str, Listener]:
    """For each listener, the option to suggest when its port is taken: the one used, or the device file's key."""
    file = bool(args.config)
    return {
        "tcp": Listener.named("-p", "server", file and args.port is None),
        "udp": Listener.named("--udp", "server.udp", file and args.udp is None, datagram=True),
        "rtu-over-tcp": Listener.named("--rtu-over-tcp", "server.rtu_over_tcp", file and args.rtu_over_tcp is None),
        "http": Listener.named("--http", "http", file and args.http is None),
        "tls": Listener.named("--tls", "server.tls", file and args.tls is None),
        "metrics": Listener.named("--metrics-port", "metrics", file and args.metrics_port is None),
    }


async def _serve(server: Server, host: str, http: device_file.HttpConfig | None = None,
                 mqtt: device_file.MqttConfig | None = None,
                 listeners: dict[str, Listener] | None = None, *,
                 metrics: device_file.MetricsConfig | None = None) -> int:  # fmt: skip
    loop = asyncio.get_running_loop()
    listeners = listeners or {}
    try:
        await server.start()
    except StartError as exc:
        if exc.endpoint is not None:  # one of the file's [[endpoint]] instances: moved in the file, by its name
            host = exc.host or host
            listeners = {exc.kind: Listener(f"port = {{}} in the device file's [[endpoint]] {exc.endpoint}",
                                            f"host in the device file's [[endpoint]] {exc.endpoint}",
                                            exc.kind == "udp")}  # fmt: skip
        print(_start_error(exc, host, listeners), file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:  # the serial extra is not installed
        print(f"modbusd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    api = None
    if http is not None:
        from modbusd.web import HttpApi  # only with --http: aiohttp is an optional extra

        try:
            api = await HttpApi.start(server, host=http.host, port=http.port, token=http.token,
                                      allow_hosts=http.allow_hosts)  # fmt: skip
        except OSError as exc:
            await server.stop()
            print(_bind_error(exc, http.host, http.port, listeners.get("http", DEFAULT_LISTENER)), file=sys.stderr)
            return EXIT_USAGE
    scraped = None
    if metrics is not None:
        from modbusd.web import MetricsApi  # only with --metrics-port: aiohttp and prometheus-client are an extra

        try:
            scraped = await MetricsApi.start(server, host=metrics.host, port=metrics.port)
        except OSError as exc:
            if api is not None:
                await api.stop()
            await server.stop()
            print(_bind_error(exc, metrics.host, metrics.port, listeners.get("metrics", DEFAULT_LISTENER)),
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    bridge = None
    if mqtt is not None:
        from modbusd.mqtt import MqttBridge  # only with --mqtt: aiomqtt is an optional extra

        try:
            bridge = await MqttBridge.start(
                server, mqtt.host, mqtt.port, points=(), named_points=True, username=mqtt.username,
                password=mqtt.password, prefix=mqtt.prefix, retain=mqtt.retain, qos=mqtt.qos, queue=mqtt.queue,
                tls=device_file.mqtt_tls_context(mqtt),  # checked by _settings already
            )  # fmt: skip
        except (ValueError, LookupError) as exc:  # a point to publish that the devices do not have
            if api is not None:
                await api.stop()
            await server.stop()
            return _fail(f"MQTT bridge: {exc}")
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    listening = server.endpoints_info()  # the default endpoint (name None) first, if it serves anything
    served = ", ".join(server.listening()) if not server.endpoints else listening[0]["listening"] if (
        listening[0]["name"] is None) else ""  # fmt: skip
    endpoints = [f"  endpoint {e['name']}: {e['listening']}" for e in listening if e["name"] is not None]
    if endpoints:  # one line each: a plant of a hundred would not fit one
        served = f"{served + ' and ' if served else ''}{len(endpoints)} endpoint{'s' if len(endpoints) > 1 else ''}"
    banner = [f"modbusd version {__version__}",
              f"Starting server {'on' if server.port is not None else 'with'} {served}. {_stamp()}",
              *endpoints]  # fmt: skip
    if len(server.simulator):
        banner.append(f"Simulating {len(server.simulator)} point{'s' if len(server.simulator) > 1 else ''}")
    if api is not None:
        banner.append(f"Control API on http://{api.host}:{api.port}/")
    if scraped is not None:
        banner.append(f"Metrics on http://{scraped.host}:{scraped.port}/metrics")
    if bridge is not None:
        banner.append(f"MQTT bridge to {mqtt.url if mqtt else ''}, topics {bridge.prefix}/<unit>/<table>/<address>")
    _say(*banner, "Server running...")
    try:
        await server.serve_forever()
    finally:
        if bridge is not None:
            await bridge.stop()
        if api is not None:
            await api.stop()
        if scraped is not None:
            await scraped.stop()
    if server.quit_requested:
        _say(f"Remote shutdown command received; server stopped at {_stamp()}")
    else:
        _say(f"Operator terminated server at {_stamp()}")
    return EXIT_OK


def _tls(args: argparse.Namespace, tls: device_file.TlsConfig | None) -> device_file.TlsConfig | None:
    """--tls, --cert, --key and --ca over the device file's [server.tls]; its context built now, so that a missing
    file, a wrong passphrase, a key not matching or an expired certificate is one line (None: unchanged)."""
    files = {k: str(Path(v).absolute()) for k in ("cert", "key", "ca") if (v := getattr(args, k))}
    if args.tls is None and not files:
        return None
    if args.tls is None and tls is None:
        raise ValueError("--cert, --key and --ca are for Modbus/TCP Security: give --tls [PORT] too (or [server.tls] "
                         "in the device file)")  # fmt: skip
    tls = dataclasses.replace(tls or device_file.TlsConfig(), **files,
                              **({"port": args.tls} if args.tls is not None else {}))  # fmt: skip
    try:
        device_file.server_tls_context(tls)
    except device_file.TlsSettingError as exc:
        raise ValueError(f"--{exc.key} / [server.tls] {exc.key}: {exc}") from None
    return tls


def _allow(args: argparse.Namespace, allow: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]] | None:
    """--allow: every network endpoint's allow-list, over the device file's [server] allow (not the endpoints' own)."""
    return {**allow, "*": tuple(args.allow)} if args.allow else None


def _settings(args: argparse.Namespace) -> tuple[device_file.Config, device_file.HttpConfig | None]:
    """The device file (or the built-in defaults) with every option given on the command line laid over it."""
    if args.config:
        if args.unit_ids or args.data_table:
            raise ValueError("--unit-ids and --data-table describe devices, which the device file does: "
                             "set unit_id and layout there")  # fmt: skip
        config = device_file.load(args.config)
    else:
        layout = Layout(args.data_table or Layout.SEPARATE)
        devices = tuple(device_file.DeviceConfig(unit_ids=(u,), layout=layout) for u in args.unit_ids or ())
        config = device_file.Config("", devices=devices or (device_file.DeviceConfig(layout=layout),))
    given = {"host": args.host, "port": args.port, "unknown_unit": args.unknown_unit,
             "max_connections": args.max_connections, "idle_timeout": args.idle_timeout,
             "max_connections_per_client": args.max_connections_per_client,
             "quit_command": args.quit_command, "listen_only": False if args.no_listen_only else None,
             "eventslog": str(Path(args.events_log).absolute()) if args.events_log else None,
             "hook": args.hook, "hook_forwarded": True if args.hook_forwarded else None,
             "state": str(Path(args.state).absolute()) if args.state else None,
             "state_sync": args.state_sync}  # fmt: skip
    if args.hook is not None:
        try:
            device_file.import_hook(args.hook)
        except ValueError as exc:
            raise ValueError(f"--hook {args.hook}: {exc}") from None
    given["tls"], given["allow"] = _tls(args, config.server.tls), _allow(args, config.server.allow)
    server = dataclasses.replace(config.server, **{k: v for k, v in given.items() if v is not None})
    if args.reset_state and server.state is None:
        raise ValueError("--reset-state empties a state file: name it with --state FILE (or state in the device file)")
    http = config.http
    if args.http is not None or args.http_host or args.http_token or args.http_allow_host:
        allow = (*(http.allow_hosts if http else ()), *(args.http_allow_host or ()))
        http = dataclasses.replace(http or device_file.HttpConfig(), allow_hosts=allow, **{k: v for k, v in (
            ("port", args.http), ("host", args.http_host), ("token", args.http_token)) if v is not None})  # fmt: skip
    if http is not None:
        try:
            device_file.check_http_access(http.host, http.token, "--http-token")
        except device_file.HttpAccessError as exc:
            raise ValueError(f"--http-token: {exc}" if exc.key == "token" else str(exc)) from None
    metrics = config.metrics
    if args.metrics_port is not None or args.metrics_host is not None:
        if args.metrics_port is None and metrics is None:
            raise ValueError("--metrics-host needs --metrics-port PORT (or [metrics] port in the device file)")
        metrics = dataclasses.replace(metrics or device_file.MetricsConfig(args.metrics_port), **{k: v for k, v in (
            ("port", args.metrics_port), ("host", args.metrics_host)) if v is not None})  # fmt: skip
    mqtt = config.mqtt
    tls_files = {k: str(Path(v).absolute()) for k in ("ca", "cert", "key") if (v := getattr(args, f"mqtt_{k}"))}
    if args.mqtt is not None or args.mqtt_prefix is not None or tls_files:
        if args.mqtt is None and mqtt is None:
            raise ValueError("--mqtt-prefix, --mqtt-ca, --mqtt-cert and --mqtt-key need --mqtt URL "
                             "(or [mqtt] in the device file)")  # fmt: skip
        options: dict[str, object] = device_file.parse_mqtt_url(args.mqtt) if args.mqtt is not None else {}
        if args.mqtt_prefix is not None:
            options["prefix"] = device_file.check_mqtt_prefix(args.mqtt_prefix)
        options.update(tls_files)
        mqtt = dataclasses.replace(mqtt or device_file.MqttConfig(), **options)  # type: ignore[arg-type]
    if mqtt is not None:
        try:  # a missing file, a key not matching its certificate: now, in one line
            device_file.mqtt_tls_context(mqtt)
        except device_file.TlsSettingError as exc:
            raise ValueError(f"--mqtt-{exc.key} / [mqtt] {exc.key}: {exc}") from None
    # --forward's routes are added to the file's (as --fault's rules and --subscribe's points are); its settings win
    settings = {"timeout": args.forward_timeout, "queue": args.forward_queue, "in_flight": args.forward_in_flight}
    routes = device_file.add_routes(config.gateway.routes, args.forward)
    gateway = dataclasses.replace(config.gateway, routes=routes, **{k: v for k, v in settings.items() if v is not None})
    subscribe = (*config.subscribe, *args.subscribe, *args.mqtt_subscribe)
    faults = (*config.faults, *args.fault)
    generators = (*config.generators, *args.simulate)
    return dataclasses.replace(
        config, server=server, mqtt=mqtt, subscribe=subscribe, faults=faults, metrics=metrics, generators=generators,
        gateway=gateway,
    ), http  # fmt: skip
