"""Scenarios on a real redis-server (started here, on a free port): ours and the peers'.

The peers (the seed package ``resumable-sse`` 0.1.0 and ``resumable-stream`` 0.2.0) are
installed by this module into their own venv, ``benchmarks/.peers-venv``, and run there
by ``peer_runner.py`` against the same server in the same run.
"""

from __future__ import annotations

import json
import subprocess
import time
import venv
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from redis.asyncio import Redis

from benchmarks._report import Figure, Report
from resumable_sse import RedisStore, ResumableSSEError, Streamer
from tests.redis_server import RedisServer

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".peers-venv"
PEERS = ["resumable-sse==0.1.0", "resumable-stream==0.2.0", "redis>=5"]


def peers_python() -> Path:
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(PEERS):
        venv.EnvBuilder(with_pip=True, clear=True).create(PEERS_VENV)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *PEERS], check=True)
        stamp.write_text(" ".join(PEERS))
    return python


def run_peers(url: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [peers_python(), "-I", HERE / "peer_runner.py", url, str(n)],
        check=True,
        capture_output=True,
        text=True,
        cwd="/",  # so that the seed package, not this repo, is what `resumable_sse` names
    )
    return dict(json.loads(out.stdout))


async def _commands(client: Redis) -> int:
    info = await client.info("commandstats")
    return sum(int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_"))


async def tokens(n: int) -> AsyncIterator[str]:
    for _ in range(n):
        yield "tokn"


async def ours(url: str, n: int) -> dict[str, Any]:
    """Our Redis store on the peers' two scenarios."""
    client = Redis.from_url(url)
    out: dict[str, Any] = {}
    async with Streamer(RedisStore(client, prefix=f"bench{time.time_ns()}")) as streamer:
        await client.config_resetstat()
        start = time.perf_counter()
        count = 0
        async for _ in streamer.stream("tp", tokens(n)):
            count += 1
        seconds = time.perf_counter() - start
        out["throughput_redis"] = {
            "seconds": seconds,
            "events": count,
            "commands": await _commands(client) - 1,
        }
        runs = 0

        async def paced() -> AsyncIterator[str]:
            nonlocal runs
            runs += 1
            for _ in range(50):
                yield "tokn"
                await anyio.sleep(0.002)

        counts: list[int] = []

        async def reader() -> None:
            got = 0
            async for event in streamer.stream("three", paced()):
                got += event["event"] == "message"
            counts.append(got)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(reader)
        out["three_clients_redis"] = {
            "events_per_client": counts,
            "generator_runs": runs,
            "expected": 50,
        }
    await client.aclose()
    return out


def _correct(result: dict[str, Any]) -> str:
    counts = result["events_per_client"]
    ok = all(c == result["expected"] for c in counts) and result["generator_runs"] == 1
    verdict = "correct" if ok else "WRONG"
    return f"{verdict}: events per client {counts}, generator runs {result['generator_runs']}"


async def redis_and_peers(report: Report, url: str, n: int) -> None:
    mine = await ours(url, n)
    peers = await anyio.to_thread.run_sync(run_peers, url, n)
    tp = mine["throughput_redis"]
    per_event = tp["commands"] / tp["events"]
    report.add(Figure("1 throughput", "redis: ns per event", tp["seconds"] / n * 1e9, "ns"))
    report.add(Figure("1 throughput", "redis: events per second", n / tp["seconds"], "ev/s"))
    report.add(
        Figure(
            "1 throughput",
            "redis: commands per event",
            per_event,
            "cmd",
            target="< 0.1",
            met=per_event < 0.1,
        )
    )
    seed = peers["resumable-sse 0.1.0"]["throughput_redis"]
    speedup = seed["seconds"] / tp["seconds"]
    report.add(
        Figure(
            "7 peers",
            "redis: time, ours / seed resumable-sse 0.1.0",
            speedup,
            "x faster",
            "resumable-sse 0.1.0",
            1 / speedup,
            ">= 20x faster",
            speedup >= 20,
        )
    )
    report.add(
        Figure(
            "7 peers", "redis: seed commands per event", seed["commands"] / seed["events"], "cmd"
        )
    )
    rs = peers["resumable-stream 0.2.0"]["throughput_redis"]
    report.add(
        Figure(
            "7 peers",
            "redis: resumable-stream 0.2.0 (first reader bypasses Redis)",
            rs["seconds"] / max(rs["events"], 1) * 1e9,
            "ns",
        )
    )
    seed_mem = peers["resumable-sse 0.1.0"]["throughput_memory"]
    report.add(
        Figure(
            "7 peers",
            "memory: seed resumable-sse 0.1.0 ns per event",
            seed_mem["seconds"] / seed_mem["events"] * 1e9,
            "ns",
        )
    )
    for name, result in [
        ("ours (redis)", mine["three_clients_redis"]),
        ("seed memory", peers["resumable-sse 0.1.0"]["three_clients_memory"]),
        ("seed redis", peers["resumable-sse 0.1.0"]["three_clients_redis"]),
        ("resumable-stream", peers["resumable-stream 0.2.0"]["three_clients_redis"]),
    ]:
        report.add(
            Figure(
                "7 peers",
                f"3 clients, {name}: {_correct(result)}",
                sum(result["events_per_client"]),
                "events",
            )
        )


async def redis_memory(report: Report, url: str, n: int) -> None:
    """Scenario 6 (Redis): MEMORY USAGE of one finished stream, per event."""
    client = Redis.from_url(url)
    store = RedisStore(client, prefix=f"mem{time.time_ns()}")
    async with Streamer(store) as streamer:
        async for _ in streamer.stream("mem", tokens(n)):
            pass
    used = 0
    for key in store.keys("mem"):
        used += int(await client.memory_usage(key, samples=0) or 0)
    report.add(
        Figure(
            "6 memory", "redis: bytes per stored 4-byte event (MEMORY USAGE)", used / (n + 1), "B"
        )
    )
    await client.aclose()


# -- many concurrent sessions on redis-py's default connection pool ----------------------

SESSION_TOKENS = 50
SESSIONS_DEADLINE = 90.0  # seconds: a run that fails (on an unfit store) still ends


def _session_tokens(i: int) -> list[str]:
    return [f"s{i}t{j} " for j in range(SESSION_TOKENS)]


async def _peak_clients(admin: Redis, peak: list[int], stop: anyio.Event) -> None:
    """Sample ``connected_clients`` (minus this sampler's own connection) until ``stop``."""
    while not stop.is_set():
        info = await admin.info("clients")
        peak[0] = max(peak[0], int(info["connected_clients"]) - 1)
        with anyio.move_on_after(0.02):  # a sampling period, not a wait for a result
            await stop.wait()


async def _one_session(streamer: Streamer, i: int, exact: list[int]) -> None:
    tokens = _session_tokens(i)

    async def source() -> AsyncIterator[str]:
        for token in tokens:
            yield token

    try:
        data = [event["data"] async for event in streamer.stream(f"s{i}", source())]
    except ResumableSSEError:  # counted as not exact: the store failed this session
        return
    if data == [*tokens, ""]:
        exact[0] += 1


async def concurrent_sessions(
    url: str, sessions: int, max_connections: int | None = None
) -> dict[str, Any]:
    """``sessions`` concurrent streams of 50 tokens, one reader each.

    By default on redis-py's default pool (100 connections; at its limit it raises
    instead of waiting). One session runs first, unmeasured, so that one-time costs
    (loading the scripts, the first connections) are not counted.
    """
    admin = Redis.from_url(url)
    client = Redis.from_url(url, max_connections=max_connections)
    exact, peak = [0], [0]
    store = RedisStore(client, prefix=f"many{time.time_ns()}")
    stop = anyio.Event()
    async with Streamer(store) as streamer, anyio.create_task_group() as sampler:
        await _one_session(streamer, -1, [0])  # the warm-up
        await admin.config_resetstat()
        sampler.start_soon(_peak_clients, admin, peak, stop)
        start = time.perf_counter()
        with anyio.move_on_after(SESSIONS_DEADLINE):
            async with anyio.create_task_group() as tg:
                for i in range(sessions):
                    tg.start_soon(_one_session, streamer, i, exact)
        seconds = time.perf_counter() - start
        stop.set()
    await store.aclose()
    stats = await admin.info("commandstats")
    commands = sum(
        int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config")
    )
    await client.aclose()
    await admin.aclose()
    events = sessions * (SESSION_TOKENS + 1)
    return {
        "sessions": sessions,
        "exact": exact[0],
        "seconds": seconds,
        "events_per_second": exact[0] * (SESSION_TOKENS + 1) / seconds,
        "commands_per_event": commands / events,
        "peak_connections": peak[0],
    }


async def sessions_on_default_pool(report: Report, counts: list[int]) -> None:
    """1 / 100 / 1,000 concurrent sessions x 50 tokens on redis-py's default pool."""
    for sessions in counts:
        with RedisServer() as server:  # a server of its own: its counters are ours alone
            result = await concurrent_sessions(server.url, sessions)
        name = f"redis, {sessions} sessions x {SESSION_TOKENS} tokens"
        exact = result["exact"] == sessions
        report.add(
            Figure(
                "8 sessions",
                f"{name}: exact ({result['exact']}/{sessions})",
                result["exact"],
                "sessions",
                target=f"{sessions}/{sessions}",
                met=exact,
            )
        )
        report.add(Figure("8 sessions", f"{name}: events/s", result["events_per_second"], "ev/s"))
        report.add(
            Figure("8 sessions", f"{name}: commands/event", result["commands_per_event"], "cmd")
        )
        peak = result["peak_connections"]
        report.add(
            Figure(
                "8 sessions",
                f"{name}: peak connections",
                peak,
                "conn",
                target="<= 64",
                met=peak <= 64,
            )
        )
