"""The demo's live figures: ``GET /status`` (a page) and ``GET /api/status`` (JSON).

The figures are the streamer's own OpenTelemetry metrics, read by an in-memory reader
of the OpenTelemetry SDK (when it is installed), beside :meth:`Streamer.streams`: the
running streams with their events, age and consumers. The page refreshes itself every
two seconds.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from typing_extensions import final

from ._exceptions import ResumableSSEError
from ._http import error_response
from ._streamer import Streamer

__all__ = ["DemoFigures", "status_routes"]


@final
class DemoFigures:
    """A meter provider whose metrics the status page reads (``None`` without the SDK)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.provider: Any = None
        self._reader: Any = None
        if not enabled:
            return
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        except ImportError:
            return
        self._reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self._reader])

    def read(self) -> list[dict[str, Any]] | None:
        """Every data point: name, attributes and value (a histogram: count and mean)."""
        if self._reader is None:
            return None
        data = self._reader.get_metrics_data()
        points: list[dict[str, Any]] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        attrs = dict(point.attributes or {})
                        attrs.pop("resumable_sse.store", None)
                        if hasattr(point, "bucket_counts"):
                            mean = point.sum / point.count if point.count else 0.0
                            value: Any = {"count": point.count, "mean": round(mean, 6)}
                        else:
                            value = point.value
                        points.append({"name": metric.name, "attributes": attrs, "value": value})
        points.sort(key=lambda p: (p["name"], sorted(p["attributes"].items())))
        return points

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def status_routes(streamer: Streamer, figures: DemoFigures) -> list[Route]:
    """The routes of the status page and its JSON."""

    async def status_json(request: Request) -> Response:
        try:
            live = await streamer.streams()
        except ResumableSSEError as exc:
            return error_response(exc)
        return JSONResponse(
            {
                "live": [
                    {
                        "session_id": s.session_id,
                        "state": s.state.value,
                        "events": s.events,
                        "age": round(s.age, 1),
                        "consumers": s.consumers,
                        "local": s.local,
                    }
                    for s in live
                ],
                "consumers": streamer.consumers,
                "metrics": figures.read(),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def status_page(request: Request) -> Response:
        return HTMLResponse(_PAGE, headers={"Cache-Control": "no-cache"})

    return [
        Route("/status", status_page, name="status_page"),
        Route("/api/status", status_json, name="status_json"),
    ]


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>resumable-sse demo: live figures</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem;
         padding: 0 1rem; color: #1d1d1f; }
  table { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }
  th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  #line { font-weight: 600; }
</style>
</head>
<body>
<h1>Live figures</h1>
<p><a href="./">Back to the chat</a> · refreshed every 2 s</p>
<p id="line" role="status">Loading…</p>
<h2>Running streams</h2>
<table><thead><tr><th>session</th><th>state</th><th>events</th><th>age (s)</th>
<th>consumers here</th><th>producer here</th></tr></thead><tbody id="live"></tbody></table>
<h2>Metrics (OpenTelemetry)</h2>
<table><thead><tr><th>metric</th><th>attributes</th><th>value</th></tr></thead>
<tbody id="metrics"></tbody></table>
<script>
function cell(text, numeric) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (numeric) td.className = "n";
  return td;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(c);
  return tr;
}
async function refresh() {
  try {
    const r = await fetch("api/status", {cache: "no-store"});
    const s = await r.json();
    document.getElementById("line").textContent =
      `${s.live.length} running streams · ${s.consumers} consumers connected here`;
    document.getElementById("live").replaceChildren(...s.live.map((x) => row([
      cell(x.session_id), cell(x.state), cell(x.events, true), cell(x.age, true),
      cell(x.consumers, true), cell(x.local ? "yes" : "no")])));
    const metrics = s.metrics || [];
    document.getElementById("metrics").replaceChildren(...(s.metrics === null
      ? [row([cell("not collected (needs opentelemetry-sdk)"), cell(""), cell("")])]
      : metrics.map((m) => row([
          cell(m.name),
          cell(Object.entries(m.attributes).map(([k, v]) => `${k}=${v}`).join(", ")),
          cell(typeof m.value === "object"
            ? `${m.value.count} times, mean ${(m.value.mean * 1000).toFixed(1)} ms`
            : m.value, true)]))));
  } catch (err) {
    document.getElementById("line").textContent = `Status unavailable: ${err}`;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
