"""Scenario 10: large events. What one consumer holds while it replays a stream of them.

The stream is written first, and read once to the end (the memory store builds its
frames on the first read and shares them); then the peak of Python's traced memory
while one more consumer replays it through ``Subscription.chunks()`` (what
``sse_response`` sends) is compared with the size of the stream itself.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import AsyncIterator

from benchmarks._report import Figure, Report
from resumable_sse import MemoryStore, RedisStore, Streamer, StreamStore


async def _replay_peak(store: StreamStore, count: int, size: int) -> tuple[int, int]:
    """(peak bytes held while one consumer replays, bytes it sent)."""

    async def events() -> AsyncIterator[str]:
        for i in range(count):
            yield chr(97 + i % 26) * size

    async with Streamer(store) as streamer:
        async for _ in streamer.stream("large", events):
            pass
        async for _ in (await streamer.open("large")).chunks():
            pass
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            sent = 0
            async for chunk in (await streamer.open("large")).chunks():
                sent += len(chunk)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    return peak, sent


async def replay(report: Report, redis_url: str, count: int, size: int = 1_000_000) -> None:
    """Peak memory of one consumer replaying ``count`` events of ``size`` bytes."""
    stores: dict[str, StreamStore] = {
        "memory": MemoryStore(),
        "Redis": RedisStore(url=redis_url, prefix=f"large{time.time_ns()}"),
    }
    for label, store in stores.items():
        peak, sent = await _replay_peak(store, count, size)
        report.add(
            Figure(
                "10 large events",
                f"{label}: one consumer replaying {count} x {size / 1e6:g} MB events: peak memory",
                peak / 1e6,
                "MB",
                "the stream's size",
                peak / sent,
            )
        )
