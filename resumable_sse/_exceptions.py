"""The exceptions raised by resumable-sse.

Every error the library raises on purpose derives from :class:`ResumableSSEError`,
so ``except ResumableSSEError`` catches all of them::

    ResumableSSEError
    ├── InvalidEventIdError (ValueError)        HTTP 400: Last-Event-ID is not one of ours
    │   ├── EventIdAheadError                   HTTP 400: the id is past the end of the stream
    │   └── StaleEventIdError                   HTTP 400: the id belongs to an earlier stream
    ├── InvalidSessionIdError (ValueError)      HTTP 400: empty, too long or odd characters
    ├── InvalidItemError (ValueError)           an item the generator yielded cannot be sent
    ├── AccessDeniedError (PermissionError)     HTTP 403: the authorize policy said no
    ├── SessionNotFoundError (LookupError)      HTTP 404: no stream under this session id
    ├── HistoryTrimmedError                     HTTP 410: the position was dropped from the log
    │   └── HistoryLostError                    HTTP 410: the store lost events it had stored
    ├── LimitExceededError                      HTTP 413: a per-stream limit was reached
    │   └── StoreFullError                      HTTP 503: the store holds its maximum of streams
    ├── TooManyConsumersError                   HTTP 429: consumer limit of a session or streamer
    ├── ConversationBusyError                   HTTP 409: the conversation has a running stream
    ├── StoreUnavailableError                   HTTP 503: the backing store cannot be reached
    ├── LeaseLostError                          a producer lost its claim on the stream
    ├── StreamerClosedError                     the streamer was closed
    ├── client.StreamRequestError               the Python client got a final 4xx answer
    └── client.ReconnectFailedError             the Python client gave up reconnecting

The two client errors live in :mod:`resumable_sse.client`, which needs httpx.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "ConversationBusyError",
    "EventIdAheadError",
    "HistoryLostError",
    "HistoryTrimmedError",
    "InvalidEventIdError",
    "InvalidItemError",
    "InvalidSessionIdError",
    "LeaseLostError",
    "LimitExceededError",
    "ResumableSSEError",
    "SessionNotFoundError",
    "StaleEventIdError",
    "StoreFullError",
    "StoreUnavailableError",
    "StreamerClosedError",
    "TooManyConsumersError",
]


class ResumableSSEError(Exception):
    """Base class of every error resumable-sse raises."""

    #: A short, stable, machine-readable code, used in HTTP error bodies and error events.
    code: str = "error"
    #: The HTTP status :func:`~resumable_sse.error_response` answers with.
    status: int = 500


class InvalidEventIdError(ResumableSSEError, ValueError):
    """A ``Last-Event-ID`` is malformed: it was not issued by this library."""

    code = "invalid_event_id"
    status = 400


class EventIdAheadError(InvalidEventIdError):
    """A ``Last-Event-ID`` points past the last event of the stream."""

    code = "event_id_ahead"


class StaleEventIdError(InvalidEventIdError):
    """A ``Last-Event-ID`` belongs to an earlier stream under the same session id."""

    code = "stale_event_id"


class InvalidSessionIdError(ResumableSSEError, ValueError):
    """A session id is empty, too long, or has characters outside the allowed set."""

    code = "invalid_session_id"
    status = 400


class InvalidItemError(ResumableSSEError, ValueError):
    """The generator yielded an item that cannot be encoded as a Server-Sent Event."""

    code = "invalid_item"
    status = 500


class AccessDeniedError(ResumableSSEError, PermissionError):
    """The authorization policy refused the operation (whether or not the session exists)."""

    code = "access_denied"
    status = 403


class SessionNotFoundError(ResumableSSEError, LookupError):
    """No stream exists under this session id (never started, expired or deleted)."""

    code = "session_not_found"
    status = 404


class HistoryTrimmedError(ResumableSSEError):
    """The requested position is older than the history the store still retains."""

    code = "history_trimmed"
    status = 410


class HistoryLostError(HistoryTrimmedError):
    """Events the stream's state counts are gone from the store.

    The log was evicted (Redis under ``maxmemory`` with an evicting policy), deleted
    by hand, or lost in a restart without persistence, while the stream's state
    survived. Reading again cannot bring them back, so this ends the read.
    """

    code = "history_lost"


class LimitExceededError(ResumableSSEError):
    """A configured per-stream limit (events, bytes, event size) was reached."""

    code = "limit_exceeded"
    status = 413


class StoreFullError(LimitExceededError):
    """The store already holds its maximum number of running streams."""

    code = "store_full"
    status = 503


class TooManyConsumersError(ResumableSSEError):
    """A session, or the whole streamer, already has its maximum of concurrent consumers."""

    code = "too_many_consumers"
    status = 429


class ConversationBusyError(ResumableSSEError):
    """A conversation already has a running stream and the start may not supersede it.

    ``session_id`` names that running stream.
    """

    code = "conversation_busy"
    status = 409

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class StoreUnavailableError(ResumableSSEError):
    """The backing store could not be reached or failed to answer."""

    code = "store_unavailable"
    status = 503


class LeaseLostError(ResumableSSEError):
    """A producer's claim on a stream is no longer valid; it must stop appending."""

    code = "lease_lost"
    status = 500


class StreamerClosedError(ResumableSSEError):
    """The streamer has been closed and takes no new work."""

    code = "streamer_closed"
    status = 503
