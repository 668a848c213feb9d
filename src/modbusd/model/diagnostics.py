"""The counters and event log that FC08, FC11 and FC12 report (§6.8-§6.10, Serial Line §6).

Plain state: `handler.py` decides when each counter moves.
"""

from collections import deque
from dataclasses import dataclass, field

from modbusd.protocol.codes import MAX_EVENT_LOG

# Event log bytes (§6.10).
RECEIVE_EVENT = 0x80
RECEIVE_COMMUNICATION_ERROR = 0x02
RECEIVE_CHARACTER_OVERRUN = 0x10
RECEIVE_IN_LISTEN_ONLY = 0x20
RECEIVE_BROADCAST = 0x40
SEND_EVENT = 0x40
SEND_READ_EXCEPTION = 0x01  # exception codes 1..3
SEND_SERVER_ABORT_EXCEPTION = 0x02  # exception code 4
SEND_BUSY_EXCEPTION = 0x04  # exception codes 5..6
SEND_NAK_EXCEPTION = 0x08  # exception code 7
SEND_IN_LISTEN_ONLY = 0x20
ENTERED_LISTEN_ONLY = 0x04
COMMUNICATION_RESTART = 0x00


@dataclass(slots=True)
class Diagnostics:
    """Counters wrap at 16 bits when reported, as the 2-byte fields that carry them do."""

    bus_message: int = 0
    bus_communication_error: int = 0
    bus_exception_error: int = 0
    server_message: int = 0
    server_no_response: int = 0
    server_nak: int = 0
    server_busy: int = 0
    bus_character_overrun: int = 0
    event_count: int = 0
    diagnostic_register: int = 0
    listen_only: bool = False
    # FC08/04 refused with exception 01 (`Server(listen_only=False)`, --no-listen-only): one request from any
    # client, a spoofed UDP datagram included, would otherwise silence the device for every client
    refuse_listen_only: bool = False
    ascii_delimiter: int = 0x0A
    events: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_EVENT_LOG))

    def clear_counters(self) -> None:
        """FC08/0A and FC08/01: every counter and the diagnostic register back to zero."""
        self.bus_message = self.bus_communication_error = self.bus_exception_error = 0
        self.server_message = self.server_no_response = self.server_nak = self.server_busy = 0
        self.bus_character_overrun = self.event_count = self.diagnostic_register = 0

    def log_event(self, event: int) -> None:
        self.events.appendleft(event)  # FC12 reports the newest event first
