"""The demo's live figures over real HTTP: the status JSON and page show what runs."""

from __future__ import annotations

import httpx
import pytest

from resumable_sse import Streamer
from resumable_sse._demo import create_app
from tests.helpers import Script, collect, take
from tests.servers import serve_in_task

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn serves in this event loop, and uvicorn runs on asyncio."""
    return "asyncio"


def value(status: dict[str, object], name: str, **attributes: object) -> object:
    """The value of one metric's data point in the status JSON."""
    metrics = status["metrics"]
    assert isinstance(metrics, list)
    (found,) = [m["value"] for m in metrics if m["name"] == name and m["attributes"] == attributes]
    return found


async def test_the_status_page_shows_running_streams_and_the_metrics() -> None:
    """A running stream with a reader is listed, then counted as ended."""
    app = create_app(delay=0)
    streamer: Streamer = app.state.streamer
    script = Script(["one", "two"], ["three"])
    async with serve_in_task(app) as url, httpx.AsyncClient(base_url=url) as http:
        page = await http.get("/status")
        assert page.status_code == 200
        assert "Live figures" in page.text
        reading = await streamer.open("chat-1", script)
        await take(reading, 2)

        status = (await http.get("/api/status")).json()
        assert status["live"] == [
            {
                "session_id": "chat-1",
                "state": "running",
                "events": 2,
                "age": status["live"][0]["age"],
                "consumers": 1,
                "local": True,
            }
        ]
        assert status["consumers"] == 1
        assert value(status, "resumable_sse.streams.started") == 1
        assert value(status, "resumable_sse.consumers.active") == 1

        script.release()
        await collect(reading)
        status = (await http.get("/api/status")).json()
        assert status["live"] == []
        assert value(status, "resumable_sse.events.produced") == 3
        assert value(status, "resumable_sse.events.delivered") == 4
        assert (
            value(status, "resumable_sse.streams.finished", **{"resumable_sse.outcome": "end"}) == 1
        )


async def test_the_demo_links_to_the_status_page() -> None:
    """The chat page links to the live figures."""
    async with serve_in_task(create_app(delay=0)) as url, httpx.AsyncClient(base_url=url) as http:
        assert 'href="status"' in (await http.get("/")).text
