"""kopf wiring only: startup settings, one evaluation loop per MitigationPolicy.

Evaluation is per policy, not per Deployment: one asyncio task per policy reads
all its targets, which keeps the task count (and kopf's per-object overhead)
proportional to the number of policies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import kopf

from .engine import Engine, Settings
from .kube import Kube
from .leader import LeaderElector
from .metrics import Metrics
from .models.common import GROUP, VERSION, parse_duration
from .signals.prometheus import PrometheusProvider

log = logging.getLogger("hemostat.handlers")
DEFAULT_INTERVAL = 30.0


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's bookkeeping lives in annotations: our status schema declares only our own fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="hemostat.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="hemostat.dev")
    settings.persistence.finalizer = "hemostat.dev/finalizer"
    settings.posting.enabled = False  # Events are the Incident timeline, posted by the engine
    # No cluster-wide scanning of CRDs and namespaces: the CRDs are installed before the
    # operator (the chart does it), and namespaces are named, so RBAC needs no cluster scope.
    settings.scanning.disabled = True
    settings.peering.name = "hemostat"
    settings.peering.mandatory = False
    config = memo.config
    http = httpx.AsyncClient(trust_env=False)
    kube = Kube()
    providers: dict[str, PrometheusProvider] = {}

    def provider_for(url: str) -> PrometheusProvider:
        if url not in providers:
            providers[url] = PrometheusProvider(url, http)
        return providers[url]

    memo.http = http
    metrics = Metrics()
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.bind_address)
    memo.engine = Engine(kube, provider_for, Settings(config.prometheus_url, config.dry_run), metrics, http)
    memo.leader = None
    if config.leader_election:
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        d = config.lease_duration
        memo.leader = LeaderElector(
            kube.api, config.lease_namespace, config.lease_name, identity, d, renew=d / 3, deadline=d * 2 / 3
        )
        memo.leader_stop = asyncio.Event()
        memo.leader_task = asyncio.create_task(memo.leader.run(memo.leader_stop))
    memo.heartbeat = {"last_cycle": time.monotonic(), "intervals": {}}  # shared: per-object memos are shallow copies
    log.info(
        "hemostat started: prometheus=%s dry_run=%s namespaces=%s",
        config.prometheus_url,
        config.dry_run,
        ",".join(config.namespaces) or "all",
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if memo.leader is not None:
        memo.leader_stop.set()
        await memo.leader_task
        await asyncio.to_thread(memo.leader.release)
    await memo.http.aclose()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


def _interval(spec: dict[str, Any]) -> float:
    try:
        return max(1.0, parse_duration(spec.get("interval", "30s")).total_seconds())
    except ValueError:
        return DEFAULT_INTERVAL


@kopf.daemon(GROUP, VERSION, "mitigationpolicies", cancellation_timeout=10.0)
async def evaluate_policy(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any
) -> None:
    engine: Engine = memo.engine
    uid = body["metadata"]["uid"]
    try:
        await _evaluate_forever(stopped, body, memo, engine, logger)
    finally:
        memo.heartbeat["intervals"].pop(uid, None)


async def _evaluate_forever(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, engine: Engine, logger: logging.Logger
) -> None:
    while not stopped:
        if memo.leader is not None and not memo.leader.is_leader:
            await stopped.wait(1.0)  # a standby watches, but never acts
            continue
        started = time.monotonic()
        try:
            await engine.evaluate(_plain(body), now=datetime.now(UTC))
            memo.heartbeat["last_cycle"] = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad cycle must not end the loop: next interval retries
            logger.exception("evaluation of policy %s failed; retrying next interval", body["metadata"]["name"])
        elapsed = time.monotonic() - started
        interval = _interval(dict(body.get("spec") or {}))
        memo.heartbeat["intervals"][body["metadata"]["uid"]] = interval
        await stopped.wait(max(0.0, interval - elapsed))


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


@kopf.on.probe(id="lastCycleSecondsAgo")
def last_cycle(memo: kopf.Memo, **_: Any) -> float:
    """Liveness: /healthz fails (HTTP 500) when evaluations stop completing."""
    ago = time.monotonic() - memo.heartbeat["last_cycle"]
    leading = memo.leader is None or memo.leader.is_leader  # a standby evaluates nothing, by design
    reason = stalled(list(memo.heartbeat["intervals"].values()) if leading else [], ago, STALL_LIMIT)
    if reason:
        raise kopf.PermanentError(reason)
    return round(ago, 1)


def _is_manual(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("source") == "manual"


@kopf.on.resume(GROUP, VERSION, "incidents", when=_is_manual)
@kopf.on.create(GROUP, VERSION, "incidents", when=_is_manual)
@kopf.on.update(GROUP, VERSION, "incidents", when=_is_manual)
async def manual_incident(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An Incident a person declared: record it, run the mitigation they asked for, close it when told."""
    if memo.leader is not None and not memo.leader.is_leader:
        raise kopf.TemporaryError("not the leader; the leader handles manual incidents", delay=10)
    await memo.engine.handle_manual(_plain(body), now=datetime.now(UTC))
