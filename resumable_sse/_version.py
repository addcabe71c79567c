"""The package version: the one place it is written.

pyproject.toml reads it (hatchling's dynamic version), ``resumable_sse.__version__`` is it,
and a test checks that the browser client's ``VERSION`` matches it.
"""

from __future__ import annotations

__version__ = "0.2.0.dev0"
