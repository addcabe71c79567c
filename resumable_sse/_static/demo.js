// The demo page's UI. It reaches the server only through ./stream.js (the stream) and
// three small JSON endpoints (api/chat, api/cancel, api/status).
//
// Why the text is stored: after a reload the page is empty, so to show the answer
// exactly once it keeps, in sessionStorage, the session id together with the text
// received so far and the id of the last event in that text. On reload it renders the
// stored text and resumes after that id. The three are saved together, after every
// event, so they always agree.

import { follow, parseEventId } from "./stream.js";

const STORAGE_KEY = "resumable-sse-demo";
const STATES = new Set(["streaming", "done", "stopped", "error", "lost"]);

const ui = {
  form: document.getElementById("chat-form"),
  prompt: document.getElementById("prompt"),
  send: document.getElementById("send"),
  stop: document.getElementById("stop"),
  question: document.getElementById("question"),
  answer: document.getElementById("answer"),
  status: document.getElementById("status"),
  resumed: document.getElementById("resumed"),
};

/** {sessionId, prompt, text, lastEventId, events, state, message} or null. */
let chat = null;
let stream = null;
let textNode = document.createTextNode("");
let retries = 0;
let retryTimer = null;

function load() {
  try {
    const value = JSON.parse(sessionStorage.getItem(STORAGE_KEY));
    const valid =
      value && typeof value.sessionId === "string" && typeof value.text === "string" &&
      typeof value.prompt === "string" && STATES.has(value.state) &&
      (value.lastEventId === null || parseEventId(value.lastEventId) !== null);
    return valid ? value : null;
  } catch {
    return null;
  }
}

function save() {
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(chat));
  } catch {
    // Storage full or disabled: the page still works, it just cannot survive a reload.
  }
}

function setStatus(text) {
  ui.status.textContent = text;
}

function showResumed(seq, why) {
  ui.resumed.hidden = false;
  ui.resumed.dataset.resumedFrom = String(seq);
  ui.resumed.textContent = `Resumed from event ${seq} ${why}.`;
}

function render() {
  const streaming = chat?.state === "streaming";
  document.body.dataset.state = chat ? chat.state : "idle";
  ui.question.textContent = chat ? chat.prompt : "";
  textNode = document.createTextNode(chat ? chat.text : "");
  ui.answer.replaceChildren(textNode);
  ui.answer.toggleAttribute("data-streaming", streaming);
  ui.answer.setAttribute("aria-busy", String(streaming));
  ui.send.disabled = streaming;
  ui.stop.disabled = !streaming;
  if (chat && !streaming) setStatus(chat.message);
}

function finish(state, message) {
  clearTimeout(retryTimer);
  stream?.close();
  stream = null;
  chat.state = state;
  chat.message = message;
  save();
  render();
}

// `why` says, for the "resumed from event N" note, why this is not a fresh start.
function connect(why = null) {
  const sessionId = chat.sessionId;
  setStatus(why ? "Reconnecting…" : "Connecting…");
  stream = follow(`api/stream/${encodeURIComponent(sessionId)}`, {
    lastEventId: chat.lastEventId,
    onOpen({ resumedFrom, reconnect }) {
      retries = 0;
      const reason = reconnect ? "after a dropped connection" : why;
      if (reason) showResumed(resumedFrom, reason);
      setStatus(`Streaming… ${chat.events} events so far.`);
    },
    onToken(data, id, seq) {
      chat.text += data;
      chat.lastEventId = id;
      chat.events = seq;
      save();
      textNode.appendData(data);
      setStatus(`Streaming… ${seq} events so far.`);
    },
    onEnd() {
      finish("done", `Done: ${chat.events} events.`);
    },
    onError({ message }) {
      finish("error", `The answer failed: ${message || "unknown error"}.`);
    },
    onCancelled({ reason }) {
      const why = reason === "shutdown" ? " because the server shut down" : "";
      finish("stopped", `Stopped${why} after ${chat.events} events.`);
    },
    onReconnecting() {
      setStatus("Connection lost; reconnecting…");
    },
    onClosed() {
      stream = null;
      recover(sessionId);
    },
  });
}

// The server refused the stream (EventSource will not retry by itself): ask why.
async function recover(sessionId) {
  const current = () => chat?.sessionId === sessionId && chat.state === "streaming";
  if (!current()) return;
  let status = 0;
  let info = null;
  try {
    const response = await fetch(`api/status/${encodeURIComponent(sessionId)}`);
    status = response.status;
    if (response.ok) info = await response.json();
  } catch {
    // The server is unreachable: retry below.
  }
  if (!current()) return;
  if (status === 404) {
    finish("lost", "This answer is no longer on the server (it expired, or the server restarted).");
    return;
  }
  const latest = parseEventId(info?.last_event_id);
  const ours = parseEventId(chat.lastEventId);
  if (latest && ours && latest.incarnation !== ours.incarnation) {
    finish("lost", "This answer was replaced on the server.");
    return;
  }
  if (retries >= 8) {
    finish("lost", "Could not reconnect to the server.");
    return;
  }
  const delay = Math.min(1000 * 2 ** retries, 15000);
  retries += 1;
  setStatus(`Connection refused; retrying in ${Math.round(delay / 1000)} s…`);
  retryTimer = setTimeout(() => {
    if (current()) connect("after a dropped connection");
  }, delay);
}

async function send(prompt) {
  ui.send.disabled = true;
  setStatus("Sending…");
  let response;
  let body = {};
  try {
    response = await fetch("api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt }),
    });
    body = await response.json();
  } catch {
    // Reported below.
  }
  if (!response?.ok || typeof body.session_id !== "string") {
    setStatus(`Could not start the answer: ${body.message || "the server is unreachable"}.`);
    ui.send.disabled = false;
    return;
  }
  chat = {
    sessionId: body.session_id,
    prompt,
    text: "",
    lastEventId: null,
    events: 0,
    state: "streaming",
    message: "",
  };
  retries = 0;
  ui.resumed.hidden = true;
  save();
  render();
  connect();
}

async function stop() {
  if (chat?.state !== "streaming") return;
  ui.stop.disabled = true;
  setStatus("Stopping…");
  try {
    const response = await fetch(`api/cancel/${encodeURIComponent(chat.sessionId)}`, {
      method: "POST",
    });
    if (!response.ok && response.status !== 404) throw new Error(String(response.status));
    // The stream itself delivers the `cancelled` event, which finishes the chat.
  } catch {
    setStatus("Could not reach the server to stop the answer.");
    if (chat?.state === "streaming") ui.stop.disabled = false;
  }
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = ui.prompt.value.trim();
  if (prompt && chat?.state !== "streaming") send(prompt);
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
ui.stop.addEventListener("click", stop);

chat = load();
render();
if (chat?.state === "streaming") connect("after a reload");
