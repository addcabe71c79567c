"""Scenario 7 (Node): Vercel's ``resumable-stream`` npm package against our Redis store.

The package is installed by npm into ``benchmarks/.node-peers`` (git-ignored) and run by
``vercel_runner.mjs`` on the same redis-server as ours, in the same run: one stream of N
chunks, read by the producer side and by one reader that resumes it, timed from
creating the stream until both readers have every chunk. Rounds alternate between the
two; figures are medians.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from benchmarks._report import Figure, Report
from resumable_sse import RedisStore, Streamer

HERE = Path(__file__).resolve().parent
NODE_PEERS = HERE / ".node-peers"
PACKAGES = ["resumable-stream@2.2.13", "redis@5.10.0"]


def _installed() -> Path:
    stamp = NODE_PEERS / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(PACKAGES):
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise RuntimeError("node and npm are needed for the resumable-stream benchmark")
        NODE_PEERS.mkdir(exist_ok=True)
        (NODE_PEERS / "package.json").write_text('{"private": true}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_PEERS), *PACKAGES],
            check=True,
            capture_output=True,
            timeout=600,
        )
        stamp.write_text(" ".join(PACKAGES))
    return NODE_PEERS


def _vercel_round(url: str, n: int) -> float:
    out = subprocess.run(
        ["node", str(HERE / "vercel_runner.mjs"), url, str(n), "1"],
        cwd=_installed(),
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(out.stdout)
    assert result["received"] == [[4 * n, 4 * n]], result["received"]
    return float(result["seconds"][0])


async def _ours_round(streamer: Streamer, session_id: str, n: int) -> float:
    gate = anyio.Event()

    async def tokens() -> AsyncIterator[str]:
        await gate.wait()
        for _ in range(n):
            yield "tokn"

    counts: list[int] = []

    async def drain(subscription: AsyncIterator[dict[str, str]]) -> None:
        counts.append(sum([event["event"] == "message" async for event in subscription]))

    start = time.perf_counter()
    producer_side = await streamer.open(session_id, tokens)
    resumer = await streamer.open(session_id)
    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, producer_side)
        tg.start_soon(drain, resumer)
        gate.set()
    seconds = time.perf_counter() - start
    assert counts == [n, n], counts
    return seconds


async def vercel(report: Report, url: str, n: int, rounds: int) -> None:
    """N chunks, a producer-side reader and a resuming one: ours against resumable-stream."""
    theirs, ours = [], []
    store = RedisStore(url=url, prefix=f"vs{time.time_ns()}")
    async with store, Streamer(store, max_events=n + 10) as streamer:
        for round_ in range(rounds):
            theirs.append(await anyio.to_thread.run_sync(_vercel_round, url, n))
            ours.append(await _ours_round(streamer, f"vs-{round_}", n))
    t, o = statistics.median(theirs), statistics.median(ours)
    report.add(
        Figure(
            "7 peers",
            f"resumable-stream (npm), {n:,} chunks, producer-side + resuming reader",
            t * 1e3,
            "ms",
        )
    )
    report.add(
        Figure(
            "7 peers",
            f"ours (Redis store), {n:,} chunks, producer-side + resuming reader",
            o * 1e3,
            "ms",
            "resumable-stream (npm)",
            o / t,
        )
    )
