"""Restart: what `kubectl rollout restart` does, as a rung of the ladder (the runbooks' "restart app pods
if needed": leaked connections, a stuck pool).

A Deployment gets `kubectl.kubernetes.io/restartedAt` in its pod template: a new revision of the same
version, which the rollback step never rolls back onto. An Argo Rollout gets `spec.restartAt`, as
`kubectl argo rollouts restart` writes it. Never while a rollout of the target is still in progress
(kubectl's own test of a finished rollout), nor on a paused one: a restart would mix into that change.
The patch is guarded (base.guard) and carries the marker, like every step.
"""

from __future__ import annotations

from typing import Any

from .. import workloads
from ..clock import now_iso
from ..decide import conditions as c
from ..models.policy import RestartStep
from .base import (
    Context,
    Done,
    Objects,
    Plan,
    Skip,
    StepKind,
    escape,
    guard,
    holds,
    marker_op,
    marker_value,
    patch_target_rule,
    read_marker,
)
from .rollback import RESTARTED_AT


def busy(target: dict[str, Any]) -> str | None:
    """Why the target's Pods are not all of one finished rollout now (None: they are)."""
    meta, spec, status = target["metadata"], target["spec"], target.get("status") or {}
    kind = workloads.of(target).kind
    if spec.get("paused"):
        return f"the {kind} is paused (spec.paused); kubectl rollout restart refuses paused ones too"
    if kind == workloads.ROLLOUT.kind:
        canary, stable = status.get("currentPodHash"), status.get("stableRS")
        if canary and stable and canary != stable:
            return "an update of the Rollout is in progress (its canary is not promoted): not mixing a restart into it"
        return None
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "the Deployment's last change is not rolled out yet: not mixing a restart into it"
    want = spec.get("replicas", 1)
    updated, total, available = (status.get(k, 0) for k in ("updatedReplicas", "replicas", "availableReplicas"))
    if updated < want or total > updated or available < updated:
        return (
            f"a rollout is in progress ({updated} of {want} Pods updated, {available} available): "
            "not mixing a restart into it"
        )
    return None


def plan(objects: Objects, _step: RestartStep, ctx: Context) -> Plan | Skip | Done:
    """Pure: the restart to write, or why not."""
    target = objects.deployment
    meta, kind = target["metadata"], workloads.of(target).kind
    annotations = dict(meta.get("annotations") or {})
    done = read_marker(annotations, ctx.incident, ctx.index, ctx.now)
    if done:
        return done
    reason = busy(target)
    if reason:
        return Skip(reason)
    at = now_iso(ctx.now)
    frm, to = f"{kind} {meta['name']}'s Pods", f"restarted at {at}"
    if kind == workloads.ROLLOUT.kind:
        change = {"op": "add", "path": "/spec/restartAt", "value": at}
    elif (target["spec"]["template"].get("metadata") or {}).get("annotations"):
        change = {"op": "add", "path": f"/spec/template/metadata/annotations/{escape(RESTARTED_AT)}", "value": at}
    else:
        change = {"op": "add", "path": "/spec/template/metadata/annotations", "value": {RESTARTED_AT: at}}
    marker = marker_op(annotations, marker_value(ctx.incident, ctx.index, "restart", frm, to, at))
    return Plan("restart", frm, to, [*guard(meta), change, marker], kind=kind)


def applied(target: dict[str, Any], plan_: Plan) -> bool:
    """Verify: the patched object holds the planned restart time."""
    at = plan_.to.removeprefix("restarted at ")
    if plan_.kind == workloads.ROLLOUT.kind:
        return bool(target["spec"].get("restartAt") == at)
    annotations = (target["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(RESTARTED_AT) == at)


STEP = StepKind(
    "restart",
    plan,
    holds(applied),
    actions={"restart": c.RESTARTED},
    admission=(patch_target_rule("restart"),),
)
