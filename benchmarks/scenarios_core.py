"""In-process scenarios on the memory store: throughput, resume, fan-out, many sessions, memory."""

from __future__ import annotations

import gc
import operator
import statistics
import time
import tracemalloc
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel

from benchmarks._report import Figure, Report
from resumable_sse import MemoryStore, Streamer, StreamStore

TOKEN = "tokn"  # 4 bytes


async def tokens(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield TOKEN


async def _bare(n: int) -> float:
    start = time.perf_counter()
    async for _ in tokens(n):
        pass
    return time.perf_counter() - start


async def _plain_sse(n: int) -> float:
    """What a non-resumable endpoint does per token: build the event dict."""
    start = time.perf_counter()
    seq = 0
    async for token in tokens(n):
        seq += 1
        _ = {"id": str(seq), "event": "message", "data": token}
    return time.perf_counter() - start


async def _pipeline(streamer: Streamer, session_id: str, n: int) -> float:
    start = time.perf_counter()
    count = 0
    async for _ in streamer.stream(session_id, tokens(n)):
        count += 1
    elapsed = time.perf_counter() - start
    assert count == n + 1, count
    return elapsed


async def throughput(
    report: Report, store: StreamStore, label: str, n: int, rounds: int = 25
) -> None:
    """Scenario 1: n small tokens through producer -> store -> one consumer.

    Ratios are the median of per-round ratios: each round times the three forms back to
    back (in rotating order), so a change of the machine's speed between rounds (seen
    here: 2x, for tens of milliseconds at a time) cancels out.
    """
    async with Streamer(store) as streamer:
        forms = {
            "bare": lambda i: _bare(n),
            "plain": lambda i: _plain_sse(n),
            "ours": lambda i: _pipeline(streamer, f"tp-{label}-{i}", n),
        }
        times: dict[str, list[float]] = {name: [] for name in forms}
        for i in range(rounds):
            names = list(forms)
            for name in names[i % 3 :] + names[: i % 3]:
                times[name].append(await forms[name](i))
    bare, plain, ours = times["bare"], times["plain"], times["ours"]
    o = statistics.median(ours)
    vs_bare = statistics.median(map(operator.truediv, ours, bare))
    vs_plain = statistics.median(map(operator.truediv, ours, plain))
    report.add(
        Figure(
            "1 throughput",
            f"{label}: ns per event, seed form (dicts)",
            o / n * 1e9,
            "ns",
            "bare iteration",
            vs_bare,
        )
    )
    report.add(
        Figure(
            "1 throughput",
            f"{label}: seed form vs plain SSE dicts",
            o / n * 1e9,
            "ns",
            "iteration + event dict",
            vs_plain,
            "<= 2x",
            vs_plain <= 2,
        )
    )
    report.add(Figure("1 throughput", f"{label}: events per second", n / o, "ev/s"))


async def resume(report: Report, n: int) -> None:
    """Scenario 3: reconnect into a finished stream of n events from start, middle, end."""
    async with Streamer(MemoryStore(), max_events=n + 10) as streamer:
        async for _ in streamer.stream("resume", tokens(n)):
            pass
        incarnation = (await streamer.status("resume")).last_event_id or ""
        prefix = incarnation.rsplit("-", 1)[0]
        results: dict[str, tuple[float, float]] = {}
        for where, seq in (("start", 0), ("middle", n // 2), ("end", n - 1)):
            last_id = f"{prefix}-{seq}" if seq else None
            # Time to first event and to last are measured in separate runs: draining a
            # long stream frees enough memory that the allocator's cost after it would
            # otherwise be charged to the next run's first event.
            best_first = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                sub = await streamer.open("resume", last_id=last_id)
                await sub.__anext__()
                best_first = min(best_first, time.perf_counter() - start)
                await sub.aclose()
            best_last = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                async for _ in await streamer.open("resume", last_id=last_id):
                    pass
                best_last = min(best_last, time.perf_counter() - start)
            results[where] = (best_first, best_last)
    firsts = [v[0] for v in results.values()]
    spread = max(firsts) / min(firsts)
    for where, (first, last) in results.items():
        report.add(
            Figure("3 resume", f"{n:,} events, from {where}: first event", first * 1e6, "us")
        )
        report.add(Figure("3 resume", f"{n:,} events, from {where}: last event", last * 1e3, "ms"))
    report.add(
        Figure(
            "3 resume",
            "time to first event, max/min over positions",
            spread,
            "x",
            "start vs middle vs end",
            spread,
            "<= 2x",
            spread <= 2,
        )
    )


async def fan_out(report: Report, consumers: int, n: int) -> None:
    """Scenario 4: one live stream, many concurrent consumers."""
    gate = anyio.Event()

    async def paced() -> AsyncIterator[str]:
        await gate.wait()
        for i in range(n):
            yield TOKEN
            if i % 10 == 9:
                await anyio.lowlevel.checkpoint()

    received = 0

    async def consume(streamer: Streamer) -> None:
        nonlocal received
        async for _ in streamer.resume("fan"):
            received += 1

    store = MemoryStore()
    async with Streamer(store, max_events=n + 10, max_consumers_per_session=consumers) as streamer:
        await streamer.start("fan", paced)
        async with anyio.create_task_group() as tg:
            for _ in range(consumers):
                tg.start_soon(consume, streamer)
            await anyio.wait_all_tasks_blocked()
            cpu0, t0 = time.process_time(), time.perf_counter()
            gate.set()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert received == consumers * (n + 1)
    report.add(
        Figure("4 fan-out", f"{consumers} consumers x {n} events: all delivered", wall * 1e3, "ms")
    )
    report.add(Figure("4 fan-out", "CPU per delivered event", cpu / received * 1e9, "ns"))


async def many_sessions(report: Report, sessions: int, seconds: float, rate: float = 30.0) -> None:
    """Scenario 5: many sessions at an LLM's pace; latency from yield to receipt."""
    latencies: list[float] = []
    per_session = int(seconds * rate)

    async def llm() -> AsyncIterator[str]:
        for _ in range(per_session):
            await anyio.sleep(1 / rate)
            yield repr(time.perf_counter())

    async def client(streamer: Streamer, i: int) -> None:
        async for event in streamer.stream(f"many-{i}", llm):
            if event["event"] == "message":
                latencies.append(time.perf_counter() - float(event["data"]))

    store = MemoryStore(max_streams=sessions + 10)
    async with Streamer(store) as streamer, anyio.create_task_group() as tg:
        for i in range(sessions):
            tg.start_soon(client, streamer, i)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    report.add(
        Figure(
            "5 sessions", f"{sessions} sessions x {rate:.0f} tok/s: p50 added latency", p50, "ms"
        )
    )
    report.add(
        Figure(
            "5 sessions",
            f"{sessions} sessions x {rate:.0f} tok/s: p99 added latency",
            p99,
            "ms",
            target="< 20 ms",
            met=p99 < 20,
        )
    )
    report.add(Figure("5 sessions", "events delivered", len(latencies), "events"))


async def memory(report: Report, sessions: int, events_per_session: int) -> None:
    """Scenario 6: bytes per stored event and per finished session (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    store = MemoryStore(max_streams=sessions + 10)
    async with Streamer(store) as streamer:
        base = tracemalloc.get_traced_memory()[0]
        async for _ in streamer.stream("big", tokens(100_000)):
            pass
        gc.collect()
        per_event = (tracemalloc.get_traced_memory()[0] - base) / 100_001
        await streamer.delete("big")
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(sessions):
            async for _ in streamer.stream(f"m{i}", tokens(events_per_session)):
                pass
        gc.collect()
        per_session = (tracemalloc.get_traced_memory()[0] - base) / sessions
    tracemalloc.stop()
    report.add(Figure("6 memory", "memory store: bytes per stored 4-byte event", per_event, "B"))
    report.add(
        Figure(
            "6 memory",
            f"memory store: bytes per finished session ({events_per_session} events)",
            per_session,
            "B",
        )
    )
