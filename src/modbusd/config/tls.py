"""TLS settings → an `ssl.SSLContext`: the MQTT bridge's client context (``mqtts://``, CA, client certificate and
key), and Modbus/TCP Security's server context (``--tls``, ``[server.tls]``).

Built once when the settings are read (the device file, the command line), so that a missing file, a key that
does not match its certificate, a wrong passphrase or an expired certificate is one line at start, naming the
setting, rather than a broker that is never reached or a server no client can talk to. Whether a peer's
certificate verifies is known only when connecting: that is the bridge's, or the listener's, to log.
"""

import datetime
import logging
import os
import ssl
from collections.abc import Callable

from modbusd.config.schema import KEY_PASSWORD_ENV, TlsConfig
from modbusd.config.service_settings import MqttConfig

log = logging.getLogger("modbusd.config")

CERTIFICATE = "-----BEGIN CERTIFICATE-----"
PRIVATE_KEY = "PRIVATE KEY-----"  # "BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY", "BEGIN EC PRIVATE KEY" …
MAX_PEM = 1 << 20  # bytes read to look for the PEM markers: certificates and keys are a few kB


class TlsSettingError(ValueError):
    """A TLS setting that cannot be used; `key` is the setting (ca, cert, key) to name in the message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _pem(key: str, path: str, marker: str, what: str) -> None:
    """The file exists and holds `marker`: which file is wrong, which OpenSSL's "PEM lib" does not say."""
    try:
        with open(path, "rb") as file:
            text = file.read(MAX_PEM).decode("ascii", errors="replace")
    except FileNotFoundError:
        raise TlsSettingError(key, f"{path}: no such file") from None
    except OSError as exc:
        raise TlsSettingError(key, f"{path}: cannot read it: {exc.strerror or exc}") from None
    if marker not in text:
        raise TlsSettingError(key, f"{path}: not a PEM {what} (no {marker.strip('-')} in it)")


def _encrypted() -> str:
    raise TlsSettingError("key", "the private key is encrypted: give one without a passphrase (the bridge runs "
                                 "unattended; protect the file with its permissions instead)")  # fmt: skip


def mqtt_tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The client context for `config` (None without TLS): the system's CAs, or only `ca`'s; the broker's name
    (or IP address) checked against its certificate; `cert` (with `key`, or a key in the same file) sent when the
    broker asks for one. TlsSettingError, one line, for anything unusable."""
    if not config.tls:
        for key in ("ca", "cert", "key"):
            if getattr(config, key) is not None:
                raise TlsSettingError(key, "only for TLS: give the broker as mqtts://host[:port] (port 8883 by "
                                           "default)")  # fmt: skip
        return None
    if config.key is not None and config.cert is None:
        raise TlsSettingError("key", "a key without its certificate: give cert too")
    if config.ca is not None:
        _pem("ca", config.ca, CERTIFICATE, "certificate")
    if config.cert is not None:
        _pem("cert", config.cert, CERTIFICATE, "certificate")
        _pem("cert" if config.key is None else "key", config.key or config.cert, PRIVATE_KEY, "private key")
    try:
        context = ssl.create_default_context(cafile=config.ca)
    except ssl.SSLError as exc:
        raise TlsSettingError("ca", f"{config.ca}: cannot use it as a CA: {exc.reason or exc}") from None
    if config.cert is not None:
        _load_cert_chain(context, config.cert, config.key, _encrypted)
    return context


def server_tls_context(config: TlsConfig) -> ssl.SSLContext:
    """Modbus/TCP Security's server context: TLS 1.2 or later (R-01, R-34), a client certificate required and
    checked against `ca` (R-06, R-07, R-44), and the whole chain in `cert` sent (R-46). An encrypted key's
    passphrase comes from the environment (KEY_PASSWORD_ENV), never from the command line, where `ps` shows it.
    TlsSettingError, one line naming the setting, for anything unusable."""
    for key in ("cert", "key", "ca"):
        if getattr(config, key) is None and not (key == "key" and config.cert is not None):
            raise TlsSettingError(key, f"Modbus/TCP Security needs {_NEEDS[key]}")
    assert config.cert is not None and config.ca is not None
    _pem("ca", config.ca, CERTIFICATE, "certificate")
    _pem("cert", config.cert, CERTIFICATE, "certificate")
    _pem("cert" if config.key is None else "key", config.key or config.cert, PRIVATE_KEY, "private key")
    _check_validity(config.cert)
    _check_passphrase(config.key or config.cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=config.ca)
    except ssl.SSLError as exc:
        raise TlsSettingError("ca", f"{config.ca}: cannot use it as a CA: {exc.reason or exc}") from None
    _load_cert_chain(context, config.cert, config.key, _passphrase)
    return context


def _load_cert_chain(context: ssl.SSLContext, cert: str, key: str | None, password: Callable[[], str]) -> None:
    """`cert` and its key (in `key`, or in `cert`'s file) into `context`; a key of another certificate, or a file
    OpenSSL cannot use, is one TlsSettingError naming the setting to fix."""
    try:
        context.load_cert_chain(cert, key, password=password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsSettingError("key" if key else "cert", f"{key or cert}: this key "
                                  f"does not match the certificate {cert}") from None  # fmt: skip
        raise TlsSettingError("cert", f"{cert}: cannot use it: {exc.reason or exc}") from None


_NEEDS = {"cert": "the server's certificate (--cert FILE, or cert in [server.tls]; its chain too, to the root CA)",
          "key": "the certificate's key", "ca": "the CA that signs the clients' certificates (--ca FILE, or ca in "
          "[server.tls]): clients must present one it signed"}  # fmt: skip


def _passphrase() -> str:
    """An encrypted key's passphrase, asked for by OpenSSL only when the key is encrypted."""
    passphrase = os.environ.get(KEY_PASSWORD_ENV)
    if passphrase is None:
        raise TlsSettingError("key", f"the private key is encrypted: give its passphrase in the environment "
                                     f"variable {KEY_PASSWORD_ENV}")  # fmt: skip
    return passphrase


def _check_passphrase(path: str) -> None:
    """An encrypted key opens with the passphrase given (OpenSSL says only "PEM lib" when it does not)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key  # checked by _check_validity

    with open(path, "rb") as file:
        pem = file.read(MAX_PEM)
    try:
        load_pem_private_key(pem, None)
    except TypeError:  # encrypted
        passphrase = _passphrase()
        try:
            load_pem_private_key(pem, passphrase.encode())
        except ValueError:
            raise TlsSettingError("key", f"{path}: the passphrase in {KEY_PASSWORD_ENV} does not decrypt this "
                                         "key") from None  # fmt: skip
    except ValueError:  # not a key cryptography reads: OpenSSL says what it makes of it
        return


_SHORT_CHAINS: set[str] = set()


def _check_validity(path: str) -> None:
    """The server's certificate is valid now (OpenSSL loads an expired one without a word, and then every client
    refuses it), and a chain that stops short of a self-signed root is reported (R-46 wants the whole chain)."""
    try:
        from cryptography import x509
    except ImportError:
        raise TlsSettingError("cert", "Modbus/TCP Security needs the cryptography package (client roles are read "
                                      "from certificates with it): pip install 'modbusd[tls]'") from None  # fmt: skip
    with open(path, "rb") as file:
        try:
            chain = x509.load_pem_x509_certificates(file.read())
        except ValueError as exc:
            raise TlsSettingError("cert", f"{path}: not a PEM certificate: {exc}") from None
    leaf = chain[0]
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < now:
        raise TlsSettingError("cert", f"{path}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} "
                                      "UTC: renew it")  # fmt: skip
    if leaf.not_valid_before_utc > now:
        raise TlsSettingError("cert", f"{path}: the certificate is valid only from "
                                      f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock)")  # fmt: skip
    if chain[-1].issuer != chain[-1].subject and path not in _SHORT_CHAINS:
        _SHORT_CHAINS.add(path)  # the settings are read more than once (file, command line, server): said once
        log.warning("%s ends at %s, which is not a root CA: clients that do not hold the rest of the chain will "
                    "refuse it (MODBUS/TCP Security R-46: append the issuing CAs to the file, down to the root)",
                    path, chain[-1].subject.rfc4514_string())  # fmt: skip
