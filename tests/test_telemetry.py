"""Metrics, spans and logs, read back through the real OpenTelemetry SDK.

Each test gives its streamer a MeterProvider with an in-memory reader and a
TracerProvider with an in-memory exporter (never the global providers), drives a
scripted scenario by hand and then checks that every instrument reads exactly what
happened, on every store.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from resumable_sse import (
    InvalidEventIdError,
    InvalidSessionIdError,
    LeaseLostError,
    MemoryStore,
    SessionNotFoundError,
    StaleEventIdError,
    StoreUnavailableError,
    Streamer,
    StreamerClosedError,
    StreamStore,
    TooManyConsumersError,
)
from resumable_sse._telemetry import METRICS, Hooks, make_telemetry
from tests.helpers import Script, collect, names, take

pytestmark = pytest.mark.anyio

Attrs = frozenset[tuple[str, Any]]


@dataclass
class Otel:
    """An SDK meter and tracer provider that keep everything in memory."""

    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)

    def __post_init__(self) -> None:
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))

    def streamer(self, store: StreamStore, **options: Any) -> Streamer:
        return Streamer(store, meter_provider=self.meters, tracer_provider=self.tracers, **options)

    def points(self) -> dict[str, dict[Attrs, Any]]:
        """Every data point: metric name -> attributes (minus the store kind) -> value.

        A counter's value is its sum; a histogram's is ``(count, sum)``.
        """
        out: dict[str, dict[Attrs, Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        attrs = dict(point.attributes or {})
                        attrs.pop("resumable_sse.store")
                        if isinstance(point, HistogramDataPoint):
                            value: Any = (point.count, point.sum)
                        else:
                            assert isinstance(point, NumberDataPoint)
                            value = point.value
                        out.setdefault(metric.name, {})[frozenset(attrs.items())] = value
        return out

    def attributes(self) -> list[dict[str, Any]]:
        """The full attributes of every data point."""
        data = self.reader.get_metrics_data()
        return [
            dict(point.attributes or {})
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Otel]:
    otel = Otel()
    yield otel
    otel.meters.shutdown()
    otel.tracers.shutdown()


def a(**attrs: Any) -> Attrs:
    """Attributes as :meth:`Otel.points` keys them (dots spelled as ``__``)."""
    return frozenset((key.replace("__", "."), value) for key, value in attrs.items())


NONE = a()


def total(points: dict[Attrs, Any]) -> Any:
    return sum(value if isinstance(value, int) else value[0] for value in points.values())


def writes_through_append(store: StreamStore) -> None:
    """Make producers write through ``append_items`` (where these tests inject faults), also on
    the memory store, whose producers otherwise append to its log in place."""
    store.local_log = lambda *args, **kwargs: None  # type: ignore[method-assign]


class CountingAppends:
    """Counts the store's append calls, as producers make them (``append_items``; a spy,
    the store itself is real)."""

    def __init__(self, store: StreamStore) -> None:
        self.calls = 0
        original = store.append_items

        async def append_items(*args: Any, **kwargs: Any) -> None:
            self.calls += 1
            await original(*args, **kwargs)

        store.append_items = append_items  # type: ignore[method-assign]


async def test_a_scripted_scenario_reads_exactly_what_happened(
    store: StreamStore, otel: Otel
) -> None:
    """Streams that end, fail, get cancelled, resume and get refused, counted exactly."""
    appends = CountingAppends(store)
    streamer = otel.streamer(store, max_consumers_per_session=2)
    kind = "memory" if type(store).__name__ == "MemoryStore" else "redis"
    async with streamer:
        # A ends: read live in two steps, then resumed after its 2nd event, then again
        # from its last event (nothing left: HTTP's 204), then joined from the start.
        ended = Script(["a1", "a2"], ["a3"])
        reading = await streamer.open("ended", ended)
        first = await take(reading, 2)
        ended.release()
        assert names(await collect(reading)) == ["message", "end"]
        resumed = await collect(await streamer.open("ended", last_id=first[1]["id"]))
        assert names(resumed) == ["message", "end"]
        complete = await streamer.open("ended", last_id=resumed[-1]["id"])
        assert complete.finished
        await complete.aclose()
        assert len(await collect(streamer.resume("ended"))) == 4

        # B fails; C is cancelled after its first event.
        failing = await streamer.open("failed", Script(["b1"], fail=RuntimeError("boom")))
        assert names(await collect(failing)) == ["message", "error"]
        cancelled_script = Script(["c1"], ["c2"])
        cancelled = await streamer.open("stopped", cancelled_script)
        await take(cancelled, 1)
        assert await streamer.cancel("stopped")
        assert names(await collect(cancelled)) == ["cancelled"]

        # D has two consumers (the limit), a third one is refused with 429.
        running = Script(["d1"], ["d2"])
        one = await streamer.open("running", running)
        two = await streamer.open("running")
        await take(one, 1)
        await take(two, 1)
        assert otel.points()["resumable_sse.consumers.active"] == {NONE: 2}
        with pytest.raises(TooManyConsumersError):
            await streamer.open("running")
        running.release()
        assert len(await collect(one)) == 2
        assert len(await collect(two)) == 2

        # Refusals: 404, and three kinds of 400.
        with pytest.raises(SessionNotFoundError):
            await collect(streamer.resume("missing"))
        with pytest.raises(InvalidEventIdError):
            await streamer.open("ended", last_id="not-an-id")
        with pytest.raises(StaleEventIdError):
            await streamer.open("ended", last_id="zzzzzzzz-1")
        with pytest.raises(InvalidSessionIdError):
            await streamer.open("bad id!")
        assert await streamer.delete("ended")

    points = otel.points()
    assert points["resumable_sse.streams.started"] == {NONE: 4}
    assert points["resumable_sse.streams.active"] == {NONE: 0}
    assert points["resumable_sse.streams.finished"] == {
        a(resumable_sse__outcome="end"): 2,
        a(resumable_sse__outcome="error", error__type="generator_failed"): 1,
        a(resumable_sse__outcome="cancelled", resumable_sse__cancel__reason="cancelled"): 1,
    }
    # Items stored: a1-a3, b1, c1, d1-d2 (terminal events are counted as streams.finished).
    assert points["resumable_sse.events.produced"] == {NONE: 7}
    # Live 4 + resumed 2 + joined 4 (A), 2 (B), 2 (C), 3 + 3 (D).
    assert points["resumable_sse.events.delivered"] == {NONE: 20}
    assert points["resumable_sse.events.replayed"] == {NONE: 2}
    assert points["resumable_sse.opens"] == {
        a(resumable_sse__open__kind="new"): 4,
        a(resumable_sse__open__kind="resume"): 1,
        a(resumable_sse__open__kind="complete"): 1,
        a(resumable_sse__open__kind="join"): 2,
        a(
            resumable_sse__open__kind="refused",
            error__type="too_many_consumers",
            http__response__status_code=429,
        ): 1,
        a(
            resumable_sse__open__kind="refused",
            error__type="session_not_found",
            http__response__status_code=404,
        ): 1,
        a(
            resumable_sse__open__kind="refused",
            error__type="invalid_event_id",
            http__response__status_code=400,
        ): 1,
        a(
            resumable_sse__open__kind="refused",
            error__type="stale_event_id",
            http__response__status_code=400,
        ): 1,
        a(
            resumable_sse__open__kind="refused",
            error__type="invalid_session_id",
            http__response__status_code=400,
        ): 1,
    }
    assert points["resumable_sse.consumers.active"] == {NONE: 0}
    writes = points["resumable_sse.store.write.duration"]
    # The memory store's producers append to its log in place: no append calls to time.
    timed_appends = writes.get(a(resumable_sse__store__operation="append"), [0])[0]
    assert timed_appends == appends.calls
    assert (appends.calls == 0) == isinstance(store, MemoryStore)
    assert writes[a(resumable_sse__store__operation="finish")][0] == 4
    assert len(writes) == (1 if isinstance(store, MemoryStore) else 2)
    assert points["resumable_sse.stream.time_to_first_event"][NONE][0] == 4
    assert "resumable_sse.store.write.retries" not in points
    assert "resumable_sse.producers.lost" not in points

    # Low cardinality: known keys only, and no session id anywhere.
    allowed = {
        "resumable_sse.store",
        "resumable_sse.outcome",
        "resumable_sse.cancel.reason",
        "resumable_sse.open.kind",
        "resumable_sse.store.operation",
        "error.type",
        "http.response.status_code",
    }
    sessions = {"ended", "failed", "stopped", "running", "missing", "bad id!"}
    for attrs in otel.attributes():
        assert set(attrs) <= allowed
        assert attrs["resumable_sse.store"] == kind
        assert not sessions & {str(value) for value in attrs.values()}

    spans = otel.exporter.get_finished_spans()
    by_name: dict[str, int] = {}
    for span in spans:
        by_name[span.name] = by_name.get(span.name, 0) + 1
        assert "resumable_sse.session_id" not in (span.attributes or {})
    assert by_name == {
        "resumable_sse.start": 4,
        "resumable_sse.open": 13,
        "resumable_sse.cancel": 1,
        "resumable_sse.delete": 1,
    }
    refused = [span for span in spans if span.status.status_code is StatusCode.ERROR]
    assert sorted(str((span.attributes or {})["error.type"]) for span in refused) == [
        "invalid_event_id",
        "invalid_session_id",
        "session_not_found",
        "stale_event_id",
        "too_many_consumers",
    ]


async def test_every_instrument_is_documented(otel: Otel, store: StreamStore) -> None:
    """The instruments the SDK sees are exactly those listed in METRICS, with their units."""
    async with otel.streamer(store) as streamer:
        await collect(streamer.stream("s", Script(["x"])))
    data = otel.reader.get_metrics_data()
    assert data is not None
    seen = {
        metric.name: metric.unit
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert set(seen) <= set(METRICS)
    for name, unit in seen.items():
        assert unit == METRICS[name][1]
    assert seen["resumable_sse.store.write.duration"] == "s"


class FlakyStore:
    """Makes a real store's writes fail with StoreUnavailableError for a while."""

    def __init__(self, store: StreamStore, *, appends: int = 0, finishes: int = 0) -> None:
        self.appends, self.finishes = appends, finishes
        append, finish = store.append_items, store.finish

        async def flaky_append(*args: Any, **kwargs: Any) -> None:
            if self.appends:
                self.appends -= 1
                raise StoreUnavailableError("store down (test)")
            await append(*args, **kwargs)

        async def flaky_finish(*args: Any, **kwargs: Any) -> None:
            if self.finishes:
                self.finishes -= 1
                raise StoreUnavailableError("store down (test)")
            await finish(*args, **kwargs)

        store.append_items = flaky_append  # type: ignore[method-assign]
        store.finish = flaky_finish  # type: ignore[method-assign]
        writes_through_append(store)


def records(caplog: pytest.LogCaptureFixture, code: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "code", None) == code]


async def test_store_retries_are_counted_timed_and_logged_once_each(
    store: StreamStore, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    """Two failed appends: two retries, three timed attempts, two log records."""
    FlakyStore(store, appends=2)
    caplog.set_level(logging.WARNING, logger="resumable_sse")
    async with otel.streamer(store) as streamer:
        assert names(await collect(streamer.stream("s", Script(["x"])))) == ["message", "end"]
    points = otel.points()
    retry = a(resumable_sse__store__operation="append", error__type="store_unavailable")
    assert points["resumable_sse.store.write.retries"] == {retry: 2}
    writes = points["resumable_sse.store.write.duration"]
    assert writes[retry][0] == 2
    assert writes[a(resumable_sse__store__operation="append")][0] == 1
    logged = records(caplog, "store_unavailable")
    assert [(r.session_id, r.attempt) for r in logged] == [("s", 1), ("s", 2)]  # type: ignore[attr-defined]


async def test_a_terminal_error_logs_one_record_with_its_traceback(
    store: StreamStore, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing generator: one ERROR record with session_id, code, attempt and exc_info."""
    caplog.set_level(logging.DEBUG, logger="resumable_sse")
    async with otel.streamer(store) as streamer:
        await collect(streamer.stream("s", Script(["x"], fail=ValueError("bad"))))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    record = errors[0]
    assert (record.session_id, record.code, record.attempt) == ("s", "generator_failed", None)  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


async def test_a_producer_that_cannot_store_its_end_is_lost(
    store: StreamStore, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    """The end cannot be stored before the deadline: one loss, counted and logged once."""
    flaky = FlakyStore(store, finishes=1_000_000)
    caplog.set_level(logging.ERROR, logger="resumable_sse")
    async with otel.streamer(store, store_retry_deadline=0.2) as streamer:
        reading = await streamer.open("s", Script(["x"]))
        assert (await take(reading, 1))[0]["data"] == "x"
        await reading.aclose()
    points = otel.points()
    assert points["resumable_sse.producers.lost"] == {a(error__type="store_unavailable"): 1}
    assert "resumable_sse.streams.finished" not in points
    assert points["resumable_sse.streams.active"] == {NONE: 0}
    assert total(points["resumable_sse.store.write.retries"]) >= 1
    lost = [r for r in caplog.records if "producer lost" in r.getMessage()]
    assert [(r.session_id, r.code) for r in lost] == [("s", "store_unavailable")]  # type: ignore[attr-defined]
    flaky.finishes = 0


async def test_a_producer_whose_lease_is_lost_is_counted_once(
    store: StreamStore, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refuses a write (lease lost: reaped or taken over): one loss, one record."""
    append = store.append_items
    refuse, refused = anyio.Event(), anyio.Event()

    async def losing_append(*args: Any, **kwargs: Any) -> None:
        if refuse.is_set():  # what a store answers once the stream was reaped
            refused.set()
            raise LeaseLostError("stream is no longer owned by this producer (test)")
        await append(*args, **kwargs)

    store.append_items = losing_append  # type: ignore[method-assign]
    writes_through_append(store)
    script = Script(["x"], ["y"])
    caplog.set_level(logging.ERROR, logger="resumable_sse")
    async with otel.streamer(store) as streamer:
        reading = await streamer.open("s", script)
        await take(reading, 1)
        refuse.set()
        script.release()
        await refused.wait()
        await reading.aclose()
    points = otel.points()
    assert points["resumable_sse.producers.lost"] == {a(error__type="lease_lost"): 1}
    assert "resumable_sse.streams.finished" not in points
    lost = [r for r in caplog.records if "producer lost" in r.getMessage()]
    assert [(r.session_id, r.code, r.attempt) for r in lost] == [("s", "lease_lost", None)]  # type: ignore[attr-defined]


async def test_a_deleted_stream_is_cancelled_not_lost(store: StreamStore, otel: Otel) -> None:
    """Deleting a running stream counts it as cancelled with reason ``deleted``."""
    script = Script(["x"], ["y"])
    async with otel.streamer(store) as streamer:
        reading = await streamer.open("s", script)
        await take(reading, 1)
        assert await streamer.delete("s")
        await reading.aclose()
    points = otel.points()
    reason = a(resumable_sse__outcome="cancelled", resumable_sse__cancel__reason="deleted")
    assert points["resumable_sse.streams.finished"] == {reason: 1}
    assert "resumable_sse.producers.lost" not in points


async def test_spans_carry_session_ids_only_when_asked(store: StreamStore, otel: Otel) -> None:
    """``span_session_ids=True`` puts the session id on spans; metrics never get it."""
    telemetry = make_telemetry(
        store, otel.meters, otel.tracers, enabled=True, span_session_ids=True
    )
    with telemetry.span("cancel", "s1"):
        pass
    (span,) = otel.exporter.get_finished_spans()
    assert (span.attributes or {})["resumable_sse.session_id"] == "s1"


def test_without_opentelemetry_the_hooks_do_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If ``opentelemetry`` cannot be imported, the streamer gets the no-op hooks."""
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.setitem(sys.modules, "resumable_sse._otel", None)  # as if never imported
    telemetry = make_telemetry(MemoryStore())
    assert type(telemetry) is Hooks
    with pytest.raises(ImportError):
        make_telemetry(MemoryStore(), enabled=True)
    assert type(make_telemetry(MemoryStore(), enabled=False)) is Hooks


async def test_a_refusal_with_a_5xx_status_is_counted(otel: Otel) -> None:
    """An open on a closed streamer is refused with 503, and counted so."""
    streamer = otel.streamer(MemoryStore())
    async with streamer:
        pass
    with pytest.raises(StreamerClosedError):
        await streamer.open("s", Script(["x"]))
    refused = a(
        resumable_sse__open__kind="refused",
        error__type="streamer_closed",
        http__response__status_code=503,
    )
    assert otel.points()["resumable_sse.opens"] == {refused: 1}


async def test_streamers_sharing_a_meter_provider_add_to_the_same_instruments(
    otel: Otel,
) -> None:
    """Two streamers, one provider: one set of instruments, totals per store kind."""
    async with otel.streamer(MemoryStore()) as one, otel.streamer(MemoryStore()) as two:
        await collect(one.stream("a", Script(["x"])))
        await collect(two.stream("b", Script(["y", "z"])))
    points = otel.points()
    assert points["resumable_sse.streams.started"] == {NONE: 2}
    assert points["resumable_sse.events.produced"] == {NONE: 3}


_LATE_PROVIDER = """
import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from resumable_sse import MemoryStore, Streamer

async def main() -> None:
    async with Streamer(MemoryStore()) as streamer:
        async for _ in streamer.stream("before", ["x"]):
            pass
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        async for _ in streamer.stream("after", ["y"]):
            pass
        print(sorted(span.name for span in exporter.get_finished_spans()))

anyio.run(main)
"""


def test_a_global_tracer_provider_set_later_gets_the_spans_from_then_on() -> None:
    """With no provider set, spans record nothing; a global one set later gets them.

    In a process of its own: the global provider can be set once per process.
    """
    done = subprocess.run(
        [sys.executable, "-c", _LATE_PROVIDER], capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['resumable_sse.open', 'resumable_sse.start']"
