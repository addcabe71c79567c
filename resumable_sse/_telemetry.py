"""Metrics, spans and structured logs: what an operator sees of the streams.

The rest of the library calls one hook per fact (a stream started, a batch was written,
a consumer opened...) on the streamer's telemetry object. :class:`Hooks` does nothing
and is what a streamer uses when the ``opentelemetry-api`` package is not installed
(the ``[otel]`` extra): a call costs one method dispatch. ``_otel.Telemetry`` turns
the same calls into OpenTelemetry metrics and spans through the OTel API: the
application decides where they go (an SDK with an exporter, or the API's own no-op
default).

Metric names follow OpenTelemetry's semantic conventions where one applies (the
attributes ``error.type`` and ``http.response.status_code``, units ``s`` and
``{event}``-style annotations, ``UpDownCounter`` for things that are open now) and
live in the ``resumable_sse.*`` namespace, listed in :data:`METRICS`. Attributes stay
low-cardinality: the store kind, an outcome, an error code, a reason, a status. A
session id is never a metric attribute; it appears on spans only if asked for and in
the ``extra`` fields of log records.

Every terminal error, producer loss and store retry logs exactly one record on the
``resumable_sse`` logger with ``session_id``, ``code`` and ``attempt`` as ``extra``
fields (``attempt`` is ``None`` where nothing was retried).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext

from ._exceptions import ResumableSSEError
from .stores._contract import StreamState, StreamStore

__all__ = ["METRICS", "NO_HOOKS", "Hooks", "make_telemetry", "store_kind", "terminal_detail"]

logger = logging.getLogger("resumable_sse")

#: Every instrument: name -> (kind, unit, description).
METRICS: Mapping[str, tuple[str, str, str]] = {
    "resumable_sse.streams.started": ("counter", "{stream}", "Streams started here"),
    "resumable_sse.streams.finished": (
        "counter",
        "{stream}",
        "Streams whose producer ran here, by outcome (end, error, cancelled)",
    ),
    "resumable_sse.streams.active": ("updown", "{stream}", "Producers running here"),
    "resumable_sse.events.produced": ("counter", "{event}", "Events stored by producers"),
    "resumable_sse.events.delivered": ("counter", "{event}", "Events handed to consumers"),
    "resumable_sse.events.replayed": (
        "counter",
        "{event}",
        "Events already stored when a client resumed (what it gets again or caught up on)",
    ),
    "resumable_sse.opens": (
        "counter",
        "{open}",
        "Subscriptions asked for, by kind (new, join, resume, complete, refused)",
    ),
    "resumable_sse.consumers.active": ("updown", "{consumer}", "Subscriptions open here"),
    "resumable_sse.store.write.duration": (
        "histogram",
        "s",
        "Duration of each store write attempt (append or finish)",
    ),
    "resumable_sse.store.write.retries": (
        "counter",
        "{retry}",
        "Store writes retried because the store was unavailable",
    ),
    "resumable_sse.stream.time_to_first_event": (
        "histogram",
        "s",
        "From a stream's start to its first stored event",
    ),
    "resumable_sse.producers.lost": (
        "counter",
        "{producer}",
        "Producers here that lost their stream (lease lost, end not storable, crash)",
    ),
}

STORE = "resumable_sse.store"
OUTCOME = "resumable_sse.outcome"
REASON = "resumable_sse.cancel.reason"
KIND = "resumable_sse.open.kind"
OPERATION = "resumable_sse.store.operation"
ERROR_TYPE = "error.type"
STATUS = "http.response.status_code"


def store_kind(store: StreamStore) -> str:
    """A store's short name for metrics: ``MemoryStore`` -> ``memory``."""
    name = type(store).__name__.lower()
    return name[: -len("store")] if name.endswith("store") and name != "store" else name


def terminal_detail(state: StreamState, data: str) -> str | None:
    """The error code or cancel reason stored in a terminal event's data, if any."""
    if state not in (StreamState.ERROR, StreamState.CANCELLED):
        return None
    key = "code" if state is StreamState.ERROR else "reason"
    try:
        value = json.loads(data).get(key)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


class Hooks:
    """The telemetry hooks, doing nothing: the default without OpenTelemetry.

    Logging is not telemetry's to switch off: the log hooks log in every case.
    """

    def stream_started(self) -> None:
        """A stream was claimed and its producer is starting here."""

    def stream_finished(
        self,
        session_id: str,
        state: StreamState,
        data: str,
        exc: BaseException | None = None,
    ) -> None:
        """A producer stored its stream's terminal event (``data`` is that event's).

        An ``error`` end logs one record, with ``exc``'s traceback if there is one.
        """
        if state is StreamState.ERROR:
            code = terminal_detail(state, data) or "error"
            logger.error(
                "stream %r ended with error %s",
                session_id,
                code,
                exc_info=exc,
                extra={"session_id": session_id, "code": code, "attempt": None},
            )

    def producer_done(self) -> None:
        """A producer of this process stopped (whatever became of its stream)."""

    def events_produced(self, count: int) -> None:
        """A batch of ``count`` events was stored."""

    def first_event(self, seconds: float) -> None:
        """A stream's first event was stored ``seconds`` after it started."""

    def store_write(self, operation: str, seconds: float, error: str | None) -> None:
        """One write attempt (``append`` or ``finish``) took ``seconds``."""

    def store_retry(
        self, session_id: str, operation: str, attempt: int, exc: ResumableSSEError
    ) -> None:
        """A write failed with the store unavailable and will be tried again."""
        logger.warning(
            "stream %r: store unavailable, retrying %s (attempt %d): %s",
            session_id,
            operation,
            attempt,
            exc,
            extra={"session_id": session_id, "code": exc.code, "attempt": attempt},
        )

    def producer_lost(
        self, session_id: str, code: str, message: str, exc: BaseException | None = None
    ) -> None:
        """This process's producer lost its stream: it cannot store the stream's end."""
        logger.error(
            "stream %r: producer lost (%s): %s",
            session_id,
            code,
            message,
            exc_info=exc,
            extra={"session_id": session_id, "code": code, "attempt": None},
        )

    def opened(self, kind: str, replayed: int) -> None:
        """A subscription opened: ``new``, ``join``, ``resume`` or ``complete``."""

    def refused(self, exc: ResumableSSEError) -> None:
        """A subscription was refused with ``exc`` (its code and status are counted)."""

    def consumer_opened(self) -> None:
        """A consumer slot was taken."""

    def consumer_closed(self) -> None:
        """A consumer slot was given back."""

    def delivered(self, count: int) -> None:
        """``count`` events were handed to a consumer."""

    def span(self, name: str, session_id: str) -> AbstractContextManager[object]:
        """A span around one streamer operation (``start``, ``open``, ``cancel``, ``delete``)."""
        return nullcontext()


#: The shared do-nothing hooks.
NO_HOOKS = Hooks()


def make_telemetry(
    store: StreamStore,
    meter_provider: object = None,
    tracer_provider: object = None,
    *,
    enabled: bool | None = None,
    span_session_ids: bool = False,
) -> Hooks:
    """The streamer's telemetry: OpenTelemetry if installed (and not disabled), else no-ops.

    ``enabled=None`` means "if ``opentelemetry-api`` can be imported"; ``True`` requires it.
    """
    if enabled is False:
        return NO_HOOKS
    try:
        from ._otel import Telemetry

        return Telemetry(store, meter_provider, tracer_provider, span_session_ids=span_session_ids)
    except ImportError:
        if enabled:
            raise
        return NO_HOOKS
