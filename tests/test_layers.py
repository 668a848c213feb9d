"""The import direction of STYLE.md, read from each module's `ast`: bytes in, bytes out, everything else outside.

Each room may import only the rooms listed above it. Imports inside functions count too: a lazy import is
still a dependency.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modbusd"

LEAF = ("modbusd.version", "modbusd.ratelimit", "modbusd.stats")  # import nothing, so every room may use them

# room (a module or a package prefix) -> what it may import from modbusd, as module or package prefixes
ALLOWED: dict[str, tuple[str, ...]] = {
    "modbusd.version": (),
    "modbusd.ratelimit": (),
    "modbusd.stats": (),  # the request-path counters: plain ints, read by GET /metrics through Server.stats
    "modbusd.protocol": ("modbusd.protocol",),
    "modbusd.protocol.messages": ("modbusd.protocol.codes",),  # the dataclasses alone; pdu.py turns them into bytes
    "modbusd.model": ("modbusd.model", "modbusd.protocol"),
    "modbusd.handler": ("modbusd.protocol", "modbusd.model"),
    "modbusd.batch": ("modbusd.protocol", "modbusd.model"),  # the fast path beside handler's reference path
    "modbusd.hooks": ("modbusd.protocol", "modbusd.model", "modbusd.writes"),
    # a client write as data: the range a request touches, WriteEvent, the events log's records (hooks re-exports)
    "modbusd.writes": ("modbusd.protocol", "modbusd.model"),
    "modbusd.session": ("modbusd.protocol",),  # the answer function is injected
    "modbusd.transport": ("modbusd.transport", "modbusd.session"),  # the Session type only
    # the gateway's master side: framing from protocol, serial ports opened through transport
    "modbusd.forward": ("modbusd.forward", "modbusd.protocol", "modbusd.transport"),
    # who may do what, from a PDU's bytes: roles' rights, read-only ranges, allow-lists (sans-I/O)
    "modbusd.authorize": ("modbusd.protocol", "modbusd.model"),
    # the access rules at run time: allow-lists, TLS roles, their counters, log lines and events log records
    "modbusd.security": ("modbusd.protocol", "modbusd.authorize", "modbusd.hub", "modbusd.session",
                         "modbusd.transport"),  # the TcpConnection type
    # modbusd clone: what to read next (sans I/O), and reading a device through the gateway's downstream side
    "modbusd.clone.probe": ("modbusd.protocol",),
    "modbusd.clone": ("modbusd.clone", "modbusd.protocol", "modbusd.model", "modbusd.forward", "modbusd.routing"),
    # fault injection: rules (which requests, when) and actions (what happens to the response); sans-I/O, the
    # session applies them; hooks for the range a write request touches
    "modbusd.faults": ("modbusd.faults", "modbusd.protocol", "modbusd.model", "modbusd.hooks"),
    # value generators: spec language, generators and scheduler sans-I/O; the one timer on the server's loop
    "modbusd.simulate": ("modbusd.simulate", "modbusd.protocol", "modbusd.model"),
    "modbusd.config": ("modbusd.config", "modbusd.protocol", "modbusd.model", "modbusd.authorize",
                       "modbusd.faults", "modbusd.simulate"),  # [[fault]], generators
    # the settings of [http], [metrics] and [mqtt] and the rules the command line shares: the standard library only
    "modbusd.config.service_settings": (),
    # what server.py wires, each imported by server.py only: serial-bus semantics, event delivery, the events log
    "modbusd.bus": ("modbusd.protocol", "modbusd.model", "modbusd.handler"),
    "modbusd.events": ("modbusd.hooks",),
    "modbusd.events_log": ("modbusd.config",),  # its size and file-count defaults
    # split out of server.py, each imported by server.py: request → answer, the gateway's routes, the owner's
    # typed access to points, the events hub, connection admission
    "modbusd.answers": ("modbusd.protocol", "modbusd.model", "modbusd.handler", "modbusd.hooks", "modbusd.session",
                        "modbusd.bus", "modbusd.forward", "modbusd.hub"),
    # each transport's sessions around the answers: framers, access rules, the state file, fault rules, fast path
    "modbusd.sessions": ("modbusd.protocol", "modbusd.session", "modbusd.answers", "modbusd.bus", "modbusd.security",
                         "modbusd.durable", "modbusd.faults", "modbusd.batch"),
    "modbusd.routing": ("modbusd.protocol", "modbusd.forward"),
    # durable state (--state): what a write changed and how to undo it, sans-I/O; the SQLite file; the group
    # commit that holds responses to writes until they are stored (sessions wraps the answer functions in it)
    "modbusd.state": ("modbusd.model",),
    "modbusd.state_store": ("modbusd.model", "modbusd.state"),
    "modbusd.durable": ("modbusd.protocol", "modbusd.model", "modbusd.session", "modbusd.state", "modbusd.state_store"),
    "modbusd.access": ("modbusd.model",),
    "modbusd.hub": ("modbusd.protocol", "modbusd.model", "modbusd.handler", "modbusd.hooks", "modbusd.events",
                    "modbusd.events_log", "modbusd.traffic"),
    "modbusd.traffic": ("modbusd.protocol",),  # the live request log: it reads the PDUs it records
    "modbusd.admission": ("modbusd.transport",),  # the TcpConnection type
    # the listeners a server starts and stops, and the thread it may serve from
    "modbusd.transports": ("modbusd.protocol", "modbusd.session", "modbusd.transport"),
    "modbusd.runner": (),
    # more listeners, each with its own devices: one endpoint wires what server.py wires for its default devices
    "modbusd.endpoints": ("modbusd.protocol", "modbusd.model", "modbusd.session", "modbusd.transport",
                          "modbusd.config", "modbusd.access", "modbusd.admission", "modbusd.answers",
                          "modbusd.sessions", "modbusd.bus", "modbusd.hooks", "modbusd.hub", "modbusd.transports",
                          "modbusd.faults",
                          "modbusd.security", "modbusd.stats",  # the server's allow-list and request counts
                          "modbusd.durable"),  # the server's state file, which every endpoint's writes go to
    "modbusd.server": ("modbusd.protocol", "modbusd.model", "modbusd.handler", "modbusd.hooks", "modbusd.session",
                       "modbusd.transport", "modbusd.forward", "modbusd.simulate", "modbusd.config",
                       "modbusd.bus", "modbusd.events", "modbusd.events_log", "modbusd.answers", "modbusd.sessions",
                       "modbusd.routing",
                       "modbusd.access", "modbusd.hub", "modbusd.admission", "modbusd.transports", "modbusd.runner",
                       "modbusd.traffic", "modbusd.authorize", "modbusd.security", "modbusd.durable",
                       "modbusd.endpoints", "modbusd.faults"),
    # Device and Layout for -d; web for --http, mqtt for --mqtt (cli wires them into the server's loop); the cli
    # package's modules (parser, options, serve, files, client, errors) import each other
    # (protocol.serial_line: --parity's spellings, the rule SerialLine itself applies; model.values: watch tells a
    # TYPE from a POINT)
    "modbusd.cli": ("modbusd.cli", "modbusd.config", "modbusd.server", "modbusd.model.device", "modbusd.web",
                    "modbusd.mqtt", "modbusd.protocol.serial_line", "modbusd.model.values", "modbusd.clone"),
    "modbusd.__main__": ("modbusd.cli",),
    "modbusd.web": ("modbusd.web",),  # and the public API, `modbusd` itself: see EXACT
    "modbusd.mqtt": ("modbusd.mqtt",),  # the same: the public API only
    # the public API re-exports; it must never pull in the command line
    "modbusd": ("modbusd.protocol", "modbusd.model", "modbusd.server", "modbusd.simulate",
                "modbusd.config.writer"),  # device_file: what `modbusd clone` and a console snapshot write
}  # fmt: skip
# modules allowed by name, not as a prefix
EXACT: dict[str, tuple[str, ...]] = {"modbusd.web": ("modbusd",), "modbusd.mqtt": ("modbusd",)}

NO_IO = ("asyncio", "socket", "ssl", "serial", "logging.config", "selectors")
SANS_IO_ROOMS = ("modbusd.protocol", "modbusd.model")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return (SRC / Path(*name.split("."))).is_dir()


def resolve(node: ast.ImportFrom, importer: str) -> str:
    """The absolute module an ImportFrom names, relative imports included."""
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports(name: str) -> set[str]:
    return imports_in(MODULES[name].read_text(encoding="utf-8"), name)


def imports_in(source: str, name: str) -> set[str]:
    """Every module `source` imports; `from pkg import sub` counts as importing pkg.sub when sub is a module."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = resolve(node, name)
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                found.add(candidate if candidate in MODULES else module)
    return found


def room(name: str) -> str:
    """The most specific room a module belongs to."""
    matches = [r for r in ALLOWED if name == r or (r != "modbusd" and name.startswith(r + "."))]
    assert matches, f"{name} belongs to no room of STYLE.md's import table: add it there and here"
    return max(matches, key=len)


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_layers_every_module_is_checked() -> None:
    assert {"modbusd.protocol.pdu", "modbusd.model.device", "modbusd.handler", "modbusd.session"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layers_module_imports_only_the_rooms_above_it(name: str) -> None:
    allowed = ALLOWED[room(name)] + LEAF
    exact = EXACT.get(room(name), ())
    own = tuple(i for i in imports(name) if i == "modbusd" or i.startswith("modbusd."))
    forbidden = sorted(i for i in own if i != name and i not in exact and not within(i, allowed))
    if name in LEAF:
        forbidden = sorted(i for i in own if i != name)
    assert not forbidden, f"{name} ({room(name)}) may import only {allowed}, but imports {forbidden}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if within(n, SANS_IO_ROOMS)))
def test_layers_protocol_and_model_never_import_io(name: str) -> None:
    io = sorted(i for i in imports(name) if within(i, NO_IO))
    assert not io, f"{name} is sans-I/O but imports {io}"


@pytest.mark.parametrize(  # `python -m` runs the cli; the cli package's own modules import each other
    "name", sorted(n for n in MODULES if n != "modbusd.__main__" and not within(n, ("modbusd.cli",)))
)
def test_layers_nothing_imports_the_cli(name: str) -> None:
    assert not any(within(i, ("modbusd.cli",)) for i in imports(name))


def test_layers_checker_sees_imports_inside_functions_and_from_packages() -> None:
    source = """
import modbusd.session as s
from modbusd import handler
from . import pdu
from ..model.device import Device

def later():
    import asyncio
    from modbusd.server import Server
"""
    assert imports_in(source, "modbusd.protocol.mbap") == {
        "modbusd.session", "modbusd.handler", "modbusd.protocol.pdu", "modbusd.model.device", "asyncio",
        "modbusd.server",
    }  # fmt: skip


def test_layers_checker_puts_an_unknown_module_in_no_room() -> None:
    with pytest.raises(AssertionError, match="no room"):
        room("modbusd.newthing")
    assert room("modbusd.protocol.rtu") == "modbusd.protocol"
    assert room("modbusd") == "modbusd"


def test_layers_no_two_modules_import_each_other() -> None:
    """STYLE.md: two modules that import each other are one job or a missing third room."""
    own = {name: {i for i in imports(name) if i in MODULES and i != name} for name in MODULES}
    pairs = sorted((a, b) for a, found in own.items() for b in found if a < b and a in own[b])
    assert not pairs, f"modules importing each other: {pairs}"
