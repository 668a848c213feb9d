"""Access control at run time: client allow-lists per endpoint and per unit id, Modbus/TCP Security's roles, and
what each refuses: counted, logged once per client and kind a minute, and (a denied request) in the events log.

The decisions are `authorize.py`'s, from bytes; this module puts them in front of the answer functions
(`sessions.py`) and the listeners (`transports.py`), and reads each TLS client's role from its certificate, once
per connection (MODBUS/TCP Security §8.4, R-30). Nothing configured, nothing here is on the request path.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

from modbusd.authorize import AllowList, Roles, accesses
from modbusd.hub import EventsHub
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.pdu import exception_pdu
from modbusd.ratelimit import RateLimitedLog, host_of
from modbusd.session import Answer, Session

if TYPE_CHECKING:  # the type only: the connection is the listener's to pass in
    from modbusd.transport.tcp import TcpConnection

log = logging.getLogger(__name__)

ROLE_OID: Final = "1.3.6.1.4.1.50316.802.1"
"""Modbus.org's role extension (MODBUS/TCP Security R-21), an ASN.1 UTF8String (R-22)."""

ENDPOINTS: Final = ("tcp", "tls", "udp", "rtu-over-tcp")
"""The network endpoints an allow-list may name ("*": each one that has none of its own)."""

Absent = Callable[[int, bytes], bytes | None]
"""What a request for a unit id without a device gets: exception 0x0B, or silence (`UnknownUnit`)."""


def make_security(
    *, tls: bool, roles: Roles | None, allow: Iterable[str] | Mapping[str, Iterable[str]] | None,
    units: Mapping[int, Iterable[str]] | None, hub: EventsHub, warnings: RateLimitedLog,
) -> Security | None:  # fmt: skip
    """The server's access rules (None when it has none, and then nothing of this is on any path). `allow`: the
    allow-list of every network endpoint, or endpoint → allow-list (keys in ENDPOINTS, or "*" for the others)."""
    if not tls and roles is None and not allow and not units:
        return None
    by_endpoint = (allow if isinstance(allow, Mapping) else {"*": allow}) if allow else {}
    for endpoint in by_endpoint:
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"allow: unknown endpoint {endpoint!r}: expected one of {', '.join(ENDPOINTS)} or *")
    return Security(roles=roles, allow={e: AllowList(n) for e, n in by_endpoint.items()},
                    units={u: AllowList(n) for u, n in (units or {}).items()}, hub=hub, warnings=warnings)  # fmt: skip


class CertificateRefused(Exception):
    """A client certificate the server will not serve (more than one role, a role that is no UTF8String)."""


def role_of(der: bytes) -> str | None:
    """The role in a DER client certificate; None without one (R-23: the NULL role). CertificateRefused for more
    than one role extension (R-65) or a value that is no UTF8String (R-22).

    `cryptography` parses the certificate (the `tls` extra): the standard library's ssl gives only the extensions
    it knows by name, and a hand-written DER walker is exactly the code a security check should not be.
    """
    from cryptography import x509  # the tls extra; checked at start, when --tls is given

    try:
        certificate = x509.load_der_x509_certificate(der)
        extensions = certificate.extensions
    except x509.DuplicateExtension as exc:
        raise CertificateRefused(f"it has more than one extension {exc.oid.dotted_string} (R-65: one role per "
                                 "certificate)") from None  # fmt: skip
    except ValueError as exc:
        raise CertificateRefused(f"it cannot be parsed: {exc}") from None
    found = [e for e in extensions if e.oid.dotted_string == ROLE_OID]
    if not found:
        return None
    value = found[0].value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    if len(raw) < 2 or raw[0] != 0x0C:  # a UTF8String's DER tag
        raise CertificateRefused(f"its role extension {ROLE_OID} is not an ASN.1 UTF8String (R-22)")
    length, at = raw[1], 2
    if length & 0x80:  # the long form: the next (length & 0x7F) bytes hold the length
        count = length & 0x7F
        length, at = int.from_bytes(raw[2 : 2 + count]), 2 + count
    if at + length != len(raw):
        raise CertificateRefused(f"its role extension {ROLE_OID} is not one whole UTF8String (R-22)")
    try:
        return raw[at:].decode("utf-8")
    except UnicodeDecodeError:
        raise CertificateRefused(f"its role extension {ROLE_OID} is not valid UTF-8 (R-22)") from None


def handshake_reason(exc: BaseException) -> str:
    """What went wrong in a TLS handshake, in OpenSSL's words where it has some: no certificate, an untrusted
    one, an old protocol version."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return (exc.reason or str(exc)).replace("_", " ").lower()
    if isinstance(exc, TimeoutError):
        return "no handshake in time"
    return str(exc) or type(exc).__name__


class Security:
    """The access rules of one server: allow-lists per endpoint and per unit id, TLS roles, and their counters."""

    def __init__(
        self,
        *,
        roles: Roles | None,
        allow: Mapping[str, AllowList],
        units: Mapping[int, AllowList],
        hub: EventsHub,
        warnings: RateLimitedLog,
    ) -> None:
        """`roles` None: TLS clients may do everything (R-16 makes authorization a SHOULD, R-04 binds it only
        when enforced); given, a role it does not name is denied every request. `allow`: endpoint → allow-list
        ("*" for the endpoints without one). `units`: unit id → allow-list."""
        self.roles = roles
        self._allow = dict(allow)
        self._units = dict(units)
        self._hub = hub
        self._warnings = warnings
        self.refused_clients = 0  # connections and datagrams refused by an endpoint's allow-list
        self.refused_units = 0  # requests for a unit id the client is not on the allow-list of
        self.denied = 0  # requests a TLS client's role may not make (exception 01)
        self.handshakes_failed = 0
        self.certificates_refused = 0

    def counters(self) -> dict[str, int]:
        return {"refused_clients": self.refused_clients, "refused_units": self.refused_units, "denied": self.denied,
                "handshakes_failed": self.handshakes_failed,
                "certificates_refused": self.certificates_refused}  # fmt: skip

    # ------------------------------------------------------------------------------------------- endpoints

    def refuser(self, endpoint: str) -> Callable[[str], bool] | None:
        """The check a listener makes of each client address (None: it has no allow-list): True refuses it."""
        return self._refuser(self._allow.get(endpoint, self._allow.get("*")), endpoint)

    def endpoint_refuser(self, name: str) -> Callable[[str], bool] | None:
        """The check of a listener of `modbusd.endpoints` (a plant's meter7): the list of every network endpoint
        (``[server] allow``, ``--allow``); the lists of ``[server.udp]`` and the others are those listeners' own."""
        return self._refuser(self._allow.get("*"), f"endpoint {name}")

    def _refuser(self, allow: AllowList | None, endpoint: str) -> Callable[[str], bool] | None:
        if allow is None:
            return None

        def refuses(host: str) -> bool:
            if allow.allows(host):
                return False
            self.refused_clients += 1
            self._warnings.log(log, logging.WARNING, f"refused on {endpoint}", host, "%s is not on the %s "
                               "allow-list: refused", host, endpoint)  # fmt: skip
            return True

        return refuses

    def handshake_failed(self, peer: str, exc: BaseException) -> None:
        """A TLS handshake failed: one line per client address a minute; the other connections go on."""
        self.handshakes_failed += 1
        self._warnings.log(log, logging.WARNING, "TLS handshake", host_of(peer), "TLS handshake with %s failed: %s",
                           peer, handshake_reason(exc))  # fmt: skip

    def client_role(self, peer: str, der: bytes | None) -> tuple[bool, str | None]:
        """(accepted, role) of a TLS client's certificate, read once per connection (R-30). Not accepted: the
        caller closes the connection before any request is answered."""
        if der is None:  # the context requires a certificate: a handshake without one has failed already
            return False, None
        try:
            role = role_of(der)
        except CertificateRefused as exc:
            self.certificates_refused += 1
            self._warnings.log(log, logging.WARNING, "certificate refused", host_of(peer), "%s: client certificate "
                               "refused: %s; closing the connection", peer, exc)  # fmt: skip
            return False, None
        log.debug("%s: TLS client with role %s", peer, "(none)" if role is None else repr(role))
        return True, role

    def tls_session(self, connection: TcpConnection, open_session: Callable[[str, str | None], Session]) -> Session:
        """A TLS connection's session (`open_session(peer, role)`), its client's role read from its certificate; a
        certificate refused closes the connection, and its session answers nothing."""
        accepted, role = self.client_role(connection.peer, connection.peer_certificate())
        if not accepted:
            connection.close("client certificate refused")
            return Session(lambda unit_id, pdu: None, peer=connection.peer)
        return open_session(connection.peer, role)

    # ------------------------------------------------------------------------------------------- requests

    def guard(self, answer: Answer, peer: str, *, role: str | None, tls: bool, absent: Absent) -> Answer:
        """`answer` behind this client's per-unit allow-lists and (over TLS, with roles) its role's rights; the
        same `answer` when no rule applies to it, so that the request path costs nothing more."""
        host = host_of(peer)
        refused = frozenset(unit for unit, allow in self._units.items() if not allow.allows(host))
        checked = answer
        if tls and self.roles is not None:
            checked = self._authorized(answer, peer, role)
        if not refused:
            return checked

        def by_unit(unit_id: int, pdu: bytes) -> bytes | Awaitable[bytes | None] | None:
            if unit_id in refused:  # as a unit id without a device: this client learns nothing more
                self.refused_units += 1
                self._warnings.log(log, logging.WARNING, "refused unit", host, "%s is not on unit %d's allow-list: "
                                   "answered as a unit id without a device", peer, unit_id)  # fmt: skip
                return absent(unit_id, pdu)
            return checked(unit_id, pdu)

        return by_unit

    def _authorized(self, answer: Answer, peer: str, role: str | None) -> Answer:
        rights = self.roles.rights_of(role)  # type: ignore[union-attr]  # checked by the caller

        def authorized(unit_id: int, pdu: bytes) -> bytes | Awaitable[bytes | None] | None:
            if rights is not None and rights.allows(pdu):
                return answer(unit_id, pdu)
            self._denied(peer, role, unit_id, pdu)
            return exception_pdu(pdu[0], ExceptionCode.ILLEGAL_FUNCTION)

        return authorized

    def _denied(self, peer: str, role: str | None, unit_id: int, pdu: bytes) -> None:
        """NOT_AUTHORIZED: counted, one warning per client a minute, and a line in the events log, every time."""
        self.denied += 1
        reads, writes = accesses(pdu)
        self._warnings.log(log, logging.WARNING, "denied", host_of(peer), "%s (role %s) may not make request "
                           "0x%02X on unit %d: exception 01", peer, "(none)" if role is None else repr(role), pdu[0],
                           unit_id)  # fmt: skip
        events_log = self._hub.events_log
        if events_log is not None:
            events_log.put({"time": time.time(), "kind": "denied", "client": peer, "role": role, "unit": unit_id,
                            "function": pdu[0], "reads": [[t.suffix, a, q] for t, a, q in reads],
                            "writes": [[t.suffix, a, q] for t, a, q in writes]})  # fmt: skip
