// @ts-check
/**
 * An incremental Server-Sent Events parser: WHATWG HTML, "Server-sent events", section
 * "Interpreting an event stream". No transport: feed it decoded text, get events.
 *
 * Re-exported by `resumable-sse.js`.
 *
 * @module resumable-sse/sse-parser
 */

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
 * the end of the stream is discarded, as the spec says. Each character is scanned once:
 * the pieces of an unfinished line are kept as they came and joined when it ends, so a
 * long line that arrives in many chunks costs no more than one that arrives whole.
 */
export class SSEParser {
  /**
   * @param {(message: SSEMessage) => void} onMessage Called for each dispatched event.
   * @param {(ms: number) => void} [onRetry] Called with each valid `retry` value.
   */
  constructor(onMessage, onRetry) {
    this.onMessage = onMessage;
    this.onRetry = onRetry;
    /** The last event id buffer (spec semantics); kept across reset(). */
    this.lastEventId = "";
    // The parse state, declared here for the type checker; reset() sets every field.
    /** @type {string[]} The unfinished line, in the pieces it came in (scanned already). */
    this._pending;
    /** @type {boolean} Nothing fed yet: a BOM may come. */
    this._start;
    /** @type {boolean} The last chunk ended in CR: an LF opening the next ends no line. */
    this._skipLF;
    /** @type {string} */
    this._data;
    /** @type {boolean} */
    this._hasData;
    /** @type {string} */
    this._event;
    /** @type {string|null} */
    this._id;
    this.reset();
  }

  /** Forget any unfinished line or event, as at the end of a stream. */
  reset() {
    this._pending = [];
    this._start = true;
    this._skipLF = false;
    this._data = "";
    this._hasData = false;
    this._event = "";
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
    // The next LF and CR at or after `start`; each is searched for again only once passed.
    let start = 0;
    let lf = text.indexOf("\n");
    let cr = text.indexOf("\r");
    while (lf !== -1 || cr !== -1) {
      const end = lf === -1 ? cr : cr === -1 ? lf : Math.min(lf, cr);
      this._line(this._takeLine(text.slice(start, end)));
      start = end + 1;
      if (end === cr) {
        if (start === text.length) this._skipLF = true; // a CRLF may be split across chunks
        else if (text.charCodeAt(start) === 10) start += 1;
      }
      if (lf !== -1 && lf < start) lf = text.indexOf("\n", start);
      if (cr !== -1 && cr < start) cr = text.indexOf("\r", start);
    }
    if (start < text.length) this._pending.push(text.slice(start));
  }

  /**
   * The whole line that `last` ends: the pieces kept so far, then `last`.
   * @param {string} last
   */
  _takeLine(last) {
    if (this._pending.length === 0) return last;
    this._pending.push(last);
    const line = this._pending.join("");
    this._pending = [];
    return line;
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
    this._field(field, value);
  }

  /**
   * @param {string} field
   * @param {string} value
   */
  _field(field, value) {
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
