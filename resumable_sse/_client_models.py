"""The Python client's values and errors (re-exported by :mod:`resumable_sse.client`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from typing_extensions import final

from ._exceptions import ResumableSSEError

__all__ = ["ReconnectFailedError", "Reconnecting", "StreamEvent", "StreamRequestError"]


class StreamRequestError(ResumableSSEError):
    """The server refused the stream with a final status (4xx, or a non-SSE answer).

    Attributes:
        status: The HTTP status code.
        code: The ``error`` field of the JSON body (e.g. ``session_not_found``), else
            ``http_<status>``.
        message: The body's ``message``, else a generic sentence.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_response(cls, response: httpx.Response) -> StreamRequestError:
        """Build the error from a read response with a JSON error body, if it has one."""
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        code = f"http_{response.status_code}"
        message = response.reason_phrase or "the server refused the stream"
        if isinstance(body, dict):
            if isinstance(body.get("error"), str):
                code = body["error"]
            if isinstance(body.get("message"), str):
                message = body["message"]
        return cls(response.status_code, code, message)


class ReconnectFailedError(ResumableSSEError):
    """Reconnecting failed ``max_retries`` times in a row, or the stream cannot be resumed."""

    code = "reconnect_failed"


@final
@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a stream.

    Attributes:
        event: The event name (``message`` for tokens; ``end``, ``error`` or
            ``cancelled`` for the terminal event; or a custom name).
        data: The event's data.
        id: The event's id (``<incarnation>-<seq>``); ``None`` for the rare event sent
            without one (an ``error`` raised while serving).
        terminal: Whether this is the stream's last event.
    """

    event: str
    data: str
    id: str | None
    terminal: bool = False

    def json(self) -> Any:
        """The data parsed as JSON (``error`` and ``cancelled`` events carry JSON)."""
        return json.loads(self.data)


@final
@dataclass(frozen=True, slots=True)
class Reconnecting:
    """What ``on_reconnecting`` is told before each wait.

    Attributes:
        attempt: Failed attempts in a row (1 for the first retry).
        delay: The seconds it waits before connecting again (at most ``max_retry_delay``).
        reason: Why the last attempt failed.
    """

    attempt: int
    delay: float
    reason: str
