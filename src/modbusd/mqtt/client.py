"""The optional aiomqtt dependency, loaded only when a bridge starts, and paho-mqtt's log lines, kept as the reason
of a failed connection."""

import logging
from typing import Any

log = logging.getLogger("modbusd.mqtt")  # the bridge's one logger, as when it was one module: users filter by it


class MissingDependency(RuntimeError):
    """aiomqtt is not installed."""


def _aiomqtt() -> Any:
    try:
        import aiomqtt
    except ImportError:
        raise MissingDependency("the MQTT bridge needs aiomqtt: pip install 'modbusd[mqtt]'") from None
    return aiomqtt


class _PahoLog(logging.Handler):
    """paho-mqtt's own log lines (aiomqtt hands them a logger): the last error is kept as the reason of a failed
    connection, and every line is passed on at DEBUG only.

    aiomqtt reports a connection the broker drops before its CONNACK as a mere time-out: a TLS 1.3 broker refusing
    a missing client certificate says so only after the handshake, and only paho's log carries the reason. Passed
    on at their own level, paho's lines would repeat at every retry of a broker that is away.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_error: str | None = None
        self.logger = logging.Logger("modbusd.mqtt.paho")  # unregistered: one per bridge, freed with it
        self.logger.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.ERROR)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.last_error = record.getMessage()
        log.debug("paho: %s", record.getMessage())

    def reason(self, exc: Exception) -> str:
        """What went wrong with the last connection attempt, in one line."""
        error, self.last_error = self.last_error, None
        return f"{exc} ({error})" if error and error not in str(exc) else str(exc)
