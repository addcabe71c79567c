"""The telemetry hooks recorded through the OpenTelemetry API (imported only if installed).

Counters and up-down counters are *asynchronous* (observable) instruments: a hook adds
to a plain integer kept per attribute set, and the SDK reads the totals when it
collects. A hook on a hot path (events delivered per page, produced per batch) thus
costs a dictionary update, whatever SDK is configured. Durations are histograms,
recorded as they happen (one per store write and one per stream's first event).

Instruments belong to a meter provider, not to a streamer: every streamer using the
same provider adds to the same totals (the store kind keeps their data points apart),
and no instrument is registered twice.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from typing_extensions import final

from ._exceptions import ResumableSSEError
from ._telemetry import (
    ERROR_TYPE,
    KIND,
    METRICS,
    OPERATION,
    OUTCOME,
    REASON,
    STATUS,
    STORE,
    Hooks,
    store_kind,
    terminal_detail,
)
from ._version import __version__
from .stores._contract import StreamState, StreamStore

__all__ = ["Telemetry"]

_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]

_OUTCOMES = {
    StreamState.DONE: "end",
    StreamState.ERROR: "error",
    StreamState.CANCELLED: "cancelled",
    StreamState.RUNNING: "running",
}

#: Tracer providers whose spans record nothing.
_SILENT_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)

Attrs = tuple[tuple[str, "str | int"], ...]

STARTED = "resumable_sse.streams.started"
FINISHED = "resumable_sse.streams.finished"
ACTIVE = "resumable_sse.streams.active"
PRODUCED = "resumable_sse.events.produced"
DELIVERED = "resumable_sse.events.delivered"
REPLAYED = "resumable_sse.events.replayed"
OPENS = "resumable_sse.opens"
CONSUMERS = "resumable_sse.consumers.active"
WRITE_DURATION = "resumable_sse.store.write.duration"
RETRIES = "resumable_sse.store.write.retries"
FIRST_EVENT = "resumable_sse.stream.time_to_first_event"
LOST = "resumable_sse.producers.lost"


@final
class _Instruments:
    """One meter provider's instruments and the totals its observable ones report."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.totals: dict[str, dict[Attrs, int]] = {}
        self.histograms: dict[str, metrics.Histogram] = {}
        for name, (kind, unit, description) in METRICS.items():
            if kind == "histogram":
                self.histograms[name] = meter.create_histogram(
                    name, unit, description, explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS
                )
                continue
            self.totals[name] = {}
            create = (
                meter.create_observable_counter
                if kind == "counter"
                else meter.create_observable_up_down_counter
            )
            create(name, [self._observer(self.totals[name])], unit, description)

    @staticmethod
    def _observer(totals: dict[Attrs, int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            # list() copies in one step under the GIL: the SDK may collect from its
            # exporter's thread while the event loop adds.
            return [Observation(value, dict(attrs)) for attrs, value in list(totals.items())]

        return observe


_BY_PROVIDER: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_GLOBAL: list[_Instruments] = []


def _instruments(meter_provider: Any) -> _Instruments:
    if meter_provider is None:  # the global provider (the API proxies a late-set SDK)
        if not _GLOBAL:
            _GLOBAL.append(_Instruments(metrics.get_meter("resumable_sse", __version__)))
        return _GLOBAL[0]
    found = _BY_PROVIDER.get(meter_provider)
    if found is None:
        found = _Instruments(meter_provider.get_meter("resumable_sse", __version__))
        _BY_PROVIDER[meter_provider] = found
    return found


@final
class Telemetry(Hooks):
    """The hooks, recorded through OpenTelemetry.

    Args:
        store: The streamer's store; its kind is an attribute of every metric.
        meter_provider: Where metrics go; the global provider if ``None``.
        tracer_provider: Where spans go; the global provider if ``None``.
        span_session_ids: Whether spans carry the session id (off by default: it may
            be sensitive).
    """

    def __init__(
        self,
        store: StreamStore,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        *,
        span_session_ids: bool = False,
    ) -> None:
        instruments = _instruments(meter_provider)
        self._totals = instruments.totals
        self._delivered = instruments.totals[DELIVERED]
        self._histograms = instruments.histograms
        self._tracer = trace.get_tracer("resumable_sse", __version__, tracer_provider)
        self._tracer_provider = tracer_provider
        self._span_session_ids = span_session_ids
        self._store: Attrs = ((STORE, store_kind(store)),)
        self._append_attrs: dict[str, str | int] = {STORE: store_kind(store), OPERATION: "append"}
        self._plain_attrs: dict[str, str | int] = dict(self._store)

    def _add(self, name: str, count: int, extra: Attrs = ()) -> None:
        totals = self._totals[name]
        key = self._store + extra if extra else self._store
        totals[key] = totals.get(key, 0) + count

    def stream_started(self) -> None:
        self._add(STARTED, 1)
        self._add(ACTIVE, 1)

    def stream_finished(
        self,
        session_id: str,
        state: StreamState,
        data: str,
        exc: BaseException | None = None,
    ) -> None:
        super().stream_finished(session_id, state, data, exc)
        extra: Attrs = ((OUTCOME, _OUTCOMES[state]),)
        detail = terminal_detail(state, data)
        if detail is not None:
            extra += ((ERROR_TYPE if state is StreamState.ERROR else REASON, detail),)
        self._add(FINISHED, 1, extra)

    def producer_done(self) -> None:
        self._add(ACTIVE, -1)

    def events_produced(self, count: int) -> None:
        self._add(PRODUCED, count)

    def first_event(self, seconds: float) -> None:
        self._histograms[FIRST_EVENT].record(seconds, self._plain_attrs)

    def store_write(self, operation: str, seconds: float, error: str | None) -> None:
        if error is None and operation == "append":
            attrs: dict[str, str | int] = self._append_attrs
        else:
            attrs = {**self._plain_attrs, OPERATION: operation}
            if error is not None:
                attrs[ERROR_TYPE] = error
        self._histograms[WRITE_DURATION].record(seconds, attrs)

    def store_retry(
        self, session_id: str, operation: str, attempt: int, exc: ResumableSSEError
    ) -> None:
        super().store_retry(session_id, operation, attempt, exc)
        self._add(RETRIES, 1, ((OPERATION, operation), (ERROR_TYPE, exc.code)))

    def producer_lost(
        self, session_id: str, code: str, message: str, exc: BaseException | None = None
    ) -> None:
        super().producer_lost(session_id, code, message, exc)
        self._add(LOST, 1, ((ERROR_TYPE, code),))

    def opened(self, kind: str, replayed: int) -> None:
        self._add(OPENS, 1, ((KIND, kind),))
        if kind == "resume":
            self._add(REPLAYED, replayed)

    def refused(self, exc: ResumableSSEError) -> None:
        self._add(OPENS, 1, ((KIND, "refused"), (ERROR_TYPE, exc.code), (STATUS, exc.status)))

    def consumer_opened(self) -> None:
        self._add(CONSUMERS, 1)

    def consumer_closed(self) -> None:
        self._add(CONSUMERS, -1)

    def delivered(self, count: int) -> None:  # once per chunk sent: _add, inlined
        totals, key = self._delivered, self._store
        totals[key] = totals.get(key, 0) + count

    def span(self, name: str, session_id: str) -> AbstractContextManager[object]:
        # With the API alone (no provider set, as when a dependency brings the API in),
        # a span would record nothing, yet make and swap contexts: about a tenth of a
        # short stream's CPU. The global provider is looked up each time, so one set
        # later is used from then on.
        provider = self._tracer_provider or trace.get_tracer_provider()
        if type(provider) in _SILENT_PROVIDERS:
            return nullcontext()
        return self._span(name, session_id)

    @contextmanager
    def _span(self, name: str, session_id: str) -> Iterator[object]:
        attrs = dict(self._plain_attrs)
        if self._span_session_ids:
            attrs["resumable_sse.session_id"] = session_id
        with self._tracer.start_as_current_span(
            f"resumable_sse.{name}", attributes=attrs, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except ResumableSSEError as exc:
                span.set_attribute(ERROR_TYPE, exc.code)
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.code))
                raise
