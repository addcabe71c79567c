"""The AI SDK adapter's cost per token, beside the plain pipeline in the same run."""

from __future__ import annotations

import time

from benchmarks._report import Figure, Report
from benchmarks.scenarios_core import tokens
from resumable_sse import MemoryStore, Streamer
from resumable_sse.aisdk import sse_events, ui_message_chunks


async def _plain(streamer: Streamer, session_id: str, n: int) -> float:
    start = time.perf_counter()
    async with await streamer.open(session_id, tokens(n)) as subscription:
        count = sum([1 async for _ in subscription])
    assert count == n + 1, count
    return time.perf_counter() - start


async def _ai_sdk(streamer: Streamer, session_id: str, n: int) -> float:
    """Items wrapped as UI message chunks, read back as the SSE events the client gets."""
    start = time.perf_counter()
    source = ui_message_chunks(tokens(n), message_id="m")
    async with await streamer.open(session_id, source) as subscription:
        events = [e async for e in sse_events(subscription, streamer.terminal_events)]
    assert len(events) == n + 5, len(events)  # start, text-start, text-end, finish, [DONE]
    return time.perf_counter() - start


async def chunks(report: Report, n: int, rounds: int = 5) -> None:
    """n tokens through producer -> store -> consumer, as UI message chunks and plain."""
    plain, ours = [], []
    async with Streamer(MemoryStore(), max_events=n + 10) as streamer:
        for i in range(rounds):
            plain.append(await _plain(streamer, f"plain-{i}", n))
            ours.append(await _ai_sdk(streamer, f"aisdk-{i}", n))
    p, o = min(plain), min(ours)
    report.add(
        Figure(
            "AI SDK chunks",
            "memory: ns per token",
            o / n * 1e9,
            "ns",
            "the same tokens, plain events",
            o / p,
        )
    )
