"""Signal queries with a process-wide cap on how many are in flight, shared fairly between namespaces,
timed and counted."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from ..alerts import Board
from ..metrics import Metrics
from ..models.policy import AlertSignal
from ..reading import Reading, Series
from ..signals.base import SignalProvider

MAX_QUERIES_IN_FLIGHT = 20  # Prometheus' own default query concurrency


class FairSlots:
    """At most `limit` holders at once, shared max-min fairly between tenants: waiters queue per tenant,
    and a freed slot goes to the waiting tenant that holds the fewest (the longest waiting among equals).
    A tenant with a long backlog waits behind its own queries, never another's: a quiet tenant's few
    queries take the next slots that free, however many the noisy one has queued."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self.turns: list[str] = []  # tenants with waiters, the longest waiting first
        self.holding: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        if self.free > 0 and not self.turns:
            self.free -= 1
            self._count(tenant, 1)
        else:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if tenant not in self.waiting:
                self.waiting[tenant] = deque()
                self.turns.append(tenant)
            self.waiting[tenant].append(granted)
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():  # granted as it was cancelled: pass it on
                    self._count(tenant, -1)
                    self._hand_on()
                raise
        try:
            yield
        finally:
            self._count(tenant, -1)
            self._hand_on()

    def _count(self, tenant: str, delta: int) -> None:
        held = self.holding.get(tenant, 0) + delta
        if held:
            self.holding[tenant] = held
        else:
            self.holding.pop(tenant, None)

    def _hand_on(self) -> None:
        """A slot is free: to the waiting tenant holding the fewest, else back to the pool."""
        while self.turns:
            tenant = min(self.turns, key=lambda t: self.holding.get(t, 0))  # min() keeps the first of equals
            self.turns.remove(tenant)
            queue = self.waiting[tenant]
            granted = queue.popleft()
            if queue:
                self.turns.append(tenant)
            else:
                del self.waiting[tenant]
            if not granted.cancelled():
                granted.set_result(None)
                self._count(tenant, 1)  # counted at the grant: the next hand-on sees it
                return
        self.free += 1


class Queries:
    """What the read phase asks Prometheus through: one cap for every policy of the operator, so a large
    policy makes slower rounds, not timeouts; shared max-min fairly between namespaces (`tenant`), so one
    namespace's many queries never delay detection in another."""

    def __init__(
        self,
        provider_for: Callable[[str], SignalProvider],
        default_url: str,
        metrics: Metrics,
        board: Board | None = None,
    ) -> None:
        self.provider_for, self.default_url, self.metrics = provider_for, default_url, metrics
        self.board = board  # the alerts Alertmanager sent (alert signals), when the operator takes them
        self._slots = FairSlots(MAX_QUERIES_IN_FLIGHT)

    def tenant(self, namespace: str) -> TenantQueries:
        return TenantQueries(self, namespace)

    async def timed(self, tenant: str, url: str | None, query: str, batched: bool) -> Any:
        provider = self.provider_for(url or self.default_url)
        asked = time.monotonic()
        async with self._slots.slot(tenant):
            started = time.monotonic()
            self.metrics.query_wait.labels(namespace=tenant).observe(started - asked)
            answer = await (provider.read_all(query) if batched else provider.read(query))
        self.metrics.query_duration.labels(provider="prometheus").observe(time.monotonic() - started)
        if isinstance(answer, Reading) and answer.error_type:
            self.metrics.query_errors.labels(provider="prometheus", error_type=answer.error_type).inc()
        return answer


class TenantQueries:
    """One namespace's view of the shared queries: what a policy's read phase asks through."""

    def __init__(self, queries: Queries, namespace: str) -> None:
        self.queries, self.namespace = queries, namespace
        self.asked = 0

    async def read_signal(self, url: str | None, query: str) -> Reading:
        self.asked += 1
        answer: Reading = await self.queries.timed(self.namespace, url, query, batched=False)
        return answer

    async def read_series(self, url: str | None, query: str) -> list[Series] | Reading:
        self.asked += 1
        answer: list[Series] | Reading = await self.queries.timed(self.namespace, url, query, batched=True)
        return answer

    def read_alerts(self, signal: AlertSignal, namespace: str, targets: list[str], now: datetime) -> dict[str, Reading]:
        """No query: what Alertmanager has sent (parse_spec refuses alert signals without a board)."""
        assert self.queries.board is not None
        return self.queries.board.readings(signal, namespace, targets, now)
