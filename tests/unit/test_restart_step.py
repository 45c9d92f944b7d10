"""The restart step (actions/restart.py): what `kubectl rollout restart` writes, never into a rollout in
progress, restart-safe by its marker; and a restart is never a version to roll back onto."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_rollback_plan import deployment_obj, pod_template, replicaset

from hemostat.actions import restart, rollback
from hemostat.actions.base import MARKER, Context, Done, Objects, Plan, Skip
from hemostat.actions.steps import STEPS
from hemostat.models.policy import MitigationPolicySpec, RestartStep, RollbackStep

NOW = datetime(2026, 11, 23, 14, 20, 0, tzinfo=UTC)
AT = "2026-11-23T14:20:00Z"
CTX = Context("checkout-1", 1, NOW, detected_revision=2)


def finished(dep: dict[str, Any], replicas: int = 3) -> dict[str, Any]:
    dep["status"] = {
        "observedGeneration": dep["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
    }
    return dep


def test_a_restart_writes_restarted_at_into_the_pod_template_with_its_marker() -> None:
    dep = finished(deployment_obj(2, "v2"))
    got = restart.plan(Objects(dep), RestartStep(), CTX)
    assert isinstance(got, Plan) and (got.action, got.kind) == ("restart", "Deployment")
    assert (got.from_, got.to) == ("Deployment checkout's Pods", f"restarted at {AT}")
    assert got.patch[0] == {"op": "test", "path": "/metadata/generation", "value": 5}
    change, marker = got.patch[-2:]
    assert change == {
        "op": "add",
        "path": "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
        "value": AT,
    }
    assert marker["path"] == "/metadata/annotations/hemostat.dev~1mitigation"
    patched = copy.deepcopy(dep)
    patched["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = AT
    assert restart.applied(patched, got) and not restart.applied(dep, got)
    # the marker makes it restart-safe: found again, it is done, never a second restart
    patched["metadata"]["annotations"][MARKER] = marker["value"]
    assert isinstance(restart.plan(Objects(patched), RestartStep(), CTX), Done)


def test_a_template_without_annotations_gets_the_map() -> None:
    dep = finished(deployment_obj(2, "v2"))
    del dep["spec"]["template"]["metadata"]["annotations"]
    got = restart.plan(Objects(dep), RestartStep(), CTX)
    assert isinstance(got, Plan)
    assert got.patch[-2] == {
        "op": "add",
        "path": "/spec/template/metadata/annotations",
        "value": {"kubectl.kubernetes.io/restartedAt": AT},
    }


@pytest.mark.parametrize(
    ("status", "paused", "reason"),
    [
        ({"updatedReplicas": 1, "replicas": 4, "availableReplicas": 3}, False, "a rollout is in progress (1 of 3"),
        ({"updatedReplicas": 3, "replicas": 3, "availableReplicas": 1}, False, "3 of 3 Pods updated, 1 available"),
        ({"observedGeneration": 4}, False, "last change is not rolled out yet"),
        ({}, True, "the Deployment is paused (spec.paused)"),
    ],
)
def test_never_into_a_rollout_in_progress_nor_a_paused_one(status: dict, paused: bool, reason: str) -> None:
    dep = finished(deployment_obj(2, "v2", paused=paused))
    dep["status"].update(status)
    got = restart.plan(Objects(dep), RestartStep(), CTX)
    assert isinstance(got, Skip) and reason in got.reason


def test_a_rollout_is_restarted_as_kubectl_argo_rollouts_restart_does() -> None:
    ro = finished(deployment_obj(2, "v2"))
    ro.update(apiVersion="argoproj.io/v1alpha1", kind="Rollout")
    ro["status"].update(currentPodHash="abc", stableRS="abc")
    got = restart.plan(Objects(ro), RestartStep(), CTX)
    assert isinstance(got, Plan) and got.kind == "Rollout"
    assert got.patch[-2] == {"op": "add", "path": "/spec/restartAt", "value": AT}
    ro["status"]["currentPodHash"] = "def"
    assert "update of the Rollout is in progress" in restart.plan(Objects(ro), RestartStep(), CTX).reason


def test_rollback_after_the_ladders_restart_goes_to_the_version_before() -> None:
    """restart, then rollback: the restart made revision 3 of the detected v2; the rollback is still for
    v2 (not 'a change someone else made') and goes to v1."""
    rss = [replicaset(1, "v1", created="2026-11-20T10:00:00Z"), replicaset(2, "v2", created="2026-11-23T14:00:00Z")]
    third = replicaset(3, "v2", created="2026-11-23T14:10:00Z", replicas=3)
    third["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = AT
    dep = deployment_obj(3, "v2")
    dep["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = AT
    facts = rollback.facts_from(dep, [*rss, third])
    got = rollback.plan(
        facts, RollbackStep(), incident="checkout-1", index=1, detected_revision=2,
        rollout_window=timedelta(hours=1), now=NOW,
    )  # fmt: skip
    assert isinstance(got, Plan) and got.to == "revision 1 (registry.example/checkout:v1)"
    assert got.patch[2]["value"] == pod_template("v1")


def test_restart_is_a_registered_step_a_policy_can_name() -> None:
    assert "restart" in STEPS and STEPS["restart"].actions == {"restart": "Restarted"}
    spec = MitigationPolicySpec.model_validate(
        {
            "target": {"selector": {"matchLabels": {"app": "web"}}},
            "signals": [{"name": "err", "prometheus": {"query": "q"}, "breachWhen": {"above": 0.05}}],
            "mitigation": {"steps": [{"restart": {}}, {"rollback": {}}]},
        }
    )
    assert [s.kind for s in spec.mitigation.steps] == ["restart", "rollback"]
    assert "restart" in spec.attribution.steps.deploy


def test_a_restart_of_a_template_without_annotations_is_the_same_version() -> None:
    """As the API server stores them: the restart's template has the one annotation, the original none."""
    first = replicaset(2, "v2")
    del first["spec"]["template"]["metadata"]["annotations"]
    again = copy.deepcopy(first)
    again["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"
    again["spec"]["template"]["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": AT}
    dep = deployment_obj(3, "v2")
    two, three = rollback.facts_from(dep, [first, again]).history
    assert three.same_version(two)
