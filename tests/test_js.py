"""The browser client's modules under Node: its own tests, and the type checker.

- ``tests/js/*.test.mjs`` run under Node's own test runner (``node --test``): the parser
  fed in pieces, and the backoff on the cases shared with the Python client
  (``tests/backoff_cases.json``). They need no browser.
- ``tsc --checkJs --strict`` (TypeScript installed with npm into pytest's cache, once per
  version) checks the JSDoc types of every module the package serves, as the README says.

Without Node (or npm, for the type check) these tests skip with the reason, except in CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JS_TESTS = ROOT / "tests" / "js"
BROWSER = ROOT / "resumable_sse" / "_browser"
#: The pinned TypeScript; bump deliberately.
TYPESCRIPT = "typescript@5.9.3"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"the JS tests cannot run in CI: {reason}")
    pytest.skip(reason)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not on PATH (Node 20.19 or newer runs tests/js)")
    assert node is not None
    return node


@pytest.mark.parametrize("name", sorted(p.name for p in JS_TESTS.glob("*.test.mjs")))
def test_node(name: str) -> None:
    """Every test in the file passes under ``node --test`` (its report is shown on failure)."""
    result = subprocess.run(
        [_node(), "--test", "--test-reporter=tap", str(JS_TESTS / name)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", result.stdout, re.MULTILINE))
    assert counts.get("fail") == "0", report
    assert int(counts.get("pass", 0)) == int(counts.get("tests", -1)) > 0, report


@pytest.fixture(scope="session")
def tsc(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TypeScript compiler, installed with npm into pytest's cache (once per version)."""
    cache: pytest.Cache | None = getattr(pytestconfig, "cache", None)
    root = cache.mkdir("typescript") if cache is not None else tmp_path_factory.mktemp("ts")
    target = root / TYPESCRIPT.replace("@", "-")
    binary = target / "node_modules" / ".bin" / "tsc"
    _node()
    if not binary.exists():
        if shutil.which("npm") is None:
            _unavailable("npm is not on PATH")
        try:
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(target), TYPESCRIPT],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            _unavailable(f"cannot install {TYPESCRIPT} with npm: {exc} {detail}".strip())
    return binary


def test_browser_modules_pass_the_strict_type_check(tsc: Path) -> None:
    """``tsc --checkJs --strict`` finds no error in the modules the package serves."""
    modules = sorted(str(p) for p in BROWSER.glob("*.js"))
    assert len(modules) >= 3
    result = subprocess.run(
        [
            str(tsc),
            "--noEmit",
            "--allowJs",
            "--checkJs",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--lib",
            "es2022,dom",
            *modules,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
