// The WHATWG Server-Sent Events parser of the browser client, fed in pieces.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SSEParser } from "../../resumable_sse/_browser/sse-parser.js";
import * as client from "../../resumable_sse/_browser/resumable-sse.js";

/** Feed `chunks`; the events ([event, data, id, lastEventId]), retries and last id. */
function parse(chunks, parser = null) {
  const events = [];
  const retries = [];
  const p = parser ?? new SSEParser(
    (m) => events.push([m.event, m.data, m.id, m.lastEventId]),
    (ms) => retries.push(ms),
  );
  for (const chunk of chunks) p.feed(chunk);
  return { events, retries, lastEventId: p.lastEventId };
}

/** Every way to cut `text` in two and in three pieces, and one piece per character. */
function* cuts(text) {
  yield [...text];
  for (let i = 0; i <= text.length; i++) {
    yield [text.slice(0, i), text.slice(i)];
    for (let j = i; j <= text.length; j += 3) {
      yield [text.slice(0, i), text.slice(i, j), text.slice(j)];
    }
  }
}

/** `text` gives `expected` whole and however it is cut. */
function assertAnyChunking(text, expected) {
  assert.deepEqual(parse([text]), expected);
  for (const pieces of cuts(text)) {
    assert.deepEqual(parse(pieces), expected, `cut as ${JSON.stringify(pieces)}`);
  }
}

const AWKWARD =
  "\ufeff: a comment\r\n" +
  "retry: 15\n" +
  "id: t-1\r" +
  "data: first\r\n" +
  "data:  two spaces, one kept\n" +
  "data\n" +
  "\n" +
  "event: tool_call\r\n" +
  'data: {"name": "lookup"}\r\n' +
  "id: bad\0id\r\n" +
  "\r\n" +
  "id: t-2\n" +
  "retry: soon\n" +
  ": data: not a field\n" +
  "\n" +
  "id: t-3\r\n" +
  "data:no space\r\n" +
  "unknown: ignored\r\n" +
  "\r" +
  "data: never dispatched: the stream ends first";

test("an awkward stream parses the same however it is cut", () => {
  assertAnyChunking(AWKWARD, {
    events: [
      ["message", "first\n two spaces, one kept\n", "t-1", "t-1"],
      ["tool_call", '{"name": "lookup"}', null, "t-1"],
      ["message", "no space", "t-3", "t-3"],
    ],
    retries: [15],
    lastEventId: "t-3",
  });
});

test("LF, CR and CRLF each end a line, and CRLF split across chunks is one line end", () => {
  const expected = { events: [["message", "a\nb", null, ""]], retries: [], lastEventId: "" };
  for (const eol of ["\n", "\r", "\r\n"]) {
    assertAnyChunking(`data: a${eol}data: b${eol}${eol}`, expected);
  }
  // A CR at the end of one chunk and an LF at the start of the next: not an empty line.
  assert.deepEqual(parse(["data: a\r", "\ndata: b\r", "\n\r", "\n"]), expected);
  // But CR then CR is an empty line: it dispatches.
  assert.deepEqual(parse(["data: a\r", "\r"]).events, [["message", "a", null, ""]]);
});

test("one leading BOM is skipped, a second one or a later one is not", () => {
  assert.deepEqual(parse(["", "\ufeffdata: a\n\n"]).events, [["message", "a", null, ""]]);
  assert.deepEqual(parse(["\ufeff", "data: a\n\n"]).events, [["message", "a", null, ""]]);
  // "\ufeffdata" is then an unknown field name: nothing is dispatched.
  assert.deepEqual(parse(["\ufeff\ufeffdata: a\n\n"]).events, []);
  assert.deepEqual(parse(["data: a\n\n", "\ufeffdata: b\n\n"]).events, [
    ["message", "a", null, ""],
  ]);
});

test("comments are ignored and dispatch nothing", () => {
  assertAnyChunking(": ping\n\n:\n\n: data: x\n\ndata: y\n: between lines\n\n", {
    events: [["message", "y", null, ""]],
    retries: [],
    lastEventId: "",
  });
});

test("retry is honoured only when it is all ASCII digits", () => {
  const text = ["15", "86400000", "1.5", "soon", "-1", "", " 7", "1e3", "0"]
    .map((v) => `retry: ${v}\n`)
    .join("");
  assert.deepEqual(parse([text]).retries, [15, 86400000, 0]);
  assert.deepEqual(parse([...text]).retries, [15, 86400000, 0]);
  assert.deepEqual(parse(["retry\n"]).retries, []); // no value at all
});

test("an id containing NUL is ignored; an empty id clears the last id", () => {
  assertAnyChunking("id: a-1\ndata: x\n\nid: a\0b\ndata: y\n\nid\ndata: z\n\n", {
    events: [
      ["message", "x", "a-1", "a-1"],
      ["message", "y", null, "a-1"],
      ["message", "z", "", ""],
    ],
    retries: [],
    lastEventId: "",
  });
});

test("event and data fields: one leading space stripped, default type, blocks without data", () => {
  assertAnyChunking("event: e\n\ndata\n\nevent:  two\ndata:\ndata:x\n\nevent: e\ndata: d\n\n", {
    events: [
      ["message", "", null, ""],
      [" two", "\nx", null, ""],
      ["e", "d", null, ""],
    ],
    retries: [],
    lastEventId: "",
  });
});

test("a long line fed in many pieces is one line", () => {
  const long = "x".repeat(50_000);
  const pieces = [];
  for (let i = 0; i < long.length; i += 7) pieces.push(long.slice(i, i + 7));
  const { events } = parse(["data: ", ...pieces, "\r", "\n", "\n"]);
  assert.deepEqual(events, [["message", long, null, ""]]);
});

test("reset() forgets the unfinished line and event but keeps the last event id", () => {
  const events = [];
  const parser = new SSEParser((m) => events.push([m.event, m.data, m.id, m.lastEventId]));
  parser.feed("id: k-1\ndata: one\n\nevent: x\ndata: half");
  parser.reset();
  parser.feed("\ufeffdata: two\n\n");
  assert.deepEqual(events, [
    ["message", "one", "k-1", "k-1"],
    ["message", "two", null, "k-1"],
  ]);
});

test("the client module re-exports the parser unchanged", () => {
  assert.equal(client.SSEParser, SSEParser);
});
