// @ts-check
/**
 * Where the browser client keeps a stream across reloads: `sessionStorage`, under
 * "resumable-sse:<absolute stream url>". Storage that is full or disabled only means a
 * stream cannot survive a reload; it never breaks it.
 *
 * `loadSaved` and `forgetSaved` are re-exported by `resumable-sse.js`.
 *
 * @module resumable-sse/storage
 */

const STORAGE_PREFIX = "resumable-sse:";

/**
 * What is kept in sessionStorage for one stream, under "resumable-sse:<stream url>".
 * @typedef {object} SavedStream
 * @property {string|null} lastEventId The id of the last event received.
 * @property {string} text The data of every `message` event received, concatenated.
 * @property {number} events How many events were received (terminal included).
 * @property {{event: string, data: string}|null} terminal The terminal event, once received.
 */

/**
 * `url` made absolute against the page, without its fragment: the key of a stream.
 * @param {string} url
 */
export function absolute(url) {
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
export function save(url, value) {
  try {
    sessionStorage.setItem(STORAGE_PREFIX + url, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the stream works, it just cannot survive a reload.
  }
}
