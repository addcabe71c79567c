"""How long to wait before the next attempt: one pure function for every retry loop.

The producer's store writes, its cancel watcher and the Python client all call
:func:`backoff_delay`; the browser client has its twin (``_browser/backoff.js``), and
both run the same cases (``tests/backoff_cases.json``).

The rules, for any input a server can send:

- the delay grows exponentially from ``base`` (or from the server's ``retry:``), doubling
  with each failed attempt in a row;
- it never exceeds ``cap``: a server's ``retry:`` or ``Retry-After`` can lengthen a delay
  up to the cap, never past it;
- a server value that is not a finite number >= 0 (``inf``, ``nan``, ``-1``) is ignored;
- jitter takes up to ``jitter`` (a fraction) off the delay at random, so clients
  dropped together do not all come back at once, even when every one of them is at the
  cap; ``Retry-After`` is a floor that jitter never undercuts;
- no attempt number overflows (the exponent stops growing long after the cap is reached).

``jitter=0`` makes it deterministic, ``cap=0`` makes every delay zero, and ``random``
may be any function returning a number in ``[0, 1)``.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable

__all__ = ["DEFAULT_JITTER", "backoff_delay", "parse_retry_after"]

#: The share of a delay that jitter may take off it.
DEFAULT_JITTER = 0.25

# 2.0 ** 1000 is still a finite float; any larger exponent only ever meets the cap.
_MAX_EXPONENT = 1000
# Server values beyond 2**53 (the integers a float and a JS number hold exactly) are cut
# to it: any of them meets the cap anyway, and both twins agree on every input.
_MAX_SAFE = 2.0**53


def _server_value(value: float | None) -> float | None:
    """``value`` if it is a finite number >= 0, else ``None`` (ignored)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):  # any int, however large, without OverflowError
        value = float(max(-1, min(value, 2**53)))
    if not math.isfinite(value) or value < 0:
        return None
    return min(float(value), _MAX_SAFE)


def _check_setting(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry: float | None = None,
    retry_after: float | None = None,
    jitter: float = DEFAULT_JITTER,
    random: Callable[[], float] = _random.random,
) -> float:
    """The delay before retrying after ``attempt`` failed attempts in a row.

    All durations are in one unit of the caller's choice (seconds here, ms in the
    browser client).

    Args:
        attempt: Failed attempts in a row, counting the one that just failed (>= 1).
        base: The first delay, used unless the server sent a valid ``retry``.
        cap: The longest delay, whatever the server says.
        retry: The server's reconnection time (SSE ``retry:``): replaces ``base``.
        retry_after: The server's ``Retry-After`` for this attempt: a floor.
        jitter: The share of the delay (0 to 1) that may be taken off at random.
        random: A source of numbers in ``[0, 1)``.

    Returns:
        A delay ``d`` with ``0 <= d <= cap``.

    Raises:
        ValueError: ``attempt`` < 1, or ``base``, ``cap`` or ``jitter`` out of range
            (these are the caller's settings, not the server's).
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt!r}")
    _check_setting("base", base)
    _check_setting("cap", cap)
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be between 0 and 1, not {jitter!r}")
    first = _server_value(retry)
    if first is None:
        first = base
    exponential = min(cap, first * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    share = random()
    if not 0.0 <= share <= 1.0:  # also NaN
        share = 0.0
    delay = exponential * (1 - jitter * share)
    floor = _server_value(retry_after)
    if floor is not None:
        delay = max(delay, min(floor, cap))
    return delay


def parse_retry_after(header: str | None) -> float | None:
    """The seconds of a ``Retry-After`` header, or ``None`` when it is absent or invalid.

    Only the delay-seconds form (ASCII digits, RFC 9110) is understood; an HTTP date,
    ``inf``, ``1e9``, ``-1`` or anything else is ignored.
    """
    if header is None:
        return None
    value = header.strip(" \t")
    if not value or not value.isascii() or not value.isdigit():
        return None
    if len(value.lstrip("0")) > 16:  # past 2**53; never handed to int() (4300-digit limit)
        return _MAX_SAFE
    return min(float(value), _MAX_SAFE)
