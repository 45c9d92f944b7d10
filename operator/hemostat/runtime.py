"""The operator's running parts, typed, built once at start-up (the composition root).

kopf hands every handler a `memo`; Hemostat keeps exactly one thing in it, a `Runtime`, so what
the handlers share is named and typed: the evaluator, the watch caches, the leader elector, the
heartbeat liveness reads, and the fast lane's wakers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from . import alerts, informer, workloads
from .config import OperatorConfig
from .cycle import world
from .cycle.alert_intake import AlertIntake
from .cycle.evaluator import Evaluator
from .cycle.guard import AdmissionGuard
from .cycle.snapshot import Settings
from .kube import Kube, pooled_client
from .leader import LeaderElector
from .metrics import Metrics
from .models.common import GROUP, VERSION
from .outbound import Webhooks
from .signals.prometheus import PrometheusProvider

log = logging.getLogger("hemostat.runtime")
STALL_LIMIT = 300.0  # seconds without any completed evaluation while policies exist
WATCH_STALE_AFTER = 180.0  # seconds a status write may go unseen by kopf's watch


@dataclass
class Heartbeat:
    """What liveness reads: evaluations completing, and kopf's watch delivering our own writes back."""

    last_cycle: float
    intervals: dict[str, float] = field(default_factory=dict)  # running policy uid -> its interval
    unseen: dict[str, tuple[str, float]] = field(default_factory=dict)  # uid -> (version written from, when)


@dataclass
class FastLane:
    """A Deployment's (Rollout's) new revision wakes the policy loops of its namespace at once (they then evaluate
    every rolloutWatch.interval for rolloutWatch.window). Reads nothing, writes nothing."""

    revisions: dict[tuple[str, str, str], str | None] = field(default_factory=dict)  # workload -> last revision
    wakers: dict[str, dict[str, asyncio.Event]] = field(default_factory=dict)  # namespace -> policy uid -> Event

    def waker(self, namespace: str, uid: str) -> asyncio.Event:
        return self.wakers.setdefault(namespace, {}).setdefault(uid, asyncio.Event())

    def forget(self, namespace: str, uid: str) -> None:
        self.wakers.get(namespace, {}).pop(uid, None)

    def wake(self, namespace: str) -> None:
        for waker in self.wakers.get(namespace, {}).values():
            waker.set()

    def approval_decided(self, event: str, obj: dict[str, Any]) -> None:
        """A person's decision on the request an Incident waits for: its policy takes it at once."""
        asked = (obj.get("status") or {}).get("approval") or {}
        decided = (obj.get("spec") or {}).get("approval") or {}
        waiting = asked and not asked.get("decision") and decided.get("request") == asked.get("request")
        if event != "DELETED" and waiting:
            self.wake(obj["metadata"]["namespace"])

    def revision_changed(self, event: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        workload = workloads.of(obj)
        key = (workload.kind, meta["namespace"], meta["name"])
        if event == "DELETED":
            self.revisions.pop(key, None)
            return
        revision = (meta.get("annotations") or {}).get(workload.revision)
        if self.revisions.get(key) == revision:
            return
        self.revisions[key] = revision
        self.wake(meta["namespace"])


@dataclass
class Runtime:
    evaluator: Evaluator
    informers: informer.Informers
    leader: LeaderElector | None
    heartbeat: Heartbeat
    lane: FastLane = field(default_factory=FastLane)
    http: tuple[httpx.AsyncClient | Webhooks, ...] = ()  # closed on stop
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    leader_task: asyncio.Task[None] | None = None
    guard_task: asyncio.Task[None] | None = None
    alerts: AlertIntake | None = None  # Alertmanager's webhook receiver, when its port is set
    alert_port: tuple[str, int] = ("127.0.0.1", 0)
    alert_runner: web.AppRunner | None = None
    alert_task: asyncio.Task[None] | None = None
    alert_tending: asyncio.Task[None] | None = None
    remembered: dict[tuple[str, str], tuple[float, dict[str, Any]]] = field(default_factory=dict)  # world.py

    @property
    def acting(self) -> bool:
        """Without election, or holding the Lease: a standby watches, but never acts."""
        return self.leader is None or self.leader.is_leader

    def caches(self) -> world.Cached:
        return world.Cached(self.informers.indices, self.remembered)

    def liveness(self, now: float) -> tuple[float, str | None]:
        """Seconds since progress, and why the operator is not live (or None)."""
        leader = self.leader
        # a new leader's clock starts when it took the Lease, not at its last cycle as a standby
        ago = now - max(self.heartbeat.last_cycle, (leader.acquired_at or 0.0) if leader else 0.0)
        reason = leader.stalled(now) if leader is not None else None
        intervals = list(self.heartbeat.intervals.values()) if self.acting else []
        reason = reason or stalled(intervals, ago, STALL_LIMIT)
        reason = reason or watch_stale([t for _, t in self.heartbeat.unseen.values()], now)
        return ago, reason or self.informers.stale(now)

    async def start(self) -> None:
        guard = self.evaluator.guard
        if guard is not None and guard.prefix is not None:
            await guard.refresh()  # before the first cycle: adoption depends on it
            self.guard_task = asyncio.create_task(guard.run(self.stopping))
        self.informers.start()
        if self.leader is not None:
            self.leader_task = asyncio.create_task(self.leader.run(self.stopping))
        if self.alerts is not None:
            self.alert_runner = await self.alerts.serve(*self.alert_port)
            self.alert_task = asyncio.create_task(self.alerts.work())
            self.alert_tending = asyncio.create_task(self.alerts.tend())

    async def stop(self) -> None:
        if self.alert_runner is not None:
            await self.alert_runner.cleanup()
        for task in (self.alert_task, self.alert_tending):
            if task is not None:
                task.cancel()
        self.informers.stop()
        self.stopping.set()
        if self.guard_task is not None:
            await self.guard_task
        if self.leader is not None and self.leader_task is not None:
            await self.leader_task
            await asyncio.to_thread(self.leader.release)
        for http in self.http:
            await http.aclose()


def build(config: OperatorConfig) -> Runtime:
    """Everything the handlers use, from the operator's configuration."""
    prometheus_http = config.prometheus_auth.client()
    webhooks = Webhooks(
        config.webhook_auth, config.webhook_auth_urls, config.allowed_webhook_urls, config.webhook_destinations
    )
    metrics = Metrics()
    kube = Kube(on_call=lambda method: metrics.kube_requests.labels(method=method).inc())
    providers: dict[str, PrometheusProvider] = {}

    def provider_for(url: str) -> PrometheusProvider:
        if url not in providers:
            providers[url] = PrometheusProvider(url, prometheus_http)
        return providers[url]

    if config.metrics_port:
        metrics.serve(config.metrics_port, config.bind_address)
    takes_alerts = bool(config.alertmanager_port and config.alertmanager_token_file)
    settings = Settings(
        config.prometheus_url,
        config.dry_run,
        config.incident_retention,
        config.allowed_prometheus_urls,
        config.argo_rollouts,
        alerts=takes_alerts,
    )
    leader = None
    if config.leader_election:
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        d = config.lease_duration
        leader = LeaderElector(
            kube.api, config.lease_namespace, config.lease_name, identity, d, renew=d / 3, deadline=d * 2 / 3
        )
    metrics.is_leader.set_function(lambda: 1.0 if leader is None or leader.is_leader else 0.0)
    lane = FastLane()
    guard = AdmissionGuard(kube, config.admission_policies, metrics)
    board = alerts.Board(config.alert_resend_interval, acting_since(leader)) if takes_alerts else None
    evaluator = Evaluator(kube, provider_for, settings, metrics, webhooks, guard, board)
    intake = None
    if board is not None and config.alertmanager_token_file:
        acting = lambda: leader is None or leader.is_leader  # noqa: E731
        token = Path(config.alertmanager_token_file)
        intake = AlertIntake(
            kube, metrics, token, config.namespaces, config.alert_labels, acting=acting,
            notifier=evaluator.notifier, notify_policy=config.alert_notify_policy, retention=config.incident_retention,
            board=board, wake=lane.wake,
        )  # fmt: skip
    return Runtime(
        evaluator=evaluator,
        informers=_informers(config.namespaces, config.argo_rollouts, lane, on_call=kube.on_call),
        leader=leader,
        heartbeat=Heartbeat(last_cycle=time.monotonic()),
        lane=lane,
        http=(prometheus_http, webhooks),
        alerts=intake,
        alert_port=(config.bind_address, config.alertmanager_port),
    )


def acting_since(leader: LeaderElector | None) -> Callable[[], datetime | None]:
    """When this replica began to act (and so to take alerts): its start, or when it took the Lease."""
    started = datetime.now(UTC)

    def since() -> datetime | None:
        if leader is None:
            return started
        if not leader.is_leader or leader.acquired_at is None:
            return None
        return datetime.now(UTC) - timedelta(seconds=time.monotonic() - leader.acquired_at)

    return since


def _informers(namespaces: tuple[str, ...], rollouts: bool, lane: FastLane, on_call: Any) -> informer.Informers:
    """The watch caches of the read phase (see informer.py): a steady-state cycle makes no LIST call."""
    keys = {
        "deployment_index": world.target_keys,
        **({"rollout_index": world.target_keys} if rollouts else {}),
        "replicaset_index": world.replicaset_keys,
        "hpa_index": lambda body: {body["metadata"]["namespace"]: world.trim_hpa(body)},
        "incident_index": world.incident_keys,
    }
    indices = {name: informer.Index() for name in keys}
    # what wakes the policy loops at once: a workload's new revision, a person's decision on an approval
    changes = {**dict.fromkeys(world.INDEX.values(), lane.revision_changed), "incident_index": lane.approval_decided}
    # its own connections: one per watch (a kind in a namespace), each in its own thread
    pooled = pooled_client(len(keys) * max(1, len(namespaces)))
    found = {k: v for k, v in informer.sources(pooled, namespaces, GROUP, VERSION).items() if k in keys}
    informers = [
        informer.Informer(
            source,
            keys[name],
            indices[name],
            on_change=changes.get(name),
            on_call=on_call,
        )
        for name, listed in found.items()
        for source in listed
    ]
    return informer.Informers(informers, indices)


def stalled(intervals: list[float], seconds_since_cycle: float, limit: float = STALL_LIMIT) -> str | None:
    """Pure: why the operator is not making progress, or None. Watches can die silently in kopf,
    so liveness must come from evaluations completing, not from the process being up.
    `intervals` are the running policies' intervals: a slow policy must not look like a stall."""
    allowed = max([limit, *(3 * i for i in intervals)])
    if intervals and seconds_since_cycle > allowed:
        return f"no policy evaluation completed for {seconds_since_cycle:.0f}s ({len(intervals)} policies)"
    return None


def watch_stale(unseen: list[float], seconds_now: float, limit: float = WATCH_STALE_AFTER) -> str | None:
    """Pure: why kopf's watch looks dead, or None. `unseen` are the times of status writes the
    watch has not delivered back yet; a live watch delivers each within seconds."""
    oldest = min(unseen, default=None)
    if oldest is not None and seconds_now - oldest > limit:
        return f"the policy watch has not delivered a status write made {seconds_now - oldest:.0f}s ago"
    return None
