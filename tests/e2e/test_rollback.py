"""The core loop on the real control plane, real Prometheus and the traffic simulator.

A bad rollout is detected from Prometheus, rolled back through the real
Deployment/ReplicaSet revision machinery, verified, and recorded as an
Incident whose timeline holds the real values.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Cluster, wait_for
from kubernetes import client
from kubernetes import config as kube_config
from scenarios import (
    BATCHED_ERROR_RATIO,
    app,
    condition,
    deployment_state,
    events,
    incidents,
    policy,
    rollout,
    target_verdict,
    wait_phase,
    wait_ready,
)


def _iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _healthy_baseline(testenv: Cluster, ns: str, name: str, operators, **policy_args) -> None:
    testenv.apply(app(name, f"registry.local/{name}:v1"), ns)
    wait_ready(testenv, ns, name)
    testenv.apply(policy(name, **policy_args), ns)
    wait_for("a healthy verdict", lambda: target_verdict(testenv, ns, name, name) == "Healthy", timeout=60)


@pytest.mark.image
def test_bad_rollout_is_rolled_back_and_resolved(testenv: Cluster, namespace: str, simulator, operators) -> None:
    operators.start(namespace)
    _healthy_baseline(testenv, namespace, "checkout", operators)
    started = datetime.now(UTC).replace(microsecond=0)
    rollout(testenv, namespace, "checkout", "registry.local/checkout:v2", error_rate=0.5)

    inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
    status = inc["status"]

    assert deployment_state(testenv, namespace, "checkout") == ("3", "registry.local/checkout:v1")
    (action,) = status["actions"]
    assert action["step"] == "rollback" and action["result"] == "Succeeded"
    assert action["from"] == "revision 2 (registry.local/checkout:v2)"
    assert action["to"] == "revision 1 (registry.local/checkout:v1)"
    assert [e["reason"] for e in status["timeline"]] == ["Detected", "Attributed", "RolledBack", "Recovered"]
    (evidence,) = status["evidence"]
    value = float(evidence["value"])
    assert 0.05 < value <= 0.5 + 1e-6  # between the threshold and the simulated 50 % error rate
    # severity follows the value read at detection: the SEV1 rule is "> 0.4", the default SEV3
    assert inc["spec"]["severity"] == ("SEV1" if value > 0.4 else "SEV3")
    assert inc["spec"]["summary"] == f"error-rate {evidence['value']} > 0.05 at revision 2"
    assert status["revision"] == 2 and status["image"] == "registry.local/checkout:v2"

    # every time is real, UTC, ordered, and after the bad rollout began
    started_at, detected, mitigated, resolved = (
        _iso(status[k]) for k in ("startedAt", "detectedAt", "mitigatedAt", "resolvedAt")
    )
    assert started <= started_at <= detected <= mitigated <= resolved
    assert status["timeToMitigate"] and status["timeToResolve"]
    assert condition(inc, "Resolved")["status"] == "True"

    # the timeline is also posted as Events, on the Incident and on the Deployment
    name = inc["metadata"]["name"]
    assert {"Detected", "RolledBack", "Recovered"} <= {
        e["reason"] for e in events(testenv, namespace, "Incident", name)
    }
    assert "RolledBack" in {e["reason"] for e in events(testenv, namespace, "Deployment", "checkout")}
    table = testenv.kubectl("get", "incidents", "-n", namespace).stdout
    assert "Resolved" in table and "rollback" in table and inc["spec"]["severity"] in table
    described = testenv.kubectl("describe", "incident", name, "-n", namespace).stdout
    assert "RolledBack" in described and "revision 2 (registry.local/checkout:v2)" in described
    (row,) = testenv.kubectl("get", "mp", "-n", namespace, "--no-headers").stdout.splitlines()
    assert row.split()[:4] == ["checkout", "1", "0", "True"]  # name, targets, open incidents, valid

    # the postmortem names what changed: the bad revision's template against what runs now
    pm = subprocess.run(
        [sys.executable, "-m", "hemostat", "postmortem", name, "-n", namespace],
        capture_output=True,
        text=True,
        env=testenv.env,
        timeout=60,
    )
    assert pm.returncode == 0, pm.stderr
    assert "-  - image: registry.local/checkout:v2" in pm.stdout
    assert "+  - image: registry.local/checkout:v1" in pm.stdout
    assert "sim.hemostat.dev/error-rate: '0.5'" in pm.stdout


def test_healthy_rollout_opens_no_incident(testenv: Cluster, namespace: str, simulator, operators) -> None:
    operators.start(namespace)
    _healthy_baseline(testenv, namespace, "catalog", operators)
    rollout(testenv, namespace, "catalog", "registry.local/catalog:v2", error_rate=0.0)
    wait_ready(testenv, namespace, "catalog")
    # Absence needs a time bound: well past `for` (2s) and the 5s rate window, verdicts stay Healthy.
    deadline = datetime.now(UTC).timestamp() + 12
    while datetime.now(UTC).timestamp() < deadline:
        assert target_verdict(testenv, namespace, "catalog", "catalog") == "Healthy"
        assert incidents(testenv, namespace) == []
    assert deployment_state(testenv, namespace, "catalog") == ("2", "registry.local/catalog:v2")


def test_dry_run_records_but_leaves_the_deployment(testenv: Cluster, namespace: str, simulator, operators) -> None:
    operators.start(namespace)
    _healthy_baseline(testenv, namespace, "search", operators, dry_run=True, verify_for="4s")
    rollout(testenv, namespace, "search", "registry.local/search:v2", error_rate=0.3)

    inc = wait_phase(testenv, namespace, "Escalated", timeout=120)
    (action,) = inc["status"]["actions"]
    assert action["result"] == "DryRun"
    assert action["from"] == "revision 2 (registry.local/search:v2)"
    assert action["to"] == "revision 1 (registry.local/search:v1)"
    assert [e["reason"] for e in inc["status"]["timeline"]] == ["Detected", "Attributed", "DryRun", "Escalated"]
    assert deployment_state(testenv, namespace, "search") == ("2", "registry.local/search:v2")


def _kill_when(proc, condition, stop: threading.Event) -> None:
    """Fault injection from outside: SIGKILL the operator the moment the world shows its patch."""
    while not stop.is_set():
        if condition():
            proc.kill()
            return
        time.sleep(0.005)


def test_operator_killed_after_the_patch_rolls_back_exactly_once(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    doomed = operators.start(namespace)
    _healthy_baseline(testenv, namespace, "cart", operators)
    apps = client.AppsV1Api(kube_config.new_client_from_config(config_file=testenv.kubeconfig))

    def rolled_back() -> bool:
        d = apps.read_namespaced_deployment("cart", namespace)
        return d.spec.template.spec.containers[0].image == "registry.local/cart:v1" and d.metadata.generation > 2

    stop = threading.Event()
    killer = threading.Thread(target=_kill_when, args=(doomed, rolled_back, stop), daemon=True)
    rollout(testenv, namespace, "cart", "registry.local/cart:v2", error_rate=0.5)
    killer.start()
    try:
        wait_for("the operator to be killed right after its patch", lambda: not doomed.alive(), timeout=90)
    finally:
        stop.set()
    assert deployment_state(testenv, namespace, "cart") == ("3", "registry.local/cart:v1")

    operators.start(namespace)
    inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
    status = inc["status"]
    (action,) = status["actions"]
    assert action["result"] == "Succeeded"
    assert action["to"] == "revision 1 (registry.local/cart:v1)"
    # what was detected before the crash is what the record says, not what the world looks like now
    assert (status["revision"], status["image"]) == (2, "registry.local/cart:v2")
    assert [e["reason"] for e in status["timeline"]] == ["Detected", "Attributed", "RolledBack", "Recovered"]
    assert status["detectedAt"] <= action["at"]
    # exactly one rollback: revision 3 is the undo; a second undo would have made revision 4
    assert deployment_state(testenv, namespace, "cart") == ("3", "registry.local/cart:v1")


def test_canary_is_scaled_to_zero(testenv: Cluster, namespace: str, simulator, operators) -> None:
    operators.start(namespace)
    testenv.apply(app("shop", "registry.local/shop:v1", replicas=3), namespace)
    canary = app(
        "shop-canary", "registry.local/shop:v2", error_rate=0.6, replicas=1, labels={"hemostat.dev/canary-of": "shop"}
    )
    testenv.apply(canary, namespace)
    testenv.apply(policy("shop-canary", verify_for="4s"), namespace)

    inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
    (action,) = inc["status"]["actions"]
    assert action["action"] == "scaleToZero" and action["result"] == "Succeeded"
    assert inc["status"]["lastMitigation"] == "scaleToZero"
    assert testenv.get("deployment", "shop-canary", namespace)["spec"]["replicas"] == 0
    assert testenv.get("deployment", "shop", namespace)["spec"]["replicas"] == 3  # stable untouched


def test_a_batched_policy_reads_every_target_with_one_query_and_rolls_back_the_bad_one(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    operators.start(namespace)
    for name in ("pay", "ship", "mail"):
        testenv.apply(app(name, f"registry.local/{name}:v1", labels={"tier": "shop"}), namespace)
        wait_ready(testenv, namespace, name)
    body = policy("shop")
    body["spec"]["target"]["selector"] = {"matchLabels": {"tier": "shop"}}
    body["spec"]["signals"][0]["prometheus"] = {"query": BATCHED_ERROR_RATIO, "batch": {}}
    testenv.apply(body, namespace)

    def all_healthy() -> bool:
        targets = testenv.get("mitigationpolicy", "shop", namespace).get("status", {}).get("targets", [])
        return len(targets) == 3 and all(t["verdicts"] == {"error-rate": "Healthy"} for t in targets)

    wait_for("three healthy verdicts from one batched query", all_healthy, timeout=60)
    rollout(testenv, namespace, "ship", "registry.local/ship:v2", error_rate=0.5)
    inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
    assert inc["spec"]["target"]["name"] == "ship"
    assert deployment_state(testenv, namespace, "ship") == ("3", "registry.local/ship:v1")
    for other in ("pay", "mail"):
        assert deployment_state(testenv, namespace, other) == ("1", f"registry.local/{other}:v1")
    (evidence,) = inc["status"]["evidence"]
    assert 'deployment=~"mail|pay|ship"' in evidence["query"]  # the round's targets, one query


def test_a_bad_rollout_is_caught_by_the_rollout_watch_not_the_interval(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    # An hour between regular evaluations: only the rollout watch (woken by the new revision,
    # then every second for its window) can catch this rollout in time.
    operators.start(namespace)
    testenv.apply(app("slow", "registry.local/slow:v1"), namespace)
    wait_ready(testenv, namespace, "slow")
    body = policy("slow", for_="0s")
    body["spec"]["interval"] = "1h"
    body["spec"]["mitigation"]["rolloutWatch"] = {"window": "5s", "interval": "1s"}
    testenv.apply(body, namespace)
    wait_for("a healthy verdict", lambda: target_verdict(testenv, namespace, "slow", "slow") == "Healthy", timeout=60)

    def window_over() -> bool:  # the loop is now asleep for its hour
        (target,) = testenv.get("mitigationpolicy", "slow", namespace)["status"]["targets"]
        return datetime.now(UTC) - _iso(target["revisionSince"]) > timedelta(seconds=6)

    wait_for("the rollout window of v1 to pass", window_over, timeout=60)
    rollout(testenv, namespace, "slow", "registry.local/slow:v2", error_rate=0.5)
    wait_for(
        "the rollback",
        lambda: deployment_state(testenv, namespace, "slow") == ("3", "registry.local/slow:v1"),
        timeout=60,
    )
