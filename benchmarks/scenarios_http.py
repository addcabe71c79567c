"""Scenario 2: over HTTP, one uvicorn worker in a child process, against its baselines.

Server CPU is read from ``/proc`` around each run (see ``_server``); the rungs of the
ladder run alternately, round after round, and each figure is the median of its rounds.
"""

from __future__ import annotations

import statistics
import time

import httpx
from httpx_sse import aconnect_sse

from benchmarks._report import Figure, Report
from benchmarks._server import server

APP = "benchmarks.http_app:app"

#: (name, path, extra events: ours ends with its terminal event)
LADDER = [
    ("raw ASGI, one bytes blob", "/raw-blob", 0),
    ("raw ASGI, one send() per SSE frame", "/raw-frames", 0),
    ("plain sse-starlette over the generator", "/plain", 0),
    ("sse_response, memory store", "/ours", 1),
    ("sse_response, Redis store", "/ours-redis", 1),
]


class Counter:
    """Counts events in a body read in arbitrary chunks: every event sent here has an
    ``event`` field after its ``id`` (keep-alive comments have neither)."""

    MARK = b"\r\nevent: "

    def __init__(self) -> None:
        self.events = 0
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        self.events += data.count(self.MARK)
        self._tail = data[-len(self.MARK) + 1 :]


async def read_events(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> int:
    """Read a stream's raw body to its end; return the number of events in it."""
    counter = Counter()
    async with client.stream("GET", path, params=params) as response:
        assert response.status_code == 200, (path, response.status_code)
        async for chunk in response.aiter_raw():
            counter.feed(chunk)
    return counter.events


async def _fetch(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    async with aconnect_sse(client, "GET", path, params=params) as source:
        async for _ in source.aiter_sse():
            count += 1
    return time.perf_counter() - start, count


async def end_to_end(report: Report, n: int, rounds: int = 5) -> None:
    """Wall time to deliver n events to an httpx-sse client, ours against plain."""
    with server(APP) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
            await _fetch(client, "/plain", {"n": "10"})  # warm up both paths
            await _fetch(client, "/ours", {"n": "10", "session_id": "warm"})
            plain, ours = [], []
            for i in range(rounds):
                t, count = await _fetch(client, "/plain", {"n": str(n)})
                assert count == n
                plain.append(t)
                t, count = await _fetch(client, "/ours", {"n": str(n), "session_id": f"e2e-{i}"})
                assert count == n + 1  # and the terminal event
                ours.append(t)
    p, o = statistics.median(plain), statistics.median(ours)
    report.add(
        Figure(
            "2 over HTTP",
            f"{n:,} events through uvicorn to httpx-sse (wall)",
            o * 1e3,
            "ms",
            "plain sse-starlette",
            o / p,
            "<= 1.15x",
            o / p <= 1.15,
        )
    )


async def ladder(report: Report, redis_url: str, n: int, rounds: int) -> None:
    """Server CPU per event, n small events to one client: from raw ASGI up to ours."""
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in LADDER}
    with server(APP, {"BENCH_REDIS_URL": redis_url}) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=120) as client:
            for round_ in range(rounds + 1):  # round 0 warms every path up
                for name, path, extra in LADDER:
                    params = {"n": str(n), "session_id": f"ladder-{round_}"}
                    before = srv.cpu()
                    count = await read_events(client, path, params)
                    spent = srv.cpu() - before
                    assert count == n + extra, (name, count)
                    if round_:
                        cpu[name].append(spent / n)
    plain = statistics.median(cpu[LADDER[2][0]])
    for name, _, _ in LADDER:
        per_event = statistics.median(cpu[name])
        ours = name.startswith("sse_response")
        report.add(
            Figure(
                "2 HTTP ladder",
                f"{name}: server CPU per event",
                per_event * 1e6,
                "us",
                "plain sse-starlette",
                per_event / plain,
                "<= 0.1x" if ours else "",
                per_event / plain <= 0.1 if ours else None,
            )
        )
