// A resumable reader on the browser's native EventSource, for the demo page.
//
// The page talks to the stream only through `follow()` and its callbacks, so a richer
// client (fetch-based, with backoff; see issue 5) can replace this module without any
// change to the page's UI code.
//
// What it relies on from the server (resumable_sse.sse_response):
// - every stored event has an id "<incarnation>-<seq>", seq counting from 1;
// - the position to resume after comes from the Last-Event-ID header (which EventSource
//   sends by itself when it reconnects) or else the `last_event_id` query parameter
//   (which a reloaded page uses, since it starts without the header);
// - the stream ends with exactly one terminal event: `end`, `error` (data: JSON
//   {"code", "message"}) or `cancelled` (data: JSON {"reason"});
// - a non-200 answer (204 when there is nothing left, 400/404/503 on errors) makes
//   EventSource give up: that is reported as onClosed().

const EVENT_ID = /^([0-9a-z]{1,16})-([0-9]{1,15})$/;

/** Split an event id into {incarnation, seq}; null if it is not one the server issues. */
export function parseEventId(id) {
  const match = EVENT_ID.exec(id ?? "");
  return match ? { incarnation: match[1], seq: Number(match[2]) } : null;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

/**
 * Follow a stream from after `lastEventId` (null: from the start) until it ends.
 *
 * Callbacks (all optional):
 * - onOpen({resumedFrom, reconnect}): connected; resumedFrom is the seq it resumes
 *   after (0 from the start), reconnect is true for EventSource's own reconnects;
 * - onToken(data, id, seq): a content event, each delivered once and in order;
 * - onEnd(), onError({code, message}), onCancelled({reason}): the terminal events;
 * - onReconnecting(): the connection dropped and EventSource is retrying;
 * - onClosed(): the server refused or closed the stream without a terminal event.
 * After a terminal event or onClosed() the stream is closed and calls nothing more.
 *
 * @returns {{close(): void, lastEventId(): (string|null)}}
 */
export function follow(url, { lastEventId = null, ...on } = {}) {
  let position = parseEventId(lastEventId) ?? { incarnation: null, seq: 0 };
  let last = lastEventId || null;
  let opens = 0;
  let closed = false;

  const target = new URL(url, document.baseURI);
  if (last) target.searchParams.set("last_event_id", last);
  const source = new EventSource(target);

  function close() {
    closed = true;
    source.close();
  }

  function finish(callback, value) {
    if (closed) return;
    close();
    callback?.(value);
  }

  source.onopen = () => {
    if (closed) return;
    on.onOpen?.({ resumedFrom: position.seq, reconnect: opens > 0 });
    opens += 1;
  };

  source.onmessage = (event) => {
    if (closed) return;
    const id = parseEventId(event.lastEventId);
    if (id === null || (position.incarnation !== null && id.incarnation !== position.incarnation)) {
      finish(on.onError, { code: "unexpected_event_id", message: "The stream was replaced." });
      return;
    }
    if (id.seq <= position.seq) return; // a duplicate: already shown
    position = id;
    last = event.lastEventId;
    on.onToken?.(event.data, last, id.seq);
  };

  // Terminal events end the stream even without an id of their own (an error raised
  // while serving is sent without one), so they are never dropped as duplicates.
  source.addEventListener("end", (event) => {
    last = event.lastEventId || last;
    finish(on.onEnd);
  });
  source.addEventListener("error", (event) => {
    if (!(event instanceof MessageEvent)) return; // a connection error, handled below
    last = event.lastEventId || last;
    finish(on.onError, parseJson(event.data));
  });
  source.addEventListener("cancelled", (event) => {
    last = event.lastEventId || last;
    finish(on.onCancelled, parseJson(event.data));
  });

  source.onerror = (event) => {
    if (closed || event instanceof MessageEvent) return;
    if (source.readyState === EventSource.CLOSED) finish(on.onClosed);
    else on.onReconnecting?.();
  };

  return { close, lastEventId: () => last };
}
