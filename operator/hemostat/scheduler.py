"""When each policy is evaluated: one loop per policy, every interval the cycle asks for, woken at
once by a new revision in its namespace (the fast lane), idle while this replica is a standby.

The loop keeps the heartbeat liveness reads: cycles completing, and kopf's watch delivering the
loop's own status writes back (a watch that dies silently would miss new and deleted policies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from .runtime import Runtime

DEFAULT_INTERVAL = 30.0  # counted before the first cycle: one that never ends is a stall
STANDBY_POLL = 1.0  # seconds between looks at the Lease while a standby


class Stopped(Protocol):
    """kopf's DaemonStopped: truthy once the daemon should stop; `wait` returns early then."""

    def __bool__(self) -> bool: ...

    async def wait(self, timeout: float | None = None) -> Any: ...


async def evaluate_forever(
    runtime: Runtime,
    policy: Callable[[], dict[str, Any]],
    stopped: Stopped,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Evaluate the policy `policy()` returns (kopf's live view, as a plain copy) until stopped."""
    beat, first = runtime.heartbeat, policy()
    uid, namespace = first["metadata"]["uid"], first["metadata"]["namespace"]
    beat.intervals[uid] = DEFAULT_INTERVAL
    wake = runtime.lane.waker(namespace, uid)
    try:
        while not stopped:
            if not runtime.acting:
                await stopped.wait(STANDBY_POLL)
                continue
            started = time.monotonic()
            body = policy()
            seen = body["metadata"]["resourceVersion"]  # as kopf's watch last delivered it
            report = await runtime.evaluator.evaluate(body, now=clock(), world=runtime.caches())
            if not report.exists:
                await stopped.wait(STANDBY_POLL)  # deleted: kopf stops this daemon once its watch says so
                continue
            beat.last_cycle = time.monotonic()
            beat.intervals[uid] = report.interval
            if report.written is not None and uid not in beat.unseen:
                beat.unseen[uid] = (seen, time.monotonic())
            await sleep(stopped, wake, max(0.0, report.interval - (time.monotonic() - started)))
            pending = beat.unseen.get(uid)
            if pending is not None and policy()["metadata"]["resourceVersion"] != pending[0]:
                beat.unseen.pop(uid, None)  # the watch delivered a newer version
    finally:
        beat.intervals.pop(uid, None)
        beat.unseen.pop(uid, None)
        runtime.lane.forget(namespace, uid)


async def sleep(stopped: Stopped, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until the next cycle is due, the loop stops, or a new revision wakes it."""
    waiters = {asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        wake.clear()
