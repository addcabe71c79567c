"""Scenarios 4 and 5 over HTTP: fan-out to many consumers, many sessions at an LLM's pace.

Each runs ours and its plain sse-starlette baseline alternately in one server process,
round after round; figures are medians over the rounds, with the server's CPU from /proc.
"""

from __future__ import annotations

import statistics
import time

import anyio
import httpx
from httpx_sse import aconnect_sse

from benchmarks._report import Figure, Report
from benchmarks._server import Server, server
from benchmarks.scenarios_http import APP, read_events


def _client(srv: Server, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections + 10, max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=srv.url, timeout=300, limits=limits)


async def _fan_out_run(
    srv: Server, path: str, consumers: int, params: dict[str, str], expected: int
) -> float:
    """Server CPU for one stream delivered to ``consumers`` clients at once."""
    counts: list[int] = []

    async def consume(client: httpx.AsyncClient) -> None:
        counts.append(await read_events(client, path, params))

    async with _client(srv, consumers) as client:
        before = srv.cpu()
        async with anyio.create_task_group() as tg:
            for _ in range(consumers):
                tg.start_soon(consume, client)
        spent = srv.cpu() - before
    assert counts == [expected] * consumers, (path, sorted(set(counts)))
    return spent


async def fan_out(report: Report, consumer_counts: list[int], n: int, rounds: int) -> None:
    """One n-event stream to many HTTP consumers: ours against a plain broadcast."""
    with server(APP) as srv:
        for consumers in consumer_counts:
            plain, ours = [], []
            first = 0 if consumers == consumer_counts[0] else 1
            for round_ in range(first, rounds + 1):  # round 0 warms both paths up
                params = {"n": str(n), "consumers": str(consumers)}
                topic = {**params, "topic": f"t{consumers}-{round_}"}
                p = await _fan_out_run(srv, "/broadcast", consumers, topic, n)
                session = {**params, "session_id": f"f{consumers}-{round_}"}
                o = await _fan_out_run(srv, "/fan-out", consumers, session, n + 1)
                if round_:
                    plain.append(p)
                    ours.append(o)
            p, o = statistics.median(plain), statistics.median(ours)
            report.add(
                Figure(
                    "4 fan-out HTTP",
                    f"{consumers} consumers x {n:,} events: server CPU per delivered event",
                    o / (consumers * n) * 1e6,
                    "us",
                    "plain sse-starlette broadcast",
                    o / p,
                    "<= 0.2x",
                    o / p <= 0.2,
                )
            )


async def _paced_run(
    srv: Server, path: str, sessions: int, per_session: int, rate: float, tag: str
) -> tuple[float, list[float]]:
    """Server CPU and every token's latency (yield to receipt) for one paced run."""
    latencies: list[float] = []

    async def one(client: httpx.AsyncClient, i: int) -> None:
        params = {"n": str(per_session), "rate": str(rate), "session_id": f"{tag}-{i}"}
        async with aconnect_sse(client, "GET", path, params=params) as source:
            async for event in source.aiter_sse():
                if event.event == "message" and event.data:  # not a keep-alive comment
                    latencies.append(time.monotonic() - float(event.data))

    async with _client(srv, sessions) as client:
        start = time.monotonic()
        before = srv.cpu()
        async with anyio.create_task_group() as tg:
            for i in range(sessions):
                tg.start_soon(one, client, i)
        spent = srv.cpu() - before
    print(f"  {path}: {time.monotonic() - start:.1f} s, server CPU {spent:.2f} s", flush=True)
    assert len(latencies) == sessions * per_session, (path, len(latencies))
    return spent, sorted(latencies)


def _percentile(values: list[float], q: float) -> float:
    return values[min(int(len(values) * q), len(values) - 1)]


async def llm_pace(
    report: Report, sessions: int, seconds: float, rounds: int, rate: float = 30.0
) -> None:
    """Many sessions at an LLM's pace through one worker: CPU and latency against plain."""
    per_session = int(seconds * rate)
    runs: dict[str, list[tuple[float, float, float]]] = {"plain": [], "ours": []}
    with server(APP) as srv:
        for round_ in range(rounds + 1):  # round 0 warms both paths up
            for name, path in (("plain", "/paced-plain"), ("ours", "/paced")):
                tag = f"paced-{round_}"
                cpu, lat = await _paced_run(srv, path, sessions, per_session, rate, tag)
                if round_:
                    runs[name].append((cpu, _percentile(lat, 0.5), _percentile(lat, 0.99)))
    med = {
        name: [statistics.median(run[i] for run in values) for i in range(3)]
        for name, values in runs.items()
    }
    (p_cpu, p_50, p_99), (o_cpu, o_50, o_99) = med["plain"], med["ours"]
    label = f"{sessions} sessions x {rate:.0f} tok/s over HTTP"
    report.add(
        Figure(
            "5 LLM pace",
            f"{label}: server CPU",
            o_cpu / (sessions * per_session) * 1e6,
            "us/token",
            "plain sse-starlette",
            o_cpu / p_cpu,
            "<= 1.1x",
            o_cpu / p_cpu <= 1.1,
        )
    )
    report.add(
        Figure("5 LLM pace", f"{label}: p50 added latency", o_50 * 1e3, "ms", "plain", o_50 / p_50)
    )
    report.add(
        Figure(
            "5 LLM pace",
            f"{label}: p99 added latency",
            o_99 * 1e3,
            "ms",
            "plain sse-starlette",
            o_99 / p_99,
            "<= 2x",
            o_99 / p_99 <= 2,
        )
    )
    report.add(Figure("5 LLM pace", f"{label}: plain p99", p_99 * 1e3, "ms"))
