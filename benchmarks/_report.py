"""Collecting benchmark figures and rendering them: table, JSON, SVG chart."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path


@dataclass
class Figure:
    """One measured figure, with what it is compared against."""

    scenario: str
    name: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None  # ours / baseline; lower is better unless stated
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    quick: bool
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(_row(figure), flush=True)

    def machine(self) -> dict[str, str]:
        cpu = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(),
            "cpu": cpu,
            "cores": str(os.cpu_count()),
            "system": platform.platform(terse=True),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        }

    def write_json(self, path: Path) -> None:
        data = {
            "machine": self.machine(),
            "quick": self.quick,
            "figures": [asdict(f) for f in self.figures],
        }
        path.write_text(json.dumps(data, indent=2) + "\n")

    def markdown(self) -> str:
        lines = [
            "| scenario | figure | value | baseline | ratio | target | met |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for f in self.figures:
            ratio = "" if f.ratio is None else f"{f.ratio:.2f}x"
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            value = f"{_fmt(f.value)} {f.unit}"
            cells = [f.scenario, f.name, value, f.baseline, ratio, f.target, met]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def write_svg(self, path: Path) -> None:
        """A bar chart of every figure with a ratio, on a log scale centred on 1x.

        Each ratio is ours / baseline: a bar to the left of 1x means ours costs less
        (or takes less time), to the right that it costs more.
        """
        rows = [f for f in self.figures if f.ratio]
        width, left, right, bar_h, gap, top = 960, 430, 90, 18, 8, 62
        height = top + len(rows) * (bar_h + gap) + 40
        ratios = [f.ratio or 1.0 for f in rows]
        lo = math.log10(min([*ratios, 0.5]) / 1.5)
        hi = math.log10(max([*ratios, 2.0]) * 1.5)
        plot = width - left - right

        def x(ratio: float) -> float:
            return left + (math.log10(ratio) - lo) / (hi - lo) * plot

        m = self.machine()
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            'font-family="system-ui, sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            '<text x="10" y="20" font-size="15" font-weight="600">resumable-sse: ours / baseline '
            "(log scale; left of 1x: ours is cheaper or faster)</text>",
            f'<text x="10" y="38" fill="#555">{_esc(m["date"])}, {_esc(m["cpu"])}, '
            f"{m['cores']} cores (load {m['load']}), Python {m['python']}; "
            "red: target missed</text>",
        ]
        one = x(1.0)
        parts.append(
            f'<line x1="{one:.1f}" y1="{top - 8}" x2="{one:.1f}" y2="{height - 30}" '
            'stroke="#999" stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{one - 6:.1f}" y="{height - 16}" fill="#555">1x</text>')
        for i, f in enumerate(rows):
            y = top + i * (bar_h + gap)
            ratio = f.ratio or 1.0
            end = x(ratio)
            color = "#ef4444" if f.met is False else "#3b82f6"
            label = f"{f.scenario}: {f.name}"
            parts.append(
                f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{_esc(label[:66])}</text>'
            )
            parts.append(
                f'<rect x="{min(one, end):.1f}" y="{y}" width="{max(abs(end - one), 1):.1f}" '
                f'height="{bar_h}" fill="{color}"/>'
            )
            parts.append(f'<text x="{max(one, end) + 5:.1f}" y="{y + 13}">{ratio:.2f}x</text>')
        parts.append("</svg>")
        path.write_text("\n".join(parts) + "\n")


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _row(f: Figure) -> str:
    ratio = "" if f.ratio is None else f"  ratio {f.ratio:.2f}x vs {f.baseline}"
    met = "" if f.met is None else ("  [met]" if f.met else "  [MISSED]")
    return f"{f.scenario:<14} {f.name:<44} {_fmt(f.value):>12} {f.unit}{ratio}{met}"
