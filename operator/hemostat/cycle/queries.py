"""Signal queries with a process-wide cap on how many are in flight, timed and counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..metrics import Metrics
from ..reading import Reading, Series
from ..signals.base import SignalProvider

MAX_QUERIES_IN_FLIGHT = 20  # Prometheus' own default query concurrency


class Queries:
    """What the read phase asks Prometheus through: one cap for every policy of the operator, so a large
    policy makes slower rounds, not timeouts."""

    def __init__(self, provider_for: Callable[[str], SignalProvider], default_url: str, metrics: Metrics) -> None:
        self.provider_for, self.default_url, self.metrics = provider_for, default_url, metrics
        self._in_flight = asyncio.Semaphore(MAX_QUERIES_IN_FLIGHT)

    async def read_signal(self, url: str | None, query: str) -> Reading:
        answer: Reading = await self._timed(url, query, batched=False)
        return answer

    async def read_series(self, url: str | None, query: str) -> list[Series] | Reading:
        answer: list[Series] | Reading = await self._timed(url, query, batched=True)
        return answer

    async def _timed(self, url: str | None, query: str, batched: bool) -> Any:
        provider = self.provider_for(url or self.default_url)
        async with self._in_flight:
            started = time.monotonic()
            answer = await (provider.read_all(query) if batched else provider.read(query))
        self.metrics.query_duration.labels(provider="prometheus").observe(time.monotonic() - started)
        if isinstance(answer, Reading) and answer.error_type:
            self.metrics.query_errors.labels(provider="prometheus", error_type=answer.error_type).inc()
        return answer
