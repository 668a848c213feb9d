"""GET /metrics counts a request a fault rule answered as its client saw it (docs/metrics.md, docs/faults.md): once in
modbusd_requests_total, an ``exception:XX`` fault under that code in modbusd_exceptions_total, ``silent``, ``close``
and ``reset`` as ``silent`` (no response). Faults that change a response the device made (delay, corrupt, split,
twice) count as that response. Raw sockets on 127.0.0.1, so each request's fate is exact, over Modbus/TCP, RTU over
TCP (the serial bus' addressed answers) and UDP.
"""

import asyncio
import contextlib

from modbusd import Device, Server
from modbusd.protocol.rtu import with_crc
from tests.conftest import HOST, mbap_frame
from tests.test_metrics import TIMEOUT, datagram, generate, labels, of, samples

RULES = (  # Modbus/TCP: one rule per unit id; unit 9 has none
    "transport=tcp unit=1 action=silent",
    "transport=tcp unit=2 action=exception:06",
    "transport=tcp unit=3 action=close",
    "transport=tcp unit=4 action=reset",
    "transport=tcp unit=5 action=delay:20ms",
    "transport=tcp unit=6 action=corrupt:truncate:2",
    "transport=tcp unit=7 action=split:5ms:4",
    "transport=tcp unit=8 action=twice",
    "transport=rtu_over_tcp fc=4 action=exception:0B",  # the bus serves unit 1: FC03 answered, FC04 faulted
    "transport=rtu_over_tcp fc=1 action=silent",
    "transport=udp action=exception:0x0A",
)
READ = "03 0000 0001"  # answered 03 02 0000: 11 bytes with its MBAP header


async def exchange(port: int, data: bytes, answer: int) -> bytes:
    """Send `data` on a new connection, read `answer` bytes, close."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.readexactly(answer), TIMEOUT)
    finally:
        writer.close()


async def closed_without_answer(port: int, unit: int) -> bytes:
    """What a connection reads after one request to `unit` until the server closes or resets it."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(mbap_frame(1, unit, READ))
        with contextlib.suppress(ConnectionResetError):
            return await asyncio.wait_for(reader.read(), TIMEOUT)
        return b"reset"
    finally:
        writer.close()


def test_metrics_count_each_faulted_request_once_with_the_outcome_its_client_saw() -> None:
    async def main() -> str:
        server = Server(Device(), host=HOST, port=0, rtu_over_tcp=0, udp=0)
        for rule in RULES:
            server.faults.add(rule)
        async with server:
            port = server.port
            # silent: nothing for unit 1, then unit 9's answer on the same connection (so the first was handled)
            assert await exchange(port, mbap_frame(1, 1, READ) + mbap_frame(2, 9, READ), 11) == mbap_frame(
                2, 9, "03 02 0000")  # fmt: skip
            assert await exchange(port, mbap_frame(3, 2, READ), 9) == mbap_frame(3, 2, "83 06")
            assert await closed_without_answer(port, 3) == b""  # close: end of file, no response
            assert await closed_without_answer(port, 4) in (b"", b"reset")  # reset: RST (seen as EOF if it won)
            assert await exchange(port, mbap_frame(5, 5, READ), 11) == mbap_frame(5, 5, "03 02 0000")
            assert await exchange(port, mbap_frame(6, 6, READ), 9) == mbap_frame(6, 6, "03 02 0000")[:9]
            assert await exchange(port, mbap_frame(7, 7, READ), 11) == mbap_frame(7, 7, "03 02 0000")
            assert await exchange(port, mbap_frame(8, 8, READ), 22) == 2 * mbap_frame(8, 8, "03 02 0000")
            rtu = server.rtu_over_tcp_port
            assert rtu is not None
            read, fc4, fc1 = (with_crc(bytes.fromhex(f"01 {pdu}")) for pdu in ("03 0000 0001", "04 0000 0001",
                                                                               "01 0000 0001"))  # fmt: skip
            # FC01 silent, then FC04 answered by the fault's exception, then FC03 as usual: 5 + 7 bytes
            assert await exchange(rtu, fc1 + fc4 + read, 12) == with_crc(bytes.fromhex("01 84 0B")) + with_crc(
                bytes.fromhex("01 03 02 0000"))  # fmt: skip
            assert await asyncio.to_thread(datagram, server.udp_port, mbap_frame(9, 1, READ)) == mbap_frame(
                9, 1, "83 0A")  # fmt: skip
            return generate(server)

    found = samples(asyncio.run(main()))
    assert of(found, "modbusd_requests_total") == {
        labels(transport="tcp", function="3", outcome="ok"): 5,  # unit 9, and the delayed, cut, split and twice ones
        labels(transport="tcp", function="3", outcome="exception"): 1,  # exception:06
        labels(transport="tcp", function="3", outcome="silent"): 3,  # silent, close, reset
        labels(transport="rtu-over-tcp", function="3", outcome="ok"): 1,
        labels(transport="rtu-over-tcp", function="4", outcome="exception"): 1,
        labels(transport="rtu-over-tcp", function="1", outcome="silent"): 1,
        labels(transport="udp", function="3", outcome="exception"): 1,
    }
    assert of(found, "modbusd_exceptions_total") == {
        labels(transport="tcp", function="3", code="6"): 1,
        labels(transport="rtu-over-tcp", function="4", code="11"): 1,
        labels(transport="udp", function="3", code="10"): 1,
    }
    # what each response was made of: the faults that change one count it as made (5 x 11, twice's and the cut one's
    # too), an exception fault its 9 bytes, a silent, closed or reset one nothing
    assert of(found, "modbusd_sent_bytes_total") == {labels(transport="tcp"): 5 * 11 + 9,
                                                     labels(transport="rtu-over-tcp"): 5 + 7,
                                                     labels(transport="udp"): 9}  # fmt: skip
    assert of(found, "modbusd_fault_applied_total") == {labels(rule=str(n)): 1 for n in range(1, len(RULES) + 1)}
