"""The ``resumable-sse`` command line: ``resumable-sse demo`` serves the demo app.

Also reachable as ``python -m resumable_sse``. uvicorn is imported only when the demo
runs, so the library itself does not depend on it (it comes with the ``demo`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from ._demo import DEFAULT_DELAY, create_app
from ._demo_status import DemoFigures
from .factory import get_streamer

__all__ = ["main"]

_NO_UVICORN = (
    "resumable-sse demo needs uvicorn, which is not installed.\n"
    "Install it with:  pip install 'resumable-sse[demo]'"
)
_NO_REDIS = (
    "--redis-url needs the redis client, which is not installed.\n"
    "Install it with:  pip install 'resumable-sse[redis]'"
)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _delay(text: str) -> float:
    delay = float(text)
    if not 0 <= delay <= 60:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text} is not a delay between 0 and 60 seconds")
    return delay


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resumable-sse",
        description="Server-Sent Event streams that survive reloads and network drops.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="serve a simulated LLM and a page that streams it",
        description=(
            "Serve a simulated LLM and a web page that streams its answer. Reload the page "
            "or drop the connection mid-answer: it resumes where it stopped. The same LLM "
            "speaks the Vercel AI SDK's chat protocol at /api/chat."
        ),
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    demo.add_argument(
        "--port", type=_port, default=8000, help="port to bind (default: %(default)s)"
    )
    demo.add_argument(
        "--delay",
        type=_delay,
        default=DEFAULT_DELAY,
        metavar="SECONDS",
        help="mean pause between two tokens of the answer (default: %(default)s)",
    )
    demo.add_argument(
        "--redis-url",
        metavar="URL",
        help="keep streams in Redis at this URL instead of in memory",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``resumable-sse`` command line.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit status: 0 after a clean stop (Ctrl+C), 2 on a usage or setup error.
    """
    args = _parser().parse_args(argv)
    # "demo" is the only command; argparse has rejected anything else.
    try:
        import uvicorn
    except ImportError:
        print(_NO_UVICORN, file=sys.stderr)
        return 2
    figures = DemoFigures()  # the status page reads the streamer's metrics
    if args.redis_url:
        try:
            streamer = get_streamer(
                backend="redis", redis_url=args.redis_url, meter_provider=figures.provider
            )
        except ImportError:
            print(_NO_REDIS, file=sys.stderr)
            return 2
        store = "Redis"
    else:
        streamer = get_streamer(meter_provider=figures.provider)
        store = "memory"
    app = create_app(streamer, delay=args.delay, figures=figures)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"resumable-sse demo ({store} store): open http://{host}:{args.port}/ in a browser\n"
        f"AI SDK frontends: DefaultChatTransport({{ api: "
        f'"http://{host}:{args.port}/api/chat" }}) with resume: true\n'
        f"Live figures: http://{host}:{args.port}/status",
        file=sys.stderr,
        flush=True,
    )
    # On Ctrl+C uvicorn shuts down cleanly, then re-raises the signal it caught.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=3)
    return 0
