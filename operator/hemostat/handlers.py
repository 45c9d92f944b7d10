"""kopf wiring only: startup settings, one evaluation loop per MitigationPolicy.

Evaluation is per policy, not per Deployment: one asyncio task per policy reads
all its targets, which keeps the task count (and kopf's per-object overhead)
proportional to the number of policies.

The objects around policies (Deployments, ReplicaSets, HPAs, Incidents) come from our own
watch caches (informer.py), not kopf indices, which do not scale past a few thousand objects.

Liveness fails when detection is blind: no cycle completing (a first one included), kopf's
watch no longer delivering (the loop's own status write never seen back), or a watch cache
silent for too long. Each cycle reads the policy fresh from the API server, so a dead watch
cannot freeze the breach clocks; it is still reported, because kopf would miss new and
deleted policies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import kopf

from . import informer
from .actions.rollback import REVISION
from .cycle import world
from .cycle.evaluator import Evaluator
from .cycle.snapshot import Settings
from .kube import Kube, pooled_client
from .leader import LeaderElector
from .metrics import Metrics
from .models.common import GROUP, VERSION
from .signals.prometheus import PrometheusProvider

log = logging.getLogger("hemostat.handlers")
DEFAULT_INTERVAL = 30.0
WATCH_STALE_AFTER = 180.0  # seconds a status write may go unseen by kopf's watch


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping lives in annotations: our status schema declares only our own fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="hemostat.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="hemostat.dev")
    settings.persistence.finalizer = "hemostat.dev/finalizer"
    settings.posting.enabled = False  # Events are the Incident timeline, posted by the cycle
    # No cluster-wide scanning of CRDs and namespaces: the CRDs are installed before the
    # operator (the chart does it), and namespaces are named, so RBAC needs no cluster scope.
    settings.scanning.disabled = True
    settings.peering.name = "hemostat"
    settings.peering.mandatory = False
    # Watches that die silently (kopf #996, #1276) are ended and reopened on a schedule.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    config = memo.config
    prometheus_http = config.prometheus_auth.client()
    webhook_http = config.webhook_auth.client()
    metrics = Metrics()
    kube = Kube(on_call=lambda method: metrics.kube_requests.labels(method=method).inc())
    providers: dict[str, PrometheusProvider] = {}

    def provider_for(url: str) -> PrometheusProvider:
        if url not in providers:
            providers[url] = PrometheusProvider(url, prometheus_http)
        return providers[url]

    memo.http = (prometheus_http, webhook_http)
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.bind_address)
    settings_ = Settings(
        config.prometheus_url, config.dry_run, config.incident_retention, config.allowed_prometheus_urls
    )
    memo.evaluator = Evaluator(kube, provider_for, settings_, metrics, webhook_http)
    memo.leader = None
    if config.leader_election:
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        d = config.lease_duration
        memo.leader = LeaderElector(
            kube.api, config.lease_namespace, config.lease_name, identity, d, renew=d / 3, deadline=d * 2 / 3
        )
        memo.leader_stop = asyncio.Event()
        memo.leader_task = asyncio.create_task(memo.leader.run(memo.leader_stop))
    leader = memo.leader
    metrics.is_leader.set_function(lambda: 1.0 if leader is None or leader.is_leader else 0.0)
    # shared: per-object memos are shallow copies
    memo.revisions = {}  # (namespace, Deployment) -> the revision last seen
    memo.informers = _informers(config.namespaces, memo, on_call=kube.on_call)
    memo.informers.start()
    memo.heartbeat = {"last_cycle": time.monotonic(), "intervals": {}, "unseen": {}}
    memo.wakers = {}  # namespace -> {policy uid: Event}: a new revision wakes its namespace's loops
    memo.remembered = {}  # Incidents created but maybe not in the cache yet (see cycle/world.py)
    log.info(
        "hemostat started: prometheus=%s dry_run=%s namespaces=%s",
        config.prometheus_url,
        config.dry_run,
        ",".join(config.namespaces) or "all",
    )


def _informers(namespaces: tuple[str, ...], memo: kopf.Memo, on_call: Any) -> informer.Informers:
    """The watch caches of the read phase (see informer.py): a steady-state cycle makes no LIST call."""
    keys = {
        "deployment_index": world.deployment_keys,
        "replicaset_index": world.replicaset_keys,
        "hpa_index": lambda body: {body["metadata"]["namespace"]: world.trim_hpa(body)},
        "incident_index": world.incident_keys,
    }
    indices = {name: informer.Index() for name in keys}
    # its own connections: one per watch (a kind in a namespace), each in its own thread
    pooled = pooled_client(len(keys) * max(1, len(namespaces)))
    found = informer.sources(pooled, namespaces, GROUP, VERSION)
    informers = [
        informer.Informer(
            source,
            keys[name],
            indices[name],
            on_change=(lambda event, obj: revision_changed(memo, event, obj)) if name == "deployment_index" else None,
            on_call=on_call,
        )
        for name, listed in found.items()
        for source in listed
    ]
    return informer.Informers(informers, indices)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    memo.informers.stop()
    if memo.leader is not None:
        memo.leader_stop.set()
        await memo.leader_task
        await asyncio.to_thread(memo.leader.release)
    for http in memo.http:
        await http.aclose()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.daemon(GROUP, VERSION, "mitigationpolicies", cancellation_timeout=10.0)
async def evaluate_policy(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    uid = body["metadata"]["uid"]
    try:
        await memo.informers.synced()  # never decide on a half-filled cache (it would miss Incidents)
        await _evaluate_forever(stopped, body, memo, _caches(memo))
    finally:
        memo.heartbeat["intervals"].pop(uid, None)
        memo.heartbeat["unseen"].pop(uid, None)
        memo.wakers.get(body["metadata"]["namespace"], {}).pop(uid, None)


async def _sleep(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until the next cycle is due, the daemon stops, or a new revision wakes the loop."""
    waiters = {asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        wake.clear()


def revision_changed(memo: kopf.Memo, event: str, obj: dict[str, Any]) -> None:
    """A Deployment's new revision wakes the policy loops of its namespace at once (the fast lane:
    they then evaluate every rolloutWatch.interval for rolloutWatch.window). Reads nothing, writes nothing."""
    meta = obj["metadata"]
    key = (meta["namespace"], meta["name"])
    if event == "DELETED":
        memo.revisions.pop(key, None)
        return
    revision = (meta.get("annotations") or {}).get(REVISION)
    if memo.revisions.get(key) == revision:
        return
    memo.revisions[key] = revision
    for waker in memo.wakers.get(meta["namespace"], {}).values():
        waker.set()


async def _evaluate_forever(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, cache: world.Cached) -> None:
    evaluator: Evaluator = memo.evaluator
    beat, uid = memo.heartbeat, body["metadata"]["uid"]
    beat["intervals"][uid] = DEFAULT_INTERVAL  # counted before the first cycle: one that never ends is a stall
    wake = memo.wakers.setdefault(body["metadata"]["namespace"], {}).setdefault(uid, asyncio.Event())
    while not stopped:
        if memo.leader is not None and not memo.leader.is_leader:
            await stopped.wait(1.0)  # a standby watches, but never acts
            continue
        started = time.monotonic()
        seen = body["metadata"]["resourceVersion"]  # kopf's live view, as its watch last delivered it
        report = await evaluator.evaluate(_plain(body), now=datetime.now(UTC), world=cache)
        if not report.exists:
            await stopped.wait(1.0)  # deleted: kopf stops this daemon once its watch says so
            continue
        beat["last_cycle"] = time.monotonic()
        beat["intervals"][uid] = report.interval
        if report.written is not None and uid not in beat["unseen"]:
            beat["unseen"][uid] = (seen, time.monotonic())
        elapsed = time.monotonic() - started
        await _sleep(stopped, wake, max(0.0, report.interval - elapsed))
        pending = beat["unseen"].get(uid)
        if pending is not None and body["metadata"]["resourceVersion"] != pending[0]:
            beat["unseen"].pop(uid, None)  # the watch delivered a newer version


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A plain-dict snapshot of kopf's live body, so one cycle sees one consistent object."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


STALL_LIMIT = 300.0  # seconds without any completed evaluation while policies exist


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


@kopf.on.probe(id="lastCycleSecondsAgo")
def last_cycle(memo: kopf.Memo, **_: Any) -> float:
    """Liveness: /healthz fails (HTTP 500) when evaluations stop completing or the watch is dead."""
    now = time.monotonic()
    leader = memo.leader
    # a new leader's clock starts when it took the Lease, not at its last cycle as a standby
    ago = now - max(memo.heartbeat["last_cycle"], (leader.acquired_at or 0.0) if leader else 0.0)
    leading = leader is None or leader.is_leader  # a standby evaluates nothing, by design
    reason = leader.stalled(now) if leader is not None else None
    reason = reason or stalled(list(memo.heartbeat["intervals"].values()) if leading else [], ago, STALL_LIMIT)
    reason = reason or watch_stale([t for _, t in memo.heartbeat["unseen"].values()], now)
    reason = reason or memo.informers.stale(now)
    if reason:
        raise kopf.PermanentError(reason)
    return round(ago, 1)


def _is_manual(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("source") == "manual"


def _request_pending(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """A person's requested mitigation not carried out yet (e.g. held by a pause or the cooldown)."""
    if spec.get("source") != "manual" or not spec.get("mitigation") or status.get("phase") == "Resolved":
        return False
    return not any(a.get("index") == -1 for a in status.get("actions") or [])


@kopf.on.resume(GROUP, VERSION, "incidents", when=_is_manual)
@kopf.on.create(GROUP, VERSION, "incidents", when=_is_manual)
@kopf.on.update(GROUP, VERSION, "incidents", when=_is_manual)
async def manual_incident(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An Incident a person declared: record it, run the mitigation they asked for, close it when told."""
    if memo.leader is not None and not memo.leader.is_leader:
        raise kopf.TemporaryError("not the leader; the leader handles manual incidents", delay=10)
    await memo.evaluator.handle_manual(_plain(body), now=datetime.now(UTC), world=_caches(memo))


@kopf.timer(GROUP, VERSION, "incidents", interval=10.0, when=_request_pending)
async def retry_held_request(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A held request is retried when the hold ends (pause lifted, cooldown over)."""
    if memo.leader is None or memo.leader.is_leader:
        await memo.evaluator.handle_manual(_plain(body), now=datetime.now(UTC), world=_caches(memo))


def _caches(memo: kopf.Memo) -> world.Cached:
    return world.Cached(memo.informers.indices, memo.remembered)
