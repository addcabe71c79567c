"""The browser client's SSE parser under Node, fed in small chunks.

- A long line in 256-byte chunks must not be rescanned on each one (that made it
  quadratic): the time per MiB of a line 4x as long is compared with that of the shorter
  line, in the same Node process; linear is a ratio of 1, quadratic 4.
- Short token events in 7-byte chunks, against the same text fed whole: the cost of
  chunking alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from benchmarks._report import Figure, Report

PARSER = Path(__file__).resolve().parent.parent / "resumable_sse" / "_browser" / "sse-parser.js"

_SCRIPT = r"""
const { SSEParser } = await import(process.argv[1]);
const [lineBytes, piece, events, rounds] = JSON.parse(process.argv[2]);

function time(chunks) {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    let count = 0;
    const parser = new SSEParser(() => { count += 1; });
    const start = performance.now();
    for (const chunk of chunks) parser.feed(chunk);
    best = Math.min(best, performance.now() - start);
    if (count === 0) throw new Error("no event parsed");
  }
  return best;
}

function split(text, size) {
  const chunks = [];
  for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
  return chunks;
}

const line = (bytes) => split("data: " + "x".repeat(bytes) + "\n\n", piece);
const tokens = Array.from({ length: events }, (_, i) => `id: a-${i}\ndata: tok${i}\n\n`).join("");
console.log(JSON.stringify({
  line: [time(line(lineBytes * 4)), time(line(lineBytes))],
  tokens: [time(split(tokens, 7)), time([tokens])],
}));
"""


def parser_chunking(report: Report, line_bytes: int, events: int, rounds: int = 7) -> None:
    """Lines of ``line_bytes`` and 4x that in 256-byte chunks; short events in 7-byte ones."""
    node = shutil.which("node")
    if node is None:
        print("browser parser: skipped, node is not on PATH", flush=True)
        return
    result = subprocess.run(
        [
            node,
            "--input-type=module",
            "-e",
            _SCRIPT,
            PARSER.as_uri(),
            json.dumps([line_bytes, 256, events, rounds]),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    times = json.loads(result.stdout)
    long, short = times["line"]
    mib = line_bytes / (1 << 20)
    per_mib, short_per_mib = long / (4 * mib), short / mib
    report.add(
        Figure(
            "8 browser parser",
            f"{4 * mib:g} MiB line in 256 B chunks: ms per MiB",
            per_mib,
            "ms",
            f"a {mib:g} MiB line",
            per_mib / short_per_mib,
            "linear (<= 2x)",
            per_mib / short_per_mib <= 2,
        )
    )
    chunked, whole = times["tokens"]
    report.add(
        Figure(
            "8 browser parser",
            f"{events} token events in 7 B chunks: ns per event",
            chunked / events * 1e6,
            "ns",
            "same text in one chunk",
            chunked / whole,
        )
    )
