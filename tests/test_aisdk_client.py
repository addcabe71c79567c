"""The real Vercel AI SDK chat client (npm ``ai``) against the demo's AI SDK routes.

``tests/aisdk/client.mjs`` runs the SDK's own ``AbstractChat`` and ``DefaultChatTransport``
in Node; the demo app serves it from a real uvicorn on 127.0.0.1. The npm packages are
installed by ``npm ci`` from the committed ``tests/aisdk/package-lock.json`` into the
ignored ``tests/aisdk/node_modules`` (once per lockfile). Without Node or npm these tests
skip with the reason, except in CI (``CI=true``), where they fail.

The simulated model pauses after a chosen token (tests/llm_gate.py) until the test lets
it go, so "mid-answer" is certain and no step depends on timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from starlette.responses import HTMLResponse, Response

from resumable_sse._demo import SimulatedLLM, create_app, simulated_answer, tokenize
from tests import test_browser
from tests.llm_gate import gate
from tests.servers import serve_in_task
from tests.test_browser import HAVE_PLAYWRIGHT, WAIT_MS

if TYPE_CHECKING or HAVE_PLAYWRIGHT:
    from playwright.async_api import Browser, expect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PACKAGE = Path(__file__).parent / "aisdk"
PROMPT = "Does the real AI SDK client resume? Ünïcode 🙂"
ANSWER = simulated_answer(PROMPT)

browser = test_browser.browser  # the headless Chromium fixture (skips, or fails in CI)


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn serves in this event loop, and uvicorn runs on asyncio."""
    return "asyncio"


def _install() -> str | None:
    """``npm ci`` the test package unless its lockfile is installed already; or why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "Node.js and npm are needed for the AI SDK client tests"
    lock = (PACKAGE / "package-lock.json").read_bytes()
    stamp = PACKAGE / "node_modules" / ".resumable-sse-installed"
    wanted = hashlib.sha256(lock).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:  # .ci/run writes it too
        return None
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        return f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    stamp.write_text(wanted)
    return None


@pytest.fixture(scope="session")
def node_package() -> Path:
    """The installed test package; skips without Node/npm, but fails in CI."""
    reason = _install()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"AI SDK client tests cannot run in CI: {reason}")
        pytest.skip(reason)
    return PACKAGE


class NodeClient:
    """One run of client.mjs: JSON lines from its stdout, ``go()`` on its stdin."""

    def __init__(self, process: Process) -> None:
        self._process = process
        assert process.stdout is not None
        self._text = TextReceiveStream(process.stdout)
        self._buffer = ""
        self.lines: list[dict[str, Any]] = []

    async def next(self, step: str) -> dict[str, Any]:
        """The next line whose step is ``step`` (earlier other lines are kept in ``lines``)."""
        while True:
            while "\n" not in self._buffer:
                self._buffer += await self._text.receive()
            line, self._buffer = self._buffer.split("\n", 1)
            message: dict[str, Any] = json.loads(line)
            self.lines.append(message)
            if message["step"] == "failed":
                raise AssertionError(f"the Node client failed:\n{message['error']}")
            if message["step"] == step:
                return message

    async def go(self) -> None:
        assert self._process.stdin is not None
        await self._process.stdin.send(b"go\n")


@asynccontextmanager
async def node_client(
    package: Path, scenario: str, api: str, chat_id: str
) -> AsyncIterator[NodeClient]:
    command = ["node", str(package / "client.mjs"), scenario, api, chat_id, PROMPT]
    async with await anyio.open_process(command, cwd=package) as process:
        try:
            with anyio.fail_after(60):
                yield NodeClient(process)
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()


@asynccontextmanager
async def demo() -> AsyncIterator[tuple[str, SimulatedLLM, Any]]:
    app = create_app(delay=0.001)
    async with serve_in_task(app) as url:
        yield f"{url}/api/chat", app.state.llm, app.state.streamer


async def test_drop_mid_answer_then_resume_gives_the_exact_text(
    node_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send, abort mid-answer, ``resumeStream()``: the message holds exactly the whole answer."""
    async with demo() as (api, llm, _):
        [release] = gate(monkeypatch, llm, 5)
        async with node_client(node_package, "drop-resume", api, "chat-drop") as client:
            dropped = await client.next("dropped")
            await client.go()
            resumed = await client.next("response")  # the resume request is open
            assert resumed == {"step": "response", "method": "GET", "status": 200}
            release.set()
            done = await client.next("done")
    assert dropped["text"]
    assert ANSWER.startswith(dropped["text"])
    assert len(dropped["text"]) < len(ANSWER)
    assert done["text"] == ANSWER
    assert done["status"] == "ready"
    assert done["error"] is None
    assert done["roles"] == ["user", "assistant"]
    assert sum(llm.started.values()) == 1


async def test_reconnect_to_an_unknown_chat_gives_null(node_package: Path) -> None:
    """``reconnectToStream`` for a chat with nothing running resolves to ``null`` (204)."""
    async with (
        demo() as (api, llm, _),
        node_client(node_package, "unknown", api, "no-such-chat") as client,
    ):
        done = await client.next("done")
    assert done["stream"] is None
    assert not llm.started


async def test_stop_ends_the_message_and_closes_the_model(
    node_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop route cancels the answer: the client's message ends, the model is closed."""
    async with demo() as (api, llm, streamer):
        gate(monkeypatch, llm, 3)  # never released: only Stop can end this answer
        async with node_client(node_package, "stop", api, "chat-stop") as client:
            done = await client.next("done")
        [session_id] = llm.started
        status = await streamer.status(session_id)
    assert done["stop"] == {"stopped": True}
    assert done["text"] == "".join(tokenize(ANSWER)[:3])  # the three tokens it had
    assert done["status"] == "ready"
    assert status.state.value == "cancelled"
    assert llm.finalized[session_id] == 1


async def test_two_sends_at_once_run_the_model_once(
    node_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same request sent twice at once: one model run, both read the whole answer."""
    async with demo() as (api, llm, _):
        [release] = gate(monkeypatch, llm, 2)
        async with node_client(node_package, "twice", api, "chat-twice") as client:
            await client.next("response")
            await client.next("response")  # both requests are answered and reading
            release.set()
            done = await client.next("done")
    assert done["first"]["text"] == ANSWER
    assert done["second"] == done["first"]
    assert sum(llm.started.values()) == 1


# -- a page on the AI SDK's chat client, in Chromium ---------------------------------------

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>AI SDK chat</title></head>
<body><input id="prompt"><button id="send">Send</button><div id="answer"></div>
<script src="/aisdk-page.js"></script></body></html>"""


@pytest.fixture(scope="session")
def page_bundle(node_package: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """tests/aisdk/page.js and the npm ``ai`` package, bundled by esbuild for the browser."""
    out = tmp_path_factory.mktemp("aisdk") / "page.js"
    esbuild = node_package / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [str(esbuild), "page.js", "--bundle", "--format=iife", f"--outfile={out}"],
        cwd=node_package,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out.read_bytes()


async def test_a_page_on_the_ai_sdk_reloaded_mid_answer_ends_with_the_exact_text(
    browser: Browser, page_bundle: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reload mid-answer: the page resumes (replay) and shows exactly the whole answer."""
    app = create_app(delay=0.001)
    app.add_route("/aisdk", lambda _: HTMLResponse(PAGE))
    app.add_route("/aisdk-page.js", lambda _: Response(page_bundle, media_type="text/javascript"))
    llm = app.state.llm
    [release] = gate(monkeypatch, llm, 30)
    errors: list[str] = []
    async with serve_in_task(app) as url:
        context = await browser.new_context()
        try:
            page = await context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(url + "/aisdk")
            await page.fill("#prompt", PROMPT)
            await page.click("#send")
            await expect(page.locator("#answer")).to_have_text(
                "".join(tokenize(ANSWER)[:30]), timeout=WAIT_MS
            )
            await page.reload()
            body = page.locator("body")
            await expect(body).to_have_attribute("data-resume", "open", timeout=WAIT_MS)
            release.set()
            await expect(body).to_have_attribute("data-finished", "yes", timeout=WAIT_MS)
            await expect(body).to_have_attribute("data-status", "ready", timeout=WAIT_MS)
            shown = await page.locator("#answer").text_content()
            error = await body.get_attribute("data-error")
        finally:
            await context.close()
    assert shown == ANSWER
    assert error is None
    assert errors == []
    assert sum(llm.started.values()) == 1
