"""A revision that never becomes available: the Deployment controller's own verdict, read as a signal.

Kubernetes marks a Deployment `Progressing=False, reason=ProgressDeadlineExceeded` when its new
ReplicaSet has not become available within `progressDeadlineSeconds`: a revision that crashes at
start serves no traffic, so no Prometheus signal sees it. Hemostat reads that condition as a breach
of the built-in signal `rolloutProgress` (no policy signal can take the name: those are DNS labels),
confirmed at once, the deadline having been its `for`.

Whether the new revision is to blame is told by its Pods (read only for a stalled Deployment):
containers that crash or cannot start are the revision's; Pods the scheduler cannot place are a
matter of capacity, not the deploy, so `unknown`: a person decides. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import conditions as c
from .attribution import NONE, Clue
from .health import SignalOutcome, Verdict

PROGRESS = "rolloutProgress"
TEMPLATE_HASH = "pod-template-hash"
# waiting reasons of a container that will not start however long it is given
CANNOT_START = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
SHOWN = 3  # Pods named in a clue; the rest are counted

Body = Mapping[str, Any]


@dataclass(frozen=True)
class Stall:
    since: datetime  # when the controller gave up on the rollout
    message: str  # the controller's own words: 'ReplicaSet "web-5d6d" has timed out progressing.'
    deadline_s: int
    unavailable: int


def stalled(deployment: Body) -> Stall | None:
    """The Deployment's rollout has exceeded its progress deadline, by a status about its current spec."""
    meta, status = deployment["metadata"], deployment.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation"):  # e.g. just rolled back: not yet judged
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("status") == "False":
            if cond.get("reason") != "ProgressDeadlineExceeded":
                return None
            at = cond.get("lastTransitionTime") or cond.get("lastUpdateTime")
            if not at:
                return None
            return Stall(
                since=c.parse_iso(at),
                message=cond.get("message") or "the rollout has timed out progressing",
                deadline_s=int((deployment.get("spec") or {}).get("progressDeadlineSeconds") or 600),
                unavailable=int(status.get("unavailableReplicas") or 0),
            )
    return None


def outcome(stall: Stall) -> SignalOutcome:
    return SignalOutcome(
        name=PROGRESS,
        verdict=Verdict.BREACHING,
        value=float(stall.unavailable),
        detail=stall.message,
        threshold=f"Pods unavailable past progressDeadlineSeconds ({stall.deadline_s}s)",
        breaching_since=stall.since,
        confirmed=True,
        built_in=True,
    )


def _cannot_start(pod: Body) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        restarts = int(cs.get("restartCount") or 0)
        if reason in CANNOT_START or (restarts > 0 and not cs.get("ready")):
            return f"container {cs.get('name')} {reason or 'restarting'} ({restarts} restarts)"
    return None


def _unschedulable(pod: Body) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("message") or cond.get("reason") or "not scheduled"
    return None


def _listed(found: Sequence[tuple[str, str]], total: int, what: str) -> str:
    named = "; ".join(f"{name}: {why}" for name, why in found[:SHOWN])
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return f"{len(found)} of {total} Pods of the new revision {what}: {named}{more}"


def clue(stall: Stall, pods: Sequence[Body] | str | None, new_hash: str | None) -> Clue:
    """Who is to blame for a stalled rollout, from the new revision's Pods (a str: why they were not read)."""
    head = f"{stall.message} (progressDeadlineSeconds {stall.deadline_s})"
    if isinstance(pods, str) or pods is None:
        return Clue("progress", NONE, f"{head}; its Pods could not be read: {pods or 'not read'}")
    if new_hash is None:
        return Clue("progress", NONE, f"{head}; which ReplicaSet is the new revision is not known")
    mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH) == new_hash]
    if not mine:
        return Clue("progress", NONE, f"{head}; the new revision has no Pods")
    crashing = [(p["metadata"]["name"], crash) for p in mine if (crash := _cannot_start(p))]
    if crashing:
        return Clue("progress", "deploy", f"{head}; {_listed(crashing, len(mine), 'cannot start')}")
    pending = [(p["metadata"]["name"], unplaced) for p in mine if (unplaced := _unschedulable(p))]
    if pending:
        said = _listed(pending, len(mine), "cannot be scheduled")
        return Clue("progress", "unknown", f"{head}; {said}: capacity, not the revision")
    return Clue("progress", "deploy", f"{head}; the new revision's {len(mine)} Pods run but never become available")


def trim_pod(body: Body) -> dict[str, Any]:
    """What a Pod's judgement needs: its template hash, scheduling and container states."""
    meta, status = body["metadata"], body.get("status") or {}
    return {
        "metadata": {"name": meta["name"], "labels": {k: v for k, v in (meta.get("labels") or {}).items()}},
        "status": {
            "phase": status.get("phase"),
            "conditions": [x for x in status.get("conditions") or [] if x.get("type") == "PodScheduled"],
            "containerStatuses": [
                {k: cs.get(k) for k in ("name", "ready", "restartCount", "state")}
                for cs in status.get("containerStatuses") or []
            ],
        },
    }
