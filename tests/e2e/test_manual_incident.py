"""A person declares an Incident and asks for the one-command rollback; the operator does it and records it."""

from __future__ import annotations

import subprocess
import sys

from conftest import Cluster, wait_for
from scenarios import app, deployment_state, rollout, wait_ready

from hemostat.cycle.plan import FROM_MARKER


def manual(name: str, target: str, mitigation: dict | None = None) -> dict:
    spec = {
        "severity": "SEV2",
        "summary": "checkout errors reported by support",
        "target": {"name": target},
        "source": "manual",
    }
    if mitigation is not None:
        spec["mitigation"] = mitigation
    return {"apiVersion": "hemostat.dev/v1alpha1", "kind": "Incident", "metadata": {"name": name}, "spec": spec}


def status(testenv: Cluster, ns: str, name: str) -> dict:
    return testenv.get("incident", name, ns).get("status", {})


def test_requested_rollback_is_carried_out_once_and_recorded(testenv: Cluster, namespace: str, operators) -> None:
    operators.start(namespace)
    testenv.apply(app("shopfront", "registry.local/shopfront:v1"), namespace)
    wait_ready(testenv, namespace, "shopfront")
    rollout(testenv, namespace, "shopfront", "registry.local/shopfront:v2", error_rate=0.0)
    wait_ready(testenv, namespace, "shopfront")

    testenv.apply(manual("support-1", "shopfront", {"rollback": {}}), namespace)
    st = wait_for(
        "the requested rollback", lambda: (s := status(testenv, namespace, "support-1")).get("actions") and s, 60
    )
    (action,) = st["actions"]
    assert (action["step"], action["index"], action["result"]) == ("rollback", -1, "Succeeded")
    assert FROM_MARKER not in action["message"], "recorded as made, not rebuilt from the marker"
    assert (action["from"], action["to"]) == (
        "revision 2 (registry.local/shopfront:v2)",
        "revision 1 (registry.local/shopfront:v1)",
    )
    assert deployment_state(testenv, namespace, "shopfront") == ("3", "registry.local/shopfront:v1")
    # the ReplicaSet cache may lag the Deployment's by a moment right after the rollout: a hold, never a skip
    held = [e["message"] for e in st["timeline"] if e["reason"] == "MitigationHeld"]
    assert all("has no ReplicaSet yet" in m for m in held), held
    assert [e["reason"] for e in st["timeline"] if e["reason"] != "MitigationHeld"] == ["Declared", "RolledBack"]
    assert st["phase"] == "Monitoring" and (st["revision"], st["image"]) == (2, "registry.local/shopfront:v2")

    # a person closes it; the operator records who did, and never rolls back again
    done = subprocess.run(
        [sys.executable, "-m", "hemostat", "incident", "resolve", "support-1", "-n", namespace, "--by", "carol"],
        capture_output=True,
        text=True,
        env=testenv.env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    st = wait_for(
        "Resolved", lambda: (s := status(testenv, namespace, "support-1")).get("phase") == "Resolved" and s, 30
    )
    assert st["timeline"][-1]["reason"] == "ResolvedByPerson"
    assert len(st["actions"]) == 1 and deployment_state(testenv, namespace, "shopfront")[0] == "3"


def test_paused_deployment_holds_the_request(testenv: Cluster, namespace: str, operators) -> None:
    operators.start(namespace)
    testenv.apply(app("vault", "registry.local/vault:v1"), namespace)
    wait_ready(testenv, namespace, "vault")
    testenv.kubectl("annotate", "deployment", "vault", "-n", namespace, "hemostat.dev/paused=true")
    testenv.apply(manual("support-2", "vault", {"scaleUp": {"factor": 2, "maxReplicas": 10}}), namespace)
    st = wait_for("a held request", lambda: (s := status(testenv, namespace, "support-2")).get("timeline") and s, 60)
    assert [e["reason"] for e in st["timeline"]] == ["Declared", "MitigationHeld"]
    assert st["timeline"][1]["message"] == (
        "requested scaleUp held: actions paused: Deployment is annotated hemostat.dev/paused"
    )
    assert testenv.get("deployment", "vault", namespace)["spec"]["replicas"] == 2

    # The hold ends: the request is carried out without anyone touching the Incident again.
    testenv.kubectl("annotate", "deployment", "vault", "-n", namespace, "hemostat.dev/paused-")
    wait_for(
        "the held request to run", lambda: testenv.get("deployment", "vault", namespace)["spec"]["replicas"] == 4, 60
    )
    st = status(testenv, namespace, "support-2")
    assert [(a["step"], a["result"]) for a in st["actions"]] == [("scaleUp", "Succeeded")]
