// The browser client's backoff on the cases its Python twin runs too (../backoff_cases.json).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { backoffDelay, parseRetryAfter } from "../../resumable_sse/_browser/backoff.js";

const CASES = JSON.parse(readFileSync(new URL("../backoff_cases.json", import.meta.url), "utf8"));
const SPECIAL = { inf: Infinity, "-inf": -Infinity, nan: NaN };

/** A case's value: "inf", "-inf" and "nan" are those numbers; other strings stay garbage. */
const value = (raw) => (typeof raw === "string" && raw in SPECIAL ? SPECIAL[raw] : raw);

function run(c) {
  const share = value(c.random ?? 0);
  return backoffDelay(value(c.attempt), {
    base: value(c.base ?? 1),
    cap: value(c.cap ?? 30),
    retry: value(c.retry ?? null),
    retryAfter: value(c.retry_after ?? null),
    jitter: value(c.jitter ?? 0),
    random: () => share,
  });
}

for (const c of CASES.backoff) {
  test(`backoff: ${c.name}`, () => {
    if (c.expected === "error") {
      assert.throws(() => run(c), RangeError);
    } else {
      const delay = run(c);
      assert.ok(Math.abs(delay - c.expected) <= 1e-9, `${delay} != ${c.expected}`);
    }
  });
}

for (const c of CASES.retry_after) {
  test(`Retry-After: ${JSON.stringify(c.header)}`, () => {
    assert.equal(parseRetryAfter(c.header), c.expected);
  });
}

test("any server value, any attempt: 0 <= delay <= cap", () => {
  const values = [null, undefined, "x", {}, -1, 0, 1e-300, 0.5, 86400000, 1e308, Infinity,
    -Infinity, NaN, 2 ** 53, Number.MAX_VALUE];
  for (const attempt of [1, 2, 10, 64, 1100, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
    for (const cap of [0, 0.001, 30, 30000]) {
      for (const retry of values) {
        for (const retryAfter of values) {
          for (const share of [0, 0.5, 0.999999]) {
            const delay = backoffDelay(attempt, {
              base: 1, cap, retry, retryAfter, jitter: 0.25, random: () => share,
            });
            assert.ok(delay >= 0 && delay <= cap, `${delay} for ${[attempt, cap, retry, retryAfter]}`);
          }
        }
      }
    }
  }
});
