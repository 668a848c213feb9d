"""The gateway's routes: which unit ids are forwarded, and to which downstream (`forward.py` does the forwarding).

A unit id is either forwarded or local, never both; equal targets share one downstream, so one serial line has
one master. MBLogic's Modbus Basics describes devices that forward requests for some unit ids out of a serial
port; the server does the same for Modbus/TCP and UDP requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from modbusd.forward import Downstream, SerialDownstream, TcpDownstream
from modbusd.protocol.gateway import (
    FORWARD_QUEUE,
    FORWARD_TIMEOUT,
    IN_FLIGHT,
    MAX_IN_FLIGHT,
    Target,
    TcpTarget,
    check_route,
    unit_ranges,
)
from modbusd.protocol.serial_line import SerialLine

FORWARD_IN_FLIGHT = IN_FLIGHT  # requests under way at once to one Modbus/TCP server (a serial line: always one)

# the targets and the defaults are plain data (`protocol.gateway`), shared with the device file and the command line
__all__ = ["FORWARD_IN_FLIGHT", "FORWARD_QUEUE", "FORWARD_TIMEOUT", "Routes", "Target", "TcpTarget", "make_downstream",
           "unit_ranges"]  # fmt: skip


class Routes:
    """Unit id → downstream (`routes`), and one downstream per distinct target (`downstreams`)."""

    def __init__(
        self,
        forward: Mapping[int, Target] | None,
        *,
        local: Iterable[int],
        served: Sequence[SerialLine],
        timeout: float,
        queue: int,
        in_flight: int = FORWARD_IN_FLIGHT,
    ) -> None:
        """`local`: the unit ids of local devices; `served`: the serial lines served (neither may be forwarded)."""
        if not 1 <= in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"forward in-flight bound {in_flight} outside 1..{MAX_IN_FLIGHT}")
        self.downstreams: dict[Target, Downstream] = {}
        self.routes: dict[int, Downstream] = {}
        if forward:
            self._make(forward, set(local), {line.device for line in served}, timeout=timeout, queue=queue,
                       in_flight=in_flight)  # fmt: skip

    def _make(self, forward: Mapping[int, Target], local: set[int], served: set[str], *, timeout: float,
              queue: int, in_flight: int) -> None:  # fmt: skip
        for unit, target in forward.items():
            if not 0 <= unit <= 255:
                raise ValueError(f"forwarded unit id {unit} outside 0..255")
            if unit in local:
                raise ValueError(f"unit id {unit} is both a local device and forwarded: choose one")
            check_route((unit,), target)
            if isinstance(target, SerialLine) and target.device in served:
                raise ValueError(f"{target.device} is both served and forwarded to: a line has one master")
            downstream = self.downstreams.get(target)
            if downstream is None:
                downstream = self.downstreams[target] = make_downstream(target, timeout, queue, in_flight)
            self.routes[unit] = downstream

    def units_of(self, downstream: Downstream) -> list[int]:
        return [unit for unit, to in self.routes.items() if to is downstream]

    def describe(self) -> list[str]:
        """One banner item per downstream: `gateway for units 1-3 to RTU on /dev/ttyUSB1 (19200 8E1)`."""
        items = []
        for target, downstream in self.downstreams.items():
            units = self.units_of(downstream)
            detail = f" ({target.settings})" if isinstance(target, SerialLine) else ""
            which = f"unit{'s' if len(units) > 1 else ''} {unit_ranges(units)}"
            items.append(f"gateway for {which} to {downstream}{detail}")
        return items


def make_downstream(target: Target, timeout: float, queue: int, in_flight: int) -> Downstream:
    """`in_flight` is for a Modbus/TCP server only: a serial line's master has one request on the line."""
    if isinstance(target, TcpTarget):
        return TcpDownstream(target.host, target.port, timeout=timeout, queue_limit=queue, in_flight_limit=in_flight)
    return SerialDownstream(
        target.device, framing=target.framing, baudrate=target.baudrate, bytesize=target.bytesize,
        parity=target.parity, stopbits=target.effective_stopbits, timeout=timeout, queue_limit=queue,
    )  # fmt: skip
