"""The escalation ladder: steps in order, skipped ones explained, scale-up verified by latency."""

from __future__ import annotations

import pytest
from conftest import Cluster, deployment, wait_for
from scenarios import condition, policy, wait_phase

LATENCY = (
    'sum(rate(http_request_duration_seconds_sum{namespace="{{ namespace }}",deployment="{{ deployment }}"}[5s]))'
    ' / sum(rate(http_request_duration_seconds_count{namespace="{{ namespace }}",deployment="{{ deployment }}"}[5s]))'
)
# 40 rps offered to pods that each handle 10: two pods are 100 % overloaded (latency 20ms -> 220ms)
OVERLOADED = {
    "sim.hemostat.dev/load-rps": "40",
    "sim.hemostat.dev/capacity-rps": "10",
    "sim.hemostat.dev/latency-ms": "20",
}


def latency_policy(name: str, steps: list[dict], verify_for: str = "6s") -> dict:
    doc = policy(name, steps=steps, verify_for=verify_for)
    doc["spec"]["signals"] = [
        {"name": "latency", "prometheus": {"query": LATENCY}, "breachWhen": {"above": 0.1}, "for": "2s"}
    ]
    doc["spec"]["severity"] = []
    return doc


def reasons(inc: dict) -> list[str]:
    return [e["reason"] for e in inc["status"]["timeline"]]


@pytest.mark.image
def test_overload_skips_rollback_then_scales_up_and_latency_recovers(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    operators.start(namespace)
    testenv.apply(deployment("feed", replicas=2, annotations=OVERLOADED), namespace)
    testenv.apply(latency_policy("feed", [{"rollback": {}}, {"scaleUp": {"factor": 2, "maxReplicas": 10}}]), namespace)
    inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
    skipped, scaled = inc["status"]["actions"]
    assert (skipped["step"], skipped["result"]) == ("rollback", "Skipped")
    assert skipped["message"] == "no revision older than 1 is left to roll back to"
    assert (scaled["step"], scaled["result"], scaled["from"], scaled["to"]) == (
        "scaleUp",
        "Succeeded",
        "2 replicas",
        "4 replicas",
    )
    assert reasons(inc) == ["Detected", "Attributed", "MitigationSkipped", "ScaledUp", "Recovered"]
    assert float(inc["status"]["evidence"][0]["value"]) > 0.1
    assert testenv.get("deployment", "feed", namespace)["spec"]["replicas"] == 4


def test_hpa_owned_deployment_gets_its_hpa_raised(testenv: Cluster, namespace: str, simulator, operators) -> None:
    operators.start(namespace)
    testenv.apply(deployment("feedh", replicas=2, annotations=OVERLOADED), namespace)
    testenv.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "feedh"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "feedh"},
                "minReplicas": 2,
                "maxReplicas": 8,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                    }
                ],
            },
        },
        namespace,
    )
    testenv.apply(latency_policy("feedh", [{"scaleUp": {"factor": 2, "maxReplicas": 10}}], verify_for="20s"), namespace)
    inc = wait_phase(testenv, namespace, "Resolved", timeout=180)
    (action,) = inc["status"]["actions"]
    assert (action["action"], action["from"], action["to"]) == (
        "scaleUpHpa",
        "HPA feedh minReplicas 2",
        "minReplicas 4",
    )
    assert testenv.get("hpa", "feedh", namespace)["spec"]["minReplicas"] == 4
    # the HPA controller, not Hemostat, scaled the Deployment: no marker on it
    dep = testenv.get("deployment", "feedh", namespace)
    assert dep["spec"]["replicas"] == 4
    assert "hemostat.dev/mitigation" not in (dep["metadata"].get("annotations") or {})


def test_a_ladder_that_cannot_help_escalates_with_every_step_recorded(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    operators.start(namespace)
    bad = deployment("broken", replicas=2, annotations={"sim.hemostat.dev/error-rate": "0.5"})
    testenv.apply(bad, namespace)
    steps = [
        {"rollback": {}},
        {"scaleUp": {"factor": 2, "maxReplicas": 3}},
        {"disableFlag": {"configMap": {"name": "flags", "flag": "x"}}},
    ]
    testenv.apply(policy("broken", steps=steps, verify_for="4s"), namespace)
    inc = wait_phase(testenv, namespace, "Escalated", timeout=120)
    assert [(a["step"], a["result"]) for a in inc["status"]["actions"]] == [
        ("rollback", "Skipped"),
        ("scaleUp", "Succeeded"),
        ("disableFlag", "Skipped"),
    ]
    assert inc["status"]["actions"][1]["to"] == "3 replicas"  # 2 x 2 capped by maxReplicas 3
    assert reasons(inc) == ["Detected", "Attributed", "MitigationSkipped", "ScaledUp", "MitigationSkipped", "Escalated"]
    assert condition(inc, "Escalated")["status"] == "True"
    assert "tried: rollback, scaleUp, disableFlag" in condition(inc, "Escalated")["message"]
    wait_for("3 replicas", lambda: testenv.get("deployment", "broken", namespace)["spec"]["replicas"] == 3, 10)
