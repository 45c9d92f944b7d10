"""Incidents a person declared (source: manual): read, decide, apply, like a policy's cycle.

The Incident is read fresh from the API server (people write its spec); the objects around its
target come from the world the caller gives (the watch caches in the operator). kopf runs the
change handlers and the retry timer of one Incident concurrently, so they take turns here; a
Conflict (the world moved between read and write) is re-read and re-decided.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from ..actions.base import Objects
from ..actions.steps import reads
from ..actions.steps import sources as step_sources
from ..clock import parse_iso
from ..decide.admission import REQUESTS, last_request_write
from ..decide.lifecycle import MANUAL_STEP
from ..kube import Conflict, Kube
from ..models.incident import IncidentSpec, IncidentStatus
from ..models.policy import MitigationStep, TargetStatus
from ..workloads import TargetKind
from . import plan as planner
from . import read as reader
from . import snapshot
from .apply import Applier
from .guard import AdmissionGuard
from .world import World

log = logging.getLogger("hemostat.manual")
ATTEMPTS = 3


class ManualRequests:
    def __init__(self, kube: Kube, applier: Applier, dry_run: bool, guard: AdmissionGuard | None = None) -> None:
        self.kube, self.applier, self.dry_run = kube, applier, dry_run
        self.guard = guard
        self._locks: dict[str, asyncio.Lock] = {}

    async def handle(self, cached: dict[str, Any], now: datetime, world: World) -> None:
        ns, name = cached["metadata"]["namespace"], cached["metadata"]["name"]
        lock = self._locks.setdefault(f"{ns}/{name}", asyncio.Lock())
        async with lock:
            for attempt in range(ATTEMPTS):
                try:
                    return await self._handle(ns, name, now, world)
                except Conflict:
                    log.info(
                        "incident %s/%s: the world changed while acting (attempt %d); re-reading", ns, name, attempt + 1
                    )
            raise RuntimeError(f"incident {ns}/{name}: still conflicting after {ATTEMPTS} attempts")

    async def _handle(self, ns: str, name: str, now: datetime, world: World) -> None:
        raw = await self.kube.get_incident(ns, name)
        if raw is None:
            return
        incident = snapshot.open_incident(raw)
        ispec = incident.spec
        steps = [ispec.mitigation] if ispec.mitigation else []
        kind, missing, objects = ispec.target.kind, None, None
        if world.watches(kind):
            objects = await around(self.kube, world, ns, ispec.target.name, kind, steps)
        else:
            missing = (
                f"this operator does not watch {kind}s (run it with --argo-rollouts, chart value argoRollouts.enabled)"
            )
        unchecked = None
        if self.guard is not None and pending(ispec, incident.status):  # checked fresh, at every try
            unchecked = await self.guard.problem(REQUESTS, last_request_write(raw))
        status, change = planner.decide_manual(
            name,
            parse_iso(raw["metadata"]["creationTimestamp"]),
            ispec,
            incident.status,
            objects,
            self.dry_run,
            f"{ns}/{name}",
            now,
            missing,
            unchecked,
        )
        tp = planner.TargetPlan(
            name=ispec.target.name,
            deployment=objects.deployment if objects else None,
            target=TargetStatus(name=ispec.target.name),
            incident_name=name,
            incident=raw,
            written=incident.written,
            status=status,
            change=change,
            spec=ispec,
        )
        await self.applier.target(tp, now, world)


def pending(ispec: IncidentSpec, status: IncidentStatus) -> bool:
    """A request not carried out (nor closed) yet."""
    done = any(a.index == MANUAL_STEP for a in status.actions)
    return ispec.mitigation is not None and not ispec.resolve and status.phase != "Resolved" and not done


async def around(
    kube: Kube, world: World, ns: str, target: str, kind: TargetKind, steps: list[MitigationStep]
) -> Objects | None:
    """The target workload and what its steps read, or None when it does not exist."""
    deployment = await world.target(ns, target, kind)
    if deployment is None:
        return None
    wanted = step_sources(steps)
    replicasets, hpas, found = await asyncio.gather(
        world.replicasets(ns, [deployment["metadata"]["uid"]]),
        world.hpas(ns) if "hpas" in reads(steps) else reader.nothing(),
        asyncio.gather(*(reader.source(kube, ns, kind, obj) for kind, obj in wanted)),
    )
    return planner.Around.of(replicasets, hpas).objects(deployment, dict(zip(wanted, found, strict=True)))
