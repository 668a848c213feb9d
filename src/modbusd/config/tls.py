"""The MQTT bridge's TLS settings (``mqtts://``, CA, client certificate and key) → an `ssl.SSLContext`.

Built once when the settings are read (the device file, the command line), so that a missing file or a key that
does not match its certificate is one line at start, naming the setting, rather than a broker that is never
reached. Whether the broker's own certificate verifies is known only when connecting: that is the bridge's to log.
"""

import ssl

from modbusd.config.schema import MqttConfig

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
        try:
            context.load_cert_chain(config.cert, config.key, password=_encrypted)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TlsSettingError("key" if config.key else "cert", f"{config.key or config.cert}: this key "
                                      f"does not match the certificate {config.cert}") from None  # fmt: skip
            raise TlsSettingError("cert", f"{config.cert}: cannot use it: {exc.reason or exc}") from None
    return context
