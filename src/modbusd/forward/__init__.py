"""The gateway's downstream side: modbusd as the client (master) of a serial line or of a Modbus/TCP server.

MBLogic's message forwarding: a request that arrived over Modbus/TCP for a forwarded unit id is sent on
to the device that has that id, and the device's response PDU is what the TCP client gets (its transaction
id is the session's business, not ours). A serial line carries one transaction at a time (`serial.py`: one bus,
one master); a Modbus/TCP server takes several at once, paired by transaction id (`tcp.py`). Requests past those
wait their turn in a first-come queue; when `queue_limit` already wait, a request is refused at once with
exception 06 (Server Device Busy) (`downstream.py`).

What goes wrong is answered as the Application Protocol §7 says a gateway answers it:
- 0x0A Gateway Path Unavailable: the path is down: the serial port is missing or cannot be opened (it is
  tried again on every request, so a USB adapter plugged in later is picked up), the TCP server refuses
  the connection or drops it;
- 0x0B Gateway Target Device Failed to Respond: the request went out, and no matching response came back
  within `timeout` seconds (also a TCP connect that times out: nothing there answers).

Framing comes from `protocol` (RTU with `response_length`, ASCII, MBAP); this package adds the clock and the
I/O, as `transport` does for the serving side.
"""

from modbusd.forward.downstream import Downstream
from modbusd.forward.serial import TURNAROUND, SerialDownstream
from modbusd.forward.tcp import IN_FLIGHT, MAX_IN_FLIGHT, TcpDownstream

__all__ = ["IN_FLIGHT", "MAX_IN_FLIGHT", "TURNAROUND", "Downstream", "SerialDownstream", "TcpDownstream"]
