"""The cost of the OpenTelemetry instrumentation: the same work with it on and off.

Off is ``Streamer(telemetry=False)``: the no-op hooks, what a streamer uses without the
``opentelemetry-api`` package. On is the OpenTelemetry SDK with an in-memory metric
reader, without and with an SDK tracer provider (spans recorded, not exported). All
run on the memory store, the fastest, where the instrumentation's share is largest;
rounds alternate (in reversed order every other round) and the medians are compared,
as a ratio (on / off).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from benchmarks._report import Figure, Report
from resumable_sse import MemoryStore, Streamer

TOKEN = "tokn"


async def _tokens(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield TOKEN


def _off() -> Streamer:
    return Streamer(MemoryStore(), telemetry=False)


def _metrics() -> Streamer:
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Streamer(MemoryStore(), meter_provider=meters, telemetry=True)


def _metrics_and_spans() -> Streamer:
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Streamer(MemoryStore(), meter_provider=meters, tracer_provider=TracerProvider())


VARIANTS: dict[str, Callable[[], Streamer]] = {
    "SDK metrics": _metrics,
    "SDK metrics + spans": _metrics_and_spans,
}


async def _one_long_stream(make: Callable[[], Streamer], n: int) -> float:
    """Seconds per event: one stream of ``n`` tokens read by one consumer."""
    async with make() as streamer:
        start = time.perf_counter()
        count = 0
        async for _ in streamer.stream("long", _tokens(n)):
            count += 1
        elapsed = time.perf_counter() - start
    assert count == n + 1, count
    return elapsed / n


async def _short_streams(make: Callable[[], Streamer], sessions: int) -> float:
    """Seconds per stream: ``sessions`` streams of 20 tokens, each started and read once."""
    async with make() as streamer:
        start = time.perf_counter()
        for i in range(sessions):
            async for _ in streamer.stream(f"s{i}", _tokens(20)):
                pass
        elapsed = time.perf_counter() - start
    return elapsed / sessions


async def overhead(report: Report, n: int, sessions: int, rounds: int) -> None:
    """Both workloads, off and each variant on, in alternating rounds; medians' ratios."""
    workloads = {
        "per event, one long stream": (_one_long_stream, n, 1e9, "ns", 1.05),
        "per stream, 20-token streams": (_short_streams, sessions, 1e6, "us", 1.5),
    }
    for name, (run, size, scale, unit, target) in workloads.items():
        times: dict[str, list[float]] = {"off": [], **{v: [] for v in VARIANTS}}
        makers = {"off": _off, **VARIANTS}
        for i in range(rounds):
            order = list(makers) if i % 2 == 0 else list(reversed(makers))
            for variant in order:
                times[variant].append(await run(makers[variant], size))
        base = statistics.median(times["off"])
        for variant in VARIANTS:
            ours = statistics.median(times[variant])
            report.add(
                Figure(
                    "telemetry",
                    f"{variant}: {name}",
                    ours * scale,
                    unit,
                    f"no-op hooks ({base * scale:.1f} {unit})",
                    ours / base,
                    f"<= {target}x",
                    ours / base <= target,
                )
            )
