"""kopf wiring only: start-up settings and the handlers, each a few lines over the runtime.

What the handlers share is one typed `Runtime` in kopf's memo (runtime.py, the composition root);
when each policy is evaluated is the scheduler's (scheduler.py); what a cycle does is the cycle's.
Evaluation is per policy, not per Deployment, and the objects around policies come from our own
watch caches (informer.py), not kopf indices, which do not scale past a few thousand objects.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import kopf

from . import runtime as rt
from .models.common import GROUP, VERSION
from .scheduler import evaluate_forever


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
    memo.runtime = rt.build(config)
    await memo.runtime.start()
    rt.log.info(
        "hemostat started: prometheus=%s dry_run=%s namespaces=%s",
        config.prometheus_url,
        config.dry_run,
        ",".join(config.namespaces) or "all",
    )


def _runtime(memo: kopf.Memo) -> rt.Runtime:
    runtime: rt.Runtime = memo.runtime
    return runtime


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).stop()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.daemon(GROUP, VERSION, "mitigationpolicies", cancellation_timeout=10.0)
async def evaluate_policy(stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime = _runtime(memo)
    await runtime.informers.synced()  # never decide on a half-filled cache (it would miss Incidents)
    await evaluate_forever(runtime, lambda: _plain(body), stopped)


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
    """Liveness: /healthz fails (HTTP 500) when evaluations stop completing, the watch is dead, a watch
    cache is silent, or leader election finishes no round (runtime.Runtime.liveness)."""
    ago, reason = _runtime(memo).liveness(time.monotonic())
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
    runtime = _runtime(memo)
    if not runtime.acting:
        raise kopf.TemporaryError("not the leader; the leader handles manual incidents", delay=10)
    await runtime.evaluator.handle_manual(_plain(body), now=datetime.now(UTC), world=runtime.caches())


@kopf.timer(GROUP, VERSION, "incidents", interval=10.0, when=_request_pending)
async def retry_held_request(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A held request is retried when the hold ends (pause lifted, cooldown over)."""
    runtime = _runtime(memo)
    if runtime.acting:
        await runtime.evaluator.handle_manual(_plain(body), now=datetime.now(UTC), world=runtime.caches())
