"""Property-based tests (hypothesis): whatever clients send and generators yield.

One uvicorn serves the whole module (asyncio). For arbitrary ``Last-Event-ID`` headers
and query values and arbitrary session ids, the server answers a clear 4xx with a JSON
body or streams exactly what an independent model of the documented semantics says;
never a 500, never a hang (pytest-timeout bounds every test). For arbitrary generator
items (text with line breaks, NUL and lone surrogates, huge strings, nested JSON, bytes
that are not UTF-8), every event on the wire is parsed back by two independent SSE
parsers - httpx-sse, and the npm ``eventsource-parser`` run by node - and must carry
exactly the data the generator produced, modulo the SSE rule that CR and CRLF inside
data arrive as LF.

Examples are few and derandomized (fixed seeds, no example database), so the module is
deterministic and stays within seconds.
"""

from __future__ import annotations

import base64
import fcntl
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from httpx_sse import aconnect_sse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from resumable_sse import Streamer, sse_response
from tests.servers import serve_in_task

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

#: The pinned version of the npm parser; bump deliberately.
EVENTSOURCE_PARSER = "eventsource-parser@3.0.6"
#: A small per-event limit, so "huge" items cross it cheaply.
MAX_EVENT_BYTES = 50_000
TERMINAL = {"end", "error", "cancelled"}

PROPERTIES = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_EVENT_ID = re.compile(r"([0-9a-z]{1,16})-([0-9]{1,15})")
_SESSION_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """uvicorn runs in the test's loop, and uvicorn is asyncio-only."""
    return "asyncio"


# -- the server ----------------------------------------------------------------------------


class App:
    """``/items/{key}`` streams the items a test registered under ``key`` (a session id);
    ``/stream`` and ``/stream/{sid}`` start a two-token stream under any session id;
    ``/resume`` and ``/resume/{sid}`` only resume."""

    def __init__(self) -> None:
        self.streamer = Streamer(max_event_bytes=MAX_EVENT_BYTES)
        self.items: dict[str, list[object]] = {}

    def asgi(self) -> Starlette:
        streamer = self.streamer

        async def items(request: Request) -> Response:
            key = request.path_params["key"]
            # No keep-alive comments: httpx-sse reads this stream raw, and it takes a ping
            # for an empty event (florimondmanca/httpx-sse#35); pings are not tested here.
            return await sse_response(streamer, request, key, lambda: iter(self.items[key]), ping=0)

        def session_id(request: Request) -> str:
            if "sid" in request.path_params:
                return str(request.path_params["sid"])
            return request.query_params.get("session_id", "")

        async def stream(request: Request) -> Response:
            return await sse_response(
                streamer, request, session_id(request), lambda: ["a", "b"], ping=0
            )

        async def resume(request: Request) -> Response:
            return await sse_response(streamer, request, session_id(request), ping=0)

        return Starlette(
            routes=[
                Route("/items/{key}", items),
                Route("/stream", stream),
                Route("/stream/{sid}", stream),
                Route("/resume", resume),
                Route("/resume/{sid}", resume),
            ]
        )


@dataclass
class Server:
    app: App
    http: httpx.AsyncClient
    #: The finished stream ``fixed``: (id, event, data) of its 6 events.
    fixed: list[tuple[str, str, str]]
    started: set[str]
    counter: list[int]

    def new_key(self) -> str:
        self.counter[0] += 1
        return f"k{self.counter[0]}"


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[Server]:
    app = App()
    async with (
        app.streamer,
        serve_in_task(app.asgi()) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        app.items["fixed"] = ["t1", "t2", "t3", "t4", "t5"]
        async with aconnect_sse(http, "GET", "/items/fixed") as source:
            fixed = [(e.id, e.event, e.data) async for e in source.aiter_sse()]
        assert [data for _, _, data in fixed] == ["t1", "t2", "t3", "t4", "t5", ""]
        yield Server(app, http, fixed, set(), [0])


# -- the npm parser ------------------------------------------------------------------------

_NODE_SCRIPT = r"""
import { createParser } from "eventsource-parser";
import { createInterface } from "node:readline";

function parse(pieces) {
  const events = [];
  const parser = createParser({
    onEvent: (e) => events.push([e.id ?? "", e.event ?? "message", e.data]),
  });
  const decoder = new TextDecoder("utf-8");
  for (const piece of pieces) parser.feed(decoder.decode(piece, { stream: true }));
  parser.feed(decoder.decode());
  return events;
}

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  const chunks = JSON.parse(line).map((c) => Buffer.from(c, "base64"));
  const bytes = Buffer.concat(chunks);
  const single = [];
  for (let i = 0; i < bytes.length; i++) single.push(bytes.subarray(i, i + 1));
  process.stdout.write(JSON.stringify([parse(chunks), parse(single)]) + "\n");
}
"""


class NodeParser:
    """A node process running ``eventsource-parser``: raw response bytes in, events out.

    Each body is parsed twice: in the chunks it arrived in, and one byte at a time
    (every line ending and every UTF-8 sequence split across feeds).
    """

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)

    async def parse(self, chunks: Sequence[bytes]) -> tuple[list[Any], list[Any]]:
        request = json.dumps([base64.b64encode(chunk).decode() for chunk in chunks])
        await self._stdin.send(request.encode() + b"\n")
        line = await self._stdout.receive_until(b"\n", 1 << 26)
        chunked, single = json.loads(line)
        return [tuple(e) for e in chunked], [tuple(e) for e in single]


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def eventsource_parser_dir(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``eventsource-parser`` installed with npm into pytest's cache (once per version).

    Without pytest's cache (``-p no:cacheprovider``) it goes to a temporary folder.
    Without node or npm, or if the install fails, the tests that need it skip with
    the reason; in CI (``CI=true``) they fail instead.
    """
    cache: pytest.Cache | None = getattr(pytestconfig, "cache", None)
    if cache is not None:
        root = cache.mkdir("eventsource-parser")
    else:
        root = tmp_path_factory.mktemp("eventsource-parser")
    target = root / EVENTSOURCE_PARSER.replace("@", "-")
    installed = target / "node_modules" / "eventsource-parser" / "package.json"
    try:
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise RuntimeError("node and npm are not on PATH")
        # Parallel test workers share the cache: one installs while the others wait.
        with (root / "install.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not installed.exists():
                subprocess.run(
                    [
                        "npm",
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--prefix",
                        str(target),
                        EVENTSOURCE_PARSER,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            script = target / "parse.mjs"
            if not script.exists() or script.read_text() != _NODE_SCRIPT:
                script.write_text(_NODE_SCRIPT)  # never rewritten under a running node
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        reason = f"cannot install {EVENTSOURCE_PARSER} with npm: {exc} {detail}".strip()
        if _ci():
            pytest.fail(reason)
        pytest.skip(reason)
    return target


@pytest.fixture(scope="module")
async def node_parser(eventsource_parser_dir: Path) -> AsyncIterator[NodeParser]:
    node = shutil.which("node")
    assert node is not None
    async with await anyio.open_process(
        [node, str(eventsource_parser_dir / "parse.mjs")], cwd=eventsource_parser_dir
    ) as process:
        try:
            yield NodeParser(process)
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            await process.wait()


# -- the model: what the documented semantics say a client receives -------------------------


class _Invalid(Exception):
    """The item cannot be sent: the stream must end with ``error`` / ``invalid_item``."""


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


def _check_json(value: object) -> None:
    """Raise _Invalid unless ``value`` is plain JSON with finite numbers and valid text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise _Invalid
        if isinstance(item, str) and _has_surrogate(item):
            raise _Invalid
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())


def _nest(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


DEEP = _nest(50_000)  # JSON too deep to encode


def _text_of(value: object) -> tuple[str, object]:
    """(what the data must decode to, how to compare): text exactly, JSON by value."""
    if isinstance(value, str):
        if _has_surrogate(value):
            raise _Invalid
        return value, value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8"), None
        except UnicodeDecodeError:
            raise _Invalid from None
    if value is DEEP:
        raise _Invalid
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        raise _Invalid from None
    _check_json(value)
    return "", ("json", value)


@dataclass
class Expected:
    events: list[tuple[str, object]]  # (event name, exact text or ("json", value))
    terminal: str  # "end" or the error code


def model(items: Sequence[object]) -> Expected:
    """What the README says a stream of ``items`` looks like on the wire."""
    events: list[tuple[str, object]] = []
    for item in items:
        try:
            event = "message"
            value = item
            if isinstance(item, dict) and "data" in item:
                if set(item) - {"data", "event"}:
                    raise _Invalid
                event = item.get("event", "message")
                if not isinstance(event, str) or not _EVENT_NAME.fullmatch(event):
                    raise _Invalid
                if event in TERMINAL:
                    raise _Invalid
                value = item["data"]
            text, compare = _text_of(value)
        except _Invalid:
            return Expected(events, "invalid_item")
        if compare is None or isinstance(compare, str):
            if len(text.encode("utf-8")) > MAX_EVENT_BYTES:
                return Expected(events, "limit_exceeded")
            events.append((event, text))
        else:
            events.append((event, compare))
    return Expected(events, "end")


def sse_lines(data: str) -> str:
    """The SSE wire rule: a CR or CRLF inside data arrives as LF."""
    return data.replace("\r\n", "\n").replace("\r", "\n")


def check_received(received: Sequence[tuple[str, str, str]], expected: Expected) -> None:
    """Every event, in order, carries exactly the expected data; ids count from 1."""
    assert len(received) == len(expected.events) + 1, (received, expected)
    incarnation = received[0][0].split("-")[0]
    for index, ((event_id, event, data), (want_event, want)) in enumerate(
        zip(received, expected.events, strict=False)
    ):
        assert event_id == f"{incarnation}-{index + 1}"
        assert event == want_event
        if isinstance(want, str):
            assert data == sse_lines(want)
        else:
            assert isinstance(want, tuple)
            assert json.loads(data) == want[1]
            assert sse_lines(data) == data  # JSON text never carries a bare CR or LF
    event_id, event, data = received[-1]
    assert event_id == f"{incarnation}-{len(received)}"
    if expected.terminal == "end":
        assert (event, data) == ("end", "")
    else:
        assert event == "error"
        assert json.loads(data)["code"] == expected.terminal


def check_wire(body: bytes) -> None:
    """The raw body is UTF-8 made only of the fields the library sends, each block closed."""
    text = body.decode("utf-8")
    assert text.endswith("\r\n\r\n")  # sse-starlette ends lines with CRLF
    lines = text.split("\r\n")
    assert not any("\r" in line or "\n" in line for line in lines)
    for line in lines:
        field, _, _ = line.partition(":")
        assert field in {"", "id", "event", "data", "retry"}, line


# -- strategies ----------------------------------------------------------------------------

_breaks = st.sampled_from(["\n", "\r", "\r\n", "\n\r", "\0", "\u2028", "\x85", "\ufeff", ":", " "])
texts = st.lists(st.one_of(st.text(max_size=10), _breaks), max_size=8).map("".join)
lone_surrogates = st.builds(
    lambda a, s, b: a + s + b,
    texts,
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    texts,
)
huge = st.sampled_from(["x", "é", "€", "\n", "\r\n"]).flatmap(
    lambda char: st.integers(
        MAX_EVENT_BYTES // len(char.encode()) - 2, MAX_EVENT_BYTES // len(char.encode()) + 2
    ).map(lambda n: char * n)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
not_json = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, DEEP, {1j}]),
    st.builds(lambda v, s: [v, {"k": s}], json_values, lone_surrogates),
    st.builds(lambda v, s: {s: v}, json_values, lone_surrogates),
)
payloads = st.one_of(texts, st.binary(max_size=16), texts.map(str.encode), json_values)
event_names = st.one_of(
    st.sampled_from(["tool_call", "a.b:c-d_e", "x" * 64, "message"]),
    st.sampled_from(["end", "error", "cancelled", "", "x" * 65, "a b", "é", "a\nb"]),
    st.text(max_size=70),
)
event_dicts = st.one_of(
    st.fixed_dictionaries({"data": payloads}, optional={"event": event_names}),
    st.fixed_dictionaries({"data": payloads, "extra": st.none()}),
)
#: Items that can be sent, several times as likely as the ones that cannot.
valid_items = st.one_of(texts, huge, texts.map(str.encode), json_values, event_dicts)
invalid_items = st.one_of(lone_surrogates, st.binary(min_size=1, max_size=24), not_json)
items = st.one_of(valid_items, valid_items, valid_items, valid_items, invalid_items)


# -- generator items, parsed back by two parsers --------------------------------------------


@pytest.fixture(scope="module", params=["httpx-sse", "eventsource-parser"])
def parser(request: pytest.FixtureRequest) -> NodeParser | None:
    """Which independent parser reads the stream back (None: httpx-sse)."""
    if request.param == "httpx-sse":
        return None
    parser = request.getfixturevalue("node_parser")
    assert isinstance(parser, NodeParser)
    return parser


@PROPERTIES
@given(st.lists(items, max_size=6))
async def test_every_item_arrives_exactly_or_ends_the_stream_with_a_clear_error(
    server: Server, parser: NodeParser | None, generated: list[object]
) -> None:
    """Each event parses back to exactly what was produced; an item that cannot be sent
    ends the stream with ``error`` (invalid_item / limit_exceeded), never a 500 or a hang."""
    key = server.new_key()
    server.app.items[key] = generated
    expected = model(generated)
    if parser is None:
        async with aconnect_sse(server.http, "GET", f"/items/{key}") as source:
            assert source.response.status_code == 200
            received = [(e.id, e.event, e.data) async for e in source.aiter_sse()]
        check_received(received, expected)
        return
    async with server.http.stream("GET", f"/items/{key}") as response:
        assert response.status_code == 200
        chunks = [chunk async for chunk in response.aiter_raw()]
    check_wire(b"".join(chunks))
    chunked, single = await parser.parse(chunks)
    assert chunked == single
    check_received(chunked, expected)


async def test_events_at_the_size_limit_pass_and_one_byte_more_ends_the_stream(
    server: Server,
) -> None:
    """Events of exactly ``max_event_bytes`` arrive intact; one byte more ends the stream
    with ``limit_exceeded`` after what was stored."""
    key = server.new_key()
    fit = "é" * (MAX_EVENT_BYTES // 2)
    server.app.items[key] = [fit, "\r\n" * (MAX_EVENT_BYTES // 2), fit + "x"]
    async with aconnect_sse(server.http, "GET", f"/items/{key}") as source:
        received = [(e.id, e.event, e.data) async for e in source.aiter_sse()]
    check_received(received, model(server.app.items[key]))
    assert [data for _, _, data in received[:2]] == [fit, "\n" * (MAX_EVENT_BYTES // 2)]


# -- resume positions and session ids -------------------------------------------------------


def _percent(raw: bytes) -> str:
    """Every byte percent-encoded, so nothing is normalised on the way."""
    return "".join(f"%{byte:02X}" for byte in raw)


async def check_resume(server: Server, response: httpx.Response, value: str) -> None:
    """The answer to resuming the fixed stream at ``value`` is exactly what the id means."""
    fixed = server.fixed
    incarnation = fixed[0][0].split("-")[0]
    stripped = value.strip(" \t")
    match = _EVENT_ID.fullmatch(stripped)
    if stripped in {"", "0"}:
        want: tuple[int, str | int] = (200, 0)
    elif match is None:
        want = (400, "invalid_event_id")
    elif match[1] != incarnation:
        want = (400, "stale_event_id")
    elif int(match[2]) > len(fixed):
        want = (400, "event_id_ahead")
    elif int(match[2]) == len(fixed):
        want = (204, 0)
    else:
        want = (200, int(match[2]))
    status, detail = want
    assert response.status_code == status, (value, response.text)
    if status == 400:
        body = response.json()
        assert body["error"] == detail
        assert len(body["message"]) < 200  # the input is not echoed at length
    elif status == 200:
        assert isinstance(detail, int)
        assert response.headers["content-type"].startswith("text/event-stream")
        assert blocks(response.text) == fixed[detail:]


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(id, event, data) of each event of a body of one-line fields, as sent here."""
    events = []
    for block in text.split("\r\n\r\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\r\n"))
        events.append((fields["id"], fields["event"], fields["data"]))
    return events


_header_chars = st.characters(
    codec="latin-1", exclude_characters="\x7f", exclude_categories=("Cc", "Zs")
)
header_values = st.one_of(
    st.text(_header_chars, min_size=1, max_size=40),
    st.builds(
        lambda a, b: f"{a} {b}",
        st.text(_header_chars, min_size=1),
        st.text(_header_chars, min_size=1),
    ),
)
#: ("real" incarnation or another, a sequence number, leading zeros, padding)
near_ids = st.tuples(
    st.one_of(st.just(""), st.text("0123456789abcdefz", min_size=1, max_size=17)),
    st.one_of(st.integers(0, 8), st.integers(0, 10**16)),
    st.integers(0, 3),
    st.sampled_from(["", " ", "\xa0"]),
)


def near_id(server: Server, parts: tuple[str, int, int, str]) -> str:
    incarnation, seq, zeros, pad = parts
    incarnation = incarnation or server.fixed[0][0].split("-")[0]
    return f"{pad}{incarnation}-{'0' * zeros}{seq}{pad}"


@PROPERTIES
@given(st.one_of(header_values, near_ids))
async def test_any_last_event_id_header_gets_its_exact_meaning(
    server: Server, generated: str | tuple[str, int, int, str]
) -> None:
    """Any Last-Event-ID header: a 400 with a JSON body, a 204, or exactly the rest."""
    if isinstance(generated, str):
        value = generated
    else:  # HTTP strips spaces around a header value; clients may not even send them
        value = near_id(server, (*generated[:3], generated[3].strip(" ")))
    response = await server.http.get(
        "/resume/fixed", headers=[(b"Last-Event-ID", value.encode("latin-1"))]
    )
    await check_resume(server, response, value.encode("latin-1").decode("latin-1"))


@PROPERTIES
@given(st.one_of(st.binary(max_size=40), texts.map(str.encode), near_ids))
async def test_any_last_event_id_query_gets_its_exact_meaning(
    server: Server, generated: bytes | tuple[str, int, int, str]
) -> None:
    """Any ``last_event_id`` query value, even bytes that are not UTF-8."""
    raw = generated if isinstance(generated, bytes) else near_id(server, generated).encode()
    response = await server.http.get(f"/resume/fixed?last_event_id={_percent(raw)}")
    await check_resume(server, response, raw.decode("utf-8", "replace"))


session_ids = st.one_of(
    st.binary(max_size=40),
    texts.map(str.encode),
    st.text("abcXYZ019_.:@-", min_size=1, max_size=130).map(str.encode),
    st.sampled_from([b".", b"..", b"a/b", b"{x}", b"k1", b"*", b"a" * 128, b"a" * 129]),
)


@PROPERTIES
@given(session_ids, st.booleans())
async def test_any_session_id_is_served_or_refused_with_400(
    server: Server, raw: bytes, in_path: bool
) -> None:
    """Resume then start with any session id: 400 if it is not allowed, else 404 for an
    unknown session and the stream once started; in the path, what cannot route is the
    router's 404 (or its redirect for an empty id)."""
    sid = raw.decode("utf-8", "replace")
    valid = _SESSION_ID.fullmatch(sid) is not None
    routable = sid != "" and "/" not in sid
    suffix = f"/{_percent(raw)}" if in_path else f"?session_id={_percent(raw)}"
    resumed = await server.http.get(f"/resume{suffix}")
    started = await server.http.get(f"/stream{suffix}")
    if in_path and not routable:
        # The router answers: 404, or for an empty id its redirect to the path without
        # the trailing slash.
        assert {resumed.status_code, started.status_code} <= {404, 307}
        return
    if not valid:
        for response in (resumed, started):
            assert response.status_code == 400, (sid, response.text)
            assert response.json()["error"] == "invalid_session_id"
        return
    if sid in server.started or sid in {"fixed"} or sid in server.app.items:
        assert resumed.status_code == 200
    else:
        assert resumed.status_code == 404
        assert resumed.json()["error"] == "session_not_found"
    server.started.add(sid)
    assert started.status_code == 200
    if sid not in server.app.items:
        assert [data for _, _, data in blocks(started.text)] == ["a", "b", ""]
