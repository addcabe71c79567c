"""The browser client and the demo page in a real headless Chromium (Playwright).

Debian's ``chromium`` is driven through Playwright for Python with ``executable_path``
(Playwright's own browser download is not used). Without Chromium or Playwright these
tests skip with the reason, except in CI (``CI=true``), where they fail.

The demo runs on a real uvicorn in this event loop, behind a TCP proxy that can cut
connections (``tests/proxy.py``); its model is paused at chosen tokens
(``tests/llm_gate.py``), so reloads, drops and Stop happen mid-answer for sure. Tests
wait on page state (``data-state`` and friends), never on time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from resumable_sse._demo import SimulatedLLM, create_app, simulated_answer, tokenize
from tests.llm_gate import gate
from tests.proxy import DropProxy, drop_proxy
from tests.scripted import EMPTY_BODIES, TRICKY_EVENTS, TRICKY_STREAM
from tests.servers import serve_in_process, serve_in_task

HAVE_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None
if TYPE_CHECKING or HAVE_PLAYWRIGHT:
    from playwright.async_api import Browser, Page, async_playwright, expect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT_MS = 30_000  # a generous bound on waiting for page state; not a timing assertion

PROMPT = "Why do streamed answers break? Ünïcode and “quotes”"
ANSWER = simulated_answer(PROMPT)
TOKENS = tokenize(ANSWER)


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn and Playwright both run in this event loop: asyncio."""
    return "asyncio"


def _unavailable() -> str | None:
    if not HAVE_PLAYWRIGHT:
        return "Playwright for Python is not installed (pip install playwright)"
    if not os.path.exists(CHROMIUM):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium; skips without one, but fails in CI."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Demo:
    page: Page
    proxy: DropProxy
    llm: SimulatedLLM
    errors: list[str] = field(default_factory=list)

    async def ask(self, prompt: str = PROMPT) -> None:
        await self.page.fill("#prompt", prompt)
        await self.page.click("#send")

    async def wait_state(self, state: str) -> None:
        await expect(self.page.locator("body")).to_have_attribute(
            "data-state", state, timeout=WAIT_MS
        )

    async def wait_events(self, count: int) -> None:
        await expect(self.page.locator("#answer")).to_have_attribute(
            "data-events", str(count), timeout=WAIT_MS
        )

    async def answer(self) -> str:
        return await self.page.locator("#answer").text_content() or ""

    def session_id(self) -> str:
        [session_id] = self.llm.started
        return session_id


@asynccontextmanager
async def demo_page(browser: Browser, **context: Any) -> AsyncIterator[Demo]:
    """The demo behind a drop proxy, open in a fresh browser context (own sessionStorage)."""
    app = create_app(delay=0.001)
    async with serve_in_task(app) as url, drop_proxy(url) as proxy:
        ctx = await browser.new_context(**context)
        page = await ctx.new_page()
        demo = Demo(page, proxy, app.state.llm)
        page.on("pageerror", lambda error: demo.errors.append(str(error)))
        try:
            await page.goto(proxy.url + "/")
            await demo.wait_state("idle")
            yield demo
            assert demo.errors == []
        finally:
            await ctx.close()


async def test_reload_mid_answer_shows_the_answer_exactly_once(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reloading mid-answer resumes after the last event shown: exact text, model ran once."""
    async with demo_page(browser, viewport={"width": 900, "height": 1000}) as demo:
        [release] = gate(monkeypatch, demo.llm, 40)
        await demo.ask()
        await demo.wait_events(40)
        assert await demo.answer() == "".join(TOKENS[:40])

        await demo.page.reload()
        resumed = demo.page.locator("#resumed")
        await expect(resumed).to_have_attribute("data-resumed-from", "40", timeout=WAIT_MS)
        await expect(resumed).to_contain_text("Resumed from event 40 after a reload")
        assert await demo.answer() == "".join(TOKENS[:40])  # restored, not fetched again
        release.set()
        await demo.wait_state("done")

        assert await demo.answer() == ANSWER
        await demo.wait_events(len(TOKENS) + 1)
        await expect(demo.page.locator("#status")).to_have_text(f"Done: {len(TOKENS) + 1} events.")
        assert demo.llm.started[demo.session_id()] == 1
        assert demo.llm.finalized[demo.session_id()] == 1

        ARTIFACTS.mkdir(exist_ok=True)
        await demo.page.screenshot(path=str(ARTIFACTS / "demo.png"))

        # A reload after the end shows the finished answer from storage, still once.
        await demo.page.reload()
        await demo.wait_state("done")
        assert await demo.answer() == ANSWER
        assert sum(demo.llm.started.values()) == 1


async def test_dropped_connection_resumes_by_itself(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is cut server-side mid-answer: the page reconnects and the text is exact."""
    async with demo_page(browser) as demo:
        [release] = gate(monkeypatch, demo.llm, 60)
        await demo.ask()
        await demo.wait_events(60)
        accepted = demo.proxy.accepted
        assert await demo.proxy.drop() >= 1

        resumed = demo.page.locator("#resumed")
        await expect(resumed).to_have_attribute("data-resumed-from", "60", timeout=WAIT_MS)
        await expect(resumed).to_contain_text("after a dropped connection")
        assert demo.proxy.accepted > accepted  # it came back over a new connection
        release.set()
        await demo.wait_state("done")
        assert await demo.answer() == ANSWER
        assert demo.llm.started[demo.session_id()] == 1


async def test_stop_mid_answer_cancels_and_closes_the_generator(
    browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop mid-answer: the page shows the stopped state, the model's generator was closed."""
    async with demo_page(browser) as demo:
        gate(monkeypatch, demo.llm, 25)  # never released: only Stop ends this answer
        await demo.ask()
        await demo.wait_events(25)
        await demo.page.click("#stop")
        await demo.wait_state("stopped")
        await expect(demo.page.locator("#status")).to_have_text("Stopped after 26 events.")
        assert await demo.answer() == "".join(TOKENS[:25])
        assert await demo.page.locator("#stop").is_disabled()
        assert await demo.page.locator("#send").is_enabled()
        session_id = demo.session_id()
        assert demo.llm.started[session_id] == 1
        assert demo.llm.finalized[session_id] == 1


async def test_phone_width_page_fits_without_sideways_scrolling(browser: Browser) -> None:
    """At 360 px wide the finished page has no horizontal overflow and a readable font."""
    async with demo_page(browser, viewport={"width": 360, "height": 740}) as demo:
        await demo.ask()
        await demo.wait_state("done")
        assert await demo.answer() == ANSWER
        overflow = await demo.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        size = await demo.page.evaluate(
            "parseFloat(getComputedStyle(document.getElementById('answer')).fontSize)"
        )
        assert size >= 16


# --- the module on its own, against the scripted server (tests/scripted.py) -------------


@pytest.fixture(scope="module")
def scripted() -> Iterator[str]:
    with serve_in_process("tests.scripted:app") as server:
        yield server.url


@pytest.fixture
async def blank(browser: Browser, scripted: str) -> AsyncIterator[Page]:
    """A page on the scripted server, with the client module at /resumable-sse/."""
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(scripted + "/")
        yield page
        assert errors == []
    finally:
        await context.close()


# Runs a stream to its end in the page and reports every callback, in order.
RUN_STREAM = """
async ([how, url, options]) => {
  const m = await import("/resumable-sse/resumable-sse.js");
  const calls = [];
  const record = (name) => (...args) => calls.push([name, ...args.map((a) =>
    a && typeof a === "object" && "event" in a ? {event: a.event, data: a.data, id: a.id} : a)]);
  const callbacks = {};
  for (const name of ["onToken", "onEvent", "onEnd", "onError", "onCancelled", "onResume",
                      "onReconnecting", "onOpen"]) callbacks[name] = record(name);
  const stream = how === "post" ? m.postStream(url, {hello: "world"}, {...callbacks, ...options})
                                : m.attachStream(url, {...callbacks, ...options});
  const state = await stream.done;
  const tokens = calls.filter((c) => c[0] === "onToken").map((c) => c[1]);
  return {state, calls, tokens, text: stream.text, lastEventId: stream.lastEventId,
          saved: stream.url === null ? null : m.loadSaved(stream.url)};
}
"""


def calls(result: dict[str, Any]) -> list[list[Any]]:
    """The callbacks a stream made, without the connection-level ones."""
    return [call for call in result["calls"] if call[0] not in {"onOpen", "onReconnecting"}]


def names(result: dict[str, Any]) -> list[str]:
    return [call[0] for call in calls(result)]


async def test_parser_follows_the_spec_for_any_chunking(blank: Page) -> None:
    """BOM, CR/LF/CRLF, comments, multi-line data, NUL ids, bad retry: same events however split."""
    result = await blank.evaluate(
        """async (text) => {
          const { SSEParser } = await import("/resumable-sse/resumable-sse.js");
          const parse = (chunks) => {
            const events = [];
            const retries = [];
            const parser = new SSEParser((e) => events.push([e.event, e.data, e.lastEventId]),
                                         (ms) => retries.push(ms));
            for (const chunk of chunks) parser.feed(chunk);
            return JSON.stringify([events, retries, parser.lastEventId]);
          };
          const whole = parse([text]);
          const splits = [];
          for (let i = 1; i < text.length; i++) {
            splits.push(parse([text.slice(0, i), text.slice(i)]));
          }
          return { whole, byChar: parse([...text]),
                   allSplitsAgree: splits.every((s) => s === whole),
                   unfinished: parse(["data: never dispatched\\n"]) };
        }""",
        TRICKY_STREAM,
    )
    events, retries, last_id = json.loads(result["whole"])
    assert [tuple(e) for e in events] == TRICKY_EVENTS
    assert retries == [15]
    assert last_id == "t-3"
    assert result["byChar"] == result["whole"]
    assert result["allSplitsAgree"]
    assert json.loads(result["unfinished"]) == [[], [], ""]


async def test_awkward_stream_over_the_network(blank: Page) -> None:
    """The tricky stream, one character per chunk over HTTP: tokens, a custom event, the error."""
    result = await blank.evaluate(RUN_STREAM, ["attach", "/tricky", {"persist": False}])
    assert result["state"] == "error"
    assert names(result) == ["onToken", "onEvent", "onToken", "onError"]
    assert result["tokens"] == [TRICKY_EVENTS[0][1], TRICKY_EVENTS[2][1]]
    assert calls(result)[1][1] == {"event": "tool_call", "data": '{"name": "lookup"}', "id": None}
    assert calls(result)[-1][1] == {"code": "boom", "message": "it broke"}


async def test_reconnect_sends_last_event_id_and_drops_duplicates(blank: Page) -> None:
    """A response that ends early is resumed with Last-Event-ID; repeated events are skipped."""
    result = await blank.evaluate(RUN_STREAM, ["attach", "/flaky", {}])
    assert result["state"] == "done"
    assert result["tokens"] == ["a", "b", "c", "d"]
    assert names(result) == [
        *["onToken"] * 3,
        "onResume",
        "onToken",
        "onEvent",
        "onEnd",
    ]
    resume = calls(result)[3][1]
    assert (resume["lastEventId"], resume["seq"], resume["reason"]) == ("x-3", 3, "reconnect")
    assert calls(result)[-2][1]["data"] == "x-3"  # the header the server got
    assert result["saved"] == {
        "lastEventId": "x-6",
        "text": "abcd",
        "events": 6,
        "terminal": {"event": "end", "data": ""},
    }

    # Attaching again in this tab (as after a reload) restores it without a request.
    again = await blank.evaluate(RUN_STREAM, ["attach", "/flaky", {}])
    assert (again["state"], again["text"], names(again)) == ("done", "abcd", ["onEnd"])


async def test_post_resumes_from_content_location(blank: Page) -> None:
    """A POSTed stream that drops is resumed by GET from its Content-Location."""
    result = await blank.evaluate(RUN_STREAM, ["post", "/start", {}])
    assert result["state"] == "done"
    assert result["tokens"] == ["a", "b", "c", "d"]
    assert result["saved"]["text"] == "abcd"


async def test_refusals_busy_and_no_content(blank: Page) -> None:
    """404 is final with the server's JSON error; 503 is retried; 204 means finished."""
    gone = await blank.evaluate(RUN_STREAM, ["attach", "/gone", {}])
    assert gone["state"] == "error"
    assert gone["calls"][-1] == [
        "onError",
        {"code": "session_not_found", "message": "no such stream", "status": 404},
    ]
    busy = await blank.evaluate(RUN_STREAM, ["attach", "/busy?key=browser", {}])
    assert busy["state"] == "done"
    assert busy["tokens"] == ["ok"]
    assert [c[0] for c in busy["calls"]].count("onReconnecting") == 1
    empty = await blank.evaluate(RUN_STREAM, ["attach", "/empty", {"persist": False}])
    assert (empty["state"], names(empty)) == ("done", ["onEnd"])


# --- hostile servers: the cap holds and retries end (tests/scripted.py /hostile/...) ------

CAP_MS = 50  # maxRetryDelay for these tests: small, so real waits stay short

# Reads a stream with a small cap and reports each wait; a wait past the cap closes the
# stream at once (state "closed"), so a broken cap fails fast instead of hanging.
RUN_HOSTILE = """
async ([url, options]) => {
  const m = await import("/resumable-sse/resumable-sse.js");
  const cap = options.maxRetryDelay;
  const waits = [];
  const tokens = [];
  let error = null;
  const stream = m.attachStream(url, {
    ...options,
    persist: false,
    onToken: (text) => tokens.push(text),
    onError: (e) => { error = e; },
    onReconnecting: ({attempt, delay, reason}) => {
      waits.push({attempt, delay, reason});
      if (!(delay >= 0 && delay <= cap)) stream.close();
    },
  });
  const state = await stream.done;
  return {state, waits, tokens, error, retry: stream.retry};
}
"""


async def requests_made(scripted: str, key: str) -> int:
    async with httpx.AsyncClient(base_url=scripted, timeout=30) as http:
        count = (await http.get("/requests", params={"key": key})).json()
    assert isinstance(count, int)
    return count


def within_cap(result: dict[str, Any]) -> bool:
    return all(0 <= wait["delay"] <= CAP_MS for wait in result["waits"])


@pytest.mark.parametrize("retry_after", ["inf", "1e9", "1000000000", "nan", "-1", "soon"])
async def test_hostile_retry_after_stays_within_the_cap(
    blank: Page, scripted: str, retry_after: str
) -> None:
    """Two 503s with a hostile ``Retry-After``: every wait is within ``maxRetryDelay``."""
    key = f"js-busy-{retry_after}"
    url = f"/hostile/busy?key={key}&retry_after={retry_after}"
    result = await blank.evaluate(RUN_HOSTILE, [url, {"maxRetryDelay": CAP_MS}])
    assert within_cap(result), result["waits"]
    assert result["state"] == "done"
    assert result["tokens"] == ["ok"]
    assert [wait["attempt"] for wait in result["waits"]] == [1, 2]
    if retry_after == "1000000000":  # a valid Retry-After is honoured, up to the cap
        assert [wait["delay"] for wait in result["waits"]] == [CAP_MS, CAP_MS]
    assert await requests_made(scripted, key) == 3


async def test_retry_field_of_a_day_is_capped_in_the_browser(blank: Page, scripted: str) -> None:
    """``retry: 86400000`` on every response: each wait is within ``maxRetryDelay``."""
    key = "js-retry"
    url = f"/hostile/retry?key={key}&times=4"
    result = await blank.evaluate(RUN_HOSTILE, [url, {"maxRetryDelay": CAP_MS, "maxRetries": 1}])
    assert within_cap(result), result["waits"]
    assert result["state"] == "done"
    assert result["retry"] == 86_400_000
    # Each response brought a new event: each drop is the first failure in a row.
    assert result["tokens"] == ["tok-1", "tok-2", "tok-3", "tok-4"]
    assert [wait["attempt"] for wait in result["waits"]] == [1, 1, 1, 1]
    assert await requests_made(scripted, key) == 5


@pytest.mark.parametrize("body", sorted(EMPTY_BODIES))
async def test_responses_without_events_use_up_the_retries_in_the_browser(
    blank: Page, scripted: str, body: str
) -> None:
    """200 event streams with no event (garbage, comments, empty) count as failures."""
    key = f"js-empty-{body}"
    url = f"/hostile/empty?key={key}&body={body}"
    result = await blank.evaluate(RUN_HOSTILE, [url, {"maxRetryDelay": CAP_MS, "maxRetries": 3}])
    assert within_cap(result), result["waits"]
    assert result["state"] == "error"
    assert result["error"] == {
        "code": "connection_failed",
        "message": "Could not reconnect after 3 attempts.",
    }
    assert [wait["attempt"] for wait in result["waits"]] == [1, 2, 3]
    assert all("without any new event" in wait["reason"] for wait in result["waits"])
    assert await requests_made(scripted, key) == 4  # the first request and 3 retries
