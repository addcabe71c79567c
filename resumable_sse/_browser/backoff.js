// @ts-check
/**
 * How long to wait before the next attempt: the twin of `resumable_sse/_backoff.py`.
 *
 * Both run the same cases (`tests/backoff_cases.json`). For any input a server can send,
 * the delay grows exponentially from `base` (or from the server's `retry:`), never
 * exceeds `cap`, ignores a server value that is not a finite number >= 0, takes up to
 * `jitter` (a fraction) off at random, and never undercuts a `Retry-After` floor.
 *
 * @module resumable-sse/backoff
 */

/** The share of a delay that jitter may take off it. */
export const DEFAULT_JITTER = 0.25;

// 2 ** 1000 is still finite; any larger exponent only ever meets the cap.
const MAX_EXPONENT = 1000;
const MAX_SAFE = 2 ** 53;

/**
 * `value` if it is a finite number >= 0, else null (ignored).
 * @param {unknown} value
 * @returns {number|null}
 */
function serverValue(value) {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return null;
  return Math.min(value, MAX_SAFE);
}

/**
 * @param {string} name
 * @param {number} value
 */
function checkSetting(name, value) {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number >= 0, not ${value}`);
  }
}

/**
 * The delay before retrying after `attempt` failed attempts in a row. All durations are
 * in one unit of the caller's choice (ms in the browser client).
 *
 * @param {number} attempt Failed attempts in a row, counting the one that just failed (>= 1).
 * @param {object} options
 * @param {number} options.base The first delay, used unless the server sent a valid `retry`.
 * @param {number} options.cap The longest delay, whatever the server says.
 * @param {unknown} [options.retry] The server's reconnection time (`retry:`): replaces `base`.
 * @param {unknown} [options.retryAfter] The server's `Retry-After` for this attempt: a floor.
 * @param {number} [options.jitter] The share of the delay (0 to 1) that may be taken off.
 * @param {() => number} [options.random] A source of numbers in [0, 1).
 * @returns {number} A delay `d` with `0 <= d <= cap`.
 * @throws {RangeError} `attempt` < 1, or `base`, `cap` or `jitter` out of range (the
 *   caller's settings, not the server's).
 */
export function backoffDelay(attempt, options) {
  const { base, cap, retry = null, retryAfter = null } = options;
  const jitter = options.jitter ?? DEFAULT_JITTER;
  const random = options.random ?? Math.random;
  if (!Number.isInteger(attempt) || attempt < 1) {
    throw new RangeError(`attempt counts from 1, not ${attempt}`);
  }
  checkSetting("base", base);
  checkSetting("cap", cap);
  if (!(jitter >= 0 && jitter <= 1)) {
    throw new RangeError(`jitter must be between 0 and 1, not ${jitter}`);
  }
  const first = serverValue(retry) ?? base;
  const exponential = Math.min(cap, first * 2 ** Math.min(attempt - 1, MAX_EXPONENT));
  let share = random();
  if (!(share >= 0 && share <= 1)) share = 0; // also NaN
  let delay = exponential * (1 - jitter * share);
  const floor = serverValue(retryAfter);
  if (floor !== null) delay = Math.max(delay, Math.min(floor, cap));
  return delay;
}

/**
 * The seconds of a `Retry-After` header, or null when it is absent or invalid. Only the
 * delay-seconds form (ASCII digits) is understood; an HTTP date, `inf`, `1e9`, `-1` or
 * anything else is ignored.
 * @param {string|null|undefined} header
 * @returns {number|null}
 */
export function parseRetryAfter(header) {
  if (header == null) return null;
  const value = header.replace(/^[ \t]+|[ \t]+$/g, "");
  if (!/^[0-9]+$/.test(value)) return null;
  return Math.min(Number(value), MAX_SAFE);
}
