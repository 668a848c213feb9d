"""The server's request-path counters: plain ints and lists, moved where the work already happens, read when asked.

Monitoring must cost the request path almost nothing, so nothing here formats, locks or allocates per request: a
session adds one to a list slot (`RequestCounts.ok`, indexed by function code) and a few ints, and whoever wants
the figures (``GET /metrics``, `modbusd.web.metrics`) reads them at its own pace. One event loop moves them, so
no lock is needed; a reader in another thread sees each int whole (the GIL), perhaps one request behind.

Latency is a histogram of bucket counts, the bucket found with one `bisect` over LATENCY_BUCKETS. Answers that
take time (the gateway, a coroutine request hook) are all timed, from the request to its response, and so is every
frame of a serial line (milliseconds apart at any baud rate). The others, answered in microseconds, are sampled by
the byte count the session keeps anyway: a read that starts or crosses a KiB of its transport's bytes (SAMPLE_BYTES)
is timed, from its bytes to its responses; that is the first read, then about one FC03 request in 85. Sampling by a
request counter instead would cost every request another increment and test, about as much as all the rest of the
counting (benchmarks/bench_console.py).

Imports nothing from modbusd, so every room (the session, the bus, the server) may use it.
"""

from bisect import bisect_left
from typing import ClassVar, Final

# Seconds; Prometheus' `le` bounds. From the 10-100 µs of a table's answer to the seconds of a gateway's time-out.
LATENCY_BUCKETS: Final = (
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip
SAMPLE_BYTES: Final = 1024  # a power of two: a read is timed when it starts or crosses a multiple of it
SAMPLE_MASK: Final = SAMPLE_BYTES - 1


class RequestCounts:
    """One transport's requests (tcp, udp, rtu-over-tcp, rtu, ascii): outcomes by function code, bytes, latency.

    `ok[fc]`, `silent[fc]`: requests of function `fc` answered normally, or not answered (a broadcast, listen-only
    mode, a unit id nobody has on a serial line or with ``unknown_unit = "ignore"``, a fault rule's silent, close or
    reset); `exceptions[fc << 8 | code]`: exception responses (a fault rule's ``exception:XX`` too). `bytes_in`:
    every byte received (frames discarded included), `bytes_out`: every byte of the responses made.
    """

    __slots__ = ("bytes_in", "bytes_out", "exceptions", "latency", "latency_sum", "ok", "silent")
    BUCKETS: ClassVar[tuple[float, ...]] = LATENCY_BUCKETS  # for readers that see only the counts (`modbusd.web`)

    def __init__(self) -> None:
        self.ok = [0] * 256
        self.silent = [0] * 256
        self.exceptions: dict[int, int] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; the last one is +Inf
        self.latency_sum = 0.0

    def answered(self, function: int, reply: bytes | None, sent: int) -> None:
        """A request of `function` got `reply` (None: no response), `sent` bytes framed."""
        if reply is None:
            self.silent[function] += 1
        elif reply[0] < 0x80:
            self.ok[function] += 1
        else:  # §7: the function code with its high bit set, then the exception code
            key = function << 8 | (reply[1] if len(reply) > 1 else 0)
            self.exceptions[key] = self.exceptions.get(key, 0) + 1
        self.bytes_out += sent

    def total(self) -> int:
        """Every request counted, whatever its outcome."""
        return sum(self.ok) + sum(self.silent) + sum(self.exceptions.values())

    def observe(self, seconds: float) -> None:
        """One request's latency into its bucket (`le` is inclusive, as Prometheus' buckets are)."""
        self.latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds


class Stats:
    """A server's counters that are not any single object's: requests per transport, connections accepted per
    listener, and frames discarded per serial line (or ``rtu-over-tcp`` for every RTU-over-TCP client)."""

    def __init__(self) -> None:
        self.requests: dict[str, RequestCounts] = {}
        self.accepted: dict[str, int] = {}
        self.discarded: dict[str, int] = {}

    def counts(self, transport: str) -> RequestCounts:
        """The counts sessions of `transport` share; made on first use, so that /metrics shows transports served."""
        counts = self.requests.get(transport)
        if counts is None:
            counts = self.requests[transport] = RequestCounts()
        return counts

    def total(self) -> int:
        """Every request counted, on every transport (the request log's count of what it did not record)."""
        return sum(counts.total() for counts in self.requests.values())

    def accept(self, transport: str) -> None:
        self.accepted[transport] = self.accepted.get(transport, 0) + 1

    def discard(self, line: str) -> None:
        self.discarded[line] = self.discarded.get(line, 0) + 1
