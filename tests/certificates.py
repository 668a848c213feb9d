"""Certificates made for a test, with the `cryptography` package: a CA, a server certificate for 127.0.0.1 (an IP
address SAN, which Python's hostname check requires), client certificates, with Modbus/TCP Security's role
extension (OID 1.3.6.1.4.1.50316.802.1, a UTF8String) when asked. EC P-256 keys: quick to make.

A certificate with two role extensions (which MODBUS/TCP Security R-65 makes invalid) cannot be built with
`cryptography`'s builder, which refuses a repeated extension: it is built with a stand-in OID of the same length
in the second place, then that OID's bytes are swapped for the role's and the certificate is signed again."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)
ROLE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
_STAND_IN = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.9")  # encodes to as many bytes as ROLE_OID


def utf8_string(text: str) -> bytes:
    """An ASN.1 UTF8String (tag 0x0C), DER, as the role extension holds it (R-22)."""
    raw = text.encode()
    length = bytes((len(raw),)) if len(raw) < 0x80 else bytes((0x81, len(raw)))
    return b"\x0c" + length + raw


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size)


def _tlv_end(der: bytes, at: int) -> int:
    """Where the DER element starting at `at` ends."""
    first = der[at + 1]
    if first < 0x80:
        return at + 2 + first
    size = first & 0x7F
    return at + 2 + size + int.from_bytes(der[at + 2 : at + 2 + size])


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


class Authority:
    """A self-signed CA in `folder` (``<stem>.pem``), issuing certificates as ``<name>.crt`` and ``<name>.key``."""

    def __init__(self, folder: Path, stem: str = "ca") -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = _name(f"modbusd test {stem}")
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - VALIDITY).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.path = folder / f"{stem}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, name: str, *, ip: str | None = None, roles: Sequence[str] = (), expired: bool = False,
        passphrase: bytes | None = None, chain: bool = False,
    ) -> tuple[Path, Path]:  # fmt: skip
        """A certificate (a server's for `ip`, else a client's) and its key: (cert file, key file). `roles`: one
        role extension per role (two make an invalid certificate); `expired`: it ended yesterday; `passphrase`:
        the key encrypted with it; `chain`: the CA's certificate follows it in its file."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC) - (3 * VALIDITY if expired else datetime.timedelta())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if ip else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - VALIDITY).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )  # fmt: skip
        if ip:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                            critical=False)  # fmt: skip
        for i, role in enumerate(roles):
            oid = ROLE_OID if i == 0 else _STAND_IN
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, utf8_string(role)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        if len(roles) > 1:
            cert = self._repeat_role(cert)
        cert_file, key_file = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        pem = cert.public_bytes(serialization.Encoding.PEM)
        cert_file.write_bytes(pem + (self.cert.public_bytes(serialization.Encoding.PEM) if chain else b""))
        if passphrase is None:
            key_file.write_bytes(_pem_key(key))
        else:
            key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.BestAvailableEncryption(passphrase)))  # fmt: skip
        return cert_file, key_file

    def _repeat_role(self, cert: x509.Certificate) -> x509.Certificate:
        """`cert` with its stand-in extensions turned into role extensions, signed again by this CA."""
        der = cert.public_bytes(serialization.Encoding.DER)
        tbs_at = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)  # inside the outer SEQUENCE
        tbs_end = _tlv_end(der, tbs_at)
        algorithm_end = _tlv_end(der, tbs_end)
        tbs = der[tbs_at:tbs_end].replace(_oid_der(_STAND_IN), _oid_der(ROLE_OID))
        signature = self.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
        bit_string = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
        body = tbs + der[tbs_end:algorithm_end] + bit_string
        return x509.load_der_x509_certificate(b"\x30" + _der_length(len(body)) + body)


def _oid_der(oid: x509.ObjectIdentifier) -> bytes:
    """An OID's DER encoding (tag 0x06), to find it in a certificate's bytes."""
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    body = bytes((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk, rest = [arc & 0x7F], arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(reversed(chunk))
    return b"\x06" + bytes((len(body),)) + body
