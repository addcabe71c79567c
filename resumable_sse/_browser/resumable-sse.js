// @ts-check
/**
 * resumable-sse browser client: read a resumable Server-Sent Event stream with `fetch`.
 *
 * A dependency-free ES module, served by `resumable_sse.client_mount()`. Unlike the
 * browser's `EventSource` it can POST a JSON body, it survives a page reload (the last
 * event id and the text received so far live in `sessionStorage`), and it reconnects
 * with backoff after a network drop, sending `Last-Event-ID` every time.
 *
 *     import { postStream, attachStream } from "/resumable-sse/resumable-sse.js";
 *
 *     const stream = postStream("/chat", { prompt }, {
 *       onToken: (text) => answer.append(text),
 *       onEnd: () => console.log("done"),
 *     });
 *     stream.stop();  // cancels the answer on the server (POST <stream url>/../cancel)
 *
 * What it relies on from the server (resumable_sse.sse_response):
 * - event ids "<incarnation>-<seq>" (seq counts from 1), used to drop duplicates;
 *   other ids are treated as opaque and never deduplicated;
 * - one terminal event ends every stream: `end`, `error` ({"code", "message"}) or
 *   `cancelled` ({"reason"}); it is never dropped, even without an id;
 * - 204 means the client already has everything; other 4xx answers are final and carry
 *   {"error": code, "message": ...}; 408, 429 and 5xx are retried;
 * - a POST that streams its answer names the stream's GET url in `Content-Location`
 *   (a POST answered with JSON names it in `Location` or a `stream_url` field);
 * - `Compact-Replay: 1`, sent by a GET that starts with nothing (a new tab or device),
 *   asks for the text stored so far as one event per run instead of one per token (the
 *   id of the last token it covers keeps resuming exact); after a reload the client
 *   asks for the rest only, after its saved id, and the server sends it event by event.
 *
 * @module resumable-sse
 */

/** Version of this module, to tell cached copies apart. */
export const VERSION = "0.2.0.dev0";

const STORAGE_PREFIX = "resumable-sse:";
const EVENT_ID = /^([0-9a-z]{1,16})-([0-9]{1,15})$/;

// ---------------------------------------------------------------------------------------
// The parser: WHATWG HTML, "Server-sent events", section "Interpreting an event stream".
// ---------------------------------------------------------------------------------------

/**
 * One dispatched event.
 * @typedef {object} SSEMessage
 * @property {string} event The event type; `message` when the stream named none.
 * @property {string} data The data lines joined with "\n".
 * @property {string|null} id The `id` field of this event's block; null if it had none.
 * @property {string} lastEventId The last event id buffer at dispatch (spec semantics:
 *   it persists across events that carry no id).
 */

/**
 * An incremental, spec-correct Server-Sent Events parser.
 *
 * Feed it decoded text in chunks of any size: lines may end in CR, LF or CRLF (even split
 * across chunks), one leading BOM is skipped, comments are ignored, `data` lines are
 * joined with "\n", an `id` containing NUL is ignored, `retry` is honoured only when it is
 * all ASCII digits, and a block without data dispatches nothing. An unfinished event at
 * the end of the stream is discarded, as the spec says.
 */
export class SSEParser {
  /**
   * @param {(message: SSEMessage) => void} onMessage Called for each dispatched event.
   * @param {(ms: number) => void} [onRetry] Called with each valid `retry` value.
   */
  constructor(onMessage, onRetry) {
    this.onMessage = onMessage;
    this.onRetry = onRetry;
    /** The last event id buffer (spec semantics). */
    this.lastEventId = "";
    this._buffer = "";
    this._start = true;
    this._skipLF = false;
    this._data = "";
    this._hasData = false;
    this._event = "";
    /** @type {string|null} */
    this._id = null;
  }

  /**
   * Parse the next piece of the stream.
   * @param {string} chunk
   */
  feed(chunk) {
    let text = chunk;
    if (this._start && text.length > 0) {
      this._start = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this._skipLF && text.length > 0) {
      this._skipLF = false;
      if (text.charCodeAt(0) === 10) text = text.slice(1);
    }
    text = this._buffer + text;
    let pos = 0;
    const length = text.length;
    while (pos < length) {
      let end = pos;
      let code = 0;
      while (end < length) {
        code = text.charCodeAt(end);
        if (code === 10 || code === 13) break;
        end += 1;
      }
      if (end === length) break; // an unfinished line: wait for more
      this._line(text.slice(pos, end));
      pos = end + 1;
      if (code === 13) {
        if (pos < length) {
          if (text.charCodeAt(pos) === 10) pos += 1;
        } else {
          this._skipLF = true; // a CRLF split across chunks
        }
      }
    }
    this._buffer = text.slice(pos);
  }

  /** Forget any unfinished line or event, as at the end of a stream. */
  reset() {
    this._buffer = "";
    this._skipLF = false;
    this._start = true;
    this._data = "";
    this._hasData = false;
    this._event = "";
    this._id = null;
  }

  /** @param {string} line */
  _line(line) {
    if (line === "") {
      this._dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" a comment
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case "event":
        this._event = value;
        break;
      case "data":
        this._data += this._hasData ? `\n${value}` : value;
        this._hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) {
          this.lastEventId = value;
          this._id = value;
        }
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.onRetry?.(Number(value));
        break;
      default: // unknown fields are ignored
    }
  }

  _dispatch() {
    const { _hasData: hasData, _data: data, _event: event, _id: id } = this;
    this._data = "";
    this._hasData = false;
    this._event = "";
    this._id = null;
    if (!hasData) return;
    this.onMessage({ event: event || "message", data, id, lastEventId: this.lastEventId });
  }
}

// ---------------------------------------------------------------------------------------
// Ids and storage
// ---------------------------------------------------------------------------------------

/**
 * Split an id issued by resumable-sse into its parts; null for any other string.
 * @param {string|null|undefined} id
 * @returns {{incarnation: string, seq: number}|null}
 */
export function parseEventId(id) {
  const match = EVENT_ID.exec(id ?? "");
  return match ? { incarnation: match[1], seq: Number(match[2]) } : null;
}

/**
 * What is kept in sessionStorage for one stream, under "resumable-sse:<stream url>".
 * @typedef {object} SavedStream
 * @property {string|null} lastEventId The id of the last event received.
 * @property {string} text The data of every `message` event received, concatenated.
 * @property {number} events How many events were received (terminal included).
 * @property {{event: string, data: string}|null} terminal The terminal event, once received.
 */

/** @param {string} url */
function absolute(url) {
  const target = new URL(url, document.baseURI);
  target.hash = "";
  return target.href;
}

/**
 * The saved state of the stream at `url`, or null.
 * @param {string} url The stream's GET url (relative urls resolve against the page).
 * @returns {SavedStream|null}
 */
export function loadSaved(url) {
  try {
    const raw = sessionStorage.getItem(STORAGE_PREFIX + absolute(url));
    const value = raw === null ? null : JSON.parse(raw);
    const valid =
      value !== null && typeof value === "object" && typeof value.text === "string" &&
      (value.lastEventId === null || typeof value.lastEventId === "string") &&
      typeof value.events === "number" &&
      (value.terminal === null || typeof value.terminal?.event === "string");
    return valid ? value : null;
  } catch {
    return null; // storage disabled, or a value this version does not understand
  }
}

/**
 * Remove the saved state of the stream at `url`.
 * @param {string} url
 */
export function forgetSaved(url) {
  try {
    sessionStorage.removeItem(STORAGE_PREFIX + absolute(url));
  } catch {
    // storage disabled: nothing was saved
  }
}

/**
 * @param {string} url absolute
 * @param {SavedStream} value
 */
function save(url, value) {
  try {
    sessionStorage.setItem(STORAGE_PREFIX + url, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the stream works, it just cannot survive a reload.
  }
}

// ---------------------------------------------------------------------------------------
// The stream
// ---------------------------------------------------------------------------------------

/**
 * An error that ends a stream.
 * @typedef {object} StreamError
 * @property {string} code `error` events: the server's code. HTTP refusals: the body's
 *   `error` (or `http_<status>`). Client side: `connection_failed` (gave up
 *   reconnecting), `not_resumable` (dropped, and the server named no stream url),
 *   `stream_replaced` (the server sent ids of another stream), `bad_response`.
 * @property {string} message A sentence for people.
 * @property {number} [status] The HTTP status, for refusals.
 */

/**
 * @typedef {"connecting"|"open"|"reconnecting"|"done"|"error"|"cancelled"|"closed"} StreamState
 */

/**
 * @typedef {object} StreamCallbacks
 * @property {(text: string, message: SSEMessage) => void} [onToken] A `message` event
 *   (one LLM token); each is delivered once, in order.
 * @property {(message: SSEMessage) => void} [onEvent] Any other non-terminal event
 *   (e.g. `tool_call`); also delivered once, in order.
 * @property {() => void} [onEnd] The `end` event: the answer is complete (also on 204).
 * @property {(error: StreamError) => void} [onError] The `error` event, a refusal, or
 *   the client giving up. Final.
 * @property {(info: {reason: string}) => void} [onCancelled] The `cancelled` event.
 * @property {(info: {url: string, lastEventId: string|null, attempt: number}) => void}
 *   [onOpen] A connection was accepted (200). `attempt` is 0 for the first connection.
 * @property {(info: {url: string, lastEventId: string, seq: number,
 *   reason: "reload"|"reconnect"}) => void} [onResume] A connection was accepted that
 *   continues after `lastEventId` (its sequence number is `seq`): after a page reload or
 *   after a dropped connection.
 * @property {(info: {attempt: number, delay: number, reason: string}) => void}
 *   [onReconnecting] The connection dropped or was refused for now; retrying in `delay` ms.
 * @property {(state: StreamState) => void} [onStateChange] Every change of `stream.state`.
 */

/**
 * @typedef {object} StreamOptions
 * @property {string|null} [lastEventId] Resume after this id instead of the saved one.
 * @property {boolean} [persist=true] Keep the last id and the text in sessionStorage so a
 *   reload resumes; false always reads the stream from its start.
 * @property {boolean} [compact=true] When starting with nothing, ask for the replay with
 *   each run of text merged into one event (`onToken` then gets the text so far at once);
 *   false reads every event as it was stored.
 * @property {string|((streamUrl: string) => string)} [cancelUrl="cancel"] Where stop()
 *   POSTs; a string resolves against the stream url, so the default fits
 *   `/chat/{id}/stream` + `/chat/{id}/cancel`.
 * @property {Record<string, string>} [headers] Extra request headers (e.g. auth).
 * @property {RequestCredentials} [credentials="same-origin"]
 * @property {number} [maxRetries=10] Failed reconnection attempts in a row before giving up.
 * @property {number} [maxRetryDelay=30000] Cap of the exponential backoff, in ms; the
 *   server's `retry` (default 1000 ms) is the first delay.
 * @property {number} [idleTimeout=45000] Reconnect when nothing (not even a keep-alive
 *   comment) arrived for this long, in ms; 0 disables it. Keep it above the server's ping.
 * @property {{end?: string, error?: string, cancelled?: string}} [terminalEvents]
 *   The terminal event names, if the server renamed them.
 */

/** @typedef {StreamCallbacks & StreamOptions} Options */

class RetryableError extends Error {
  /**
   * @param {string} reason
   * @param {number} [after] Minimum delay in ms (Retry-After).
   */
  constructor(reason, after = 0) {
    super(reason);
    this.after = after;
  }
}

class FatalError extends Error {
  /** @param {StreamError} error */
  constructor(error) {
    super(error.message);
    this.error = error;
  }
}

/**
 * @param {Response} response
 * @returns {Promise<StreamError>}
 */
async function refusal(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON
  }
  return {
    code: typeof body?.error === "string" ? body.error : `http_${response.status}`,
    message:
      typeof body?.message === "string"
        ? body.message
        : `The server answered ${response.status} ${response.statusText}.`.trim(),
    status: response.status,
  };
}

/** @param {string} data */
function parseJson(data) {
  try {
    const value = JSON.parse(data);
    return value !== null && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

/**
 * A stream being read; made by {@link postStream} or {@link attachStream}.
 */
export class ResumableStream {
  /**
   * @param {string|null} url The GET url, if known.
   * @param {{method: string, url: string, body?: string}|null} request The first request,
   *   if it is not a GET of `url`.
   * @param {Options} options
   */
  constructor(url, request, options) {
    this._options = options;
    this._terminal = {
      end: options.terminalEvents?.end ?? "end",
      error: options.terminalEvents?.error ?? "error",
      cancelled: options.terminalEvents?.cancelled ?? "cancelled",
    };
    /** @type {string|null} The stream's GET url (absolute), once known. */
    this.url = url === null ? null : absolute(url);
    /** @type {StreamState} */
    this.state = "connecting";
    /** The data of every `message` event so far (restored after a reload). */
    this.text = "";
    /** @type {string|null} The id of the last event received. */
    this.lastEventId = options.lastEventId ?? null;
    /** How many events were received so far (restored after a reload). */
    this.events = 0;
    /** Reconnection delay advised by the server (`retry:`), in ms. */
    this.retry = 1000;
    /**
     * Settles once the stream is over: with the final state, or "closed" after close().
     * @type {Promise<StreamState>}
     */
    /** @type {(state: StreamState) => void} */
    this._resolveDone = () => {};
    this.done = new Promise((resolve) => {
      this._resolveDone = resolve;
    });
    /** @type {{event: string, data: string}|null} */
    this._terminalSeen = null;
    this._position = parseEventId(this.lastEventId);
    this._controller = new AbortController();
    /** @type {(() => void)|null} */
    this._wake = null;
    this._request = request;
    this._restored = false;
    this._opened = false;
    /** @type {((value: unknown) => void)|undefined} */
    this._onUrl = undefined;

    const saved = this.url !== null && options.persist !== false && options.lastEventId == null
      ? loadSaved(this.url)
      : null;
    if (saved) {
      this.text = saved.text;
      this.events = saved.events;
      this.lastEventId = saved.lastEventId;
      this._position = parseEventId(saved.lastEventId);
      this._restored = saved.lastEventId !== null;
    }
    // Callbacks run after the caller has the object in hand.
    queueMicrotask(() => {
      if (saved?.terminal) this._finish(saved.terminal.event, saved.terminal.data);
      else void this._run();
    });
  }

  /** True once the stream is over (terminal event, final error or close()). */
  get finished() {
    return ["done", "error", "cancelled", "closed"].includes(this.state);
  }

  /**
   * Cancel the stream on the server (POST to `cancelUrl`). The stream then ends with
   * its `cancelled` event (`onCancelled`). Resolves with the server's JSON answer.
   * @returns {Promise<unknown>}
   */
  async stop() {
    if (this.finished) return null;
    if (this.url === null) {
      // The POST has not answered yet: wait for the url, then cancel.
      await new Promise((resolve) => {
        this._onUrl = resolve;
      });
      if (this.finished || this.url === null) return null;
    }
    const option = this._options.cancelUrl ?? "cancel";
    const target = typeof option === "function" ? option(this.url) : new URL(option, this.url).href;
    const response = await fetch(target, {
      method: "POST",
      headers: { Accept: "application/json", ...this._options.headers },
      credentials: this._options.credentials ?? "same-origin",
    });
    if (!response.ok) {
      const error = await refusal(response);
      throw new Error(`Could not stop the stream: ${error.message}`);
    }
    return response.status === 204 ? null : response.json().catch(() => null);
  }

  /** Stop reading without cancelling; the saved state stays, so it can resume later. */
  close() {
    if (this.finished) return;
    this._halt();
    this._setState("closed");
    this._resolveDone?.("closed");
  }

  /** Abort the request, end a backoff sleep, release a stop() waiting for the url. */
  _halt() {
    this._controller.abort();
    this._wake?.();
    this._onUrl?.(undefined);
    this._onUrl = undefined;
  }

  /** Stop reading (if still reading) and remove the saved state. */
  forget() {
    this.close();
    if (this.url !== null) forgetSaved(this.url);
  }

  /** @param {StreamState} state */
  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._call("onStateChange", state);
  }

  _save() {
    if (this.url === null || this._options.persist === false) return;
    save(this.url, {
      lastEventId: this.lastEventId,
      text: this.text,
      events: this.events,
      terminal: this._terminalSeen,
    });
  }

  async _run() {
    let attempt = 0; // failed attempts in a row
    let connections = 0; // connections the server accepted
    const options = this._options;
    const maxRetries = options.maxRetries ?? 10;
    const maxDelay = options.maxRetryDelay ?? 30000;
    const onOnline = () => this._wake?.();
    globalThis.addEventListener?.("online", onOnline);
    try {
      for (;;) {
        let error = null;
        try {
          await this._connect(connections);
        } catch (caught) {
          error = caught;
        }
        if (this.finished) return;
        if (error instanceof FatalError) {
          this._fail(error.error);
          return;
        }
        if (this._opened) {
          connections += 1;
          attempt = 0;
        }
        if (this.url === null) {
          this._fail({
            code: "not_resumable",
            message: "The connection dropped and the server named no url to resume from.",
          });
          return;
        }
        attempt += 1;
        if (attempt > maxRetries) {
          this._fail({
            code: "connection_failed",
            message: `Could not reconnect after ${maxRetries} attempts.`,
          });
          return;
        }
        // Exponential backoff from the server's `retry`, capped, with a little jitter so
        // many clients dropped at once do not come back at the same instant.
        const backoff = Math.min(this.retry * 2 ** (attempt - 1), Math.max(maxDelay, this.retry));
        const after = error instanceof RetryableError ? error.after : 0;
        const delay = Math.max(after, Math.round(backoff * (1 + Math.random() * 0.25)));
        const reason =
          error === null
            ? "The stream ended before its last event."
            : error instanceof Error
              ? error.message
              : String(error);
        this._setState("reconnecting");
        this._call("onReconnecting", { attempt, delay, reason });
        await this._sleep(delay);
        if (this.finished) return;
      }
    } finally {
      globalThis.removeEventListener?.("online", onOnline);
    }
  }

  /**
   * Call a user callback; an exception in it is reported, not allowed to break the stream.
   * @param {keyof StreamCallbacks} name
   * @param {...any} args
   */
  _call(name, ...args) {
    const callback = /** @type {((...args: any[]) => void)|undefined} */ (this._options[name]);
    try {
      callback?.(...args);
    } catch (error) {
      if (typeof globalThis.reportError === "function") globalThis.reportError(error);
      else console.error(error);
    }
  }

  /** @param {number} ms Sleep, cut short by close() or the browser going back online. */
  _sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this._wake = null;
        resolve(undefined);
      };
      const timer = setTimeout(done, ms);
      this._wake = done;
    });
  }

  /**
   * One request and its response, read to the end.
   * @param {number} connections How many connections were accepted before.
   * @returns {Promise<void>}
   */
  async _connect(connections) {
    this._opened = false;
    const options = this._options;
    const first = this._request;
    const headers = /** @type {Record<string, string>} */ ({
      Accept: "text/event-stream",
      ...options.headers,
    });
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    else if (!first && options.compact !== false) headers["Compact-Replay"] = "1"; // GETs only
    /** @type {RequestInit} */
    const init = {
      method: first ? first.method : "GET",
      headers,
      cache: "no-store",
      credentials: options.credentials ?? "same-origin",
      signal: this._controller.signal,
    };
    if (first?.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = first.body;
    }
    const target = first ? first.url : /** @type {string} */ (this.url);
    this._setState(connections === 0 && !this._restored ? "connecting" : "reconnecting");

    let response;
    try {
      response = await fetch(target, init);
    } catch (error) {
      if (first) {
        // A POST whose answer never came may or may not have started a stream: do not
        // repeat it (that could run the model twice).
        throw new FatalError({
          code: "connection_failed",
          message: "Could not reach the server to start the stream.",
        });
      }
      throw new RetryableError(`Could not connect: ${error}`);
    }

    if (first) {
      this._request = null; // from now on, resume with GET
      const location =
        response.headers.get("Content-Location") ??
        (response.status === 201 ? response.headers.get("Location") : null);
      if (location) this._setUrl(new URL(location, response.url).href);
    }

    if (response.status === 204) {
      this._finish(this._terminal.end, "");
      return;
    }
    const type = response.headers.get("Content-Type") ?? "";
    if (response.ok && first && !type.startsWith("text/event-stream")) {
      // POST answered with JSON naming the stream: {"stream_url": ...} or Location.
      const body = await response.json().catch(() => null);
      if (this.url === null && typeof body?.stream_url === "string") {
        this._setUrl(new URL(body.stream_url, response.url).href);
      }
      if (this.url === null) {
        throw new FatalError({
          code: "bad_response",
          message: "The server answered without a stream or a url to read it from.",
          status: response.status,
        });
      }
      this._request = null;
      return this._connect(connections);
    }
    if (!response.ok) {
      const retryable = response.status >= 500 || response.status === 408 || response.status === 429;
      if (retryable) {
        const after = Number(response.headers.get("Retry-After"));
        await response.body?.cancel().catch(() => {});
        throw new RetryableError(`The server answered ${response.status}.`, after > 0 ? after * 1000 : 0);
      }
      throw new FatalError(await refusal(response));
    }
    if (!type.startsWith("text/event-stream") || response.body === null) {
      throw new FatalError({
        code: "bad_response",
        message: `Expected text/event-stream, got ${type || "no content type"}.`,
        status: response.status,
      });
    }

    this._opened = true;
    this._setState("open");
    this._call("onOpen", { url: target, lastEventId: this.lastEventId, attempt: connections });
    if (this.lastEventId !== null && (connections > 0 || this._restored)) {
      this._call("onResume", {
        url: /** @type {string} */ (this.url),
        lastEventId: this.lastEventId,
        seq: this._position?.seq ?? this.events,
        reason: connections === 0 ? "reload" : "reconnect",
      });
    }
    await this._read(response.body);
  }

  /** @param {string} url */
  _setUrl(url) {
    this.url = url;
    this._onUrl?.(undefined);
    this._onUrl = undefined;
  }

  /** @param {ReadableStream<Uint8Array>} body */
  async _read(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // the parser skips one BOM
    const parser = new SSEParser(
      (message) => this._message(message),
      (ms) => {
        this.retry = ms;
      },
    );
    const idle = this._options.idleTimeout ?? 45000;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    let timer;
    const watchdog = () => {
      clearTimeout(timer);
      if (idle > 0) timer = setTimeout(() => reader.cancel("idle").catch(() => {}), idle);
    };
    try {
      watchdog();
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (error) {
          if (this.finished) return;
          throw new RetryableError(`The connection dropped: ${error}`);
        }
        if (chunk.done) break;
        watchdog();
        parser.feed(decoder.decode(chunk.value, { stream: true }));
        if (this.finished) return;
      }
      parser.feed(decoder.decode());
    } finally {
      clearTimeout(timer);
      if (this.finished) reader.cancel().catch(() => {});
    }
  }

  /** @param {SSEMessage} message */
  _message(message) {
    if (this.finished) return;
    const terminal = this._isTerminal(message.event);
    if (message.id !== null) {
      const id = parseEventId(message.id);
      if (id !== null && this._position !== null) {
        if (id.incarnation !== this._position.incarnation) {
          this._fail({
            code: "stream_replaced",
            message: "The server sent events of another stream under this url.",
          });
          return;
        }
        if (id.seq <= this._position.seq && !terminal) return; // a duplicate: already seen
      }
      this._position = id ?? this._position;
      this.lastEventId = message.id;
    }
    this.events += 1;
    if (terminal) {
      this._finish(message.event, message.data);
      return;
    }
    if (message.event === "message") {
      this.text += message.data;
      this._save();
      this._call("onToken", message.data, message);
    } else {
      this._save();
      this._call("onEvent", message);
    }
  }

  /** @param {string} event */
  _isTerminal(event) {
    const names = this._terminal;
    return event === names.end || event === names.error || event === names.cancelled;
  }

  /**
   * @param {string} event A terminal event name.
   * @param {string} data
   */
  _finish(event, data) {
    if (this.finished) return;
    this._terminalSeen = { event, data };
    this._save();
    this._halt();
    if (event === this._terminal.error) {
      const body = parseJson(data);
      const error = {
        code: typeof body.code === "string" ? body.code : "error",
        message: typeof body.message === "string" ? body.message : "The stream failed.",
      };
      this._setState("error");
      this._call("onError", error);
      this._resolveDone?.("error");
    } else if (event === this._terminal.cancelled) {
      const body = parseJson(data);
      this._setState("cancelled");
      const reason = typeof body.reason === "string" ? body.reason : "cancelled";
      this._call("onCancelled", { reason });
      this._resolveDone?.("cancelled");
    } else {
      this._setState("done");
      this._call("onEnd");
      this._resolveDone?.("done");
    }
  }

  /** @param {StreamError} error A final error that is not an event of the stream. */
  _fail(error) {
    if (this.finished) return;
    this._halt();
    this._setState("error");
    this._call("onError", error);
    this._resolveDone?.("error");
  }
}

/**
 * Start a stream with a POST of `body` as JSON, and read its answer.
 *
 * The server either streams the answer in the POST's response (and names the stream's
 * GET url in `Content-Location`, used to resume), or answers with JSON and a `Location`
 * header or `stream_url` field, which is then read. A failed POST is never repeated.
 *
 * @param {string} url
 * @param {unknown} body Sent as JSON.
 * @param {Options} [options]
 * @returns {ResumableStream}
 */
export function postStream(url, body, options = {}) {
  return new ResumableStream(
    null,
    { method: "POST", url: absolute(url), body: JSON.stringify(body) },
    { ...options, lastEventId: null },
  );
}

/**
 * Read an existing stream by GET, resuming after the saved position if this tab read it
 * before (e.g. before a reload): `stream.text` then already holds the text received so
 * far, and a finished stream ends at once without a request.
 *
 * @param {string} url The stream's GET url.
 * @param {Options} [options]
 * @returns {ResumableStream}
 */
export function attachStream(url, options = {}) {
  return new ResumableStream(url, null, options);
}
