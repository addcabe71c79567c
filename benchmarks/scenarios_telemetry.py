"""The cost of the OpenTelemetry instrumentation: the same work with it on and off.

Off is ``Streamer(telemetry=False)``: the no-op hooks, what a streamer uses without the
``opentelemetry-api`` package. On is the OpenTelemetry SDK with an in-memory metric
reader, without and with an SDK tracer provider (spans recorded, not exported). All
run on the memory store, the fastest, where the instrumentation's share is largest;
rounds alternate (in reversed order every other round), and the ratio (on / off) is the
median of each round's ratio, so that a change of the machine's speed between rounds
cancels out (as in ``scenarios_core``). Times are this process's CPU time, not wall time:
the cost of instrumentation is CPU, and CPU time is far less disturbed by other load on
the machine.
"""

from __future__ import annotations

import dataclasses
import operator
import statistics
import time
import timeit
from collections.abc import AsyncIterator, Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from benchmarks._report import Figure, Report
from resumable_sse import MemoryStore, Streamer
from resumable_sse._telemetry import NO_HOOKS, Hooks

TOKEN = "tokn"


async def _tokens(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield TOKEN


def _off() -> Streamer:
    return Streamer(MemoryStore(), telemetry=False)


# One provider of each kind for the whole run, as in an app: providers created per round
# would pile up (the SDK keeps each alive for its exit hook) and slow the collector.
_METERS = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
_TRACERS = TracerProvider(shutdown_on_exit=False)


def _metrics() -> Streamer:
    return Streamer(MemoryStore(), meter_provider=_METERS, telemetry=True)


def _metrics_and_spans() -> Streamer:
    return Streamer(MemoryStore(), meter_provider=_METERS, tracer_provider=_TRACERS)


VARIANTS: dict[str, Callable[[], Streamer]] = {
    "SDK metrics": _metrics,
    "SDK metrics + spans": _metrics_and_spans,
}


async def _one_long_stream(make: Callable[[], Streamer], n: int) -> float:
    """CPU seconds per event: one stream of ``n`` tokens read by one consumer."""
    async with make() as streamer:
        start = time.process_time()
        count = 0
        async for _ in streamer.stream("long", _tokens(n)):
            count += 1
        elapsed = time.process_time() - start
    assert count == n + 1, count
    return elapsed / n


async def _short_streams(make: Callable[[], Streamer], sessions: int) -> float:
    """CPU seconds per stream: ``sessions`` streams of 20 tokens, each started and read once."""
    async with make() as streamer:
        start = time.process_time()
        for i in range(sessions):
            async for _ in streamer.stream(f"s{i}", _tokens(20)):
                pass
        elapsed = time.process_time() - start
    return elapsed / sessions


class _CountingHooks(Hooks):
    """No-op hooks that count how often each hook is called."""

    def __init__(self) -> None:
        self.calls = 0

    def __getattribute__(self, name: str) -> object:
        if not name.startswith("_") and name != "calls":
            object.__setattr__(self, "calls", object.__getattribute__(self, "calls") + 1)
        return object.__getattribute__(self, name)


async def _noop_share(report: Report, sessions: int, per_stream: float) -> None:
    """What the no-op hooks cost: hook calls per stream x one no-op call's CPU time."""
    hooks = _CountingHooks()
    streamer = Streamer(MemoryStore(), telemetry=False)
    # The streamer's parts hold the hooks they were given; swap in the counting ones.
    streamer._telemetry = hooks
    streamer._settings = dataclasses.replace(streamer._settings, telemetry=hooks)
    streamer._slots._hooks = hooks
    async with streamer:
        for i in range(sessions):
            async for _ in streamer.stream(f"s{i}", _tokens(20)):
                pass
    calls = hooks.calls / sessions
    number = 200_000
    call = min(timeit.repeat(lambda: NO_HOOKS.delivered(1), number=number, repeat=5)) / number
    report.add(
        Figure(
            "telemetry",
            f"no-op hooks: {calls:.0f} calls per 20-token stream, {call * 1e9:.0f} ns each",
            calls * call * 1e6,
            "us",
            f"a stream's CPU with them ({per_stream * 1e6:.1f} us)",
            calls * call / per_stream,
            "<= 0.02x",
            calls * call / per_stream <= 0.02,
        )
    )


async def overhead(report: Report, n: int, sessions: int, rounds: int) -> None:
    """Both workloads, off and each variant on, in alternating rounds; the median of the
    rounds' ratios."""
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
        if run is _short_streams:
            await _noop_share(report, size, base)
        for variant in VARIANTS:
            ours = statistics.median(times[variant])
            ratio = statistics.median(map(operator.truediv, times[variant], times["off"]))
            report.add(
                Figure(
                    "telemetry",
                    f"{variant}: {name}",
                    ours * scale,
                    unit,
                    f"no-op hooks ({base * scale:.1f} {unit})",
                    ratio,
                    f"<= {target}x",
                    ratio <= target,
                )
            )
