"""``GET /log`` and ``GET /log?follow=1``: the server's live request log as newline-delimited JSON.

``GET /log`` answers the ring of the last records at once (records exist only from while someone followed).
``?follow=1`` keeps the answer open and writes each batch of new records as it comes, at most `BATCHES_PER_SECOND`
batches a second, so that a busy server costs one write per batch, not one per request; an empty line every
`KEEPALIVE` seconds while nothing happens. A follower that falls
more than the request log's queue behind loses the oldest records and gets ``{"dropped": N}`` in their place.
``&per_second=N`` asks for at most N records a second (the console's cap): the requests past it are counted, not
recorded, and the stream says ``{"not_shown": N}`` in their place (`modbusd.traffic`).
The stream ends when the client goes or the API stops (`stop_following`, on the app's shutdown).
"""

import asyncio
import json
from typing import Any

from modbusd import Server

BATCHES_PER_SECOND = 10
CHECK_INTERVAL = 1.0  # seconds between checks that a silent follower is still connected
KEEPALIVE = 5.0  # seconds of silence after which an empty line goes out (`modbusd log` waits 30 s for a byte)
NDJSON = "application/x-ndjson"


def lines(records: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()


class LogStreams:
    """The follow streams of one control API, so that its shutdown can end them all at once."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._stopping = asyncio.Event()

    async def stop_following(self, _app: object = None) -> None:
        """aiohttp's on_shutdown: without it, the runner would wait its shutdown time-out for open streams."""
        self._stopping.set()

    def ring(self) -> bytes:
        return lines(self._server.requests.records())

    async def follow(self, web: Any, request: Any, per_second: int | None = None) -> Any:
        """Stream the log to `request`; `per_second`: at most that many records a second (`modbusd.traffic`)."""
        ready = asyncio.Event()
        response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-store"})
        follower = self._server.requests.follow(ready.set, per_second)
        try:
            await response.prepare(request)
            await response.write(b"")  # the headers go now: the client knows it is following
            written = asyncio.get_running_loop().time()
            while not self._stopping.is_set():
                await self._wait(ready)
                ready.clear()
                records, dropped = follower.take()
                missed = {"dropped": dropped, "not_shown": follower.not_shown()}  # lost, and over the cap
                batch = [{key: count} for key, count in missed.items() if count] + records
                loop_time = asyncio.get_running_loop().time()
                if batch:
                    await response.write(lines(batch))
                    written = loop_time
                    await asyncio.sleep(1 / BATCHES_PER_SECOND)  # what comes meanwhile is the next batch
                elif request.transport is None or request.transport.is_closing():
                    break  # the client went away while nothing happened
                elif loop_time - written >= KEEPALIVE:
                    await response.write(b"\n")  # the client's read time-out learns that the API is still there
                    written = loop_time
        except ConnectionError:  # the client went away while we wrote: nothing more to say to it
            pass
        finally:
            self._server.requests.unfollow(follower)
        return response

    async def _wait(self, ready: asyncio.Event) -> None:
        """Until records are queued, the API stops, or CHECK_INTERVAL passes."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        waiting = asyncio.ensure_future(ready.wait())
        try:
            await asyncio.wait((stopping, waiting), timeout=CHECK_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            waiting.cancel()
