"""The ``resumable-sse`` command line, in this process and as ``python -m resumable_sse``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest
from httpx_sse import connect_sse

from resumable_sse._cli import main
from resumable_sse._demo import simulated_answer
from tests.servers import free_port


def test_help_lists_the_demo_and_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` and ``demo --help`` describe the command and exit 0."""
    with pytest.raises(SystemExit) as top:
        main(["--help"])
    assert top.value.code == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as demo:
        main(["demo", "--help"])
    assert demo.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--delay", "--redis-url"):
        assert option in out


@pytest.mark.parametrize(
    "argv", [[], ["serve"], ["demo", "--port", "70000"], ["demo", "--delay", "-1"]]
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or unknown command, or a bad option value, is a usage error."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: resumable-sse" in capsys.readouterr().err


def test_demo_without_uvicorn_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without uvicorn the demo explains how to get it and exits 2."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes ``import uvicorn`` fail
    assert main(["demo"]) == 2
    assert "pip install 'resumable-sse[demo]'" in capsys.readouterr().err


def test_python_m_help() -> None:
    """``python -m resumable_sse --help`` works."""
    result = subprocess.run(
        [sys.executable, "-m", "resumable_sse", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "usage: resumable-sse" in result.stdout


@pytest.mark.e2e
def test_demo_serves_the_page_and_stops_cleanly_on_ctrl_c() -> None:
    """``python -m resumable_sse demo`` serves the page and a whole answer; Ctrl+C exits 0."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "resumable_sse", "demo", "--port", str(port), "--delay", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        output: list[str] = []
        for line in proc.stderr:  # blocks on the child's own output, up to its startup line
            output.append(line)
            if "Uvicorn running on" in line:
                break
        else:
            pytest.fail("the demo exited before it started:\n" + "".join(output))
        assert f"open http://127.0.0.1:{port}/ in a browser" in "".join(output)

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            page = client.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert 'id="answer"' in page.text

            chat = client.post("/api/sessions", json={"prompt": "hello"})
            assert chat.status_code == 201
            url = chat.json()["stream_url"]
            with connect_sse(client, "GET", url) as source:
                events = list(source.iter_sse())
            assert "".join(e.data for e in events if e.event == "message") == simulated_answer(
                "hello"
            )
            assert events[-1].event == "end"

            # The same model behind the Vercel AI SDK's protocol.
            message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hello"}]}
            body = {"id": "chat-1", "messages": [message], "trigger": "submit-message"}
            with connect_sse(client, "POST", "/api/chat", json=body) as source:
                assert source.response.headers["x-vercel-ai-ui-message-stream"] == "v1"
                datas = [e.data for e in source.iter_sse()]
            chunks = [json.loads(d) for d in datas[:-1]]
            deltas = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
            assert deltas == simulated_answer("hello")
            assert datas[-2:] == ['{"type":"finish"}', "[DONE]"]

        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "Finished server process" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
