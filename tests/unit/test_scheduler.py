"""When each policy is evaluated: the interval the cycle asks for, at once on a new revision, never as a
standby; and the heartbeat liveness reads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from hemostat.cycle.evaluator import Report
from hemostat.runtime import FastLane, Heartbeat, Runtime
from hemostat.scheduler import evaluate_forever


class Stop:
    """kopf's DaemonStopped, by hand."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        return self.event.is_set()


class Evaluator:
    def __init__(self, interval: float, written: str | None = None) -> None:
        self.interval, self.written = interval, written
        self.cycles: list[float] = []

    async def evaluate(self, body: dict[str, Any], now: datetime, world: Any) -> Report:
        self.cycles.append(time.monotonic())
        return Report(interval=self.interval, written=self.written)


def runtime(evaluator: Evaluator, leader: Any = None) -> Runtime:
    return Runtime(
        evaluator=evaluator,  # type: ignore[arg-type]
        informers=SimpleNamespace(indices={}, stale=lambda _now: None),  # type: ignore[arg-type]
        leader=leader,
        heartbeat=Heartbeat(last_cycle=0.0),
        lane=FastLane(),
    )


POLICY = {"metadata": {"uid": "p1", "namespace": "shop", "name": "web", "resourceVersion": "1"}}


def deployment(revision: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": "web", "annotations": {REVISION: revision}}}


REVISION = "deployment.kubernetes.io/revision"


async def run_for(rt: Runtime, seconds: float, during: Any = None, policy: Any = None) -> None:
    stop = Stop()
    loop = asyncio.create_task(evaluate_forever(rt, policy or (lambda: POLICY), stop, lambda: datetime.now(UTC)))
    if during is not None:
        await during()
    await asyncio.sleep(seconds)
    stop.event.set()
    await asyncio.wait_for(loop, 2)


def test_a_policy_is_evaluated_at_the_interval_its_cycle_asks_for() -> None:
    evaluator = Evaluator(interval=0.2)
    rt = runtime(evaluator)
    asyncio.run(run_for(rt, 0.5))
    assert len(evaluator.cycles) == 3  # at 0, 0.2 and 0.4 s
    assert rt.heartbeat.last_cycle > 0 and rt.heartbeat.intervals == {}, "a stopped loop leaves the heartbeat"


def test_a_new_revision_wakes_the_loop_at_once() -> None:
    evaluator = Evaluator(interval=60)
    rt = runtime(evaluator)

    async def roll_out() -> None:
        await asyncio.sleep(0.1)
        rt.lane.revision_changed("MODIFIED", deployment("1"))  # first sight of the Deployment
        await asyncio.sleep(0.1)
        rt.lane.revision_changed("MODIFIED", deployment("1"))  # the same revision again: no wake
        await asyncio.sleep(0.1)
        rt.lane.revision_changed("MODIFIED", deployment("2"))

    asyncio.run(run_for(rt, 0.1, roll_out))
    assert len(evaluator.cycles) == 3, "one at start, one per new revision, none for a repeat"
    assert rt.lane.wakers == {"shop": {}}, "a stopped loop is forgotten by the fast lane"


def test_a_standby_never_evaluates() -> None:
    evaluator = Evaluator(interval=0.05)
    standby = SimpleNamespace(is_leader=False, acquired_at=None, stalled=lambda _now: None)
    asyncio.run(run_for(runtime(evaluator, standby), 0.3))
    assert evaluator.cycles == []


def test_a_status_write_is_watched_for_until_the_watch_delivers_a_newer_version() -> None:
    rt = runtime(Evaluator(interval=0.1, written="written"))
    watched: list[set[str]] = []
    original = rt.evaluator.evaluate

    async def evaluate(body: dict[str, Any], now: datetime, world: Any) -> Report:
        watched.append(set(rt.heartbeat.unseen))
        return await original(body, now, world)

    rt.evaluator.evaluate = evaluate  # type: ignore[method-assign]
    # what kopf's watch shows, call by call: cycle 1, after its sleep, cycle 2, after its sleep (delivered), ...
    versions = iter(["1", "1", "1", "3"])

    def policy() -> dict[str, Any]:
        return {"metadata": {**POLICY["metadata"], "resourceVersion": next(versions, "3")}}

    asyncio.run(run_for(rt, 0.25, policy=policy))
    assert watched[:3] == [set(), {"p1"}, set()], watched
