"""The Kubernetes objects a cycle writes, assembled from its decisions: the Incident it opens, the
patch that carries a step with its ledger entry. Pure; the decisions are in plan.py, the writes in apply.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from .. import workloads
from ..actions.base import Objects, Plan, guard
from ..decide import ledger, reconcilers
from ..decide import lifecycle as lc
from ..models.common import API_VERSION
from ..models.incident import IncidentSpec, IncidentStatus
from .snapshot import DETECTION, POLICY_LABEL, TARGET_LABEL

Body = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """A step to carry out: the guarded patch of the changed object, and the ledger entry."""

    act: lc.Act
    plan: Plan
    patch: list[Body]  # the plan's patch, plus the ledger entry when the object is the Deployment
    ledger_patch: list[Body] | None  # the ledger entry on the Deployment, written first otherwise
    objects: Objects
    # the ledger entry alone, written when the server refuses a change it travelled with: a
    # refused step counts for cooldown and budget like any other
    ledger_if_refused: list[Body] | None = None
    # a GitOps reconciler's own object paused before the step (decide/reconcilers.py)
    before: reconcilers.ObjectPause | None = None


def incident_name(target: str, policy: str, now: datetime) -> str:
    """Unique per (target, policy, second): two policies opening at once never collide."""
    suffix = f"-{now:%Y%m%d-%H%M%S}-{hashlib.sha1(policy.encode()).hexdigest()[:4]}"
    return target[: 253 - len(suffix)].rstrip("-.") + suffix


def label_value(name: str) -> str:
    """A Deployment name as a label value (at most 63 characters; long names keep a hash)."""
    if len(name) <= 63:
        return name
    return f"{name[:54].rstrip('-.')}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def change_for(move: lc.Act, planned: Plan, objects: Objects, entry: ledger.Entry) -> Change:
    meta = objects.deployment["metadata"]
    annotations = meta.get("annotations") or {}
    value = ledger.with_entry(annotations, entry)
    entry_op = {"op": "add", "path": f"/metadata/annotations/{_escape(ledger.LEDGER)}", "value": value}
    # Guarded by what the entry depends on (the spec and the annotations, where the ledger and a
    # person's pause live), not the resourceVersion: status churns all through a rollout.
    alone = [
        *guard(meta),
        entry_op if annotations else {"op": "add", "path": "/metadata/annotations", "value": {ledger.LEDGER: value}},
    ]
    if planned.kind == workloads.of(objects.deployment).kind:
        # Every plan of the target leaves an annotations map (its marker); the entry follows it.
        return Change(move, planned, [*planned.patch, entry_op], None, objects, ledger_if_refused=alone)
    return Change(move, planned, planned.patch, alone, objects)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def incident_body(
    name: str, namespace: str, policy: str, target: str, spec: IncidentSpec, first: IncidentStatus
) -> Body:
    """A policy's new Incident. Its first status travels with it in an annotation, created atomically:
    a crash before the first status write loses nothing (see snapshot.open_incident)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Incident",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {POLICY_LABEL: policy, TARGET_LABEL: label_value(target)},
            "annotations": {DETECTION: json.dumps(dump(first), sort_keys=True)},
        },
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }
