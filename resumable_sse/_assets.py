"""Serving the browser client, ``resumable-sse.js``, from the installed package.

The client is a dependency-free ES module shipped inside the Python package, so an app
needs no npm step: mount it and import it from the page::

    app.routes.append(client_mount())          # serves /resumable-sse/resumable-sse.js

It imports its helper modules (``sse-parser.js``, ``backoff.js``, ``storage.js``) by
relative url, so they are served from the same place. The files are the package's ``_browser``
directory and nothing else, so mounting them exposes no demo or source file.
"""

from __future__ import annotations

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

__all__ = ["CLIENT_SCRIPT", "client_assets", "client_mount"]

#: The client's file name under the mount point.
CLIENT_SCRIPT = "resumable-sse.js"


def client_assets() -> StaticFiles:
    """The browser client's files as an ASGI app, to mount wherever suits the app.

    Returns:
        A Starlette ``StaticFiles`` app serving ``resumable-sse.js`` and the modules it
        imports (with ``ETag`` and ``Last-Modified``, so browsers revalidate rather than
        download them again).
    """
    return StaticFiles(packages=[("resumable_sse", "_browser")])


def client_mount(path: str = "/resumable-sse", *, name: str = "resumable-sse") -> Mount:
    """A route serving the browser client under ``path``.

    Add it to a Starlette or FastAPI app with ``app.routes.append(client_mount())``;
    the page then imports ``/resumable-sse/resumable-sse.js``.

    Args:
        path: Where to mount the files; must start with ``/``.
        name: The route name, for ``request.url_for(name, path="resumable-sse.js")``.

    Returns:
        A ``Mount`` of :func:`client_assets`.
    """
    if not path.startswith("/"):
        raise ValueError(f"the mount path must start with '/': {path!r}")
    return Mount(path, app=client_assets(), name=name)
