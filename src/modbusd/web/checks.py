"""What a request must show before the control API acts on it: a Host that names this API, a same-origin Origin and
a JSON body on writes, the bearer token. Plain functions of header texts, so that a test needs no HTTP at all.

Why: with no token, any program on this machine may read and write every register, which is the point of a
loopback API. A web page must not: through DNS rebinding (its own name re-resolved to 127.0.0.1) its requests
reach this port carrying the page's name in Host, and a cross-site form or fetch carries the page's Origin or a
non-JSON content type. Refusing those three things keeps browsers out without getting in the way of curl,
`modbusd get`/`set` or any other program.
"""

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("", "0.0.0.0", "::")  # listening on every address: the machine's own IP addresses name it
# A Host header (RFC 9110 §7.2): a registered name or IPv4 address, or an IPv6 address in brackets; a port or not.
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._\-]+))(?::(?P<port>[0-9]{1,5}))?")


def host_name(header: str) -> str | None:
    """The name in a Host header, lower-case and without port or brackets; None when it is no host at all."""
    found = _HOST.fullmatch(header.strip().lower())
    if found is None:
        return None
    return found["ipv6"] or found["name"]


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostCheck:
    """The Host names this API answers to: loopback's, the address it listens on, and the names the user adds.

    DNS rebinding always sends a name the attacker owns, never an IP address or ``localhost``; so the name decides
    and the port is not checked (a reverse proxy may present another). On a wildcard address (0.0.0.0) any IP
    address is accepted, since the machine's own addresses are what such a listener serves.
    """

    names: frozenset[str]
    any_ip: bool

    @classmethod
    def build(cls, host: str, allow: Iterable[str] = ()) -> "HostCheck":
        own = host.strip("[]").lower()
        names = {*LOOPBACK_NAMES, *(name.lower() for name in allow)}
        if own not in WILDCARDS:
            names.add(own)
        return cls(frozenset(names), any_ip=own in WILDCARDS)

    def allows(self, header: str | None) -> bool:
        """True for an allowed Host, and for none at all (HTTP/1.0 programs; every browser sends one)."""
        if header is None:
            return True
        name = host_name(header)
        return name is not None and (name in self.names or (self.any_ip and is_ip(name)))


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when a write came from no web page at all (no Origin) or from a page this API served itself.

    Browsers send Origin on every cross-origin request and on same-origin writes (the Fetch standard), so a page on
    another site is refused even where the token is not set; ``null`` (a sandboxed or file: page) is refused too.
    """
    if origin is None:
        return True
    return host is not None and origin.strip().lower() == f"http://{host.strip().lower()}"


def is_json(content_type: str | None) -> bool:
    """``application/json``, with parameters or not: a cross-site form cannot send it without a CORS pre-flight,
    which this API never grants."""
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == "application/json"


def token_matches(header: str | None, token: str) -> bool:
    """The Authorization header is ``Bearer <token>``, compared in constant time.

    Both sides are hashed first, so that not even the length of the token leaks through timing; header text that
    is no valid UTF-8 (aiohttp keeps such bytes as surrogates) is just a wrong token.
    """
    given = (header or "").encode("utf-8", "surrogateescape")
    wanted = f"Bearer {token}".encode()
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(wanted).digest())
