"""Every code block of README.md runs, so the examples cannot rot.

Each Python and HTML block is preceded by an invisible tag, ``<!-- readme-test: NAME -->``:
Python blocks with the same name run in order in one namespace (they continue each other,
as the README says), and each name has a test here that drives what the blocks build the
way a reader would: the chat app as ``app.py`` under ``uvicorn app:app`` with the page as
``chat.html``, that page in Chromium, the Python client against it, FastAPI's own SSE,
the lifespan, access control and the Redis setup. Shell blocks are checked command by
command: each program exists and accepts what the README passes it. An untagged block, or
a tag no test knows, fails.

To add an example: tag its block, add the tag to ``PYTHON_TAGS`` (or ``FILE_TAGS``), and
add a test that runs it (``execute(tag)`` gives its namespace) and checks what it does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from packaging.requirements import Requirement
from starlette.routing import Route

import dev
from resumable_sse import RedisStore, Streamer
from resumable_sse._cli import _parser as cli_parser
from resumable_sse.aisdk import ChatStreams
from tests.servers import ServerProcess, serve_in_process, serve_in_task
from tests.test_aisdk_client import _install as install_npm_packages

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ANSWER = "You asked: Hi"  # what the README's stand-in model says to the prompt "Hi"

_BLOCK = re.compile(
    r"^(?:<!-- readme-test: (?P<tag>[\w.-]+) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
PYTHON_TAGS = {"chat", "client", "lifecycle", "fastapi-sse", "redis", "access", "aisdk"}
FILE_TAGS = {"chat.html", "aisdk.tsx"}
PROGRAMS = {"python3", "pip", "resumable-sse", "uvicorn", "curl"}


@dataclass(frozen=True)
class Block:
    lang: str
    tag: str | None
    code: str
    line: int


def blocks(lang: str | None = None, tag: str | None = None) -> list[Block]:
    """The README's fenced blocks, in order, optionally only one language or tag."""
    found = [
        Block(m["lang"], m["tag"], m["code"], README.count("\n", 0, m.start("code")) + 1)
        for m in _BLOCK.finditer(README)
    ]
    return [b for b in found if lang in (None, b.lang) and tag in (None, b.tag)]


def source(tag: str) -> str:
    """The Python blocks of one tag, joined as one file."""
    parts = blocks("python", tag)
    assert parts, f"no README block is tagged {tag!r}"
    return "\n\n".join(block.code for block in parts)


def execute(tag: str) -> dict[str, Any]:
    """Run the blocks of one tag in one fresh namespace and return it."""
    namespace: dict[str, Any] = {"__name__": f"readme_{tag.replace('-', '_')}"}
    for block in blocks("python", tag):
        exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
    return namespace


def commands() -> Iterator[tuple[Block, list[str]]]:
    """Each command line of the shell blocks, split as the shell would (comments dropped)."""
    for block in blocks("bash"):
        for line in block.code.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                yield block, words


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn, the README's client and Chromium run on asyncio."""
    return "asyncio"


def wire(events: list[ServerSentEvent]) -> list[tuple[str, str]]:
    return [(sse.event, sse.data) for sse in events]


async def read(
    http: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, list[ServerSentEvent]]:
    """One SSE request read to its end (the README's streams end at once: no keep-alive)."""
    async with aconnect_sse(http, method, url, **kwargs) as source:
        assert source.response.status_code == 200, source.response.status_code
        return source.response, [sse async for sse in source.aiter_sse()]


# -- the blocks themselves ------------------------------------------------------------------


def test_every_block_is_tagged_and_every_tag_is_tested() -> None:
    """No README block escapes these tests: unknown languages and tags fail."""
    everything = blocks()
    assert len(everything) == len(re.findall(r"^```\w", README, re.MULTILINE))
    for block in everything:
        assert block.lang in {"python", "bash", "html", "tsx"}, f"README.md:{block.line}"
        if block.lang == "python":
            assert block.tag in PYTHON_TAGS, f"README.md:{block.line}: tag it"
        elif block.lang in ("html", "tsx"):
            assert block.tag in FILE_TAGS, f"README.md:{block.line}: tag it"
    assert {b.tag for b in blocks("python")} == PYTHON_TAGS
    assert {b.tag for b in blocks("html")} | {b.tag for b in blocks("tsx")} == FILE_TAGS


def test_shell_commands_exist_and_accept_their_arguments() -> None:
    """Every command in a shell block names a real program, subcommand, extra or route."""
    scripts = Path(sys.executable).parent
    extras = set(metadata.metadata("resumable-sse").get_all("Provides-Extra") or [])
    dev_commands = set(re.findall(r"python3 dev\.py (\w+)", dev.__doc__ or ""))
    for block, words in commands():
        where = f"README.md:{block.line}: {shlex.join(words)}"
        program, args = words[0], words[1:]
        assert program in PROGRAMS, where
        if program == "python3":
            assert args[0] == "dev.py", where
            assert args[1] in dev_commands, where
        elif program == "pip":
            assert args[0] == "install", where
            requirement = Requirement(args[1])
            assert requirement.name == "resumable-sse", where
            assert requirement.extras <= extras, where
        elif program == "resumable-sse":
            assert (scripts / program).exists(), where
            cli_parser().parse_args(args)  # exits (fails the test) on a bad argument
        elif program == "uvicorn":
            assert (scripts / program).exists(), where
            assert args[0] == "app:app", where  # the README's chat app, saved as app.py
        else:  # curl: a route of the chat app, checked against it in the chat test
            assert args[-1].startswith("http://127.0.0.1:8000/stream?"), where


# -- the chat app: app.py, served by uvicorn, with chat.html --------------------------------


@pytest.fixture
def chat_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding the README's app.py and chat.html, and the working directory."""
    (tmp_path / "app.py").write_text(source("chat"), encoding="utf-8")
    [page] = blocks("html", "chat.html")
    (tmp_path / "chat.html").write_text(page.code, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def chat_server(chat_dir: Path) -> Iterator[ServerProcess]:
    """``uvicorn app:app`` started in the directory of app.py and chat.html, as the README says."""
    with serve_in_process("app:app") as server:
        yield server


def curl_path() -> str:
    [url] = [words[-1] for _, words in commands() if words[0] == "curl"]
    return url.removeprefix("http://127.0.0.1:8000")


def run_client(url: str) -> str:
    """The README's Python client against ``url``; what it printed."""
    code = source("client").replace('"http://127.0.0.1:8000"', repr(url))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md (client)", "exec"), {"__name__": "readme_client"})
    return printed.getvalue()


async def test_the_chat_app_streams_resumes_and_cancels(chat_server: ServerProcess) -> None:
    """app.py under uvicorn: GET, the seed form, POST /chat, resume, 204, cancel, the page."""
    async with httpx.AsyncClient(base_url=chat_server.url, timeout=30) as http:
        _, streamed = await read(http, "GET", curl_path())
        _, rest = await read(http, "GET", curl_path(), headers={"Last-Event-ID": streamed[0].id})
        _, seed = await read(http, "GET", "/seed/stream?session_id=s2&prompt=Hi")
        _, seed_rest = await read(
            http, "GET", "/seed/stream?session_id=s2", headers={"Last-Event-ID": seed[0].id}
        )
        response, chat = await read(http, "POST", "/chat", json={"prompt": "Hi"})
        resume_url = response.headers["content-location"]
        _, chat_rest = await read(http, "GET", resume_url, headers={"Last-Event-ID": chat[0].id})
        finished = await http.get(resume_url, headers={"Last-Event-ID": chat[-1].id})
        cancel_url = resume_url.removesuffix("/stream") + "/cancel"
        cancels = [await http.post(url) for url in (cancel_url, "/chat/nobody/cancel")]
        malformed = await http.post("/chat/bad%20id!/cancel")
        page = await http.get("/")
        script = await http.get("/resumable-sse/resumable-sse.js")
    answer = [("message", "You asked: "), ("message", "Hi"), ("end", "")]
    assert wire(streamed) == wire(seed) == wire(chat) == answer
    assert wire(rest) == wire(seed_rest) == wire(chat_rest) == answer[1:]
    assert re.fullmatch(r"/chat/[\w-]+/stream", resume_url)
    assert (finished.status_code, finished.content) == (204, b"")
    assert (cancels[0].status_code, cancels[0].json()) == (200, {"running": False})
    assert (cancels[1].status_code, cancels[1].json()["error"]) == (404, "session_not_found")
    assert (malformed.status_code, malformed.json()["error"]) == (400, "invalid_session_id")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<meta charset="utf-8">' in page.text
    assert script.status_code == 200
    assert "export function postStream" in script.text


async def test_the_python_client_reads_the_chat(chat_server: ServerProcess) -> None:
    """The README's client, run as written (its URL pointed at the test server)."""
    printed = await anyio.to_thread.run_sync(run_client, chat_server.url)
    assert printed == ANSWER


# -- the page in Chromium -------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium, as in test_browser.py (skips locally without one, fails in CI)."""
    from tests import test_browser

    reason = test_browser._unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=test_browser.CHROMIUM, args=test_browser.CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def test_the_page_answers_and_survives_a_reload(chat_dir: Path, browser: Any) -> None:
    """chat.html in Chromium: reloaded mid-answer, it shows the exact answer; one model run."""
    from playwright.async_api import expect

    from tests.test_browser import WAIT_MS

    namespace = execute("chat")
    release = anyio.Event()
    runs: list[str] = []

    async def gated_llm(prompt: str) -> AsyncIterator[str]:  # the README's model, paused
        runs.append(prompt)
        yield "You asked: "
        await release.wait()
        yield prompt

    namespace["llm"] = gated_llm
    async with serve_in_task(namespace["app"]) as url:
        page = await (await browser.new_context()).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(url + "/")
        await page.fill("#prompt", "Hi")
        await page.click("text=Send")
        answer = page.locator("#answer")
        await expect(answer).to_have_text("You asked: ", timeout=WAIT_MS)
        await page.reload()
        await expect(page.locator("#note")).to_have_text(
            "Resumed from event 1 (reload).", timeout=WAIT_MS
        )
        await expect(answer).to_have_text("You asked: ")
        release.set()
        await expect(page.locator("#note")).to_have_text("Done.", timeout=WAIT_MS)
        await expect(answer).to_have_text(ANSWER)
        await namespace["streamer"].aclose()
    assert runs == ["Hi"]
    assert errors == []


# -- the other examples ---------------------------------------------------------------------


async def test_fastapi_native_sse_example() -> None:
    """FastAPI's own SSE: start, resume exactly, 404 JSON for an unknown session, then 204."""
    namespace = execute("fastapi-sse")
    async with (
        serve_in_task(namespace["app"]) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        _, events = await read(http, "GET", "/ask/s1?prompt=Hi")
        _, rest = await read(
            http, "GET", "/chat/s1/stream", headers={"Last-Event-ID": events[0].id}
        )
        missing = await http.get("/chat/nobody/stream")
        finished = await http.get("/chat/s1/stream", headers={"Last-Event-ID": events[-1].id})
        await namespace["streamer"].aclose()
    assert wire(events) == [("message", "You asked: "), ("message", "Hi"), ("end", "")]
    assert events[0].retry == 1000
    assert wire(rest) == wire(events)[1:]
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "session_not_found",
        "message": "no stream for session 'nobody'",
    }
    assert (finished.status_code, finished.content) == (204, b"")


async def test_lifecycle_example_ends_running_streams_on_shutdown() -> None:
    """The lifespan closes the streamer: a running stream ends with cancelled / shutdown."""
    namespace = execute("lifecycle")
    app, streamer = namespace["app"], namespace["streamer"]
    assert isinstance(streamer, Streamer)

    async def endless() -> AsyncIterator[str]:
        yield "a"
        await anyio.sleep_forever()

    received: list[dict[str, str]] = []
    async with anyio.create_task_group() as tg, app.router.lifespan_context(app):
        await streamer.start("s1", endless)
        subscription = await streamer.open("s1")

        async def drain() -> None:
            received.extend([event async for event in subscription])

        tg.start_soon(drain)
    assert [event["event"] for event in received] == ["message", "cancelled"]
    assert json.loads(received[-1]["data"]) == {"reason": "shutdown"}


async def test_access_control_example_binds_streams_to_their_user() -> None:
    """The owner reads; anyone else gets 403 whether or not the session exists."""
    namespace = execute("access")
    streamer: Streamer = namespace["streamer"]
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await streamer.start("s1", ["hello"], principal="alice")
        owner = await http.get("/chat/s1/stream", headers={"x-user": "alice"})
        stranger = await http.get("/chat/s1/stream", headers={"x-user": "mallory"})
        nobody = await http.get("/chat/nobody/stream", headers={"x-user": "mallory"})
        await streamer.aclose()
    assert owner.status_code == 200
    assert "data: hello" in owner.text
    assert stranger.status_code == nobody.status_code == 403
    assert (
        stranger.json() == nobody.json() == {"error": "access_denied", "message": "access denied"}
    )


async def test_redis_example_builds_a_redis_streamer() -> None:
    """The Redis blocks make streamers on RedisStores (they connect on first use), with
    the options given to get_streamer or to the store by hand."""
    namespace = execute("redis")
    streamer: Streamer = namespace["streamer"]
    by_hand: Streamer = namespace["by_hand"]
    assert by_hand.store is namespace["store"]
    for store in (streamer.store, by_hand.store):
        assert isinstance(store, RedisStore)
        assert (store.prefix, store.lease) == ("chat", 10)
    await streamer.aclose()
    await streamer.store.aclose()  # it owns the client it made from the URL
    await by_hand.aclose()


def test_readme_urls_are_absolute_and_name_files_that_exist() -> None:
    """PyPI shows the README without the repository: links and images must be absolute."""
    repository = dict(
        url.split(", ", 1)
        for url in metadata.metadata("resumable-sse").get_all("Project-URL") or []
    )["Repository"]
    raw = repository.replace("https://github.com/", "https://raw.githubusercontent.com/")
    for target in re.findall(r"\]\(([^)\s]+)\)", README):
        assert target.startswith("https://"), target
        for prefix in (f"{raw}/main/", f"{repository}/blob/main/", f"{repository}/tree/main/"):
            if target.startswith(prefix):
                path = ROOT / target.removeprefix(prefix).split("?")[0]
                assert path.exists(), target


# -- the Vercel AI SDK example ----------------------------------------------------------------


async def test_ai_sdk_example_speaks_the_chat_protocol() -> None:
    """The AI SDK app: POST streams UI message chunks and [DONE]; resume 204 after; stop."""
    namespace = execute("aisdk")
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}
    body = {"id": "chat-1", "messages": [message], "trigger": "submit-message"}
    async with (
        serve_in_task(namespace["app"]) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        response, events = await read(http, "POST", "/api/chat", json=body)
        resumed = await http.get("/api/chat/chat-1/stream")
        stopped = await http.post("/api/chat/chat-1/stop")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    chunks = [json.loads(sse.data) for sse in events[:-1]]
    assert [c["type"] for c in chunks] == [
        "start",
        "data-status",
        "text-start",
        "text-delta",
        "text-delta",
        "text-delta",
        "text-end",
        "finish",
    ]
    assert chunks[1]["data"] == {"messages": 1}
    assert "".join(c.get("delta", "") for c in chunks) == "Hello, world"
    assert events[-1].data == "[DONE]"
    assert resumed.status_code == 204  # the answer has finished: nothing to resume
    assert stopped.json() == {"stopped": False}


def test_ai_sdk_frontend_names_the_adapter_routes(tmp_path: Path) -> None:
    """The useChat snippet parses as TSX and names the routes ``ChatStreams`` serves."""
    [block] = blocks("tsx", "aisdk.tsx")
    api = re.search(r'DefaultChatTransport\(\{ api: "([^"]+)" \}\)', block.code)
    stop = re.search(r'fetch\(`([^`]+)`, \{ method: "POST" \}\)', block.code)
    assert api is not None
    assert stop is not None
    assert re.search(r"\bresume: true\b", block.code)
    routes = {
        (route.path, method)
        for route in ChatStreams(Streamer(), lambda _: []).routes(api[1])
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    assert (api[1], "POST") in routes
    assert (stop[1].replace("${chatId}", "{chat_id}"), "POST") in routes
    reason = install_npm_packages()
    if reason is not None:  # esbuild comes with the AI SDK test packages
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    esbuild = ROOT / "tests" / "aisdk" / "node_modules" / ".bin" / "esbuild"
    snippet = tmp_path / "snippet.tsx"
    snippet.write_text(block.code, encoding="utf-8")
    subprocess.run(
        [str(esbuild), str(snippet), "--loader:.tsx=tsx"], check=True, capture_output=True
    )
