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
    memo.engine = Engine(kube, provider_for, Settings(config.prometheus_url, config.dry_run), metrics)
    memo.leader = None
    if config.leader_election:
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        d = config.lease_duration
        memo.leader = LeaderElector(
            kube.api, config.lease_namespace, config.lease_name, identity, d, renew=d / 3, deadline=d * 2 / 3
        )
        memo.leader_stop = asyncio.Event()
        memo.leader_task = asyncio.create_task(memo.leader.run(memo.leader_stop))
    memo.heartbeat = {"last_cycle": time.monotonic()}  # shared: per-object memos are shallow copies
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
        await stopped.wait(max(0.0, _interval(dict(body.get("spec") or {})) - elapsed))


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A plain-dict snapshot of kopf's live body, so one cycle sees one consistent object."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


@kopf.on.probe(id="lastCycleSecondsAgo")
def last_cycle(memo: kopf.Memo, **_: Any) -> float:
    return round(time.monotonic() - memo.heartbeat["last_cycle"], 1)
