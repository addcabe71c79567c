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

import { backoffDelay, parseRetryAfter } from "./backoff.js";
import { SSEParser } from "./sse-parser.js";
import { absolute, forgetSaved, loadSaved, save } from "./storage.js";

export { forgetSaved, loadSaved, SSEParser };

/** @typedef {import("./sse-parser.js").SSEMessage} SSEMessage */

/** Version of this module, to tell cached copies apart. */
export const VERSION = "0.2.0.dev0";

const EVENT_ID = /^([0-9a-z]{1,16})-([0-9]{1,15})$/;

// ---------------------------------------------------------------------------------------
// Ids
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
 *   [onReconnecting] The connection dropped, was refused for now, or brought no new
 *   event; retrying in `delay` ms (never more than `maxRetryDelay`). `attempt` counts the
 *   failed attempts in a row.
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
 *   An attempt fails unless it brings a new event: a response that ends with nothing new
 *   (garbage, only comments, an immediate close) counts like a refused connection.
 * @property {number} [maxRetryDelay=30000] Cap of the exponential backoff, in ms; the
 *   server's `retry` (default 1000 ms) is the first delay, doubled per failure, less up
 *   to 25 % jitter. A `Retry-After` is waited out, but no server value lifts a wait past
 *   this cap; one that is not a finite number >= 0 is ignored.
 * @property {number} [idleTimeout=45000] Reconnect when nothing (not even a keep-alive
 *   comment) arrived for this long, in ms; 0 disables it. Keep it above the server's ping.
 * @property {{end?: string, error?: string, cancelled?: string}} [terminalEvents]
 *   The terminal event names, if the server renamed them.
 */

/** @typedef {StreamCallbacks & StreamOptions} Options */

const DEFAULT_RETRY_MS = 1000;

/** @param {Response} response */
function isEventStream(response) {
  return (response.headers.get("Content-Type") ?? "").startsWith("text/event-stream");
}

class RetryableError extends Error {
  /**
   * @param {string} reason
   * @param {number|null} [after] The server's `Retry-After`, in ms.
   */
  constructor(reason, after = null) {
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
    this.retry = DEFAULT_RETRY_MS;
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
    this._opened = false; // the current attempt's response is an event stream
    this._received = false; // the current attempt brought a new event
    this._maxRetries = options.maxRetries ?? 10;
    this._maxDelay = options.maxRetryDelay ?? 30000;
    if (!Number.isInteger(this._maxRetries) || this._maxRetries < 0) {
      throw new RangeError(`maxRetries must be an integer >= 0, not ${this._maxRetries}`);
    }
    if (!Number.isFinite(this._maxDelay) || this._maxDelay < 0) {
      throw new RangeError(`maxRetryDelay must be a finite number >= 0, not ${this._maxDelay}`);
    }
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
    const onOnline = () => this._wake?.();
    globalThis.addEventListener?.("online", onOnline);
    try {
      await this._loop();
    } finally {
      globalThis.removeEventListener?.("online", onOnline);
    }
  }

  /** Connect, and after each failure back off and connect again, until the stream ends. */
  async _loop() {
    let failures = 0; // failed attempts in a row; only an attempt that got an event resets it
    let connections = 0; // connections the server accepted
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
      if (this._opened) connections += 1;
      // A 200 that brought no new event (garbage, only comments, an immediate close) is a
      // failure like any other, so a server answering nothing else cannot keep us forever.
      failures = this._received ? 1 : failures + 1;
      if (this.url === null) {
        this._fail({
          code: "not_resumable",
          message: "The connection dropped and the server named no url to resume from.",
        });
        return;
      }
      if (failures > this._maxRetries) {
        this._fail({
          code: "connection_failed",
          message: `Could not reconnect after ${this._maxRetries} attempts.`,
        });
        return;
      }
      await this._backOff(failures, error);
      if (this.finished) return;
    }
  }

  /**
   * Wait before the next attempt: exponential from the server's `retry`, capped by
   * `maxRetryDelay` whatever the server sent, with jitter (see backoff.js).
   * @param {number} failures Failed attempts in a row.
   * @param {unknown} error Why the last attempt failed; null if the response just ended.
   */
  async _backOff(failures, error) {
    const delay = Math.floor(
      backoffDelay(failures, {
        base: DEFAULT_RETRY_MS,
        cap: this._maxDelay,
        retry: this.retry,
        retryAfter: error instanceof RetryableError ? error.after : null,
      }),
    );
    const reason =
      error === null
        ? this._received
          ? "The stream ended before its last event."
          : "The response ended without any new event."
        : error instanceof Error
          ? error.message
          : String(error);
    this._setState("reconnecting");
    this._call("onReconnecting", { attempt: failures, delay, reason });
    await this._sleep(delay);
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
    this._received = false;
    const first = this._request;
    const target = first ? first.url : /** @type {string} */ (this.url);
    this._setState(connections === 0 && !this._restored ? "connecting" : "reconnecting");
    const response = await this._fetch(target, first);
    if (first) this._takeStreamUrl(response);
    if (response.status === 204) {
      this._finish(this._terminal.end, "");
      return;
    }
    if (first && response.ok && !isEventStream(response)) {
      await this._followJsonAnswer(response);
      return this._connect(connections);
    }
    const body = await this._checkResponse(response);
    this._opened = true;
    this._announceOpen(target, connections);
    await this._read(body);
  }

  /**
   * Send the request. A POST that fails is final: it may have started the stream.
   * @param {string} target
   * @param {{method: string, url: string, body?: string}|null} first
   * @returns {Promise<Response>}
   */
  async _fetch(target, first) {
    const options = this._options;
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
    try {
      return await fetch(target, init);
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
  }

  /**
   * After the first request: resume with GET from the url the answer names.
   * @param {Response} response
   */
  _takeStreamUrl(response) {
    this._request = null;
    const location =
      response.headers.get("Content-Location") ??
      (response.status === 201 ? response.headers.get("Location") : null);
    if (location) this._setUrl(new URL(location, response.url).href);
  }

  /**
   * A POST answered with JSON naming the stream: {"stream_url": ...} or Location.
   * @param {Response} response
   */
  async _followJsonAnswer(response) {
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
  }

  /**
   * The body of an event-stream answer; otherwise throws: 408, 429 and 5xx are retried
   * (after `Retry-After`, within the cap), any other answer is final.
   * @param {Response} response
   * @returns {Promise<ReadableStream<Uint8Array>>}
   */
  async _checkResponse(response) {
    if (!response.ok) {
      const status = response.status;
      if (status >= 500 || status === 408 || status === 429) {
        const after = parseRetryAfter(response.headers.get("Retry-After"));
        await response.body?.cancel().catch(() => {});
        throw new RetryableError(`The server answered ${status}.`, after === null ? null : after * 1000);
      }
      throw new FatalError(await refusal(response));
    }
    if (!isEventStream(response) || response.body === null) {
      const type = response.headers.get("Content-Type");
      throw new FatalError({
        code: "bad_response",
        message: `Expected text/event-stream, got ${type || "no content type"}.`,
        status: response.status,
      });
    }
    return response.body;
  }

  /**
   * @param {string} target The url that answered.
   * @param {number} connections How many connections were accepted before.
   */
  _announceOpen(target, connections) {
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
    this._received = true;
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
