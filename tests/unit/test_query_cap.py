"""Queries in flight are capped per process, so a large per-target policy makes slower rounds, not timeouts."""

from __future__ import annotations

import asyncio

from hemostat.cycle.queries import MAX_QUERIES_IN_FLIGHT, FairSlots, Queries
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
        per_target = [queries.tenant(f"ns{i % 3}").read_signal(None, f"q{i}") for i in range(300)]
        batched = [queries.tenant("ns0").read_series(None, f"b{i}") for i in range(50)]
        await asyncio.gather(*per_target, *batched)

    asyncio.run(a_big_round())
    assert prom.answered == 350
    assert prom.most_open == MAX_QUERIES_IN_FLIGHT == 20  # Prometheus' own default query concurrency


def test_a_quiet_namespace_waits_for_one_turn_not_behind_a_noisy_namespaces_backlog() -> None:
    """One first-come queue let a policy with hundreds of per-target queries at interval 1s delay detection
    in every other namespace. Slots go round robin between namespaces: the quiet one's query waits for
    the queries in flight and one turn, however long the noisy backlog."""
    prom = SlowPrometheus()
    queries = Queries(lambda url: prom, "http://prometheus.invalid", Metrics())
    order: list[str] = []

    async def ask(tenant: str, query: str) -> None:
        await queries.tenant(tenant).read_signal(None, query)
        order.append(tenant)

    async def scene() -> None:
        noisy = [asyncio.ensure_future(ask("noisy", f"q{i}")) for i in range(400)]
        await asyncio.sleep(0.03)  # the noisy backlog is queued and being served
        await ask("quiet", "q")
        await asyncio.gather(*noisy)

    asyncio.run(scene())
    ahead = order.index("quiet")
    served_before = sum(1 for t in order[:ahead] if t == "noisy")
    assert len(order) == 401 and prom.most_open <= MAX_QUERIES_IN_FLIGHT
    # answered by the time it asked (~3 slots' worth of 10 ms waves), plus those in flight, plus one turn
    assert served_before <= 5 * MAX_QUERIES_IN_FLIGHT, f"{served_before} noisy queries were served first"


def test_a_cancelled_wait_never_loses_a_slot() -> None:
    """A policy loop stopped mid-round (its policy deleted, the operator losing the Lease) cancels its
    waiting queries: the slots they held or were being handed must all come back."""
    slots = FairSlots(2)

    async def scene() -> None:
        release = asyncio.Event()

        async def hold(tenant: str) -> None:
            async with slots.slot(tenant):
                await release.wait()

        holders = [asyncio.ensure_future(hold("a")) for _ in range(2)]
        await asyncio.sleep(0)
        waiters = [asyncio.ensure_future(hold(t)) for t in ("b", "c", "b")]
        await asyncio.sleep(0)
        waiters[0].cancel()
        release.set()
        await asyncio.sleep(0)
        waiters[2].cancel()  # possibly just handed a slot: it must pass it on
        await asyncio.gather(*holders, *waiters, return_exceptions=True)

    asyncio.run(scene())
    assert (slots.free, slots.waiting, slots.turns, slots.holding) == (2, {}, [], {})


def test_a_policys_round_counts_the_queries_it_sent_for_its_status() -> None:
    prom = SlowPrometheus()
    shop = Queries(lambda url: prom, "http://prometheus.invalid", Metrics()).tenant("shop")

    async def round_() -> None:
        await asyncio.gather(*(shop.read_signal(None, f"q{i}") for i in range(3)), shop.read_series(None, "b"))

    asyncio.run(round_())
    assert shop.asked == 4
