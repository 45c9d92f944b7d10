"""Queries in flight are capped per process, so a large per-target policy makes slower rounds, not timeouts."""

from __future__ import annotations

import asyncio

from hemostat.cycle.queries import MAX_QUERIES_IN_FLIGHT, Queries
from hemostat.metrics import Metrics
from hemostat.reading import Reading, Series


class SlowPrometheus:
    """Answers every query after a short wait and records how many were open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0
        self.answered = 0

    async def _answer(self) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        await asyncio.sleep(0.01)
        self.open -= 1
        self.answered += 1

    async def read(self, query: str) -> Reading:
        await self._answer()
        return Reading.value_of(1.0, query=query)

    async def read_all(self, query: str) -> list[Series]:
        await self._answer()
        return []


def test_queries_from_many_policies_never_exceed_the_cap_and_all_are_answered() -> None:
    prom = SlowPrometheus()
    queries = Queries(lambda url: prom, "http://prometheus.invalid", Metrics())

    async def a_big_round() -> None:
        per_target = [queries.read_signal(None, f"q{i}") for i in range(300)]
        batched = [queries.read_series(None, f"b{i}") for i in range(50)]
        await asyncio.gather(*per_target, *batched)

    asyncio.run(a_big_round())
    assert prom.answered == 350
    assert prom.most_open == MAX_QUERIES_IN_FLIGHT == 20  # Prometheus' own default query concurrency
