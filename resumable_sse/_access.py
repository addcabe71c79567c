"""Access control: who may start, read, inspect, cancel or delete a session.

The streamer asks an ``authorize`` callable before each operation that names a
*principal* (the app's user id, typically). The default, :func:`owner_only`, binds a
stream to the principal that started it and lets only that principal near it. A denied
request raises :class:`~resumable_sse.AccessDeniedError` with the same message whether
the session exists or not. Reading, inspecting, cancelling or deleting thus tells a
stranger nothing, not even existence; *starting* does tell whether an id is taken (a free
id starts the caller's stream, a taken one is denied), which is safe for unguessable ids
(``new_session_id()``, 128 random bits). SECURITY.md spells out what can be observed.

Operations without a principal (trusted server-side code) are not checked by the
default policy; a custom ``authorize`` sees them too, with ``principal=None``.

A principal is a non-empty ``str``; an ``int`` or a ``UUID`` (common user ids) is turned
into its ``str`` at the API, so ``42`` and ``"42"`` are the same principal on every
store, and a stream's ``owner`` is always a ``str``. Anything else, ``bool`` included,
raises ``TypeError``, and an empty string ``ValueError``: neither may silently become
"no principal", which would make the caller trusted.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias
from uuid import UUID

from typing_extensions import final

from ._exceptions import AccessDeniedError

__all__ = [
    "AccessRequest",
    "Action",
    "Authorize",
    "Principal",
    "check_access",
    "normalize_principal",
    "owner_only",
]

#: Who is asking: the app's user id. ``int`` and ``UUID`` are turned into ``str``.
Principal: TypeAlias = str | int | UUID

#: What a caller wants to do with a session.
Action: TypeAlias = Literal["start", "read", "status", "cancel", "delete"]


@final
@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One access decision's inputs.

    ``owner`` is the principal the stream was started by (``None`` if it was started
    without one, or does not exist); ``exists`` says whether the stream exists.
    """

    action: Action
    session_id: str
    principal: str | None
    owner: str | None
    exists: bool


#: Decides an :class:`AccessRequest`: ``True`` allows it. May be sync or async.
Authorize: TypeAlias = Callable[[AccessRequest], bool | Awaitable[bool]]


def owner_only(request: AccessRequest) -> bool:
    """The default policy: a stream belongs to the principal that started it.

    Anyone may start a new stream (it becomes theirs); only its owner may read, inspect,
    cancel or delete it. Requests without a principal are trusted. A start on an id held
    by someone else's stream is denied, so a start reveals whether an id is taken.
    """
    if request.principal is None:
        return True
    if request.action == "start" and not request.exists:
        return True
    return request.exists and request.owner == request.principal


async def check_access(authorize: Authorize, request: AccessRequest) -> None:
    """Raise :class:`AccessDeniedError` unless ``authorize`` allows ``request``."""
    allowed = authorize(request)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    if not allowed:
        raise AccessDeniedError("access denied")


def normalize_principal(principal: object) -> str | None:
    """The principal as streams store and compare it: a non-empty ``str``, or ``None``.

    Raises:
        TypeError: ``principal`` is not a ``str``, ``int`` or ``UUID`` (a ``bool`` is not
            accepted as an ``int``).
        ValueError: ``principal`` is the empty string.
    """
    if principal is None:
        return None
    if isinstance(principal, str):
        if not principal:
            raise ValueError("principal must not be empty (use None for trusted calls)")
        return str.__str__(principal)  # the plain value, also of a str subclass (enum)
    if isinstance(principal, int) and not isinstance(principal, bool):
        return str(int(principal))  # the decimal value, also of an int subclass (enum)
    if isinstance(principal, UUID):
        return str(principal)
    raise TypeError(f"principal must be a str, int or UUID, not {type(principal).__name__}")
