"""Roll a Deployment back the way `kubectl rollout undo` does, or abort a canary; an Argo Rollout the
way `kubectl argo rollouts abort` (an update in progress) or `undo` (a promoted one) does.

The target is the highest revision below the current one, found on the real
ReplicaSets; its pod template (minus `pod-template-hash`) replaces the
Deployment's, and its annotations are copied as kubectl copies them. The patch
is a JSON patch whose first operations test the generation and annotations we
planned against (base.guard), so a Deployment a person changed meanwhile is
re-read, never overwritten.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import now_iso
from ..decide import conditions as c
from ..decide import ledger
from ..decide.rollout_pause import HELD, HELD_POINTER
from ..models.common import format_duration
from ..models.policy import RollbackStep
from ..workloads import DEPLOYMENT, ROLLOUT, Workload
from ..workloads import of as workload_of
from .base import (
    MARKER,
    Context,
    Done,
    Hold,
    Objects,
    Plan,
    Skip,
    StepKind,
    guard,
    holds,
    marker_op,
    marker_value,
    parse_marker,
    patch_target_rule,
    read_marker,
)

REVISION = DEPLOYMENT.revision
CANARY_OF = "hemostat.dev/canary-of"
# What `kubectl rollout restart` (and the restart step) writes: a new revision of the same version.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Annotations kubectl never copies from a ReplicaSet onto the Deployment on undo.
SKIP_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        ROLLOUT.revision,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True)
class Revision:
    number: int
    replicaset: str
    image: str
    rolled_out_at: datetime  # creation, or the controller's last change (an undo re-stamps an old ReplicaSet)
    template: dict[str, Any]
    annotations: dict[str, str]
    template_hash: str = ""
    created: datetime | None = None

    def describe(self) -> str:
        return f"revision {self.number} ({self.image})"

    def same_version(self, other: Revision) -> bool:
        """The same pod template but for a restart's restartedAt: a restart, not a new version."""
        return _version(self.template) == _version(other.template)


@dataclass(frozen=True)
class Facts:
    name: str
    guard: tuple[dict[str, Any], ...]  # the test operations every patch of this Deployment starts with
    annotations: dict[str, str]
    current: Revision | None
    previous: Revision | None
    rollout_paused: bool
    canary_of: str | None
    replicas: int
    workload: Workload = DEPLOYMENT
    history: tuple[Revision, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)  # a Rollout's: where its update stands
    # when the current version was first rolled out, when the current revision is a restart of it
    # (the first ReplicaSet's creation: a restart scales it, which moves its other times)
    version_since: datetime | None = None


def _version(template: dict[str, Any]) -> dict[str, Any]:
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    if RESTARTED_AT not in annotations:
        return template
    meta = {k: v for k, v in template["metadata"].items() if k != "annotations"}
    kept = {k: v for k, v in annotations.items() if k != RESTARTED_AT}
    return {**template, "metadata": {**meta, **({"annotations": kept} if kept else {})}}


def images(template: dict[str, Any]) -> str:
    return ",".join(c.get("image", "?") for c in template.get("spec", {}).get("containers", []))


def _without_hash(template: dict[str, Any], label: str) -> dict[str, Any]:
    """The template minus the template-hash label, as new dicts down that path (no deep copy:
    this runs for every ReplicaSet of every target each round)."""
    meta = template.get("metadata")
    if not meta or "labels" not in meta:
        return dict(template)
    labels = {k: v for k, v in (meta["labels"] or {}).items() if k != label}
    return {**template, "metadata": {**meta, "labels": labels}}


@functools.lru_cache(maxsize=65536)  # the same timestamps come back every round
def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _revision(rs: dict[str, Any], workload: Workload) -> Revision | None:
    meta = rs["metadata"]
    try:
        number = int((meta.get("annotations") or {}).get(workload.revision, ""))
    except ValueError:
        return None
    template = _without_hash(rs["spec"]["template"], workload.template_hash)
    changes = [
        _parse_time(m["time"])
        for m in meta.get("managedFields") or []
        if m.get("time") and m.get("subresource") != "status"
    ]
    return Revision(
        number=number,
        replicaset=meta["name"],
        image=images(template),
        rolled_out_at=max([_parse_time(meta["creationTimestamp"]), *changes]),
        template=template,
        annotations=dict(meta.get("annotations") or {}),
        template_hash=(meta.get("labels") or {}).get(workload.template_hash, ""),
        created=_parse_time(meta["creationTimestamp"]),
    )


def revisions(deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> list[Revision]:
    """Pure: the revisions of one Deployment (Rollout), oldest first, from the ReplicaSets it owns."""
    uid, workload = deployment["metadata"]["uid"], workload_of(deployment)
    owned = [rs for rs in replicasets if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])]
    return sorted((r for rs in owned if (r := _revision(rs, workload))), key=lambda r: r.number)


def facts_from(deployment: dict[str, Any], replicasets: list[dict[str, Any]]) -> Facts:
    """Pure: the revision history of one Deployment from its owned ReplicaSets."""
    meta, workload = deployment["metadata"], workload_of(deployment)
    history = revisions(deployment, replicasets)
    annotations = dict(meta.get("annotations") or {})
    try:
        current_number = int(annotations.get(workload.revision, ""))
    except ValueError:
        current_number = history[-1].number if history else -1
    current = next((r for r in history if r.number == current_number), None)
    older = [r for r in history if r.number < current_number]
    # restarts of the current version are not versions to roll back onto
    restarts = 0
    while current and restarts < len(older) and older[-1 - restarts].same_version(current):
        restarts += 1
    first = older[-restarts] if restarts else None
    before = older[: len(older) - restarts]
    return Facts(
        name=meta["name"],
        guard=tuple(guard(meta)),
        annotations=annotations,
        current=current,
        previous=before[-1] if before else None,
        version_since=first.created if first else None,
        rollout_paused=bool(deployment["spec"].get("paused")),
        canary_of=(meta.get("labels") or {}).get(CANARY_OF),
        replicas=int(deployment["spec"].get("replicas", 1)),
        workload=workload,
        history=tuple(history),
        status=(deployment.get("status") or {}) if workload is ROLLOUT else {},
    )


def plan(
    facts: Facts,
    step: RollbackStep,
    *,
    incident: str,
    index: int,
    detected_revision: int | None,
    rollout_window: timedelta,
    now: datetime,
    current_since: datetime | None = None,
    undone: Mapping[str, ledger.Entry] | None = None,
    held_rollout: bool = False,
) -> Plan | Skip | Done | Hold:
    """Pure: what the rollback step would change, or why it does not apply.

    `current_since` is when the operator first saw the current revision; without
    it the age comes from the ReplicaSet (creation or the controller's last change).
    `undone` holds the ReplicaSets Hemostat rolled back from within the rollout window,
    by name: never a rollback target again (the known-bad version would be live again).
    """
    done = read_marker(facts.annotations, incident, index, now)
    if done:
        return done
    earlier = parse_marker(facts.annotations.get(MARKER), now)
    if earlier and earlier["incident"] == incident and earlier["action"] in ("rollback", "scaleToZero", "abort"):
        did = f"{earlier['action']}: {earlier['from']} -> {earlier['to']}"
        return Skip(f"step {earlier['step']} of this incident already did {did}")
    at = now_iso(now)
    current = facts.current
    if current is None:
        revision = facts.annotations.get(facts.workload.revision, "?")
        return Hold(f"the {facts.workload.kind}'s current revision {revision} has no ReplicaSet yet")
    detected = next((r for r in facts.history if r.number == detected_revision), None)
    restarted = detected is not None and detected.same_version(current)  # a restart is no new version
    if detected_revision is not None and current.number != detected_revision and not restarted:
        return Skip(
            f"the {facts.workload.kind} changed since detection (revision {detected_revision} -> {current.number}); "
            "not overriding a change someone else made"
        )
    if facts.workload is ROLLOUT and (aborted := _abort(facts, incident, index, at)) is not None:
        return aborted
    if facts.canary_of and step.canary_action == "scaleToZero" and facts.workload is DEPLOYMENT:
        if facts.replicas == 0:
            return Skip(f"canary of {facts.canary_of} is already scaled to zero")
        frm, to = f"canary {facts.name} at {facts.replicas} replicas", "0 replicas"
        value = marker_value(incident, index, "scaleToZero", frm, to, at)
        return Plan(
            "scaleToZero",
            frm,
            to,
            [
                *facts.guard,
                {"op": "replace", "path": "/spec/replicas", "value": 0},
                marker_op(facts.annotations, value),
            ],
        )
    if facts.rollout_paused and not held_rollout:
        return Skip("the rollout is paused (spec.paused); kubectl rollout undo refuses paused Deployments too")
    age = now - (facts.version_since or current_since or current.rolled_out_at)
    if age > rollout_window:
        return Skip(
            f"{current.describe()} was rolled out {_human(age)} ago, outside the rollout window "
            f"of {_human(rollout_window)}"
        )
    target = facts.previous
    if target is None:
        return Skip(f"no revision older than {current.number} is left to roll back to")
    gone = (undone or {}).get(target.replicaset)
    if gone is not None:
        return Skip(
            f"{target.describe()} is the revision Hemostat rolled back from at {c.now_iso(gone.at)} ({gone.by}); "
            f"not rolling back onto it within the rollout window of {_human(rollout_window)}"
        )
    marker = marker_value(incident, index, "rollback", current.describe(), target.describe(), at)
    if facts.workload is ROLLOUT:
        # `kubectl argo rollouts undo` writes the template alone; the hold's annotation goes with its pause
        notes = [marker_op(facts.annotations, marker), *_unhold(facts)]
    else:
        annotations = {k: v for k, v in facts.annotations.items() if k in SKIP_ANNOTATIONS}
        annotations.update({k: v for k, v in target.annotations.items() if k not in SKIP_ANNOTATIONS})
        annotations[MARKER] = marker
        notes = [{"op": "replace", "path": "/metadata/annotations", "value": annotations}]
    return Plan(
        "rollback",
        current.describe(),
        target.describe(),
        [
            *facts.guard,
            {"op": "replace", "path": "/spec/template", "value": target.template},
            # the hold's own pause is lifted in the same write (its annotation is not carried over)
            *([{"op": "replace", "path": "/spec/paused", "value": False}] if facts.rollout_paused else []),
            *notes,
        ],
        kind=facts.workload.kind,
        undoes=current.replicaset,
    )


def _unhold(facts: Facts) -> list[dict[str, Any]]:
    """Remove the hold's annotation, when the pause being lifted is the hold's."""
    return [{"op": "remove", "path": HELD_POINTER}] if facts.rollout_paused and HELD in facts.annotations else []


def _abort(facts: Facts, incident: str, index: int, at: str) -> Plan | Skip | None:
    """A Rollout whose update is in progress is aborted as `kubectl argo rollouts abort` does (status.abort,
    through the status subresource): Argo scales the new revision down and the stable one serves. None when
    no update is in progress (a promoted Rollout is undone instead).

    The abort is written first and the marker after it: a crash between the two leaves an aborted Rollout
    without a marker (the next plan skips, saying so), never a marker claiming an abort that did not land."""
    canary, stable = facts.status.get("currentPodHash"), facts.status.get("stableRS")
    if not canary or not stable or canary == stable or facts.current is None:
        return None
    current = facts.current
    if facts.status.get("abort"):
        return Skip(
            f"the Rollout's update to {current.describe()} is already aborted (status.abort), by a person "
            "or by this step just before a restart"
        )
    old = next((r for r in facts.history if r.template_hash == stable), None)
    frm, to = f"canary {current.describe()}", f"stable {old.describe() if old else 'ReplicaSet ' + stable}"
    return Plan(
        "abort",
        frm,
        to,
        [*facts.guard, marker_op(facts.annotations, marker_value(incident, index, "abort", frm, to, at))],
        kind="Rollout",
        status_patch=[
            *facts.guard,
            {"op": "test", "path": "/status/currentPodHash", "value": canary},
            {"op": "add", "path": "/status/abort", "value": True},
        ],
        undoes=current.replicaset,
    )


def applied(deployment: dict[str, Any], plan_: Plan) -> bool:
    """Verify: the Deployment now holds what the plan wrote."""
    if plan_.action == "scaleToZero":
        return deployment["spec"].get("replicas") == 0
    if plan_.action == "abort":
        return (deployment.get("status") or {}).get("abort") is True
    want = next(op["value"] for op in plan_.patch if op["path"] == "/spec/template")
    return deployment["spec"]["template"] == want


def _human(delta: timedelta) -> str:
    return format_duration(delta.total_seconds())


def _plan_step(objects: Objects, step: RollbackStep, ctx: Context) -> Plan | Skip | Done | Hold:
    facts = facts_from(objects.deployment, list(objects.replicasets))
    undone = ledger.read(facts.annotations, ctx.now).undone(since=ctx.now - ctx.rollout_window)
    # The first-seen time only describes the revision the incident was detected on.
    same = facts.current is not None and facts.current.number == ctx.detected_revision
    return plan(
        facts,
        step,
        incident=ctx.incident,
        index=ctx.index,
        detected_revision=ctx.detected_revision,
        rollout_window=ctx.rollout_window,
        now=ctx.now,
        current_since=ctx.revision_since if same else None,
        undone=undone,
        held_rollout=ctx.held_rollout,
    )


STEP = StepKind(
    "rollback",
    _plan_step,
    holds(applied),
    actions={"rollback": c.ROLLED_BACK, "scaleToZero": c.SCALED_TO_ZERO, "abort": c.ROLLOUT_ABORTED},
    admission=(patch_target_rule("rollback"),),
)
