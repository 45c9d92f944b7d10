"""Scale up: replicas x factor, capped by the step's maxReplicas.

When a HorizontalPodAutoscaler targets the Deployment, its minReplicas is raised
instead (within the HPA's own maxReplicas), so Hemostat never fights the
autoscaler over spec.replicas; the HPA controller then scales the Deployment.
Patches are JSON patches guarded by the object they were planned on (base.guard),
with the marker annotation in the same request (see base.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import workloads
from ..clock import now_iso
from ..decide import conditions as c
from ..models.policy import ScaleUpStep
from .base import (
    AdmissionRule,
    Context,
    Done,
    Objects,
    Plan,
    Skip,
    StepKind,
    guard,
    holds,
    marker_op,
    marker_value,
    patch_target_rule,
    read_marker,
)


@dataclass(frozen=True)
class Hpa:
    name: str
    guard: tuple[dict[str, Any], ...]
    min_replicas: int
    max_replicas: int
    annotations: dict[str, str]


@dataclass(frozen=True)
class Facts:
    name: str
    guard: tuple[dict[str, Any], ...]
    replicas: int
    annotations: dict[str, str]
    hpa: Hpa | None
    kind: str = "Deployment"  # the target's (a Rollout scales the same way)


def facts_from(deployment: dict[str, Any], hpas: list[dict[str, Any]]) -> Facts:
    """Pure: the Deployment's (Rollout's) replicas and the HPA (autoscaling/v2) that targets it, if any."""
    meta, kind = deployment["metadata"], workloads.of(deployment).kind
    owner = None
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        if ref.get("kind") == kind and ref.get("name") == meta["name"]:
            owner = Hpa(
                name=h["metadata"]["name"],
                guard=tuple(guard(h["metadata"])),
                min_replicas=int(h["spec"].get("minReplicas", 1)),
                max_replicas=int(h["spec"]["maxReplicas"]),
                annotations=dict(h["metadata"].get("annotations") or {}),
            )
    return Facts(
        name=meta["name"],
        guard=tuple(guard(meta)),
        replicas=int(deployment["spec"].get("replicas", 1)),
        annotations=dict(meta.get("annotations") or {}),
        hpa=owner,
        kind=kind,
    )


def plan(facts: Facts, step: ScaleUpStep, *, incident: str, index: int, now: datetime) -> Plan | Skip | Done:
    """Pure: the scale-up to apply, on the HPA when one owns the Deployment."""
    at = now_iso(now)
    done = read_marker(facts.hpa.annotations if facts.hpa else facts.annotations, incident, index, now)
    if done:
        return done
    wanted = math.ceil(facts.replicas * step.factor)
    if facts.hpa is None:
        target = min(wanted, step.max_replicas)
        if target <= facts.replicas:
            return Skip(f"already at {facts.replicas} replicas; the step's cap is maxReplicas {step.max_replicas}")
        frm, to = f"{facts.replicas} replicas", f"{target} replicas"
        return Plan(
            "scaleUp",
            frm,
            to,
            [
                *facts.guard,
                {"op": "replace", "path": "/spec/replicas", "value": target},
                marker_op(facts.annotations, marker_value(incident, index, "scaleUp", frm, to, at)),
            ],
            kind=facts.kind,
        )
    hpa = facts.hpa
    target = min(wanted, step.max_replicas, hpa.max_replicas)
    if target <= hpa.min_replicas:
        return Skip(
            f"HPA {hpa.name} already has minReplicas {hpa.min_replicas}; the cap is "
            f"min(maxReplicas {step.max_replicas}, HPA maxReplicas {hpa.max_replicas})"
        )
    frm, to = f"HPA {hpa.name} minReplicas {hpa.min_replicas}", f"minReplicas {target}"
    return Plan(
        "scaleUpHpa",
        frm,
        to,
        [
            *hpa.guard,
            {"op": "replace", "path": "/spec/minReplicas", "value": target},
            marker_op(hpa.annotations, marker_value(incident, index, "scaleUpHpa", frm, to, at)),
        ],
        kind="HorizontalPodAutoscaler",
        name=hpa.name,
    )


def applied(obj: dict[str, Any], plan_: Plan) -> bool:
    """Verify: the patched object holds the planned value."""
    field = "minReplicas" if plan_.kind == "HorizontalPodAutoscaler" else "replicas"
    wanted = next(op["value"] for op in plan_.patch if op["path"] == f"/spec/{field}")
    return obj["spec"].get(field) == wanted


def _plan_step(objects: Objects, step: ScaleUpStep, ctx: Context) -> Plan | Skip | Done:
    return plan(
        facts_from(objects.deployment, list(objects.hpas)), step, incident=ctx.incident, index=ctx.index, now=ctx.now
    )


STEP = StepKind(
    "scaleUp",
    _plan_step,
    holds(applied),
    actions={"scaleUp": c.SCALED_UP, "scaleUpHpa": c.SCALED_UP},
    reads=frozenset({"hpas"}),
    admission=(
        patch_target_rule("scaleUp"),
        # it raises the minReplicas of whichever HPA targets the Deployment, not known at admission
        AdmissionRule(
            "variables.mayPatchHpas",
            "'spec.mitigation.scaleUp needs permission to patch horizontalpodautoscalers in namespace ' + variables.ns"
            " + ' (it raises the minReplicas of any HPA that targets ' + variables.resource + '/' + variables.target"
            " + '), which '"
            " + variables.who + ' does not have'",
        ),
    ),
)
