"""Scenario 2: end to end over HTTP, against plain sse-starlette (uvicorn in a child process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx
from httpx_sse import aconnect_sse

from benchmarks._report import Figure, Report


@contextmanager
def server(app: str) -> Iterator[str]:
    """uvicorn serving ``app`` on a pre-bound loopback socket handed over by fd."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "warning",
        ],
        pass_fds=[sock.fileno()],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)
        sock.close()


async def _fetch(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    async with aconnect_sse(client, "GET", path, params=params) as source:
        async for _ in source.aiter_sse():
            count += 1
    return time.perf_counter() - start, count


async def end_to_end(report: Report, n: int, rounds: int = 5) -> None:
    with server("benchmarks.http_app:app") as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
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
    p, o = min(plain), min(ours)
    report.add(
        Figure(
            "2 over HTTP",
            f"{n:,} events through uvicorn to httpx-sse",
            o * 1e3,
            "ms",
            "plain sse-starlette",
            o / p,
            "<= 1.15x",
            o / p <= 1.15,
        )
    )


async def sessions_over_http(
    report: Report, sessions: int, seconds: float, rate: float = 30.0
) -> None:
    """Scenario 5 over HTTP: many sessions at an LLM's pace through one uvicorn worker."""
    per_session = int(seconds * rate)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=sessions + 10, max_keepalive_connections=sessions + 10)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        params = {"n": str(per_session), "rate": str(rate), "session_id": f"paced-{i}"}
        async with aconnect_sse(client, "GET", "/paced", params=params) as source:
            async for event in source.aiter_sse():
                if event.event == "message":
                    latencies.append(time.monotonic() - float(event.data))

    with server("benchmarks.http_app:app") as url:
        async with (
            httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client,
            anyio.create_task_group() as tg,
        ):
            for i in range(sessions):
                tg.start_soon(one, client, i)
    assert len(latencies) == sessions * per_session, len(latencies)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    name = f"{sessions} sessions x {rate:.0f} tok/s over HTTP, one worker"
    report.add(Figure("5 sessions", f"{name}: p50 latency", p50, "ms"))
    report.add(Figure("5 sessions", f"{name}: p99 latency", p99, "ms"))
