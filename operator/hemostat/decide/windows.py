"""How many seconds a PromQL query averages over: its longest range (`rate(x[5s])`, a subquery's `[10m:1m]`).

A Pod whose series is younger than that has a shorter history in the same query: `rate(x[5s])` over a
series 2 s old covers those 2 s, over an old one all 5. Attribution compares a new revision with the old
one and with the peers only once the new revision has served a whole window (decide/attribution.py).
"""

from __future__ import annotations

import re
from datetime import timedelta

from ..models.policy import Signal

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')  # label values may hold "[45].."
_RANGE = re.compile(r"\[\s*([0-9][0-9.a-z]*)\s*(?::[^\]]*)?\]")
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def ranges(query: str) -> list[timedelta]:
    """Every range selector of a query, in order."""
    found = []
    for text in _RANGE.findall(_STRING.sub('""', query)):
        parts = _PART.findall(text)
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):  # Prometheus 3 reads a bare number as seconds
            found.append(timedelta(seconds=float(text)))
        elif "".join(n + u for n, u in parts) == text:
            found.append(timedelta(seconds=sum(float(n) * _UNIT[u] for n, u in parts)))
    return found


def longest_range(query: str) -> timedelta | None:
    """The longest range selector of a query; None when it has none (an instant query averages nothing)."""
    return max(ranges(query), default=None)


def shortest_range(query: str) -> timedelta | None:
    """The shortest: of a rate now over its baseline (`rate(x[5s]) / rate(x[30s] offset 10s)`), the now."""
    return min(ranges(query), default=None)


def of(signal: Signal) -> timedelta | None:
    """The window of a signal: the longest range of its query and of its per-revision query."""
    queries = [q.query for q in (signal.prometheus, signal.by_revision) if q is not None]
    return max((w for w in map(longest_range, queries) if w is not None), default=None)
