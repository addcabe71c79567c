"""Run every benchmark scenario; print a table, write JSON and an SVG chart.

python -m benchmarks.run            full run (several minutes)
python -m benchmarks.run --quick    every scenario, small (what CI runs)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anyio

from benchmarks import (
    scenarios_aisdk,
    scenarios_browser,
    scenarios_compact,
    scenarios_core,
    scenarios_http,
    scenarios_http_load,
    scenarios_large,
    scenarios_redis,
    scenarios_telemetry,
    scenarios_vercel,
)
from benchmarks._report import Report
from resumable_sse import MemoryStore
from tests.redis_server import RedisServer


async def main_async(quick: bool, only: set[str]) -> Report:
    report = Report(quick=quick)
    n = 2_000 if quick else 10_000
    rounds = 3 if quick else 9
    few = 1  # rounds of the scenarios that take many seconds each (after a warm-up)

    def wanted(name: str) -> bool:
        return not only or name in only

    if wanted("core"):
        await scenarios_core.throughput(report, MemoryStore(), "memory", n)
    with RedisServer() as server:
        if wanted("http"):
            await scenarios_http.end_to_end(report, n)
            await scenarios_http.ladder(report, server.url, n, rounds)
        if wanted("compact"):
            await scenarios_compact.replay(report, server.url, 10_000, rounds)
        if wanted("large"):
            await scenarios_large.replay(report, server.url, 8 if quick else 40)
        if wanted("fanout"):
            counts = [20, 50] if quick else [100, 500]
            await scenarios_http_load.fan_out(report, counts, 200 if quick else 2_000, few)
        if wanted("core"):
            await scenarios_core.resume(report, 10_000 if quick else 100_000)
            await scenarios_core.fan_out(report, 100 if quick else 1_000, 200 if quick else 1_000)
            await scenarios_core.many_sessions(
                report, 100 if quick else 1_000, 1.0 if quick else 5.0
            )
        if wanted("pace"):
            sessions, seconds = (20, 1.0) if quick else (200, 5.0)
            # A paced run's CPU varies by a few percent from run to run: a median of five.
            await scenarios_http_load.llm_pace(report, sessions, seconds, 1 if quick else 5)
        if wanted("core"):
            await scenarios_core.memory(report, 500 if quick else 10_000, 20)
            await scenarios_aisdk.chunks(report, n)
            await scenarios_telemetry.overhead(
                report, n * 5, 200 if quick else 1_000, 5 if quick else 21
            )
            scenarios_browser.parser_chunking(
                report, 1 << (16 if quick else 20), 2_000 if quick else 20_000
            )
        if wanted("redis"):
            await scenarios_redis.redis_and_peers(report, server.url, n)
            await scenarios_redis.redis_memory(report, server.url, n)
        if wanted("vercel"):
            await scenarios_vercel.vercel(report, server.url, 10_000, 1 if quick else 5)
    if wanted("redis"):
        await scenarios_redis.sessions_on_default_pool(
            report, [1, 100] if quick else [1, 100, 1_000]
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated groups: core, http, compact, large, fanout, pace, aisdk, redis,"
        " vercel"
        " (default: all)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), help="output folder"
    )
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    report = anyio.run(main_async, args.quick, only)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "results.json")
    report.write_svg(args.out / "chart.svg")
    (args.out / "results.md").write_text(report.markdown() + "\n")
    print(f"\nwrote {args.out}/results.json, results.md, chart.svg (load: {os.getloadavg()})")


if __name__ == "__main__":
    main()
