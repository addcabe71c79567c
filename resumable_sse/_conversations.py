"""One active stream per conversation: which stream is a chat's current one, atomically.

A conversation id (a chat's id) names at most one *active* stream. Starting one claims
the stream first and only then maps the conversation to it in the store, in one atomic
step (:meth:`~resumable_sse.StreamStore.set_active`). A mapped session therefore always
existed, so a mapping whose stream has finished or expired is stale and may be cleared
by anyone, while a mapping whose stream runs is respected:

* the same session id started twice (a repeated request) claims once: the second start
  joins the running stream, and the generator runs once;
* another session id either supersedes the running one (it is cancelled) or is refused
  with :class:`~resumable_sse.ConversationBusyError`, by option; of two refused-mode
  starts at once exactly one runs, the other's claimed stream is deleted unused.

While the stream runs, the mapping is renewed every ``store.renew_interval`` (stores
with leases expire it otherwise); when the producer ends, it is cleared (compare and
delete, so a superseded stream never clears its successor's mapping).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from typing_extensions import final

from ._exceptions import ConversationBusyError, StoreUnavailableError
from .stores._contract import StreamStore

__all__ = ["ActiveStream", "activate", "run_mapped"]

logger = logging.getLogger("resumable_sse")

#: Seconds the end-of-stream clean-up may take before the mapping is left to expire.
_CLEAR_TIMEOUT = 5.0
#: Stale mappings cleared in a row before a start gives up as contended.
_ATTEMPTS = 3


@final
@dataclass(frozen=True, slots=True)
class ActiveStream:
    """What :meth:`Streamer.start_active <resumable_sse.Streamer.start_active>` did.

    ``session_id`` is the conversation's active stream, to serve to the client;
    ``started`` is whether this call started it (``False``: it joined a running or
    retained stream under the same session id); ``superseded`` names the stream this
    call replaced and cancelled, if any.
    """

    session_id: str
    started: bool
    superseded: str | None = None


async def activate(
    store: StreamStore, conversation_id: str, session_id: str, *, supersede: bool
) -> str | None:
    """Map the conversation to the (already claimed) ``session_id``.

    Returns:
        The running stream this call superseded (the caller cancels it), or ``None``.

    Raises:
        ConversationBusyError: another stream of the conversation runs and
            ``supersede`` is false.
        StoreUnavailableError: the store cannot be reached.
    """
    for _ in range(_ATTEMPTS):
        previous = await store.set_active(conversation_id, session_id, replace=supersede)
        if previous is None or previous == session_id:
            return None
        info = await store.info(previous)
        running = info is not None and not info.state.finished
        if supersede:
            return previous if running else None
        if running:
            raise ConversationBusyError(
                f"conversation {conversation_id!r} has a running stream", session_id=previous
            )
        await store.clear_active(conversation_id, previous)  # stale: that stream ended
    raise ConversationBusyError(
        f"conversation {conversation_id!r} is being started concurrently", session_id=session_id
    )


async def run_mapped(
    store: StreamStore,
    conversation_id: str,
    session_id: str,
    run: Callable[[], Awaitable[None]],
) -> None:
    """Await ``run`` (the producer), keeping the mapping alive; clear it at the end."""
    try:
        async with anyio.create_task_group() as tg:
            if store.renew_interval is not None:
                tg.start_soon(_keep, store, conversation_id, session_id, store.renew_interval)
            await run()
            tg.cancel_scope.cancel()
    finally:
        with anyio.move_on_after(_CLEAR_TIMEOUT, shield=True):
            try:
                await store.clear_active(conversation_id, session_id)
            except StoreUnavailableError as exc:  # the mapping expires on its own
                logger.warning("could not clear conversation %r: %s", conversation_id, exc)


async def _keep(store: StreamStore, conversation_id: str, session_id: str, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            current = await store.set_active(conversation_id, session_id, replace=False)
        except StoreUnavailableError:
            continue
        if current not in (None, session_id):
            return  # superseded: the successor keeps the mapping
