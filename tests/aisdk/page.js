// A chat page on the Vercel AI SDK's own chat client, bundled by esbuild at test time
// (tests/test_aisdk_client.py) and served beside the demo's /api/chat.
//
// Like a real app with `resume: true`, it keeps the chat (id and messages) across
// reloads and, on load, asks the server for a running answer (resumeStream), which the
// server replays from its start. For tests: <body data-status> is the chat's status,
// data-resume is "open" once the resume request has been answered, data-finished is set
// by onFinish, and #answer shows the assistant's text.

import { AbstractChat, DefaultChatTransport } from "ai";

const saved = JSON.parse(sessionStorage.getItem("chat") ?? "null");
const chatId = saved?.id ?? `chat-${crypto.randomUUID()}`;

class State {
  constructor(messages) {
    this.status = "ready";
    this.error = undefined;
    this.messages = messages;
  }
  pushMessage(message) {
    this.messages = [...this.messages, message];
    render(this);
  }
  popMessage() {
    this.messages = this.messages.slice(0, -1);
    render(this);
  }
  replaceMessage(index, message) {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
    render(this);
  }
  snapshot(thing) {
    return structuredClone(thing);
  }
}

function render(state) {
  const last = state.messages.at(-1);
  const text =
    last?.role === "assistant"
      ? last.parts
          .filter((p) => p.type === "text")
          .map((p) => p.text)
          .join("")
      : "";
  document.querySelector("#answer").textContent = text;
  // What a real app would save to its database; here the user's messages suffice.
  const users = state.messages.filter((m) => m.role === "user");
  sessionStorage.setItem("chat", JSON.stringify({ id: chatId, messages: users }));
}

class Chat extends AbstractChat {
  constructor(options, messages) {
    super({ ...options, state: new State(messages) });
  }
  setStatus(update) {
    super.setStatus(update);
    document.body.dataset.status = this.status;
  }
}

function trackingFetch(input, init) {
  return fetch(input, init).then((response) => {
    if ((init?.method ?? "GET") === "GET") document.body.dataset.resume = "open";
    return response;
  });
}

const chat = new Chat(
  {
    id: chatId,
    transport: new DefaultChatTransport({ api: "/api/chat", fetch: trackingFetch }),
    onFinish: () => (document.body.dataset.finished = "yes"),
    onError: (error) => (document.body.dataset.error = String(error)),
  },
  saved?.messages ?? [],
);

document.querySelector("#send").addEventListener("click", () => {
  chat.sendMessage({ text: document.querySelector("#prompt").value });
});
document.body.dataset.status = chat.status;
if (saved) chat.resumeStream();
