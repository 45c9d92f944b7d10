"""Is it the deploy? On the real control plane, real Prometheus and the simulator's faults outside the
Deployments: a shared outage after a healthy rollout is not rolled back; a bad rollout during one is."""

from __future__ import annotations

import json
import time
from typing import Any

from conftest import Cluster, wait_for
from scenarios import (
    BATCHED_ERROR_RATIO,
    app,
    deployment_state,
    incident_of,
    rolled_back,
    rollout,
    target_verdict,
    wait_ready,
)

FLEET = ("web", "cart", "api", "auth")
_BY = "sum by (namespace, deployment, pod_template_hash)"
_ALL = 'rate(http_requests_total{namespace="{{ namespace }}",deployment=~"{{ deployments }}"}[5s])'
_ERRORS = 'rate(http_requests_total{namespace="{{ namespace }}",deployment=~"{{ deployments }}",code="500"}[5s])'
BY_REVISION = f"({_BY} ({_ERRORS}) or {_BY} ({_ALL}) * 0) / {_BY} ({_ALL})"


def shop_policy(name: str = "shop", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": name},
        "spec": {
            "target": {"selector": {"matchLabels": labels or {"tier": "shop"}}},
            "interval": "1s",
            "signals": [
                {
                    "name": "error-rate",
                    "prometheus": {"query": BATCHED_ERROR_RATIO, "batch": {}},
                    "byRevision": {"query": BY_REVISION},
                    "breachWhen": {"above": 0.05},
                    "for": "2s",
                }
            ],
            "mitigation": {"steps": [{"rollback": {}}], "verifyFor": "5s"},
            "guardrails": {"cooldown": "1s"},
        },
    }


def fleet(testenv: Cluster, ns: str, web_apart: bool = False) -> None:
    """The four Deployments under the policy shop; with `web_apart`, web under a policy of its own, front."""
    for name in FLEET:
        tier = "front" if web_apart and name == "web" else "shop"
        testenv.apply(app(name, f"registry.local/{name}:v1", labels={"tier": tier}), ns)
    for name in FLEET:
        wait_ready(testenv, ns, name)
    testenv.apply(shop_policy(), ns)
    if web_apart:
        testenv.apply(shop_policy("front", {"tier": "front"}), ns)

    def all_healthy() -> bool:
        verdicts = [
            t.get("verdicts", {}).get("error-rate")
            for policy in ("shop", "front")[: 2 if web_apart else 1]
            for t in testenv.get("mp", policy, ns).get("status", {}).get("targets", [])
        ]
        return verdicts == ["Healthy"] * len(FLEET)

    wait_for("four healthy targets", all_healthy, timeout=90)


def healthy_release_of_web(testenv: Cluster, ns: str) -> None:
    rollout(testenv, ns, "web", "registry.local/web:v2", error_rate=0.0)
    wait_for("web's rollout done", lambda: deployment_state(testenv, ns, "web") == ("2", "registry.local/web:v2"))
    wait_ready(testenv, ns, "web")


def in_phase(testenv: Cluster, ns: str, target: str, *phases: str) -> dict[str, Any]:
    """The target's Incident once it is in one of `phases`."""

    def probe() -> dict[str, Any] | None:
        inc = incident_of(testenv, ns, target)
        return inc if inc and inc.get("status", {}).get("phase") in phases else None

    found: dict[str, Any] = wait_for(f"{target}'s incident {' or '.join(phases)}", probe, timeout=90)
    return found


def escalated(testenv: Cluster, ns: str, target: str) -> dict[str, Any]:
    return in_phase(testenv, ns, target, "Escalated")


def test_a_shared_outage_after_a_healthy_rollout_is_not_rolled_back(
    testenv: Cluster, namespace: str, simulator, operators, faults
) -> None:
    operators.start(namespace)
    fleet(testenv, namespace)
    healthy_release_of_web(testenv, namespace)
    faults({"kind": "dependency", "namespace": namespace, "deployments": list(FLEET), "errorRate": 0.3})

    inc = in_phase(testenv, namespace, "web", "Escalated", "Monitoring", "Resolved")  # told a person, or mitigated
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2"), "the good release stays"
    status = inc["status"]
    assert status["phase"] == "Escalated"
    attribution = status["attribution"]
    assert attribution["verdict"] == "global", attribution
    assert "3 of 3 untouched peers breach too" in attribution["reason"]
    assert {c["kind"] for c in attribution["evidence"]} == {"dataQuality", "contrast", "fleet", "traffic", "timing"}
    reasons = [e["reason"] for e in status["timeline"]]
    assert reasons[:2] == ["Detected", "Attributed"] and reasons[-1] == "Escalated"
    assert status.get("actions", []) == []

    # the outage ends: the incident resolves without any rollback
    faults()
    in_phase(testenv, namespace, "web", "Resolved")
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2")


def test_a_shared_outage_across_policies_is_not_blamed_on_one_policys_healthy_rollout(
    testenv: Cluster, namespace: str, simulator, operators, faults
) -> None:
    """web has a policy of its own: its peers are the other policy's targets, in the same namespace."""
    operators.start(namespace)
    fleet(testenv, namespace, web_apart=True)
    healthy_release_of_web(testenv, namespace)
    faults({"kind": "dependency", "namespace": namespace, "deployments": list(FLEET), "errorRate": 0.3})

    inc = in_phase(testenv, namespace, "web", "Escalated", "Monitoring", "Resolved")
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2"), "the good release stays"
    attribution = inc["status"]["attribution"]
    assert inc["spec"]["policyRef"]["name"] == "front"
    assert attribution["verdict"] == "global", attribution
    assert "3 of 3 untouched peers breach too" in attribution["reason"]
    assert inc["status"].get("actions", []) == []
    faults()


def test_a_bad_rollout_during_a_shared_outage_is_still_rolled_back(
    testenv: Cluster, namespace: str, simulator, operators, faults
) -> None:
    operators.start(namespace)
    fleet(testenv, namespace)
    healthy_release_of_web(testenv, namespace)
    faults({"kind": "dependency", "namespace": namespace, "deployments": list(FLEET), "errorRate": 0.2})
    assert escalated(testenv, namespace, "web")["status"]["attribution"]["verdict"] == "global"

    rollout(testenv, namespace, "web", "registry.local/web:v3", error_rate=1.0)  # a bad release, mid-outage

    status = rolled_back(testenv, namespace, "web")["status"]
    assert status["attribution"]["verdict"] == "deploy" and status["attribution"]["revision"] == 3, status
    (action,) = status["actions"]
    assert (
        action["from"] == "revision 3 (registry.local/web:v3)" and action["to"] == "revision 2 (registry.local/web:v2)"
    )
    assert deployment_state(testenv, namespace, "web") == ("4", "registry.local/web:v2")
    said = [e["message"] for e in status["timeline"] if e["reason"] == "Attributed"]
    assert said[0].startswith("cause: global") and said[-1].startswith("cause: deploy (was global)"), said


# A rollout that keeps both revisions serving for a minute: each new Pod must stay Ready 60 s
# before the next step, so the old revision is the control while attribution decides.
SLOW_ROLLOUT = {"minReadySeconds": 60, "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}


def rolling_web(testenv: Cluster, ns: str, error_rate: float, signal_for: str = "2s") -> None:
    """web alone under its policy, then a rollout to v2 (`error_rate` on the new Pods) left in progress."""
    testenv.apply(app("web", "registry.local/web:v1", **SLOW_ROLLOUT), ns)
    wait_ready(testenv, ns, "web")
    policy = shop_policy("web", {"app": "web"})
    policy["spec"]["signals"][0]["for"] = signal_for
    testenv.apply(policy, ns)
    wait_for("web healthy", lambda: target_verdict(testenv, ns, "web", "web") == "Healthy", timeout=60)
    rollout(testenv, ns, "web", "registry.local/web:v2", error_rate=error_rate)


def test_while_both_revisions_serve_a_cause_they_share_is_not_the_deploy(
    testenv: Cluster, namespace: str, simulator, operators, faults
) -> None:
    operators.start(namespace)
    rolling_web(testenv, namespace, error_rate=0.0)
    wait_for("v2 serving beside v1", lambda: len(serving_revisions(testenv, namespace, "web")) == 2, timeout=60)
    faults({"kind": "dependency", "namespace": namespace, "deployments": ["web"], "errorRate": 0.3})

    inc = escalated(testenv, namespace, "web")
    attribution = inc["status"]["attribution"]
    assert attribution["verdict"] == "dependency", attribution
    contrast = next(c for c in attribution["evidence"] if c["kind"] == "contrast")
    assert contrast["says"] == "shared" and "both revisions breach alike" in contrast["detail"], contrast
    assert inc["status"].get("actions", []) == []
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2"), "the rollout goes on"


def test_a_cause_that_begins_as_the_new_revision_serves_is_compared_over_the_same_seconds(
    testenv: Cluster, namespace: str, simulator, operators, faults
) -> None:
    """The dependency fails as v2's first Pod begins to serve and the policy acts on the first reading
    (`for: 0s`): v2's series are younger than the signal's 5 s window, so its rate covers only the failing
    seconds while v1's still averages in healthy ones. Compared then, v2 reads worse and is rolled back."""
    operators.start(namespace)
    rolling_web(testenv, namespace, error_rate=0.0, signal_for="0s")
    wait_for("v2 serving beside v1", lambda: len(serving_revisions(testenv, namespace, "web")) == 2, timeout=60)
    faults({"kind": "dependency", "namespace": namespace, "deployments": ["web"], "errorRate": 0.3})

    inc = in_phase(testenv, namespace, "web", "Escalated", "Monitoring", "Resolved")
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2"), "the good release stays"
    attribution = inc["status"]["attribution"]
    assert attribution["verdict"] == "dependency", attribution
    assert inc["status"].get("actions", []) == []


def test_while_both_revisions_serve_a_new_revision_failing_alone_is_rolled_back(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    operators.start(namespace)
    rolling_web(testenv, namespace, error_rate=1.0)

    attribution = rolled_back(testenv, namespace, "web")["status"]["attribution"]
    assert attribution["verdict"] == "deploy" and attribution["confidence"] == 0.95, attribution["evidence"]
    assert "only the new revision breaches" in attribution["reason"]
    assert deployment_state(testenv, namespace, "web") == ("3", "registry.local/web:v1")


def test_a_finished_rollout_is_judged_on_what_serves_now_not_one_window_later(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    """v2 fails 20 % of its requests and replaces v1 at once. For one 5 s window the Deployment's rate still
    averages v1's healthy seconds in and reads under the 10 % bound; v2's own reading is 0.2 from its first
    samples, and that is what is detected and rolled back."""
    operators.start(namespace)
    testenv.apply(app("web", "registry.local/web:v1"), namespace)
    wait_ready(testenv, namespace, "web")
    policy = shop_policy("web", {"app": "web"})
    policy["spec"]["signals"][0] |= {"breachWhen": {"above": 0.1}, "for": "0s"}
    testenv.apply(policy, namespace)
    wait_for("web healthy", lambda: target_verdict(testenv, namespace, "web", "web") == "Healthy", timeout=60)
    rollout(testenv, namespace, "web", "registry.local/web:v2", error_rate=0.2)

    status = rolled_back(testenv, namespace, "web")["status"]
    detected = next(e["message"] for e in status["timeline"] if e["reason"] == "Detected")
    assert detected.startswith("error-rate 0.2 > 0.1 at revision 2"), detected
    assert deployment_state(testenv, namespace, "web") == ("3", "registry.local/web:v1")


def serving_revisions(testenv: Cluster, ns: str, name: str) -> list[str]:
    sets = json.loads(testenv.kubectl("get", "rs", "-n", ns, "-l", f"app={name}", "-o", "json").stdout)["items"]
    return [
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        for rs in sets
        if rs["status"].get("readyReplicas")
    ]


def stalling_rollout_of_web(testenv: Cluster, ns: str, template: dict[str, Any]) -> None:
    """web alone under its policy, healthy, then a rollout to v2 whose Pods never become available."""
    testenv.apply(app("web", "registry.local/web:v1", progressDeadlineSeconds=10), ns)
    wait_ready(testenv, ns, "web")
    policy = shop_policy("web", {"app": "web"})
    policy["spec"]["attribution"] = {"unknown": {"hold": "5s"}}
    testenv.apply(policy, ns)
    wait_for("web healthy", lambda: target_verdict(testenv, ns, "web", "web") == "Healthy", timeout=60)
    patch = {"spec": {"template": template}}
    testenv.kubectl("patch", "deployment", "web", "-n", ns, "--type=strategic", "-p", json.dumps(patch))


def test_a_revision_that_crashes_at_start_is_rolled_back_at_its_progress_deadline(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    operators.start(namespace)
    crashing = {  # kwok's stage from hack/kwok-crash-stage.yaml: the new Pods wait in CrashLoopBackOff
        "metadata": {"annotations": {"sim.hemostat.dev/crash": "true"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/web:v2"}]},
    }
    stalling_rollout_of_web(testenv, namespace, crashing)

    status = rolled_back(testenv, namespace, "web")["status"]
    assert deployment_state(testenv, namespace, "web") == ("3", "registry.local/web:v1")
    (action,) = status["actions"]
    assert (
        action["from"] == "revision 2 (registry.local/web:v2)" and action["to"] == "revision 1 (registry.local/web:v1)"
    )
    attribution = status["attribution"]
    assert attribution["verdict"] == "deploy" and attribution["revision"] == 2, attribution
    assert "has timed out progressing" in attribution["reason"], attribution
    assert "1 of 1 Pods of the new revision cannot start" in attribution["reason"], attribution
    assert "CrashLoopBackOff (3 restarts)" in attribution["reason"], attribution
    detected = status["timeline"][0]
    assert detected["reason"] == "Detected" and detected["message"].startswith("rolloutProgress 1 Pods unavailable")
    in_phase(testenv, namespace, "web", "Resolved")


def test_a_revision_the_scheduler_cannot_place_is_held_not_rolled_back(
    testenv: Cluster, namespace: str, simulator, operators
) -> None:
    operators.start(namespace)
    too_big = {  # more CPU than the node has: the real scheduler leaves the new Pod Pending
        "spec": {
            "containers": [
                {"name": "app", "image": "registry.local/web:v2", "resources": {"requests": {"cpu": "5000"}}}
            ]
        }
    }
    stalling_rollout_of_web(testenv, namespace, too_big)

    status = escalated(testenv, namespace, "web")["status"]
    attribution = status["attribution"]
    assert attribution["verdict"] == "unknown", attribution
    assert "cannot be scheduled" in attribution["reason"] and "capacity, not the revision" in attribution["reason"]
    assert status.get("actions", []) == []
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2"), "nothing rolled back"


def test_while_the_cause_is_unknown_an_unfinished_rollout_is_paused_and_goes_on_when_resolved(
    testenv: Cluster, namespace: str, simulator, operators, faults
) -> None:
    operators.start(namespace)
    testenv.apply(app("web", "registry.local/web:v1", **SLOW_ROLLOUT), namespace)
    wait_ready(testenv, namespace, "web")
    policy = shop_policy("web", {"app": "web"})
    signal = policy["spec"]["signals"][0]
    del signal["byRevision"]  # no contrast: nothing tells a shared cause from the new revision
    signal["for"] = "5s"
    policy["spec"]["attribution"] = {"unknown": {"hold": "5m"}}
    testenv.apply(policy, namespace)
    wait_for("web healthy", lambda: target_verdict(testenv, namespace, "web", "web") == "Healthy", timeout=60)

    # a breach begins, then a healthy rollout starts before it is confirmed: whose is it? unknown
    faults({"kind": "dependency", "namespace": namespace, "deployments": ["web"], "errorRate": 0.3})
    wait_for("the breach begins", lambda: target_verdict(testenv, namespace, "web", "web") == "Breaching", 60)
    time.sleep(1.1)  # timestamps are whole seconds: the rollout in a later one than the breach's start
    rollout(testenv, namespace, "web", "registry.local/web:v2", error_rate=0.0)

    def paused() -> dict[str, Any] | None:
        inc = incident_of(testenv, namespace, "web")
        said = [e["reason"] for e in (inc or {}).get("status", {}).get("timeline", [])]
        return inc if "RolloutPaused" in said else None

    try:
        inc = wait_for("the rollout paused", paused, timeout=60)
    except AssertionError:
        seen = (incident_of(testenv, namespace, "web") or {}).get("status", {})
        raise AssertionError(json.dumps([seen.get("timeline"), seen.get("attribution")], indent=1)) from None
    assert inc["status"]["attribution"]["verdict"] == "unknown", inc["status"]["attribution"]
    web = testenv.get("deployment", "web", namespace)
    assert web["spec"].get("paused") is True and "hemostat.dev/rollout-held" in web["metadata"]["annotations"]
    assert len(serving_revisions(testenv, namespace, "web")) == 2, "the old revision keeps serving"
    assert inc["status"].get("actions", []) == []

    faults()  # the dependency recovers: the incident resolves, the rollout goes on
    status = in_phase(testenv, namespace, "web", "Resolved")["status"]
    reasons = [e["reason"] for e in status["timeline"]]
    assert reasons.count("RolloutPaused") == 1 and reasons[-1] == "RolloutResumed", reasons
    web = testenv.get("deployment", "web", namespace)
    # paused: false is the default, which the API server does not store
    assert not web["spec"].get("paused") and "hemostat.dev/rollout-held" not in web["metadata"]["annotations"]
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2")
