"""The browser client asks for a compacted replay when it starts with nothing, in Chromium.

A second device opens an answer that is being written: it gets the text so far as one
token, then the rest token by token; the text is exact and the model ran once. After a
reload the first tab asks only for the rest (see ``test_browser``'s reload test, whose
event counts would differ if it asked for a merged replay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.llm_gate import gate
from tests.test_browser import (  # noqa: F401 - anyio_backend and browser are fixtures
    ANSWER,
    TOKENS,
    WAIT_MS,
    anyio_backend,
    browser,
    demo_page,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

# Attaches to a stream in a fresh page and records its tokens on `window`.
ATTACH = """
async ([url, options]) => {
  const m = await import("/resumable-sse/resumable-sse.js");
  window.tokens = [];
  window.stream = m.attachStream(url, {
    ...options,
    onToken: (text, message) => window.tokens.push([text, message.id]),
  });
}
"""


async def device_reads(
    chromium: Browser, origin: str, url: str, options: dict[str, Any], release: Any
) -> dict[str, Any]:
    """A new browser context (a second device) reads ``url`` while the model is paused."""
    context = await chromium.new_context()
    try:
        page = await context.new_page()
        await page.goto(origin + "/")
        await page.evaluate(ATTACH, [url, options])
        await page.wait_for_function("window.tokens.length >= 1", timeout=WAIT_MS)
        first = await page.evaluate("window.tokens.slice()")
        release.set()
        state = await page.evaluate("window.stream.done")
        result: dict[str, Any] = await page.evaluate(
            "({tokens: window.tokens, text: window.stream.text, events: window.stream.events})"
        )
        result.update(state=state, first=first)
        return result
    finally:
        await context.close()


async def test_a_second_device_gets_the_text_so_far_at_once(
    browser: Browser,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One token for the 40 written so far, then one per token; exact text; model ran once."""
    async with demo_page(browser) as demo:
        [release] = gate(monkeypatch, demo.llm, 40)
        await demo.ask()
        await demo.wait_events(40)
        url = f"/api/sessions/{demo.session_id()}/stream"
        result = await device_reads(browser, demo.proxy.url, url, {}, release)
        assert result["state"] == "done"
        assert len(result["first"]) == 1
        assert result["first"][0][0] == "".join(TOKENS[:40])
        assert result["first"][0][1].endswith("-40")  # the id of the last token it covers
        assert [text for text, _ in result["tokens"][1:]] == TOKENS[40:]
        assert result["text"] == ANSWER
        assert result["events"] == len(TOKENS) - 40 + 2  # merged, the rest, the end
        await demo.wait_state("done")
        assert await demo.answer() == ANSWER
        assert demo.llm.started[demo.session_id()] == 1


async def test_compact_false_reads_every_token(
    browser: Browser,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``compact: false`` a new device replays token by token, as before."""
    async with demo_page(browser) as demo:
        [release] = gate(monkeypatch, demo.llm, 10)
        await demo.ask()
        await demo.wait_events(10)
        url = f"/api/sessions/{demo.session_id()}/stream"
        result = await device_reads(browser, demo.proxy.url, url, {"compact": False}, release)
        assert [text for text, _ in result["tokens"]] == TOKENS
        assert result["text"] == ANSWER
