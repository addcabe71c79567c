"""Small helpers shared by the streamer, seed-regression and end-to-end suites.

:class:`Script` is a generator the test drives by hand: progress happens when the test
says so, never after a delay, so no test has to sleep or poll.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence

import anyio
import httpx

from tests.sse import ServerSentEvent, aconnect_sse

Event = dict[str, str]


class Script:
    """An LLM stand-in: yields one chunk of items, then waits until the test releases the next.

    Calling the script (it is a zero-argument callable) or :meth:`generate` makes a fresh
    async generator; ``runs`` counts how many of them actually started, ``closed`` says
    whether one ran its ``finally`` block (closed, cancelled or finished).
    """

    def __init__(self, *chunks: Sequence[object], fail: Exception | None = None) -> None:
        self.chunks = [list(chunk) for chunk in chunks]
        self.fail = fail
        self.runs = 0
        self.closed = False
        self.yielded: list[object] = []
        self._gates = [anyio.Event() for _ in self.chunks[1:]]
        self._released = 0

    def release(self) -> None:
        """Let the generator go on to its next chunk."""
        self._gates[self._released].set()
        self._released += 1

    def release_all(self) -> None:
        """Let the generator run to its end."""
        while self._released < len(self._gates):
            self.release()

    def __call__(self) -> AsyncIterator[object]:
        return self.generate()

    async def generate(self) -> AsyncIterator[object]:
        """The generator itself."""
        self.runs += 1
        try:
            for index, chunk in enumerate(self.chunks):
                if index:
                    await self._gates[index - 1].wait()
                for item in chunk:
                    self.yielded.append(item)
                    yield item
            if self.fail is not None:
                raise self.fail
        finally:
            self.closed = True


async def take(events: AsyncIterator[Event], count: int) -> list[Event]:
    """The next ``count`` events of a subscription (which stays open for more)."""
    return [await events.__anext__() for _ in range(count)]


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    """Every remaining event of a subscription, up to and including the terminal one."""
    return [event async for event in events]


def datas(events: Iterable[Event]) -> list[str]:
    """The data of each event."""
    return [event["data"] for event in events]


def names(events: Iterable[Event]) -> list[str]:
    """The event name of each event."""
    return [event["event"] for event in events]


def error_of(event: Event) -> dict[str, str]:
    """The JSON body of an ``error`` event."""
    assert event["event"] == "error", event
    body = json.loads(event["data"])
    assert isinstance(body, dict)
    return body


#: The names of the events that end a stream (the defaults).
TERMINAL = frozenset({"end", "error", "cancelled"})


async def read_events(
    http: httpx.AsyncClient, url: str, *, last_id: str | None = None, count: int | None = None
) -> list[ServerSentEvent]:
    """One request: events until the response ends (or ``count`` of them), from ``last_id``.

    Raises:
        httpx.HTTPStatusError: the server refused the stream.
    """
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events: list[ServerSentEvent] = []
    async with aconnect_sse(http, "GET", url, headers=headers) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            source.response.raise_for_status()
        async for event in source.aiter_sse():
            events.append(event)
            if len(events) == count:
                break
    return events
