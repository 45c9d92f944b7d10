"""UTC timestamps as the API server writes them (RFC 3339, seconds, `Z`): a helper every floor uses."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

SKEW = timedelta(minutes=1)  # a record dated later than now + SKEW is not trusted (clocks drift, not by years)


def now_iso(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=65536)  # status timestamps repeat every round, strptime is slow
def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
