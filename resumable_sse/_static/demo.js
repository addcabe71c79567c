// @ts-check
// The demo page's UI, on the library's browser client (../resumable-sse/resumable-sse.js).
//
// Sending POSTs the question to api/sessions, which streams the answer back at once. The
// client keeps the last event id and the text received so far in sessionStorage; the
// page itself only remembers which chat it shows ({prompt, streamUrl}), so after a
// reload it attaches to that stream and the client resumes where it stopped.
//
// For tests and styling, <body data-state> is idle | streaming | done | stopped | error,
// #answer[data-events] counts the events received, and #resumed[data-resumed-from] is
// the sequence number of the event a resumed connection continued after.

import { attachStream, postStream } from "../resumable-sse/resumable-sse.js";

const STORAGE_KEY = "resumable-sse-demo";

/** @param {string} id */
function element(id) {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`#${id} is missing`);
  return found;
}

const ui = {
  form: /** @type {HTMLFormElement} */ (element("chat-form")),
  prompt: /** @type {HTMLTextAreaElement} */ (element("prompt")),
  send: /** @type {HTMLButtonElement} */ (element("send")),
  stop: /** @type {HTMLButtonElement} */ (element("stop")),
  question: element("question"),
  answer: element("answer"),
  status: element("status"),
  resumed: element("resumed"),
};

/** @type {import("../resumable-sse/resumable-sse.js").ResumableStream|null} */
let stream = null;
let textNode = document.createTextNode("");
let prompt = "";

/** @returns {{prompt: string, streamUrl: string}|null} */
function loadChat() {
  try {
    const value = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null");
    const valid = typeof value?.prompt === "string" && typeof value?.streamUrl === "string";
    return valid ? value : null;
  } catch {
    return null;
  }
}

/** @param {{prompt: string, streamUrl: string}} chat */
function saveChat(chat) {
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(chat));
  } catch {
    // Storage full or disabled: the page works, it just cannot survive a reload.
  }
}

/** @param {string} text */
function setStatus(text) {
  ui.status.textContent = text;
}

/** @param {string} state idle | streaming | done | stopped | error */
function setState(state) {
  const streaming = state === "streaming";
  document.body.dataset.state = state;
  ui.answer.toggleAttribute("data-streaming", streaming);
  ui.answer.setAttribute("aria-busy", String(streaming));
  ui.send.disabled = streaming;
  ui.stop.disabled = !streaming;
}

/** @param {string} text */
function showAnswer(text) {
  textNode = document.createTextNode(text);
  ui.answer.replaceChildren(textNode);
}

/** @param {number} events */
function countEvents(events) {
  ui.answer.dataset.events = String(events);
}

/** @param {string} prompt */
function showQuestion(prompt) {
  ui.question.textContent = prompt;
  ui.resumed.hidden = true;
  delete ui.resumed.dataset.resumedFrom;
}

/** @type {import("../resumable-sse/resumable-sse.js").Options} */
const callbacks = {
  onOpen() {
    if (stream === null) return;
    // Once the server has answered, the stream's url is known: remember it for a reload.
    if (stream.url !== null) saveChat({ prompt, streamUrl: stream.url });
    setStatus(`Streaming… ${stream.events} events so far.`);
  },
  onResume({ seq, reason }) {
    ui.resumed.hidden = false;
    ui.resumed.dataset.resumedFrom = String(seq);
    const why = reason === "reload" ? "after a reload" : "after a dropped connection";
    ui.resumed.textContent = `Resumed from event ${seq} ${why}.`;
  },
  onToken(text) {
    textNode.appendData(text);
    if (stream) {
      countEvents(stream.events);
      setStatus(`Streaming… ${stream.events} events so far.`);
    }
  },
  onReconnecting({ delay }) {
    setStatus(`Connection lost; reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
  },
  onEnd() {
    finish("done", `Done: ${stream?.events ?? 0} events.`);
  },
  onCancelled({ reason }) {
    const why = reason === "shutdown" ? " because the server shut down" : "";
    finish("stopped", `Stopped${why} after ${stream?.events ?? 0} events.`);
  },
  onError({ code, message }) {
    finish("error", `The answer failed (${code}): ${message}`);
  },
};

/**
 * @param {string} state
 * @param {string} message
 */
function finish(state, message) {
  if (stream) countEvents(stream.events);
  setState(state);
  setStatus(message);
}

/** @param {string} question */
function send(question) {
  stream?.forget();
  prompt = question;
  showQuestion(question);
  showAnswer("");
  countEvents(0);
  setState("streaming");
  setStatus("Sending…");
  stream = postStream("api/sessions", { prompt: question }, callbacks);
}

/** @param {{prompt: string, streamUrl: string}} chat */
function attach(chat) {
  prompt = chat.prompt;
  showQuestion(chat.prompt);
  setState("streaming");
  setStatus("Reconnecting…");
  stream = attachStream(chat.streamUrl, callbacks);
  showAnswer(stream.text); // what this tab had received before the reload
  countEvents(stream.events);
}

async function stop() {
  if (stream === null || stream.finished) return;
  ui.stop.disabled = true;
  setStatus("Stopping…");
  try {
    await stream.stop(); // the stream then delivers `cancelled`, which finishes the chat
  } catch (error) {
    setStatus(error instanceof Error ? error.message : String(error));
    if (stream && !stream.finished) ui.stop.disabled = false;
  }
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = ui.prompt.value.trim();
  if (prompt && (stream === null || stream.finished)) send(prompt);
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
ui.stop.addEventListener("click", () => void stop());

const saved = loadChat();
if (saved) attach(saved);
else setState("idle");
