"""Bar timeframes and the one bucketing rule both engines share.

Conventions (the whole feature engine relies on them):

- a bar is labelled by its OPEN time, in UTC; a bar opened at ``t`` on timeframe ``tf`` covers
  ``[t, t + tf)`` and *closes* at ``t + tf``. Its features are computed at its close.
- a higher-timeframe bar is the bucket ``[T, T + H)`` with ``T`` a multiple of ``H`` counted from
  the Unix epoch (so 1d buckets start at 00:00 UTC, 4h buckets at 00/04/08/... UTC). It is
  COMPLETE at time ``T + H``: a base bar sees it once the base bar's close ``t + tf`` has reached
  ``T + H``. Completion is a matter of time, not of seeing the bucket's last base bar, so
  sessions with gaps (equities overnight) complete their day at the first bar after the gap.
"""

from __future__ import annotations

TIMEFRAMES: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14400,
    "1d": 86400,
}


def timeframe_seconds(name: str) -> int:
    return TIMEFRAMES[name]


def is_timeframe(value: object) -> bool:
    return isinstance(value, str) and value in TIMEFRAMES


def bucket_start(epoch_seconds: int, higher_seconds: int) -> int:
    return epoch_seconds - epoch_seconds % higher_seconds
