"""Rollback planning on Deployment/ReplicaSet dicts shaped like the API server returns them.

facts_from and plan are pure: the objects are built here, `now` is fixed.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hemostat.actions.base import MARKER, Done, Plan, Skip, marker_value
from hemostat.actions.rollback import CANARY_OF, REVISION, applied, facts_from, plan
from hemostat.models.policy import RollbackStep

NOW = datetime(2026, 11, 23, 14, 20, 0, tzinfo=UTC)
WINDOW = timedelta(hours=1)
DEP_UID = "6f1d8a3e-2b1c-4f7e-9a0d-1c2b3d4e5f60"
OTHER_UID = "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"
INCIDENT = "checkout-20261123-141500"
LAST_APPLIED = '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"checkout"}}'
HASHES = {1: "5d7c9b8f4", 2: "6b9f7c5d8", 3: "7f8d6c4b9", 4: "8c6b5d7f3"}


def guard_of(plan_: Plan) -> list[dict[str, Any]]:
    return [op for op in plan_.patch if op["op"] == "test"]


def changes(plan_: Plan) -> list[dict[str, Any]]:
    """The patch after its guard: the operations that change something."""
    return [op for op in plan_.patch if op["op"] != "test"]


def image(tag: str) -> str:
    return f"registry.example/checkout:{tag}"


def pod_template(tag: str, pod_hash: str | None = None) -> dict[str, Any]:
    labels = {"app": "checkout", "tier": "web"}
    if pod_hash:
        labels["pod-template-hash"] = pod_hash
    return {
        "metadata": {
            "creationTimestamp": None,
            "labels": labels,
            "annotations": {"prometheus.io/scrape": "true"},
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": image(tag),
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler",
        },
    }


def replicaset(
    revision: int | str,
    tag: str,
    *,
    owner: str | None = DEP_UID,
    deployment: str = "checkout",
    created: str = "2026-11-23T14:00:00Z",
    annotations: dict[str, str] | None = None,
    replicas: int = 0,
) -> dict[str, Any]:
    pod_hash = HASHES.get(revision, "9d8c7b6a5") if isinstance(revision, int) else "9d8c7b6a5"
    meta: dict[str, Any] = {
        "name": f"{deployment}-{pod_hash}",
        "namespace": "shop",
        "uid": f"rs-{deployment}-{revision}",
        "resourceVersion": f"10{revision}",
        "generation": 1,
        "creationTimestamp": created,
        "labels": {"app": "checkout", "tier": "web", "pod-template-hash": pod_hash},
        "annotations": {
            REVISION: str(revision),
            "deployment.kubernetes.io/desired-replicas": "3",
            "deployment.kubernetes.io/max-replicas": "4",
            "kubernetes.io/change-cause": f"deploy {tag}",
            **(annotations or {}),
        },
    }
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment,
                "uid": owner,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "checkout", "pod-template-hash": pod_hash}},
            "template": pod_template(tag, pod_hash),
        },
        "status": {"replicas": replicas, "observedGeneration": 1},
    }


def deployment_obj(
    revision: int | None,
    tag: str,
    *,
    name: str = "checkout",
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    replicas: int = 3,
    paused: bool = False,
    resource_version: str = "48213",
) -> dict[str, Any]:
    ann = {"kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED, "team": "payments"}
    if revision is not None:
        ann[REVISION] = str(revision)
    ann.update(annotations or {})
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "checkout"}},
        "template": pod_template(tag),
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    if paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": DEP_UID,
            "resourceVersion": resource_version,
            "generation": 5,
            "creationTimestamp": "2026-11-01T09:00:00Z",
            "labels": {"app": "checkout", **(labels or {})},
            "annotations": ann,
        },
        "spec": spec,
        "status": {"observedGeneration": 5, "replicas": replicas},
    }


def history() -> list[dict[str, Any]]:
    return [
        replicaset(1, "v1", created="2026-11-20T10:00:00Z"),
        replicaset(2, "v2", created="2026-11-22T09:00:00Z"),
        replicaset(3, "v3", created="2026-11-23T14:00:00Z", replicas=3),
    ]


def do_plan(
    dep: dict[str, Any],
    rss: list[dict[str, Any]],
    *,
    step: RollbackStep | None = None,
    incident: str = INCIDENT,
    index: int = 0,
    detected_revision: int | None = 3,
    window: timedelta = WINDOW,
) -> Plan | Skip | Done:
    return plan(
        facts_from(dep, rss),
        step or RollbackStep(),
        incident=incident,
        index=index,
        detected_revision=detected_revision,
        rollout_window=window,
        now=NOW,
    )


FROM3 = "revision 3 (registry.example/checkout:v3)"
TO2 = "revision 2 (registry.example/checkout:v2)"


# --- facts_from ---------------------------------------------------------------------------


def test_facts_from_builds_the_revision_history() -> None:
    facts = facts_from(deployment_obj(3, "v3"), history())
    assert (facts.name, facts.guard[0]["value"], facts.replicas) == ("checkout", 5, 3)
    assert (facts.rollout_paused, facts.canary_of) == (False, None)
    assert facts.current.number == 3
    assert facts.current.replicaset == "checkout-7f8d6c4b9"
    assert facts.current.image == image("v3")
    assert facts.current.rolled_out_at == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert facts.previous.number == 2
    assert facts.previous.describe() == TO2
    assert facts.previous.template["metadata"]["labels"] == {"app": "checkout", "tier": "web"}
    assert facts.previous.annotations[REVISION] == "2"


def test_facts_from_without_revision_annotation_takes_the_newest() -> None:
    facts = facts_from(deployment_obj(None, "v3"), history())
    assert (facts.current.number, facts.previous.number) == (3, 2)


def test_facts_from_ignores_unnumbered_and_foreign_replicasets() -> None:
    rss = [
        replicaset(1, "v1"),
        replicaset(2, "other", owner=OTHER_UID, deployment="checkout-canary"),
        replicaset(2, "orphan", owner=None),
        replicaset("x", "garbage"),
        replicaset(3, "v3"),
    ]
    facts = facts_from(deployment_obj(3, "v3"), rss)
    assert (facts.current.number, facts.previous.number, facts.previous.image) == (3, 1, image("v1"))


def test_facts_from_does_not_mutate_the_replicasets() -> None:
    rss = history()
    before = copy.deepcopy(rss)
    facts_from(deployment_obj(3, "v3"), rss)
    assert rss == before


@pytest.mark.parametrize(("tags", "expected"), [(["a:1", "b:2"], "a:1,b:2"), ([None], "?")])
def test_revision_image_lists_every_container(tags: list[str | None], expected: str) -> None:
    rs = replicaset(3, "v3")
    rs["spec"]["template"]["spec"]["containers"] = [{"name": f"c{i}", "image": t} for i, t in enumerate(tags)]
    for c in rs["spec"]["template"]["spec"]["containers"]:
        if c["image"] is None:
            del c["image"]
    assert facts_from(deployment_obj(3, "v3"), [rs]).current.image == expected


# --- plan: a normal rollback ----------------------------------------------------------------


def test_rollback_plan_like_kubectl_rollout_undo() -> None:
    rss = history()
    rss[1]["metadata"]["annotations"].update(
        {
            "deployment.kubernetes.io/revision-history": "1",
            "deprecated.deployment.rollback.to": "1",
            "kubectl.kubernetes.io/last-applied-configuration": "{stale}",
            "owner": "team-payments",
            MARKER: "stale marker copied from an older Deployment state",
        }
    )
    dep = deployment_obj(3, "v3")
    got = do_plan(dep, rss)
    assert isinstance(got, Plan)
    assert (got.action, got.from_, got.to) == ("rollback", FROM3, TO2)
    assert len(changes(got)) == 2
    # Guarded on what a person could change (spec -> generation, annotations), not on status churn.
    assert guard_of(got) == [
        {"op": "test", "path": "/metadata/generation", "value": 5},
        {"op": "test", "path": "/metadata/annotations", "value": dep["metadata"]["annotations"]},
    ]
    assert changes(got)[0] == {"op": "replace", "path": "/spec/template", "value": pod_template("v2")}
    assert "pod-template-hash" not in changes(got)[0]["value"]["metadata"]["labels"]
    assert changes(got)[1]["op"] == "replace"
    assert changes(got)[1]["path"] == "/metadata/annotations"
    annotations = dict(changes(got)[1]["value"])
    marker = json.loads(annotations.pop(MARKER))
    assert annotations == {
        # kept from the Deployment (kubectl's skip list)
        REVISION: "3",
        "kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED,
        # copied from the ReplicaSet of revision 2
        "kubernetes.io/change-cause": "deploy v2",
        "owner": "team-payments",
    }
    assert marker == {
        "incident": INCIDENT,
        "step": 0,
        "action": "rollback",
        "from": FROM3,
        "to": TO2,
        "at": "2026-11-23T14:20:00Z",
    }
    # the ReplicaSet itself is not touched
    assert rss[1]["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == HASHES[2]


def test_rollback_targets_the_highest_revision_below_the_current() -> None:
    rss = [*history(), replicaset(4, "v4", created="2026-11-23T14:10:00Z")]
    got = do_plan(deployment_obj(4, "v4"), rss, detected_revision=4)
    assert isinstance(got, Plan)
    assert (got.from_, got.to) == ("revision 4 (registry.example/checkout:v4)", FROM3)
    assert changes(got)[0]["value"] == pod_template("v3")


def test_rollback_ignores_replicasets_of_another_deployment() -> None:
    rss = [
        replicaset(1, "v1"),
        replicaset(2, "evil", owner=OTHER_UID, deployment="checkout-canary"),
        replicaset(3, "v3"),
    ]
    got = do_plan(deployment_obj(3, "v3"), rss)
    assert isinstance(got, Plan)
    assert got.to == "revision 1 (registry.example/checkout:v1)"
    assert changes(got)[0]["value"] == pod_template("v1")


def test_no_detected_revision_still_plans() -> None:
    got = do_plan(deployment_obj(3, "v3"), history(), detected_revision=None)
    assert isinstance(got, Plan)
    assert (got.from_, got.to) == (FROM3, TO2)


def test_rollout_exactly_at_the_window_edge_is_inside() -> None:
    got = do_plan(deployment_obj(3, "v3"), history(), window=timedelta(minutes=20))
    assert isinstance(got, Plan)


# --- plan: why not --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dep", "rss", "kwargs", "reason"),
    [
        pytest.param(
            deployment_obj(3, "v3"),
            [replicaset(3, "v3"), replicaset(2, "other", owner=OTHER_UID)],
            {},
            "no revision older than 3 is left to roll back to",
            id="no-earlier-revision",
        ),
        pytest.param(
            deployment_obj(3, "v3"),
            [replicaset(2, "v2"), replicaset(3, "v3", created="2026-11-23T12:00:00Z")],
            {},
            "revision 3 (registry.example/checkout:v3) was rolled out 2h20m ago, outside the rollout window of 1h",
            id="outside-window",
        ),
        pytest.param(
            deployment_obj(3, "v3"),
            history(),
            {"window": timedelta(minutes=15)},
            "revision 3 (registry.example/checkout:v3) was rolled out 20m ago, outside the rollout window of 15m",
            id="outside-short-window",
        ),
        pytest.param(
            deployment_obj(3, "v3", paused=True),
            history(),
            {},
            "the rollout is paused (spec.paused); kubectl rollout undo refuses paused Deployments too",
            id="paused",
        ),
        pytest.param(
            deployment_obj(4, "v4"),
            [*history(), replicaset(4, "v4")],
            {"detected_revision": 3},
            "the Deployment changed since detection (revision 3 -> 4); not overriding a change someone else made",
            id="changed-since-detection",
        ),
    ],
)
def test_rollback_skips(dep: dict, rss: list[dict], kwargs: dict, reason: str) -> None:
    assert do_plan(dep, rss, **kwargs) == Skip(reason)


# --- plan: idempotence via the marker -------------------------------------------------------


def with_marker(incident: str, index: int) -> dict[str, Any]:
    # after our own rollback 3 -> 2 the controller made the v2 ReplicaSet revision 4
    value = marker_value(incident, index, "rollback", FROM3, TO2, "2026-11-23T14:16:00Z")
    return deployment_obj(4, "v2", annotations={MARKER: value})


def after_rollback_history() -> list[dict[str, Any]]:
    return [
        replicaset(1, "v1", created="2026-11-20T10:00:00Z"),
        replicaset(3, "v3", created="2026-11-23T14:00:00Z"),
        replicaset(4, "v2", created="2026-11-22T09:00:00Z", replicas=3),
    ]


def test_marker_for_the_same_incident_and_step_is_done() -> None:
    got = do_plan(with_marker(INCIDENT, 0), after_rollback_history(), detected_revision=3)
    assert got == Done(action="rollback", from_=FROM3, to=TO2, at="2026-11-23T14:16:00Z")


def test_marker_for_another_step_of_the_same_incident_skips() -> None:
    # the rollback of step 0 already moved the Deployment: rolling back again would go further back
    dep = deployment_obj(
        3, "v3", annotations={MARKER: marker_value(INCIDENT, 0, "rollback", "a", "b", "2026-11-23T13:59:00Z")}
    )
    got = do_plan(dep, history(), index=1)
    assert got == Skip("step 0 of this incident already did rollback: a -> b")


def test_marker_for_another_incident_gives_a_new_plan() -> None:
    dep = deployment_obj(
        3, "v3", annotations={MARKER: marker_value("old-incident", 0, "rollback", "a", "b", "2026-11-23T13:59:00Z")}
    )
    got = do_plan(dep, history())
    assert isinstance(got, Plan)
    assert (got.from_, got.to) == (FROM3, TO2)
    marker = json.loads(changes(got)[1]["value"][MARKER])
    assert (marker["incident"], marker["step"]) == (INCIDENT, 0)


def test_unreadable_marker_is_ignored() -> None:
    got = do_plan(deployment_obj(3, "v3", annotations={MARKER: "{not json"}), history())
    assert isinstance(got, Plan)
    assert json.loads(changes(got)[1]["value"][MARKER])["incident"] == INCIDENT


@pytest.mark.parametrize("raw", ["true", "[1, 2]", '"done"'])
def test_marker_that_is_not_an_object_is_ignored(raw: str) -> None:
    got = do_plan(deployment_obj(3, "v3", annotations={MARKER: raw}), history())
    assert isinstance(got, Plan)
    assert (got.from_, got.to) == (FROM3, TO2)


def test_rollout_window_counts_from_the_rollout_not_the_replicaset_creation() -> None:
    # a person ran `kubectl rollout undo --to-revision=1` at 14:10: the v1 ReplicaSet (created days ago)
    # became revision 4, and v1 is what breaches now
    rss = [replicaset(2, "v2", created="2026-11-22T09:00:00Z"), replicaset(3, "v3", created="2026-11-23T14:00:00Z")]
    reused = replicaset(1, "v1", created="2026-11-20T10:00:00Z", replicas=3)
    reused["metadata"]["annotations"][REVISION] = "4"
    reused["metadata"]["managedFields"] = [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": "2026-11-23T14:10:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}},
        }
    ]
    dep = deployment_obj(4, "v1")
    dep["status"]["conditions"] = [
        {
            "type": "Progressing",
            "status": "True",
            "reason": "NewReplicaSetAvailable",
            "message": f'ReplicaSet "checkout-{HASHES[1]}" has successfully progressed.',
            "lastUpdateTime": "2026-11-23T14:10:30Z",
            "lastTransitionTime": "2026-11-01T09:00:10Z",
        }
    ]
    got = do_plan(dep, [*rss, reused], detected_revision=4)
    assert isinstance(got, Plan), got
    assert (got.from_, got.to) == ("revision 4 (registry.example/checkout:v1)", FROM3)


# --- canaries -------------------------------------------------------------------------------


def canary(replicas: int = 2, *, annotations: bool = True, paused: bool = False) -> dict[str, Any]:
    dep = deployment_obj(
        3, "v3", name="checkout-canary", labels={CANARY_OF: "checkout"}, replicas=replicas, paused=paused
    )
    if not annotations:
        dep["metadata"].pop("annotations")
    return dep


@pytest.mark.parametrize("paused", [False, True])
def test_canary_scale_to_zero(paused: bool) -> None:
    got = do_plan(canary(2, paused=paused), history())
    assert isinstance(got, Plan)
    assert (got.action, got.from_, got.to) == ("scaleToZero", "canary checkout-canary at 2 replicas", "0 replicas")
    assert guard_of(got)[0] == {"op": "test", "path": "/metadata/generation", "value": 5}
    assert changes(got)[0] == {"op": "replace", "path": "/spec/replicas", "value": 0}
    assert len(changes(got)) == 2
    assert (changes(got)[1]["op"], changes(got)[1]["path"]) == ("add", "/metadata/annotations/hemostat.dev~1mitigation")
    assert json.loads(changes(got)[1]["value"]) == {
        "incident": INCIDENT,
        "step": 0,
        "action": "scaleToZero",
        "from": "canary checkout-canary at 2 replicas",
        "to": "0 replicas",
        "at": "2026-11-23T14:20:00Z",
    }


def test_canary_without_annotations_adds_the_annotation_map() -> None:
    got = do_plan(canary(2, annotations=False), history())
    assert isinstance(got, Plan)
    assert changes(got)[1]["op"] == "add"
    assert changes(got)[1]["path"] == "/metadata/annotations"
    (key, value), *rest = changes(got)[1]["value"].items()
    assert (key, rest) == (MARKER, [])
    assert json.loads(value)["action"] == "scaleToZero"


def test_canary_already_at_zero_is_skipped() -> None:
    assert do_plan(canary(0), history()) == Skip("canary of checkout is already scaled to zero")


def test_canary_scaled_to_zero_before_a_restart_is_done() -> None:
    dep = canary(0)
    dep["metadata"]["annotations"][MARKER] = marker_value(
        INCIDENT, 0, "scaleToZero", "canary checkout-canary at 2 replicas", "0 replicas", "2026-11-23T14:16:00Z"
    )
    got = do_plan(dep, history())
    assert got == Done("scaleToZero", "canary checkout-canary at 2 replicas", "0 replicas", "2026-11-23T14:16:00Z")


def test_canary_with_rollback_action_rolls_back() -> None:
    got = do_plan(canary(2), history(), step=RollbackStep.model_validate({"canaryAction": "rollback"}))
    assert isinstance(got, Plan)
    assert (got.action, got.from_, got.to) == ("rollback", FROM3, TO2)
    assert changes(got)[0] == {"op": "replace", "path": "/spec/template", "value": pod_template("v2")}
    assert changes(got)[1]["path"] == "/metadata/annotations"


# --- applied -------------------------------------------------------------------------------


def test_applied_rollback() -> None:
    got = do_plan(deployment_obj(3, "v3"), history())
    assert isinstance(got, Plan)
    patched = deployment_obj(4, "v2")
    assert applied(patched, got) is True
    assert applied(deployment_obj(3, "v3"), got) is False
    with_hash = deployment_obj(4, "v2")
    with_hash["spec"]["template"] = pod_template("v2", HASHES[2])
    assert applied(with_hash, got) is False


@pytest.mark.parametrize(("replicas", "expected"), [(0, True), (1, False), (2, False)])
def test_applied_scale_to_zero(replicas: int, expected: bool) -> None:
    got = do_plan(canary(2), history())
    assert isinstance(got, Plan)
    assert applied(canary(replicas), got) is expected


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def restarted(rs: dict[str, Any], at: str) -> dict[str, Any]:
    """The same version, restarted (`kubectl rollout restart`): only the template's restartedAt differs."""
    out = copy.deepcopy(rs)
    out["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] = at
    return out


def test_a_restart_is_not_a_version_to_roll_back_onto() -> None:
    """v2 was deployed, then restarted (revision 3, the same v2): rolling back means v1, not v2 again,
    and the window counts from v2's rollout, not from the restart."""
    rss = [
        replicaset(1, "v1", created="2026-11-20T10:00:00Z"),
        replicaset(2, "v2", created="2026-11-23T14:00:00Z"),
        restarted(replicaset(3, "v2", created="2026-11-23T14:15:00Z", replicas=3), "2026-11-23T14:15:00Z"),
    ]
    dep = deployment_obj(3, "v2")
    dep["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] = "2026-11-23T14:15:00Z"
    got = do_plan(dep, rss)
    assert isinstance(got, Plan)
    assert (got.from_, got.to) == (
        "revision 3 (registry.example/checkout:v2)",
        "revision 1 (registry.example/checkout:v1)",
    )
    assert changes(got)[0]["value"] == pod_template("v1")
    late = do_plan(dep, rss, window=timedelta(minutes=10))  # v2 went out 20 minutes ago; the restart 5
    assert isinstance(late, Skip) and "rolled out 20m ago, outside the rollout window of 10m" in late.reason
