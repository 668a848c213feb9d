"""The events hub: write subscriptions, listeners, and the writes they observe, with their events and log lines.

A client write is observed while a subscription or the events log wants it: `observed` then holds the write
function codes, and the answer functions (`answers.py`, `bus.py`) hand such writes to `write`, which carries
them out on the device, reading the subscribed points before and after. What an event is and how one is made is
`writes.py`'s and `hooks.py`'s; delivering them is each `Listener`'s (`events.py`); the file is `EventsLog`'s
(`events_log.py`).
While someone follows the live request log (`traffic.py`), every function code is observed and `observe` records
each request there; nobody following costs nothing more than before.
Subscriptions and event names follow HSYCO's Modbus server (``subscribe``, ``<server>.<unit>.<address>.<table>``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable

from modbusd import handler
from modbusd.events import Listener
from modbusd.events_log import EventsLog
from modbusd.hooks import (
    WRITE_FUNCTIONS,
    Subscription,
    Subscriptions,
    WriteEvent,
    event_record,
    make_subscription,
    write_record,
    written_range,
)
from modbusd.model.device import Device
from modbusd.model.names import Table
from modbusd.model.points import Point
from modbusd.model.values import Order, ValueType
from modbusd.protocol.codes import ExceptionCode
from modbusd.protocol.errors import ModbusError
from modbusd.protocol.pdu import exception_pdu
from modbusd.traffic import RequestLog


def _call_in(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> None:
    """`callback(*args)` at once when called from `loop`, else soon in it: an owner's thread may call."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback(*args)
    else:
        loop.call_soon_threadsafe(callback, *args)


UNDONE_BY = "state"  # who made the events of writes the state file undid: the events log's word for its refusals
EVERY_FUNCTION = frozenset(range(256))  # observed while the request log is followed: reads and unknown codes too


class EventsHub:
    """Subscriptions, listeners and the events log of one server (`name`: the first part of event names)."""

    def __init__(self, name: str, events_log: EventsLog | None) -> None:
        self.name = name
        self.events_log = events_log
        # Write function codes whose requests are observed (events, the events log): empty while nothing
        # observes, so that a request costs one set lookup more than without any of this.
        self.observed: set[int] = set()
        self.published = 0
        self._subscriptions = Subscriptions()
        # The unit id the last client write named each subscription naming none by: the name its undoing gives
        self._last_unit: dict[Subscription, int] = {}
        self._listeners: list[Listener] = []
        self._request_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self.requests = RequestLog()
        self.requests.on_change = self._update_observed
        self.requests.pause = self._pause_recording
        # Every request the server has counted (`Stats.total`), set by the server: what lets the request log stop
        # being handed requests past its followers' cap and still say how many it did not show.
        self.count_requests: Callable[[], int] | None = None
        self._paused_from = 0
        # Serial lines by device name → their framing, for the request log: the bus says only who sent a request
        # (a line's device, or an RTU over TCP client's address), and a line's device is no network address.
        self.serial_transports: dict[str, str] = {}
        self._update_observed()

    # ------------------------------------------------------------------------------------- subscriptions

    def subscribe(self, device: Device, found: Point, vtype: ValueType | str | None, count: int,
                  order: Order | str | None, *, endpoint: str | None = None) -> Subscription:  # fmt: skip
        """`found`, located on `device` (served by `endpoint`, None: the default one): a named point gives its own
        type and order unless told otherwise."""
        location = found.location
        chosen: ValueType | str | None = vtype
        if chosen is None and found.name and not location.table.is_bits:
            chosen = found.type
        if order is None:
            order = found.order if found.name else Order.ABCD
        subscription = self._subscriptions.add(make_subscription(device, location, chosen, count=count, order=order,
                                                                endpoint=endpoint))  # fmt: skip
        self._update_observed()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)
        if subscription not in self._subscriptions:
            self._last_unit.pop(subscription, None)
        self._update_observed()

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)

    def _update_observed(self) -> None:
        """The one set every answer function looks a request's function code up in (so: changed in place)."""
        self.observed.clear()
        if self.requests.followers and not self.requests.paused:
            self.observed.update(EVERY_FUNCTION)
        elif len(self._subscriptions) or self.events_log is not None:
            self.observed.update(WRITE_FUNCTIONS)

    def _pause_recording(self, seconds: float) -> bool:
        """The request log's followers have all their records for `seconds`: observe requests as if nobody followed
        until then, and count the requests meanwhile from the server's own counts. On the server's loop only."""
        count = self.count_requests
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test driving the log): the log counts each request itself
            return False
        if count is None:
            return False
        self._paused_from = count() + 1  # the request being recorded is counted once it is answered
        self.requests.paused = True
        self._update_observed()
        loop.call_later(seconds, self._resume_recording)
        return True

    def _resume_recording(self) -> None:
        assert self.count_requests is not None  # set, or there was no pause
        self.requests.skipped += max(0, self.count_requests() - self._paused_from)
        self.requests.paused = False
        self._update_observed()

    # ----------------------------------------------------------------------------------------- listeners

    def add_listener(self, callback: Callable[[WriteEvent], object] | None, queue: int, name: str) -> Listener:
        listener = Listener(self, callback, queue, name)
        self._listeners = [*self._listeners, listener]
        loop = self._loop
        if loop is not None and self._stopped is not None and not self._stopped.is_set():
            _call_in(loop, listener._start)
        return listener

    def remove_listener(self, listener: Listener) -> None:
        """Stop delivering to `listener`: what is still queued is not delivered to a callback."""
        self._listeners = [x for x in self._listeners if x is not listener]
        listener.closed = True
        task, listener._task = listener._task, None
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(listener._ready.set)
            if task is not None:
                loop.call_soon_threadsafe(task.cancel)

    def start(self, loop: asyncio.AbstractEventLoop, stopped: asyncio.Event) -> None:
        """Open the events log and start every listener's delivery in `loop`, the server's, until `stopped`."""
        self._loop, self._stopped = loop, stopped
        if self.events_log is not None:
            self.events_log.start()  # an unwritable file is reported, and the server goes on
        for listener in self._listeners:
            listener._start()

    async def stop(self) -> None:
        for subscriber in self._listeners:  # the last writes' events are delivered, or dropped after a grace
            await subscriber._stop()
        if self.events_log is not None:
            await asyncio.to_thread(self.events_log.close)

    # -------------------------------------------------------------------------------- observed writes

    # ----------------------------------------------------------------------------- observed requests

    def observe(self, device: Device, unit_id: int, pdu: bytes, peer: str, broadcast: bool, *,
                transport: str | None = None, role: str | None = None,
                endpoint: str | None = None) -> bytes | None:  # fmt: skip
        """An observed request for `device`: a write with its events and log line, and its request-log record
        while someone follows. `transport` None: the serial bus's (a line's framing, or RTU over TCP); `endpoint`:
        the endpoint it came to (None: the default one)."""
        requests = self.requests
        if not requests.followers:  # only writes are observed: for their events and the events log
            return self.write(device, unit_id, pdu, peer, broadcast, role=role, endpoint=endpoint)
        started = time.perf_counter()
        if pdu[0] in WRITE_FUNCTIONS:
            reply = self.write(device, unit_id, pdu, peer, broadcast, role=role, endpoint=endpoint)
        else:
            reply = handler.respond(device, pdu, broadcast=broadcast)
        requests.record(peer, transport or self.bus_transport(peer), unit_id, pdu, reply, started=started,
                        endpoint=endpoint)  # fmt: skip
        return reply

    def bus_transport(self, peer: str) -> str:
        return self.serial_transports.get(peer, "rtu-over-tcp")

    def record_later(self, answer: Awaitable[bytes | None], peer: str, transport: str, unit_id: int,
                     pdu: bytes, *, endpoint: str | None = None) -> Awaitable[bytes | None]:  # fmt: skip
        """A forwarded request's answer, recorded when it comes (while someone follows)."""
        if not self.requests.followers:
            return answer
        started = time.perf_counter()

        async def recorded() -> bytes | None:
            reply = None
            try:
                reply = await answer
            except ModbusError as exc:
                reply = exception_pdu(pdu[0], exc.code)
                raise
            except Exception:  # the session answers it with exception 04 (and logs it)
                reply = exception_pdu(pdu[0], ExceptionCode.SERVER_DEVICE_FAILURE)
                raise
            finally:
                self.requests.record(peer, transport, unit_id, pdu, reply, started=started, endpoint=endpoint)
            return reply

        return recorded()

    def write(self, device: Device, unit_id: int, pdu: bytes, peer: str, broadcast: bool, *,
              role: str | None = None, endpoint: str | None = None) -> bytes | None:  # fmt: skip
        """Carry out a write request on `device`, with its events and its line in the events log. `role`: the
        client certificate's (Modbus/TCP Security), carried by the log line and the events.

        The subscribed points it touches are read before and after (only those, and only when there are any).
        """
        found = written_range(pdu)
        touched = self._subscriptions.touched(device, unit_id, *found, broadcast=broadcast) if found and len(
            self._subscriptions) else []  # fmt: skip
        before = [subscription.capture() for subscription, _ in touched]
        reply = handler.respond(device, pdu, broadcast=broadcast, answer_broadcast=True)
        request_id = next(self._request_ids)
        now = time.time()
        if self.events_log is not None:
            self.events_log.put(write_record(pdu, reply, time=now, client=peer, unit_id=unit_id,
                                             request_id=request_id, broadcast=broadcast, role=role,
                                             endpoint=endpoint))  # fmt: skip
        if touched and reply is not None and not reply[0] & 0x80:
            events: list[WriteEvent] = []
            for (subscription, written), old in zip(touched, before, strict=True):
                events.extend(subscription.events(
                    old, subscription.capture(), written, server=self.name, unit_id=unit_id, client=peer,
                    time=now, request_id=request_id, function=pdu[0], role=role))  # fmt: skip
                if subscription.unit_id is None:
                    self._last_unit[subscription] = unit_id
            self._publish(events)
        return None if broadcast else reply

    def log_write(self, pdu: bytes, reply: bytes | None, peer: str, unit_id: int, *, by: str = "tables",
                  transport: str | None = None, role: str | None = None,
                  endpoint: str | None = None) -> None:  # fmt: skip
        """The events log's line for a write no device carried out: none has the unit id (`by="tables"`: the
        answer is exception 0x0B or silence), or the request hook answered it (`by="hook"`); and the request
        log's record of any such request while someone follows."""
        if self.events_log is not None and pdu[0] in WRITE_FUNCTIONS:
            self.events_log.put(write_record(pdu, reply, time=time.time(), client=peer, unit_id=unit_id,
                                             request_id=next(self._request_ids), by=by, role=role,
                                             endpoint=endpoint))  # fmt: skip
        if self.requests.followers:
            self.requests.record(peer, transport or self.bus_transport(peer), unit_id, pdu, reply, endpoint=endpoint)

    def undoing(self, devices: Iterable[tuple[Device, int]]) -> Callable[[], None] | None:
        """The state file is about to put back what `devices` held before writes it could not store (`durable.py`):
        the subscribed points of those devices as they are now, and a function that, once it has, tells each
        subscriber of a point whose value went back. None when nobody subscribes to them: nothing to tell.

        The tables are compared, not the writes replayed: a point written twice in the undone writes, or written
        back to its value, gets one event, or none. The event carries the value in the table now (the one put back)
        and, as its previous, the one undone; `by` and `client` "state" mark it. Its unit id is the subscription's,
        or else the one the last client write of it named, or else the one each device comes with (its key's; 0
        for a device answering every unit id). Called in the thread that commits: an owner's `Server.write`
        commits from its own."""
        if not len(self._subscriptions):
            return None
        units = {id(device): unit for device, unit in devices}
        last = self._last_unit
        watched = [(s, last.get(s, units[id(s.device)]), s.capture()) for s in self._subscriptions
                   if id(s.device) in units]  # fmt: skip
        if not watched:
            return None

        def undone() -> None:
            now, request_id = time.time(), next(self._request_ids)
            events: list[WriteEvent] = []
            for subscription, unit, before in watched:
                after = subscription.capture()
                if after == before:
                    continue
                for event in subscription.events(before, after, (subscription.address, subscription.count),
                                                 server=self.name, unit_id=unit, client=UNDONE_BY, time=now,
                                                 request_id=request_id, function=0):  # fmt: skip
                    if (event.bit is not None or event.table is Table.COILS) and event.value == event.previous:
                        continue  # a coil or a bit of the range that did not change (a value's bytes did)
                    events.append(dataclasses.replace(event, by=UNDONE_BY))
            if events:
                self._publish_from_any_thread(events)

        return undone

    def _publish_from_any_thread(self, events: list[WriteEvent]) -> None:
        """`_publish` in the server's loop, where the listeners' queues are taken, whichever thread calls."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._publish(events)  # not serving: queued for when it does
        else:
            _call_in(loop, self._publish, events)

    def _publish(self, events: list[WriteEvent]) -> None:
        self.published += len(events)
        events_log = self.events_log
        for event in events:
            if events_log is not None:
                events_log.put(event_record(event))
            for listener in self._listeners:
                listener._push(event)

    def counters(self) -> dict[str, object]:
        listeners = self._listeners
        counters: dict[str, object] = {
            "subscriptions": len(self._subscriptions),
            "published": self.published,
            "dropped": sum(x.dropped for x in listeners),
            "listeners": [{"name": x.name, "queued": len(x.queue), "delivered": x.delivered, "dropped": x.dropped,
                           "failures": x.failures} for x in listeners],
        }  # fmt: skip
        if self.events_log is not None:
            counters["log"] = self.events_log.counters()
        return counters
