// The Vercel AI SDK's real chat client (npm `ai`), driven by tests/test_aisdk_client.py.
//
//   node client.mjs <scenario> <api url> <chat id> [prompt]
//
// It prints one JSON object per line on stdout ({"step": ...}); where the test must act
// in between (release the paused model), it waits for a line on stdin. The chat is the
// SDK's own AbstractChat (what useChat wraps) with a minimal state, talking through
// DefaultChatTransport: nothing of the protocol is reimplemented here.

import { createInterface } from "node:readline";
import { AbstractChat, DefaultChatTransport, readUIMessageStream } from "ai";

const [scenario, api, chatId, prompt = "Hello there"] = process.argv.slice(2);
const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function say(step, fields = {}) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

async function waitForTest() {
  const line = await input.next();
  if (line.done) throw new Error("the test closed stdin");
}

/** The smallest ChatState: an array of messages, plus a hook on every change. */
class State {
  constructor(onChange) {
    this.status = "ready";
    this.error = undefined;
    this.messages = [];
    this.onChange = onChange;
  }
  pushMessage(message) {
    this.messages = [...this.messages, message];
    this.onChange(this);
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }
  replaceMessage(index, message) {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
    this.onChange(this);
  }
  snapshot(thing) {
    return structuredClone(thing);
  }
}

class Chat extends AbstractChat {
  constructor(options, onChange = () => {}) {
    super({ ...options, state: new State(onChange) });
  }
}

function textOf(message) {
  return (message?.parts ?? [])
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join("");
}

function lastText(chat) {
  const last = chat.messages.at(-1);
  return last?.role === "assistant" ? textOf(last) : "";
}

/** A fetch that reports each response's status, so the test knows a request is open. */
function reportingFetch(input, init) {
  return fetch(input, init).then((response) => {
    say("response", { method: init?.method ?? "GET", status: response.status });
    return response;
  });
}

/** Resolves once the assistant message shows some text. */
function firstText() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  const onChange = (state) => {
    const last = state.messages.at(-1);
    if (last?.role === "assistant" && textOf(last)) resolve();
  };
  return { promise, onChange };
}

const scenarios = {
  // Send, drop the connection mid-answer, resume: the text must be the whole answer.
  async "drop-resume"() {
    const seen = firstText();
    const transport = new DefaultChatTransport({ api, fetch: reportingFetch });
    const chat = new Chat({ id: chatId, transport }, seen.onChange);
    const sending = chat.sendMessage({ text: prompt });
    await seen.promise;
    await chat.stop(); // aborts the request: the connection drops mid-answer
    await sending;
    say("dropped", { text: lastText(chat), status: chat.status });
    await waitForTest(); // the model is still paused: resume while it runs
    await chat.resumeStream();
    say("done", {
      text: lastText(chat),
      status: chat.status,
      roles: chat.messages.map((m) => m.role),
      error: chat.error?.message ?? null,
    });
  },

  // reconnectToStream for a chat with nothing running: null (the server's 204).
  async unknown() {
    const transport = new DefaultChatTransport({ api });
    const stream = await transport.reconnectToStream({ chatId });
    say("done", { stream: stream === null ? null : "a stream" });
  },

  // Stop: the app calls the stop route; the answer ends (abort) for the reader.
  async stop() {
    const seen = firstText();
    const transport = new DefaultChatTransport({ api });
    const chat = new Chat({ id: chatId, transport }, seen.onChange);
    const sending = chat.sendMessage({ text: prompt });
    await seen.promise;
    const stopped = await fetch(`${api}/${encodeURIComponent(chatId)}/stop`, { method: "POST" });
    const answer = await stopped.json();
    await sending; // ends when the server's stream ends
    say("done", { stop: answer, text: lastText(chat), status: chat.status });
  },

  // The same request sent twice at once (a double submit): both read the whole answer.
  async twice() {
    const transport = new DefaultChatTransport({ api, fetch: reportingFetch });
    const messages = [{ id: "user-1", role: "user", parts: [{ type: "text", text: prompt }] }];
    const send = async () => {
      const stream = await transport.sendMessages({
        chatId,
        messages,
        trigger: "submit-message",
        messageId: undefined,
        abortSignal: undefined,
      });
      let message;
      for await (const snapshot of readUIMessageStream({ stream })) message = snapshot;
      return { id: message.id, text: textOf(message) };
    };
    const [first, second] = await Promise.all([send(), send()]);
    say("done", { first, second });
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario ${scenario}`);
  process.exit(2);
}
try {
  await run();
  process.exit(0);
} catch (error) {
  say("failed", { error: String(error?.stack ?? error) });
  process.exit(1);
}
