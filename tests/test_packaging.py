"""Packaging: one version everywhere, the licence, the project's URLs."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import resumable_sse

ROOT = Path(__file__).resolve().parent.parent


def pyproject_text() -> str:
    return (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_the_version_has_one_source_and_the_browser_client_matches_it() -> None:
    """``__version__``, the installed metadata and the browser module's VERSION agree, and
    pyproject.toml takes the version from resumable_sse/_version.py rather than its own."""
    script = (ROOT / "resumable_sse" / "_browser" / "resumable-sse.js").read_text("utf-8")
    match = re.search(r'^export const VERSION = "([^"]+)";$', script, re.MULTILINE)
    assert match is not None, "resumable-sse.js must export its VERSION"
    assert match[1] == resumable_sse.__version__
    assert metadata.version("resumable-sse") == resumable_sse.__version__, (
        "the installed metadata is stale: reinstall (python3 dev.py lint does it)"
    )
    text = pyproject_text()
    assert 'dynamic = ["version"]' in text
    assert re.search(r"^version\s*=", text, re.MULTILINE) is None
    assert 'path = "resumable_sse/_version.py"' in text


def test_the_licence_is_mit_and_ships_with_the_package() -> None:
    """LICENSE holds the MIT text under the authors pyproject.toml names."""
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License")
    assert "resumable-sse developers" in licence
    assert metadata.metadata("resumable-sse")["License-Expression"] == "MIT"
    files = metadata.files("resumable-sse") or []
    assert any(path.name == "LICENSE" for path in files)


def test_project_urls_point_at_files_that_exist() -> None:
    """Each project URL under the repository names a file this repository has."""
    urls = metadata.metadata("resumable-sse").get_all("Project-URL") or []
    named = dict(url.split(", ", 1) for url in urls)
    repository = named["Repository"]
    assert set(named) >= {"Repository", "Documentation", "Changelog"}
    for url in named.values():
        assert url.startswith(repository)
        path = url.removeprefix(repository).removeprefix("/blob/main/")
        assert path == "" or (ROOT / path).is_file(), url
