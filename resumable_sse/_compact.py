"""Compacted replay: runs of text events merged into one event each, while pages are read.

A client that starts from nothing (a new tab, a second device) would otherwise replay a
long answer one token at a time. With compaction, every run of consecutive *text*
events (items the generator yielded as ``str`` or ``bytes``, see ``Entry.text``) under
the same event name becomes one event: the concatenation of their data, with the id
of the last event it covers. JSON items, custom events and terminal events are never
merged and keep their place. Since each merged event carries the id of the last event
it covers, every id sent is still an exact resume point.

Line breaks. An SSE client receives ``\\r\\n`` and ``\\r`` in data as ``\\n`` (the
framing splits lines on all three). Concatenating the raw data first would turn a
``\\r`` ending one event and a ``\\n`` starting the next into one line break instead
of two, so each piece's line breaks are normalised to ``\\n`` before they are joined:
the client then gets exactly the text the uncompacted events gave it.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from typing import cast

from typing_extensions import final

from .stores._contract import Entry, EventRun, StoredEvent

__all__ = ["COMPACT_HEADER", "COMPACT_PARAM", "Compactor"]

#: The request header (``Compact-Replay: 1``) and query parameter (``compact=1``, which
#: a browser's ``EventSource`` can send) by which a client asks for a compacted replay.
COMPACT_HEADER = "Compact-Replay"
COMPACT_PARAM = "compact"


def _lf(data: str) -> str:
    """``data`` with every ``\\r\\n`` and lone ``\\r`` as ``\\n``, as a client receives it."""
    return data.replace("\r\n", "\n").replace("\r", "\n") if "\r" in data else data


def _is_data(item: object) -> bool:
    return type(item) is str


@final
class Compactor:
    """Merges runs of text events; feed it pages in order, then :meth:`flush` it.

    A run may span pages: its events are held until a page shows where it ends.
    """

    __slots__ = ("_run",)

    def __init__(self) -> None:
        self._run: list[StoredEvent] = []

    def feed(self, events: Iterable[StoredEvent]) -> list[StoredEvent]:
        """The events of this page whose place in the output is settled, merged."""
        if type(events) is EventRun:
            return self._feed_run(events)
        out: list[StoredEvent] = []
        run = self._run
        for event in events:
            if run and not (event.text and event.event == run[0].event):
                out.append(self._merged())
                run = self._run
            if event.text:
                run.append(event)
            else:
                out.append(event)
        return out

    def _feed_run(self, events: EventRun) -> list[StoredEvent]:
        """:meth:`feed` for a store's own run: each stretch of plain data (text events of
        the run's usual name) joins the held run as one piece, joined in one go."""
        out: list[StoredEvent] = []
        seq = events.seq
        for is_data, group in groupby(events.items, _is_data):
            items = list(group)
            if not is_data:
                entries = cast("list[Entry]", items)
                out += self.feed([StoredEvent(n, *entry) for n, entry in enumerate(entries, seq)])
                seq += len(items)
                continue
            datas = cast("list[str]", items)
            if len(datas) == 1:
                out += self.feed([StoredEvent(seq, events.event, datas[0], True)])
            else:
                joined = "".join(datas)
                if "\r" in joined:
                    joined = "".join(map(_lf, datas))
                last = StoredEvent(seq + len(datas) - 1, events.event, joined, True)
                out += self.feed([last])
            seq += len(items)
        return out

    def flush(self) -> list[StoredEvent]:
        """The run still held, merged (the replay ends here)."""
        return [self._merged()] if self._run else []

    def _merged(self) -> StoredEvent:
        run, self._run = self._run, []
        if len(run) == 1:
            return run[0]  # a lone event is sent exactly as it is stored
        last = run[-1]
        data = "".join([_lf(event.data) for event in run])
        return StoredEvent(last.seq, last.event, data, True)
