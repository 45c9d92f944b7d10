"""The kinds of workload a policy can target, and where each keeps what the steps read. Pure values.

A Deployment and an Argo Rollouts `Rollout` share the shape the cycle needs (spec.replicas,
spec.template, spec.paused, ReplicaSets owned by it, one per revision), but name the revision
annotation and the template-hash label differently, and live in different API groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

TargetKind = Literal["Deployment", "Rollout"]


@dataclass(frozen=True)
class Workload:
    kind: TargetKind
    api_version: str
    plural: str
    revision: str  # the annotation on the workload and its ReplicaSets holding the revision number
    template_hash: str  # the label on its ReplicaSets and Pods holding the pod-template hash

    @property
    def api(self) -> tuple[str, str, str]:
        """(group, version, plural), as the custom-objects API takes them."""
        group, _, version = self.api_version.rpartition("/")
        return group, version, self.plural

    def ref(self, name: str) -> str:
        """How kubectl names it: deployment/shop, rollout/shop."""
        return f"{self.kind.lower()}/{name}"


DEPLOYMENT = Workload("Deployment", "apps/v1", "deployments", "deployment.kubernetes.io/revision", "pod-template-hash")
ROLLOUT = Workload(
    "Rollout", "argoproj.io/v1alpha1", "rollouts", "rollout.argoproj.io/revision", "rollouts-pod-template-hash"
)
KINDS: dict[str, Workload] = {w.kind: w for w in (DEPLOYMENT, ROLLOUT)}


def of(body: Mapping[str, Any]) -> Workload:
    """The workload kind of a target object (the caches keep `kind`; a Deployment when absent)."""
    return KINDS.get(str(body.get("kind") or "Deployment"), DEPLOYMENT)
