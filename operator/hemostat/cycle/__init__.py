"""One evaluation cycle of one policy: read -> decide -> apply.

`read` (snapshot.py) is the only I/O before the decision, `decide` (plan.py) is pure,
`apply` (apply.py) is the only I/O after it. This module wires the three, times them, and
turns a failure of the whole cycle into a condition on the policy instead of a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from ..actions.base import Objects
from ..actions.steps import sources as step_sources
from ..decide import conditions as c
from ..kube import Conflict, Kube, merge_patch
from ..metrics import Metrics
from ..models.incident import IncidentSpec
from ..models.policy import MitigationPolicyStatus, MitigationStep, TargetStatus
from ..signals.base import Reading, Series, SignalProvider
from . import plan as planner
from . import read as reader
from . import snapshot
from .apply import Applier
from .notifier import Notifier
from .snapshot import Settings, known_status, one_line
from .world import Listed, World

__all__ = ["Evaluator", "Report", "Settings"]

log = logging.getLogger("hemostat.cycle")
MAX_QUERIES_IN_FLIGHT = 20  # Prometheus' own default query concurrency


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
        kube: Kube,
        provider_for: Any,
        settings: Settings,
        metrics: Metrics | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.kube = kube
        self.provider_for = provider_for
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.notifier = Notifier(kube, http) if http is not None else None
        self.applier = Applier(kube, self.metrics, self.notifier)
        self._queries = asyncio.Semaphore(MAX_QUERIES_IN_FLIGHT)
        self._failures: dict[str, str] = {}
        self._manual_locks: dict[str, asyncio.Lock] = {}

    async def read_signal(self, url: str | None, query: str) -> Reading:
        return await self._timed(url, query, batched=False)

    async def read_series(self, url: str | None, query: str) -> list[Series] | Reading:
        return await self._timed(url, query, batched=True)

    async def _timed(self, url: str | None, query: str, batched: bool) -> Any:
        provider: SignalProvider = self.provider_for(url or self.settings.default_prometheus_url or "")
        async with self._queries:  # a process-wide cap: a large policy makes slower rounds, not timeouts
            started = time.monotonic()
            answer = await (provider.read_all(query) if batched else provider.read(query))
        self.metrics.query_duration.labels(provider="prometheus").observe(time.monotonic() - started)
        if isinstance(answer, Reading) and answer.error_type:
            self.metrics.query_errors.labels(provider="prometheus", error_type=answer.error_type).inc()
        return answer

    async def evaluate(self, cached: dict[str, Any], now: datetime, world: World | None = None) -> Report:
        """One cycle of the policy `cached` names; `cached` (kopf's copy) is used for its name only.
        `world` gives the objects around it: watch caches in the operator, LISTs by default."""
        ns, name = cached["metadata"]["namespace"], cached["metadata"]["name"]
        world = world or Listed(self.kube)
        started = time.monotonic()
        try:
            snap = await reader.read(self.kube, world, ns, name, self.settings, self, now)
            if snap is None:
                return Report(interval=planner.RETRY, exists=False)
            if snap.spec is not None and self.notifier is not None:
                self.notifier.settings[f"{ns}/{name}"] = snap.spec.notify
            plan = planner.decide(snap, now)
            acted, written, raced = await self.applier.apply(plan, world)
        except Exception as exc:  # a cycle that cannot run says why on the policy, once
            await self._failed(ns, name, exc, now)
            return Report(interval=planner.RETRY)
        self._failures.pop(f"{ns}/{name}", None)
        took = time.monotonic() - started
        self.metrics.cycle_duration.labels(acted=str(acted).lower()).observe(took)
        self.metrics.last_cycle.set_to_current_time()
        if acted:
            log.info("policy %s/%s: cycle with an action took %.3fs", ns, name, took)
        # a lost race (kopf's own writes beside the first cycle, a person's edit) is redone at once
        return Report(interval=RACE_RETRY if raced else plan.next_in, written=written)

    async def _failed(self, ns: str, name: str, exc: Exception, now: datetime) -> None:
        key, message = f"{ns}/{name}", f"evaluation failed: {one_line(exc)}"
        if self._failures.get(key) != message:
            log.warning("policy %s: %s", key, message)
            self._failures[key] = message
        try:
            body = await self.kube.get_policy(ns, name)
            if body is None:
                return
            written = known_status(body)
            status = MitigationPolicyStatus.model_validate(written)
            status.conditions = c.set_condition(
                status.conditions,
                "Degraded",
                True,
                c.EVALUATION_FAILED,
                message,
                now,
                body["metadata"].get("generation"),
            )
            patch = merge_patch(written, planner.dump(status))
            if patch:
                await self.kube.patch_status("mitigationpolicies", ns, name, patch)
        except Exception as again:  # the API server itself is unreachable: the log line above says why
            log.debug("could not record the failure on policy %s: %s", key, again)

    async def handle_manual(self, cached: dict[str, Any], now: datetime, world: World | None = None) -> None:
        """An Incident a person declared: read it fresh, decide, apply (one status write). The objects
        around its target come from `world` (the watch caches in the operator), the Incident from the server.

        kopf runs the change handlers and the retry timer of one Incident concurrently, so they take
        turns here; a Conflict (the world moved between read and write) is re-read and re-decided."""
        ns, name = cached["metadata"]["namespace"], cached["metadata"]["name"]
        world = world or Listed(self.kube)
        lock = self._manual_locks.setdefault(f"{ns}/{name}", asyncio.Lock())
        async with lock:
            for attempt in range(3):
                try:
                    return await self._handle_manual(ns, name, now, world)
                except Conflict:
                    log.info(
                        "incident %s/%s: the world changed while acting (attempt %d); re-reading", ns, name, attempt + 1
                    )
            raise RuntimeError(f"incident {ns}/{name}: still conflicting after 3 attempts")

    async def _handle_manual(self, ns: str, name: str, now: datetime, world: World) -> None:
        raw = await self.kube.get_incident(ns, name)
        if raw is None:
            return
        incident = snapshot.open_incident(raw)
        ispec: IncidentSpec = incident.spec
        objects = await self._objects(world, ns, ispec.target.name, [ispec.mitigation] if ispec.mitigation else [])
        status, change = planner.decide_manual(
            name,
            c.parse_iso(raw["metadata"]["creationTimestamp"]),
            ispec,
            incident.status,
            objects,
            self.settings.global_dry_run,
            f"{ns}/{name}",
            now,
        )
        target = TargetStatus(name=ispec.target.name)
        tp = planner.TargetPlan(
            ispec.target.name,
            objects.deployment if objects else None,
            target,
            name,
            None,
            raw,
            incident.written,
            status,
            change,
            ispec,
        )
        await self.applier.target(tp, now, world)

    async def _objects(self, world: World, ns: str, target: str, steps: list[MitigationStep]) -> Objects | None:
        deployment = await world.deployment(ns, target)
        if deployment is None:
            return None
        wanted = step_sources(steps)
        replicasets, hpas, *found = await asyncio.gather(
            world.replicasets(ns, [deployment["metadata"]["uid"]]),
            world.hpas(ns) if any(s.scale_up for s in steps) else reader.nothing(),
            *(reader.source(self.kube, ns, kind, obj) for kind, obj in wanted),
        )
        return planner.Around.of(replicasets, hpas).objects(deployment, dict(zip(wanted, found, strict=True)))
