"""The console's static files, read once from the package (`importlib.resources`) and served from memory.

Only the files the package ships are served, by their exact names: no path from a request ever reaches the file
system. Every answer carries headers that keep the console from being framed by another site (a click on a
framed grid would write: ``frame-ancestors 'none'``), from loading anything from elsewhere (it works offline,
and an injected script could not phone home: ``default-src 'self'``), and from being cached stale across upgrades.
"""

import importlib.resources
from dataclasses import dataclass

PACKAGE = "modbusd.web.console"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain",
         ".png": "image/png", ".svg": "image/svg+xml"}  # fmt: skip
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate each time: a new modbusd brings new files under the same names
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    charset: str | None


def load() -> dict[str, StaticFile]:
    """name → file, for every file of the console package with a known type (its ``__init__.py`` is none)."""
    files: dict[str, StaticFile] = {}
    for entry in importlib.resources.files(PACKAGE).iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in TYPES:
            text = not TYPES[suffix].startswith("image/") or suffix == ".svg"
            files[entry.name] = StaticFile(entry.read_bytes(), TYPES[suffix], "utf-8" if text else None)
    return files


def wants_html(accept: str | None) -> bool:
    """A browser navigating (``Accept: text/html,…``) rather than a program asking for JSON (curl sends ``*/*``)."""
    return accept is not None and "text/html" in accept.lower()
