"""The browser client's pure modules under Node's own test runner (``tests/js/*.test.mjs``).

The parser (fed in pieces) and the backoff (on the cases shared with the Python client,
``tests/backoff_cases.json``) need no browser: ``node --test`` runs them. Without Node
this test skips with the reason, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

JS_TESTS = Path(__file__).resolve().parent / "js"


@pytest.mark.parametrize("name", sorted(p.name for p in JS_TESTS.glob("*.test.mjs")))
def test_node(name: str) -> None:
    """Every test in the file passes under ``node --test`` (its report is shown on failure)."""
    node = shutil.which("node")
    if node is None:
        reason = "node is not on PATH (Node 20.19 or newer runs tests/js)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the JS tests cannot run in CI: {reason}")
        pytest.skip(reason)
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(JS_TESTS / name)],
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
