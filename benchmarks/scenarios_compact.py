"""Compacted replay: resuming a finished stream from the start, compacted against full.

One uvicorn worker in a child process (``benchmarks.http_app``) serves a finished
stream of ``n`` four-byte tokens on the memory and on the Redis store; a client reads
it from the start, with ``Compact-Replay: 1`` and without, alternately, round after
round. Per read: the bytes on the wire, the server's CPU time (from ``/proc``) and the
time until the client has the whole text (httpx-sse parsing). Medians, and the ratios
compacted / full.
"""

from __future__ import annotations

import statistics
import time

import httpx
from httpx_sse import aconnect_sse

from benchmarks._report import Figure, Report
from benchmarks._server import Server, server
from benchmarks.http_app import TOKEN

APP = "benchmarks.http_app:app"
STORES = [("memory", "/ours"), ("Redis", "/ours-redis")]


async def _read(
    client: httpx.AsyncClient, srv: Server, path: str, params: dict[str, str], compact: bool
) -> tuple[int, float, float, str]:
    """(bytes on the wire, server CPU s, seconds until the whole text, the text)."""
    headers = {"Compact-Replay": "1"} if compact else {}
    expected = len(TOKEN) * int(params["n"])
    parts: list[str] = []
    size = 0
    got_text = 0.0
    before = srv.cpu()
    start = time.perf_counter()
    async with aconnect_sse(client, "GET", path, params=params, headers=headers) as source:
        async for event in source.aiter_sse():
            if event.event == "message":
                parts.append(event.data)
                size += len(event.data)
                if size == expected:
                    got_text = time.perf_counter() - start
        wire = source.response.num_bytes_downloaded
    spent = srv.cpu() - before
    return wire, spent, got_text, "".join(parts)


async def replay(report: Report, redis_url: str, n: int, rounds: int) -> None:
    """Resume a finished n-event stream from the start: compacted against full."""
    with server(APP, {"BENCH_REDIS_URL": redis_url}) as srv:
        async with httpx.AsyncClient(base_url=srv.url, timeout=120) as client:
            for store, path in STORES:
                params = {"n": str(n), "session_id": f"compact-{store}"}
                await _read(client, srv, path, params, compact=False)  # runs the stream
                figures: dict[bool, list[tuple[int, float, float]]] = {False: [], True: []}
                for round_ in range(rounds + 1):  # round 0 warms both paths up
                    for compact in (False, True):
                        wire, cpu, seconds, text = await _read(client, srv, path, params, compact)
                        assert text == TOKEN * n, (store, compact, len(text))
                        if round_:
                            figures[compact].append((wire, cpu, seconds))
                _report(report, store, n, figures)


def _report(
    report: Report, store: str, n: int, figures: dict[bool, list[tuple[int, float, float]]]
) -> None:
    names = [
        ("bytes on the wire", "KB", 1e-3),
        ("server CPU", "ms", 1e3),
        ("time until the client has the whole text", "ms", 1e3),
    ]
    for index, (name, unit, scale) in enumerate(names):
        full = statistics.median(f[index] for f in figures[False])
        compacted = statistics.median(f[index] for f in figures[True])
        report.add(
            Figure(
                "9 compacted replay",
                f"{store}: resume {n:,} events from the start: {name}",
                compacted * scale,
                unit,
                "full replay",
                compacted / full,
                "",
                None,
            )
        )
