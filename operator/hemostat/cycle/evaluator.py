"""One evaluation cycle of one policy: read -> decide -> apply, timed; and the manual requests.

`read` (read.py) is the only I/O before the decision, `decide` (plan.py) is pure, `apply`
(apply.py) is the only I/O after it. This module wires the three and turns a failure of the
whole cycle into a condition on the policy (through the applier) instead of a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from ..alerts import Board
from ..metrics import Metrics
from ..outbound import Webhooks
from ..signals.base import SignalProvider
from . import plan as planner
from . import read as reader
from .apply import Applier
from .guard import AdmissionGuard
from .manual import ManualRequests
from .neighbours import Neighbourhood
from .notifier import Notifier
from .queries import Queries
from .snapshot import Settings, one_line
from .world import Listed, World

log = logging.getLogger("hemostat.cycle")
RACE_RETRY = 1.0  # seconds


@dataclass(frozen=True)
class Report:
    """What a cycle tells the loop that runs it."""

    interval: float  # seconds until the next cycle
    written: str | None = None  # resourceVersion of the status this cycle wrote (for watch liveness)
    exists: bool = True


class Evaluator:
    def __init__(
        self,
        kube: Any,
        provider_for: Callable[[str], SignalProvider],
        settings: Settings,
        metrics: Metrics | None = None,
        http: Webhooks | httpx.AsyncClient | None = None,
        guard: AdmissionGuard | None = None,
        board: Board | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.guard = guard
        self.queries = Queries(provider_for, settings.default_prometheus_url or "", self.metrics, board)
        self.notifier = Notifier(kube, http) if http is not None else None
        self.applier = Applier(kube, self.metrics, self.notifier)
        self.manual = ManualRequests(kube, self.applier, settings.global_dry_run, guard)
        self._failures: dict[str, str] = {}
        self.neighbours = Neighbourhood()  # the policies' targets, as each other's peers

    async def evaluate(self, cached: dict[str, Any], now: datetime, world: World | None = None) -> Report:
        """One cycle of the policy `cached` names; `cached` (kopf's copy) is used for its name only.
        `world` gives the objects around it: watch caches in the operator, LISTs by default."""
        ns, name = cached["metadata"]["namespace"], cached["metadata"]["name"]
        world = world or Listed(self.kube)
        started = time.monotonic()
        try:
            trusts = self.guard is None or self.guard.trusts_unwritten
            vet = self.guard.approval_problem if self.guard is not None else None
            snap = await reader.read(
                self.kube, world, ns, name, self.settings, self.queries.tenant(ns), now, trusts, vet
            )
            if snap is None:
                return Report(interval=planner.RETRY, exists=False)
            if snap.spec is not None and self.notifier is not None:
                self.notifier.settings[f"{ns}/{name}"] = snap.spec.notify
            signals = [s.name for s in snap.spec.signals] if snap.spec is not None else []
            snap = replace(snap, neighbours=self.neighbours.around(ns, name, signals, now))
            plan = planner.decide(snap, now)
            self.neighbours.publish(ns, name, signals, plan.peers, now)
            acted, written, raced = await self.applier.apply(plan, world)
        except Exception as exc:  # a cycle that cannot run says why on the policy, once
            message = f"evaluation failed: {one_line(exc)}"
            if self._failures.get(f"{ns}/{name}") != message:
                log.warning("policy %s/%s: %s", ns, name, message)
                self._failures[f"{ns}/{name}"] = message
            await self.applier.record_failure(ns, name, message, now)
            return Report(interval=planner.RETRY)
        self._failures.pop(f"{ns}/{name}", None)
        took = time.monotonic() - started
        self.metrics.cycle_duration.labels(acted=str(acted).lower()).observe(took)
        self.metrics.last_cycle.set_to_current_time()
        if acted:
            log.info("policy %s/%s: cycle with an action took %.3fs", ns, name, took)
        # a lost race (kopf's own writes beside the first cycle, a person's edit) is redone at once
        return Report(interval=RACE_RETRY if raced else plan.next_in, written=written)

    async def handle_manual(self, cached: dict[str, Any], now: datetime, world: World | None = None) -> None:
        """An Incident a person declared (see manual.py)."""
        await self.manual.handle(cached, now, world or Listed(self.kube))
