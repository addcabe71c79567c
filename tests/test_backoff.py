"""The backoff function, on the cases its browser twin runs too (``tests/backoff_cases.json``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resumable_sse._backoff import backoff_delay, parse_retry_after

CASES = json.loads((Path(__file__).parent / "backoff_cases.json").read_text(encoding="utf-8"))
SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def value(raw: Any) -> Any:
    """A case's value: "inf", "-inf" and "nan" are those floats; other strings stay garbage."""
    return SPECIAL.get(raw, raw) if isinstance(raw, str) else raw


def run(case: dict[str, Any]) -> float:
    share = value(case.get("random", 0))
    return backoff_delay(
        value(case["attempt"]),
        base=value(case.get("base", 1)),
        cap=value(case.get("cap", 30)),
        retry=value(case.get("retry")),
        retry_after=value(case.get("retry_after")),
        jitter=value(case.get("jitter", 0)),
        random=lambda: share,
    )


@pytest.mark.parametrize("case", CASES["backoff"], ids=[c["name"] for c in CASES["backoff"]])
def test_backoff_case(case: dict[str, Any]) -> None:
    """Each shared case gives the expected delay (or a ValueError for a bad setting)."""
    if case["expected"] == "error":
        with pytest.raises(ValueError, match=r"must be|counts from"):
            run(case)
    else:
        assert run(case) == pytest.approx(case["expected"], abs=1e-9)


@pytest.mark.parametrize("case", CASES["retry_after"], ids=lambda c: repr(c["header"]))
def test_retry_after_case(case: dict[str, Any]) -> None:
    """Only delay-seconds digits are a Retry-After; anything else is ignored."""
    assert parse_retry_after(case["header"]) == case["expected"]


server_values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
)


@given(
    attempt=st.integers(min_value=1, max_value=10**30),
    cap=st.floats(min_value=0, max_value=1e6),
    retry=server_values,
    retry_after=server_values,
    share=st.floats(min_value=0, max_value=1),
)
def test_any_server_input_stays_within_the_cap(
    attempt: int, cap: float, retry: float | None, retry_after: float | None, share: float
) -> None:
    """Whatever the server sends and however many attempts failed: 0 <= delay <= cap."""
    delay = backoff_delay(
        attempt, base=1.0, cap=cap, retry=retry, retry_after=retry_after, random=lambda: share
    )
    assert 0 <= delay <= cap


def test_jitter_spreads_clients_at_the_cap() -> None:
    """Clients at the cap do not all come back at the same instant."""
    shares = iter([0.0, 0.5, 0.99])
    delays = {backoff_delay(50, base=1, cap=30, random=lambda: next(shares)) for _ in range(3)}
    assert len(delays) == 3
    assert all(22.5 <= d <= 30 for d in delays)
