"""Scenario 2: end to end over HTTP, against plain sse-starlette (uvicorn in a child process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
