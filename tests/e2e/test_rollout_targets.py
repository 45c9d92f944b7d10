"""Argo Rollouts as a target, against the real Argo Rollouts controller.

A policy targets `Rollout`s by the same selector as Deployments (spec.target.kind: Rollout). A bad
canary is aborted the way `kubectl argo rollouts abort` does it; Argo then scales the canary down and
the stable revision keeps serving. A bad Rollout that was already promoted is undone to the revision
before it (`kubectl argo rollouts undo`). The operator runs with exactly the chart's permissions
(argoRollouts.enabled=true), as its ServiceAccount.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from chart import token_kubeconfig
from conftest import Cluster, install_chart, wait_for
from scenarios import ERROR_RATE, incident_of, policy, wait_phase

if TYPE_CHECKING:
    from gitops import Controllers

pytest_plugins = ["gitops"]  # argo_rollouts: the real controller, built once and cached
pytestmark = pytest.mark.timeout(3600)  # the first test of a session may build the controller (cold: minutes)

RESOURCE = "rollouts.argoproj.io"
GOOD, BAD = ("registry.local/shop:v1", 0.0), ("registry.local/shop:v2", 1.0)


@pytest.fixture
def as_the_chart(testenv: Cluster, crds: None, namespace: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of an operator acting as the chart's ServiceAccount, with argoRollouts.enabled."""
    with install_chart(testenv, namespace, "argoRollouts.enabled=true") as (release, system):
        kubeconfig = token_kubeconfig(testenv, f"{release}-hemostat", system, namespace, tmp_path / "sa.kubeconfig")
        yield {"KUBECONFIG": str(kubeconfig)}


def shop(steps: list[dict[str, Any]], replicas: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "shop", "labels": {"app": "shop"}},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": template(*GOOD),
            "strategy": {"canary": {"steps": steps}},
        },
    }


def template(image: str, error_rate: float) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "shop"}, "annotations": {ERROR_RATE: str(error_rate)}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def rollout_of(testenv: Cluster, ns: str) -> dict[str, Any]:
    return testenv.get(RESOURCE, "shop", ns)


def settled(testenv: Cluster, ns: str, phase: str) -> dict[str, Any] | None:
    ro = rollout_of(testenv, ns)
    s = ro.get("status", {})
    return ro if s.get("observedGeneration") == str(ro["metadata"]["generation"]) and s.get("phase") == phase else None


def set_image(testenv: Cluster, ns: str, image: str, error_rate: float) -> None:
    patch = {"spec": {"template": template(image, error_rate)}}
    testenv.kubectl("patch", RESOURCE, "shop", "-n", ns, "--type=merge", "-p", json.dumps(patch))


def serving(testenv: Cluster, ns: str) -> dict[str, int]:
    """Ready Pods per image, from the ReplicaSets Argo manages."""
    out: dict[str, int] = {}
    listed = testenv.kubectl("get", "replicasets", "-n", ns, "-l", "app=shop", "-o", "json").stdout
    for rs in json.loads(listed)["items"]:
        image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
        out[image] = out.get(image, 0) + (rs.get("status", {}).get("readyReplicas") or 0)
    return out


def rollout_policy() -> dict[str, Any]:
    p = policy("shop", verify_for="5s")
    p["spec"]["target"]["kind"] = "Rollout"
    return p


def test_a_bad_canary_is_aborted_and_the_stable_revision_keeps_serving(
    testenv: Cluster, namespace: str, simulator, operators, argo_rollouts: Controllers, as_the_chart: dict[str, str]
) -> None:
    ns = namespace
    testenv.apply(shop([{"setWeight": 25}, {"pause": {}}]), ns)
    stable = wait_for("shop Healthy at v1", lambda: settled(testenv, ns, "Healthy"), timeout=90)["status"]["stableRS"]
    operators.start(ns, "--argo-rollouts", env=as_the_chart)
    testenv.apply(rollout_policy(), ns)

    set_image(testenv, ns, *BAD)  # one Pod of four runs v2 at the canary's pause
    inc = wait_phase(testenv, ns, "Resolved", timeout=120)
    assert inc["spec"]["target"] == {"kind": "Rollout", "name": "shop"}
    (action,) = inc["status"]["actions"]
    assert (action["step"], action["action"], action["result"]) == ("rollback", "abort", "Succeeded"), action
    assert action["from"] == f"canary revision 2 ({BAD[0]})" and action["to"] == f"stable revision 1 ({GOOD[0]})"
    reasons = [e["reason"] for e in inc["status"]["timeline"]]
    assert reasons[reasons.index("Attributed") :] == ["Attributed", "RolloutAborted", "Recovered"], reasons

    ro = rollout_of(testenv, ns)
    assert ro["status"]["abort"] is True and ro["status"]["stableRS"] == stable
    # Argo's own abort: the canary scaled down, v1 serves on all four Pods, the spec still asks for v2
    wait_for("v1 alone serving", lambda: serving(testenv, ns) == {GOOD[0]: 4, BAD[0]: 0}, timeout=60)
    assert ro["spec"]["template"]["spec"]["containers"][0]["image"] == BAD[0]
    annotations = ro["metadata"]["annotations"]
    assert json.loads(annotations["hemostat.dev/mitigation"])["action"] == "abort"
    (entry,) = json.loads(annotations["hemostat.dev/actions"])
    assert entry["action"] == "abort" and entry["undone"] == f"shop-{ro['status']['currentPodHash']}"

    # one query a round for one target and one signal: the policy's cost in the shared query slots
    assert testenv.get("mitigationpolicy", "shop", ns)["status"]["queriesPerRound"] == 1
    # `kubectl get incidents` names the kind
    table = testenv.kubectl("get", "incidents", "-n", ns).stdout.splitlines()
    header, row = table[0].split(), table[1].split()
    assert row[header.index("KIND")] == "Rollout" and row[header.index("TARGET")] == "shop", table
    forbidden = [line for line in operators.logs().splitlines() if "Forbidden" in line]
    assert forbidden == [], forbidden


def test_a_promoted_bad_rollout_is_undone_to_the_revision_before(
    testenv: Cluster, namespace: str, simulator, operators, argo_rollouts: Controllers, as_the_chart: dict[str, str]
) -> None:
    ns = namespace
    # no steps: an update is promoted at once; the rollback window lets the undo skip the canary too
    body = shop([], replicas=2)
    body["spec"]["rollbackWindow"] = {"revisions": 2}
    testenv.apply(body, ns)
    wait_for("shop Healthy at v1", lambda: settled(testenv, ns, "Healthy"), timeout=90)
    set_image(testenv, ns, *BAD)

    def promoted() -> dict[str, Any] | None:
        ro = settled(testenv, ns, "Healthy")
        s = (ro or {}).get("status", {})
        return ro if ro and s.get("stableRS") == s.get("currentPodHash") and serving(testenv, ns).get(BAD[0]) else None

    wait_for("v2 promoted", promoted, timeout=90)
    operators.start(ns, "--argo-rollouts", env=as_the_chart)
    testenv.apply(rollout_policy(), ns)

    inc = wait_phase(testenv, ns, "Resolved", timeout=120)
    (action,) = inc["status"]["actions"]
    assert (action["action"], action["result"]) == ("rollback", "Succeeded"), action
    assert action["from"] == f"revision 2 ({BAD[0]})" and action["to"] == f"revision 1 ({GOOD[0]})"
    ro = rollout_of(testenv, ns)
    assert ro["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD[0]
    assert ro["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "3"  # as kubectl argo rollouts undo
    assert "rollouts-pod-template-hash" not in ro["spec"]["template"]["metadata"]["labels"]
    wait_for("v1 alone serving", lambda: serving(testenv, ns).get(BAD[0], 0) == 0, timeout=60)
    assert incident_of(testenv, ns, "shop") is not None
