"""The ladder is right in every order, and a rollback never undoes Hemostat's own rollback.

Cycle by cycle on the real API server (scripted clock and readings, see cycles.py).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Cluster, wait_for
from cycles import Story, scripted_policy, stories
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ReadTimeoutError

from hemostat.cycle.plan import FROM_MARKER
from hemostat.kube import ApiError

BAD, GOOD = 0.5, 0.0
FLAG = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
STEPS: dict[str, dict[str, Any]] = {
    "rollback": {"rollback": {}},
    "scaleUp": {"scaleUp": {"factor": 2, "maxReplicas": 4}},
    "disableFlag": {"disableFlag": {"configMap": {"name": "flags", "flag": "new-pricing"}}},
    "restart": {"restart": {}},
}
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@pytest.fixture
def story(testenv: Cluster, crds: None, namespace: str) -> Iterator[Callable[..., Story]]:
    yield from stories(testenv, namespace)


def status_of(incident: dict) -> dict:
    return incident.get("status") or {}


def flag_default(s: Story) -> str:
    cm = s.cluster.get("configmap", "flags", s.ns)
    return json.loads(cm["data"]["flags.flagd.json"])["flags"]["new-pricing"]["defaultVariant"]


def changed(s: Story, step: str) -> bool:
    """Does the world show what `step` changes?"""
    if step == "rollback":
        return s.image("web") == "app:v1"
    if step == "scaleUp":
        return s.deployment("web")["spec"]["replicas"] == 4
    if step == "restart":  # a revision the restart made (a later rollback replaces the template, not history)
        rss = json.loads(s.cluster.kubectl("get", "replicasets", "-n", s.ns, "-o", "json").stdout)["items"]
        return any(RESTARTED_AT in (rs["spec"]["template"]["metadata"].get("annotations") or {}) for rs in rss)
    return flag_default(s) == "off"


def settled(s: Story) -> None:
    """The rollout (or scale) the last step made is finished: a restart never mixes into one."""

    def done() -> bool:
        d = s.deployment("web")
        st, want = d.get("status") or {}, d["spec"]["replicas"]
        counts = (st.get("updatedReplicas"), st.get("replicas"), st.get("availableReplicas"))
        return st.get("observedGeneration") == d["metadata"]["generation"] and counts == (want, want, want)

    wait_for("the rollout finished", done, 60)


PAIRS = list(itertools.permutations(STEPS, 2))


@pytest.mark.parametrize("first,second", PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
def test_every_pair_of_steps_works_in_both_orders(story, first: str, second: str) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags", "labels": {"hemostat.dev/flag-source": "true"}},
            "data": {"flags.flagd.json": json.dumps({"flags": {"new-pricing": FLAG}})},
        },
        s.ns,
    )
    steps = [STEPS[first], STEPS[second]]
    s.cluster.apply(scripted_policy("web", "web", steps=steps, cooldown="10s", verify_for="20s"), s.ns)
    s.readings[("web", "err")] = BAD

    settled(s)
    s.cycle("web", 0)
    assert changed(s, first) and not changed(s, second)
    settled(s)
    s.cycle("web", 30)  # still breaching after verifyFor: the second step

    record = status_of(s.incident("web"))
    assert [(a["step"], a["result"]) for a in record["actions"]] == [(first, "Succeeded"), (second, "Succeeded")], (
        record["timeline"]
    )
    assert changed(s, first) and changed(s, second)
    assert record["phase"] == "Monitoring"


def test_a_revision_hemostat_rolled_back_from_is_never_rolled_back_to(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    # a new Incident for the new breach (reopening the first would escalate: its one step is spent)
    s.cluster.apply(scripted_policy("web", "web", cooldown="10s", verify_for="20s", reopenWithin="0s"), s.ns)
    s.readings[("web", "err")] = BAD
    s.cycle("web", 0)
    s._wait_revision("web", 3)  # v1 again, as revision 3
    s.readings[("web", "err")] = GOOD
    s.cycle("web", 10)
    s.cycle("web", 40)
    (first,) = s.incidents("web")
    assert status_of(first)["phase"] == "Resolved"

    s.readings[("web", "err")] = BAD  # the v1 Pods fail now, for a reason no deploy made
    s.cycle("web", 60)

    assert s.image("web") == "app:v1", "the known-bad image is live again"
    second = status_of(s.incidents("web")[-1])
    assert [(a["step"], a["result"]) for a in second["actions"]] == [("rollback", "Skipped")]
    reason = second["actions"][0]["message"]
    assert "revision 2 (app:v2)" in reason and "rolled back from" in reason, reason


def conditions(s: Story, policy: str) -> dict[str, dict]:
    return {c["type"]: c for c in s.policy(policy)["status"]["conditions"]}


def test_a_malformed_marker_on_one_deployment_does_not_blind_the_policy(story) -> None:
    s = story()
    s.deploy("a", "app:v1", "app:v2", app="shop")
    s.deploy("b", "app:v1", "app:v2", app="shop")
    steps = [STEPS["rollback"], STEPS["scaleUp"]]
    s.cluster.apply(scripted_policy("shop", "shop", steps=steps, verify_for="20s"), s.ns)
    s.readings[("a", "err")] = BAD
    s.cycle("shop", 0)
    incident = s.incident("a")["metadata"]["name"]
    # A marker naming a's open Incident and its next step, with an action no step produces.
    marker = {"incident": incident, "step": 1, "action": "bogus", "from": "x", "to": "y", "at": "2026-01-01T00:00:00Z"}
    s.cluster.kubectl(
        "annotate", "deployment", "a", "-n", s.ns, f"hemostat.dev/mitigation={json.dumps(marker)}", "--overwrite"
    )

    s.readings[("b", "err")] = BAD  # another Deployment's bad rollout under the same policy
    s.cycle("shop", 10)

    assert s.image("b") == "app:v1", "b's bad rollout must be rolled back"
    assert status_of(s.incident("b"))["phase"] == "Monitoring"
    assert [a["result"] for a in status_of(s.incident("a"))["actions"]] == ["Succeeded"], "the marker is not trusted"
    said = conditions(s, "shop")["RecordsReadable"]
    assert said["status"] == "False" and "a: " in said["message"] and "unknown action 'bogus'" in said["message"]


def test_a_change_is_recorded_as_made_when_the_incident_moved_meanwhile(story) -> None:
    # A lagging cache, or kopf's and people's writes to the Incident, make the copy the cycle
    # decided on stale by the time the change is recorded: the record must still be the truth.
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(scripted_policy("web", "web"), s.ns)
    original = s.engine.applier.kube.json_patch_deployment

    async def meanwhile_a_person_acks(ns: str, name: str, patch: list) -> Any:
        for incident in s.incidents("web"):
            s.cluster.kubectl("annotate", "incident", incident["metadata"]["name"], "-n", s.ns, "ack=alice")
        return await original(ns, name, patch)

    s.engine.applier.kube.json_patch_deployment = meanwhile_a_person_acks
    s.readings[("web", "err")] = BAD
    s.cycle("web", 0)
    s.engine.applier.kube.json_patch_deployment = original
    s.cycle("web", 10)

    record = status_of(s.incident("web"))
    assert [(a["step"], a["result"]) for a in record["actions"]] == [("rollback", "Succeeded")]
    assert FROM_MARKER not in record["actions"][0]["message"], record["actions"][0]
    assert record["actions"][0]["at"] == s.at(0).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("failure", ["503", "timeout"])
def test_a_change_is_recorded_as_made_when_the_first_write_of_its_record_fails(story, failure: str) -> None:
    # An API server too busy to answer the record's write right after the change (a 5xx, a timeout): the
    # record must still say what was done, when, in that cycle, not "applied before a restart" in the next.
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(scripted_policy("web", "web"), s.ns)
    kube = s.engine.applier.kube
    original = kube.patch_status
    failed: list[str] = []

    async def busy_once(plural: str, ns: str, name: str, status: dict, resource_version: str | None = None) -> Any:
        if plural == "incidents" and status.get("actions") and not failed:
            failed.append(name)
            if failure == "503":
                raise ApiError(ApiException(status=503, reason="Service Unavailable"))
            raise ReadTimeoutError(None, "/apis", "Read timed out. (read timeout=5.0)")
        return await original(plural, ns, name, status, resource_version)

    kube.patch_status = busy_once
    s.readings[("web", "err")] = BAD
    s.cycle("web", 0)
    kube.patch_status = original

    assert failed, "the record's first write failed"
    record = status_of(s.incident("web"))
    assert [(a["step"], a["result"]) for a in record["actions"]] == [("rollback", "Succeeded")]
    assert FROM_MARKER not in record["actions"][0]["message"], record["actions"][0]
    assert record["actions"][0]["at"] == s.at(0).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert s.image("web") == "app:v1"


def test_the_ledger_entry_of_an_hpa_step_is_written_while_the_deployment_status_churns(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 10,
            },
        },
        s.ns,
    )
    s.cluster.apply(scripted_policy("web", "web", steps=[STEPS["scaleUp"]]), s.ns)
    original = s.engine.applier.kube.json_patch_deployment

    async def status_churns_first(ns: str, name: str, patch: list) -> Any:
        # the Deployment controller writes status all through a rollout; only its resourceVersion moves
        churn = {"status": {"conditions": [{"type": "Churn", "status": "True", "reason": "Test", "message": "x"}]}}
        s.cluster.kubectl(
            "patch", "deployment", name, "-n", ns, "--subresource=status", "--type=merge", "-p", json.dumps(churn)
        )
        return await original(ns, name, patch)

    s.engine.applier.kube.json_patch_deployment = status_churns_first
    s.readings[("web", "err")] = BAD
    s.cycle("web", 0)

    record = status_of(s.incident("web"))
    assert [(a["action"], a["result"]) for a in record["actions"]] == [("scaleUpHpa", "Succeeded")], record["actions"]
    ledger = json.loads(s.deployment("web")["metadata"]["annotations"]["hemostat.dev/actions"])
    assert [e["action"] for e in ledger] == ["scaleUpHpa"], "the step must count for cooldown and budget"
