"""Event ids and session ids: how they look on the wire and how they are checked.

An event id is ``<incarnation>-<seq>``. ``seq`` counts the events of one stream from 1;
``incarnation`` is a random tag chosen when the stream is created, so an id handed out
by an earlier stream under the same session id is recognised instead of being applied
to the new one. Clients treat ids as opaque strings.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from typing_extensions import final

from ._exceptions import InvalidEventIdError, InvalidSessionIdError

__all__ = [
    "EventId",
    "new_incarnation",
    "new_session_id",
    "parse_last_event_id",
    "validate_session_id",
]

MAX_SESSION_ID_LENGTH = 128
_SESSION_ID = re.compile(rf"[A-Za-z0-9_.:@-]{{1,{MAX_SESSION_ID_LENGTH}}}")
_EVENT_ID = re.compile(r"([0-9a-z]{1,16})-([0-9]{1,15})")
_START_IDS = frozenset({"", "0"})


@final
@dataclass(frozen=True, slots=True)
class EventId:
    """A position in one stream: after the event with sequence number ``seq``."""

    incarnation: str
    seq: int

    def __str__(self) -> str:
        return f"{self.incarnation}-{self.seq}"


def new_incarnation() -> str:
    """Return a fresh random incarnation tag (10 lowercase hex characters, 40 bits)."""
    return secrets.token_hex(5)


def new_session_id() -> str:
    """Return a new unguessable session id: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def parse_last_event_id(raw: str | None) -> EventId | None:
    """Parse a ``Last-Event-ID`` value.

    Args:
        raw: The header or query value; ``None``, ``""`` and ``"0"`` mean "from the start".

    Returns:
        The position, or ``None`` for the start of the stream.

    Raises:
        InvalidEventIdError: ``raw`` is not an id this library issued.
    """
    if raw is None:
        return None
    value = raw.strip(" \t")  # HTTP's optional whitespace only, not all of Unicode's
    if value in _START_IDS:
        return None
    match = _EVENT_ID.fullmatch(value)
    if match is None:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidEventIdError(f"malformed Last-Event-ID {shown!r}")
    return EventId(match[1], int(match[2]))


def validate_session_id(session_id: str) -> str:
    """Check a session id before it names anything in a store.

    Allowed: 1 to 128 characters from ``A-Z a-z 0-9 _ . : @ -``.

    Raises:
        InvalidSessionIdError: the id is not a non-empty string of allowed characters.
    """
    if not isinstance(session_id, str) or _SESSION_ID.fullmatch(session_id) is None:
        raise InvalidSessionIdError(
            "session id must be 1 to 128 characters from A-Z a-z 0-9 _ . : @ -"
        )
    return session_id
