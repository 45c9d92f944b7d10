"""What the operator refuses to do, and says so: invalid policy, pause, nothing to roll back to."""

from __future__ import annotations

import json

from conftest import Cluster, wait_for
from scenarios import app, condition, deployment_state, policy, rollout, target_verdict, wait_phase, wait_ready


def test_policy_the_api_server_let_through_is_reported_invalid(testenv: Cluster, namespace: str, operators) -> None:
    operators.start(namespace)
    bad = policy("typo")
    bad["spec"]["signals"][0]["prometheus"]["query"] = 'sum(rate(x{deployment="{{ deploymnet }}"}[5s]))'
    testenv.apply(bad, namespace)
    mp = wait_for(
        "Valid=False",
        lambda: (
            (p := testenv.get("mitigationpolicy", "typo", namespace))
            and (c := condition(p, "Valid"))
            and c["status"] == "False"
            and p
        ),
        timeout=30,
    )
    message = condition(mp, "Valid")["message"]
    assert "deploymnet" in message and "spec.signals[error-rate].prometheus.query" in message, message

    fixed = policy("typo")
    testenv.apply(fixed, namespace)
    wait_for(
        "Valid=True after the fix",
        lambda: condition(testenv.get("mitigationpolicy", "typo", namespace), "Valid")["status"] == "True",
        timeout=30,
    )


def test_paused_deployment_gets_an_incident_but_no_action(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    operators.start(namespace)
    testenv.apply(app("billing", "registry.local/billing:v1"), namespace)
    wait_ready(testenv, namespace, "billing")
    testenv.kubectl("annotate", "deployment", "billing", "-n", namespace, "hemostat.dev/paused=true")
    testenv.apply(policy("billing"), namespace)
    wait_for("healthy", lambda: target_verdict(testenv, namespace, "billing", "billing") == "Healthy", 60)
    rollout(testenv, namespace, "billing", "registry.local/billing:v2", error_rate=0.5)

    def held() -> dict | None:
        items = json.loads(testenv.kubectl("get", "incidents", "-n", namespace, "-o", "json").stdout)["items"]
        timeline = items[0].get("status", {}).get("timeline", []) if items else []
        return items[0] if any(e["reason"] == "MitigationHeld" for e in timeline) else None

    inc = wait_for("the step to be held", held, timeout=90)
    held_entries = [e for e in inc["status"]["timeline"] if e["reason"] == "MitigationHeld"]
    assert held_entries[0]["message"] == (
        "next step rollback held: actions paused: Deployment is annotated hemostat.dev/paused"
    )
    assert inc["status"].get("actions", []) == []
    assert deployment_state(testenv, namespace, "billing") == ("2", "registry.local/billing:v2")


def test_nothing_to_roll_back_to_is_skipped_then_escalated(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    operators.start(namespace)
    testenv.apply(app("fresh", "registry.local/fresh:v1", error_rate=0.5), namespace)  # bad from its first revision
    wait_ready(testenv, namespace, "fresh")
    testenv.apply(policy("fresh", verify_for="4s"), namespace)

    inc = wait_phase(testenv, namespace, "Escalated", timeout=90)
    (action,) = inc["status"]["actions"]
    assert action["result"] == "Skipped"
    assert action["message"] == "no revision older than 1 is left to roll back to"
    assert [e["reason"] for e in inc["status"]["timeline"]] == [
        "Detected",
        "Attributed",
        "MitigationSkipped",
        "Escalated",
    ]
    assert condition(inc, "Escalated")["status"] == "True"
    assert deployment_state(testenv, namespace, "fresh") == ("1", "registry.local/fresh:v1")
