"""Run every benchmark scenario; print a table, write JSON and an SVG chart.

python -m benchmarks.run            full run (several minutes)
python -m benchmarks.run --quick    every scenario, small (what CI runs)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from benchmarks import (
    scenarios_aisdk,
    scenarios_browser,
    scenarios_core,
    scenarios_http,
    scenarios_redis,
    scenarios_telemetry,
)
from benchmarks._report import Report
from resumable_sse import MemoryStore
from tests.redis_server import RedisServer


async def main_async(quick: bool) -> Report:
    report = Report(quick=quick)
    n = 2_000 if quick else 10_000
    await scenarios_core.throughput(report, MemoryStore(), "memory", n)
    await scenarios_http.end_to_end(report, n)
    await scenarios_core.resume(report, 10_000 if quick else 100_000)
    await scenarios_core.fan_out(report, 100 if quick else 1_000, 200 if quick else 1_000)
    await scenarios_core.many_sessions(report, 100 if quick else 1_000, 1.0 if quick else 5.0)
    await scenarios_http.sessions_over_http(report, 20 if quick else 200, 1.0 if quick else 5.0)
    await scenarios_core.memory(report, 500 if quick else 10_000, 20)
    await scenarios_aisdk.chunks(report, n)
    await scenarios_telemetry.overhead(report, n * 5, 200 if quick else 1_000, 5 if quick else 9)
    scenarios_browser.parser_chunking(
        report, 1 << (16 if quick else 20), 2_000 if quick else 20_000
    )
    with RedisServer() as server:
        await scenarios_redis.redis_and_peers(report, server.url, n)
        await scenarios_redis.redis_memory(report, server.url, n)
    await scenarios_redis.sessions_on_default_pool(report, [1, 100] if quick else [1, 100, 1_000])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), help="output folder"
    )
    args = parser.parse_args()
    report = anyio.run(main_async, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "results.json")
    report.write_svg(args.out / "chart.svg")
    (args.out / "results.md").write_text(report.markdown() + "\n")
    print(f"\nwrote {args.out}/results.json, results.md, chart.svg")


if __name__ == "__main__":
    main()
