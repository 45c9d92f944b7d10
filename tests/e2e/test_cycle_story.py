"""Whole incident stories, cycle by cycle, on the real API server (scripted clock and readings).

Each test names the promise it keeps: act once per need, resolve only when recovery is
confirmed, and a record that is the truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from conftest import Cluster, wait_for
from cycles import Crash, Story, scripted_policy, stories

BAD, GOOD = 0.5, 0.0


@pytest.fixture
def story(testenv: Cluster, crds: None, namespace: str) -> Iterator[Callable[..., Story]]:
    yield from stories(testenv, namespace)


def status_of(incident: dict) -> dict:
    return incident.get("status") or {}


def test_a_breach_during_verification_restarts_the_healthy_streak_on_the_server(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(scripted_policy("web", "web", verify_for="40s"), s.ns)

    s.readings[("web", "err")] = BAD
    s.cycle("web", 0)
    assert s.image("web") == "app:v1"
    assert status_of(s.incident("web"))["phase"] == "Monitoring"

    s.readings[("web", "err")] = GOOD
    s.cycle("web", 10)
    assert status_of(s.incident("web"))["healthySince"] == s.at(10).strftime("%Y-%m-%dT%H:%M:%SZ")

    s.readings[("web", "err")] = BAD  # a burst while verifying
    s.cycle("web", 20)
    assert "healthySince" not in status_of(s.incident("web")), "a cleared field must be cleared on the server"

    s.readings[("web", "err")] = GOOD
    s.cycle("web", 30)
    s.cycle("web", 60)  # healthy for 30s of the 40s asked for
    assert status_of(s.incident("web"))["phase"] == "Monitoring"

    s.cycle("web", 75)
    resolved = status_of(s.incident("web"))
    assert resolved["phase"] == "Resolved"
    assert resolved["timeline"][-1]["message"] == "all signals healthy for 45s after rollback"


def test_one_target_that_fails_does_not_blind_the_policy_to_the_others(story) -> None:
    s = story()
    long_name = "checkout-" + "x" * 60  # a valid Deployment name, too long for a label value
    s.deploy(long_name, "app:v1", "app:v2", app="shop")
    s.deploy("corrupt", "app:v1", "app:v2", app="shop")
    s.deploy("cart", "app:v1", "app:v2", app="shop")
    s.cluster.apply(scripted_policy("shop", "shop"), s.ns)
    # An open Incident of this policy whose status another writer left unparsable.
    s.cluster.apply(
        {
            "apiVersion": "hemostat.dev/v1alpha1",
            "kind": "Incident",
            "metadata": {
                "name": "corrupt-old",
                "labels": {"hemostat.dev/policy": "shop", "hemostat.dev/target": "corrupt"},
            },
            "spec": {
                "severity": "SEV3",
                "summary": "x",
                "target": {"name": "corrupt"},
                "source": "policy",
                "policyRef": {"name": "shop"},  # as the operator opens them
            },
        },
        s.ns,
    )
    status = {"status": {"phase": "Monitoring", "healthySince": "yesterday", "monitoringSince": "soon"}}
    s.cluster.kubectl(
        "patch", "incident", "corrupt-old", "-n", s.ns, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    for name in (long_name, "corrupt", "cart"):
        s.readings[(name, "err")] = BAD

    s.cycle("shop", 0)

    assert s.image("cart") == "app:v1", "a healthy-to-handle target was not mitigated"
    assert status_of(s.incident("cart"))["phase"] == "Monitoring"
    assert s.image(long_name) == "app:v1", "a long Deployment name must not stop its own incident"
    targets = {t["name"]: t for t in s.policy("shop")["status"]["targets"]}
    assert targets["cart"]["incident"] == s.incident("cart")["metadata"]["name"]
    assert "healthySince" in targets["corrupt"]["error"], targets["corrupt"]
    degraded = {c["type"]: c for c in s.policy("shop")["status"]["conditions"]}["Degraded"]
    assert degraded["status"] == "True" and "corrupt" in degraded["message"]


def test_a_step_that_healed_the_service_before_a_crash_is_recorded_and_counted(story) -> None:
    s = story(crash_after_patch=True)
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(scripted_policy("web", "web", verify_for="40s", cooldown="5m"), s.ns)
    s.readings[("web", "err")] = BAD  # the scripted clock runs behind the real one until the rollout below,
    with pytest.raises(Crash):  # which then comes after the Incident resolved, as in life (else it reopens)
        s.cycle("web", -100)
    assert s.image("web") == "app:v1"

    s.restart()
    s.readings[("web", "err")] = GOOD  # the rollback already healed it
    s.cycle("web", -80)
    s.cycle("web", -35)
    record = status_of(s.incident("web"))
    assert [(a["step"], a["result"]) for a in record["actions"]] == [("rollback", "Succeeded")]
    assert record["phase"] == "Resolved"
    assert record["timeline"][-1]["message"].endswith("after rollback")

    s.roll_out("web", "app:v3")  # a second bad rollout inside the cooldown
    s._wait_revision("web", 4)
    s.readings[("web", "err")] = BAD
    s.cycle("web", 100)
    assert s.image("web") == "app:v3", "the cooldown must count the step recorded from the marker"
    second = status_of(s.incidents("web")[-1])
    assert "cooldown" in second["timeline"][-1]["message"]


def test_two_policies_on_one_deployment_act_once(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(scripted_policy("errors", "web"), s.ns)
    s.cluster.apply(scripted_policy("errors-too", "web"), s.ns)
    s.readings[("web", "err")] = BAD  # both still read the breach from their rate windows

    s.cycle("errors", 0)
    assert s.image("web") == "app:v1"
    s.cycle("errors-too", 1)

    assert s.image("web") == "app:v1", "the second policy rolled back the rollback"
    held = status_of(next(i for i in s.incidents("web") if i["spec"]["policyRef"]["name"] == "errors-too"))
    assert held.get("actions", []) == []
    assert "cooldown" in held["timeline"][-1]["message"]


def test_detection_does_not_depend_on_a_stale_cached_policy(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(scripted_policy("web", "web", for_="30s"), s.ns)
    stale = s.policy("web")  # what a dead watch keeps handing the loop
    s.readings[("web", "err")] = BAD
    s.cycle("web", 0, body=stale)
    s.cycle("web", 15, body=stale)
    s.cycle("web", 31, body=stale)
    assert s.incidents("web"), "a breach that lasted its `for` was never confirmed"
    assert s.image("web") == "app:v1"


def test_resolved_incidents_past_retention_are_deleted_and_open_ones_kept(story) -> None:
    from datetime import timedelta

    s = story(incident_retention=timedelta(days=30))
    s.deploy("web", "app:v1")
    s.cluster.apply(scripted_policy("web", "web"), s.ns)
    for name, phase, resolved in (("old", "Resolved", 31), ("recent", "Resolved", 1), ("ongoing", "Monitoring", None)):
        s.cluster.apply(
            {
                "apiVersion": "hemostat.dev/v1alpha1",
                "kind": "Incident",
                "metadata": {"name": name, "labels": {"hemostat.dev/policy": "web", "hemostat.dev/target": "web"}},
                "spec": {
                    "severity": "SEV3",
                    "summary": "x",
                    "target": {"name": "other"},
                    "source": "policy",
                    "policyRef": {"name": "web"},
                },
            },
            s.ns,
        )
        status = {"phase": phase}
        if resolved:
            status["resolvedAt"] = (s.t0 - timedelta(days=resolved)).strftime("%Y-%m-%dT%H:%M:%SZ")
        s.cluster.kubectl(
            "patch",
            "incident",
            name,
            "-n",
            s.ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
    s.readings[("web", "err")] = GOOD
    s.cycle("web", 0)
    assert sorted(i["metadata"]["name"] for i in s.incidents()) == ["ongoing", "recent"]


def test_a_query_with_an_unknown_placeholder_makes_the_policy_invalid(story) -> None:
    s = story()
    policy = scripted_policy("web", "web")
    policy["spec"]["signals"][0]["prometheus"]["query"] = 'x{pod=~"{{ deployment }}-{{ pod_template_hash }}-.*"}'
    s.cluster.apply(policy, s.ns)
    s.cycle("web", 0)
    valid = {c["type"]: c for c in s.policy("web")["status"]["conditions"]}["Valid"]
    assert valid["status"] == "False"
    assert "spec.signals[err].prometheus.query: unknown placeholder {{ pod_template_hash }}" in valid["message"]


def test_a_status_write_that_lost_a_race_is_retried_at_once(story) -> None:
    # kopf writes its finalizer and annotations beside the first cycle; a status write based on
    # the older version is refused, and must not wait a whole interval (or RETRY) to be redone
    s = story()
    bad = scripted_policy("typo", "web")
    bad["spec"]["signals"][0]["prometheus"]["query"] = 'sum(x{deployment="{{ deploymnet }}"})'
    s.cluster.apply(bad, s.ns)
    original = s.engine.applier.kube.patch_status

    async def lose_the_race(*args, **kwargs):
        s.cluster.kubectl("annotate", "mitigationpolicy", "typo", "-n", s.ns, "kopf-was-here=1", "--overwrite")
        return await original(*args, **kwargs)

    s.engine.applier.kube.patch_status = lose_the_race
    report = s.loop.run_until_complete(s.engine.evaluate(s.policy("typo"), now=s.at(0)))
    assert report.written is None and report.interval <= 1.0, report


@contextmanager
def change_freeze(s: Story) -> Iterator[None]:
    """A ValidatingAdmissionPolicy that refuses any change to a pod template in the story's
    namespace (annotations and replicas may still change), as a release freeze would."""
    name = f"freeze-{s.ns}"
    s.cluster.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.spec.template == oldObject.spec.template",
                        "message": "release freeze: pod templates cannot change",
                        "reason": "Forbidden",
                    }
                ],
            },
        }
    )
    s.cluster.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.ns}}},
            },
        }
    )
    try:
        yield
    finally:
        s.cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, check=False)


def frozen(s: Story, name: str) -> bool:
    """New admission policies take a moment to apply; ask with a dry run that one would refuse."""
    patch = {"spec": {"template": {"metadata": {"annotations": {"probe": "1"}}}}}
    probe = s.cluster.kubectl(
        "patch", "deployment", name, "-n", s.ns, "--dry-run=server", "-p", json.dumps(patch), check=False
    )
    return probe.returncode != 0 and "release freeze" in probe.stderr


def test_a_step_the_api_server_refuses_is_recorded_failed_counted_and_not_retried(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    steps = [{"rollback": {}}, {"scaleUp": {"factor": 2, "maxReplicas": 4}}]
    s.cluster.apply(scripted_policy("web", "web", steps=steps, cooldown="30s", verify_for="20s"), s.ns)
    with change_freeze(s):
        wait_for("the release freeze enforced", lambda: frozen(s, "web"), 30)
        s.readings[("web", "err")] = BAD

        s.cycle("web", 0)
        record = status_of(s.incident("web"))
        assert [(a["step"], a["result"]) for a in record.get("actions", [])] == [("rollback", "Failed")], record
        refused = record["actions"][0]["message"]
        assert "release freeze: pod templates cannot change" in refused and "\n" not in refused
        assert record["phase"] == "Mitigating"
        failed = record["timeline"][-1]
        assert (failed["reason"], failed["type"]) == ("MitigationFailed", "Warning")
        assert failed["message"].startswith("rollback failed: ") and "release freeze" in failed["message"]
        assert s.image("web") == "app:v2"
        ledger = json.loads(s.deployment("web")["metadata"]["annotations"]["hemostat.dev/actions"])
        assert [e["action"] for e in ledger] == ["rollback"], "a refused step counts for cooldown and budget"

        s.cycle("web", 10)  # still breaching, inside the cooldown the refused step started
        record = status_of(s.incident("web"))
        assert len(record["actions"]) == 1, "a refused step is not retried"
        assert record["timeline"][-1]["message"].startswith("next step scaleUp held: cooldown")

        s.cycle("web", 40)  # the ladder moves on
        record = status_of(s.incident("web"))
        assert [(a["step"], a["result"]) for a in record["actions"]] == [
            ("rollback", "Failed"),
            ("scaleUp", "Succeeded"),
        ]
        assert s.deployment("web")["spec"]["replicas"] == 4

        s.cycle("web", 70)  # still breaching after verifyFor, no step left
        record = status_of(s.incident("web"))
        assert record["phase"] == "Escalated"
        assert len(record["actions"]) == 2
