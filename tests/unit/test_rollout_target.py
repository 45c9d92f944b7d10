"""An Argo Rollout as a target: the rollback step aborts an update in progress (status.abort, as
`kubectl argo rollouts abort`) and undoes a promoted one (spec.template, as `kubectl argo rollouts undo`).
Pure: Rollout and ReplicaSet dicts shaped like the API server returns them, `now` fixed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hemostat.actions import rollback, scale
from hemostat.actions.base import MARKER, Context, Objects, Plan, Skip, marker_value
from hemostat.cycle import plan as planner
from hemostat.cycle import world
from hemostat.cycle.snapshot import Settings, parse_spec
from hemostat.decide import rollout_pause
from hemostat.models.policy import RollbackStep, ScaleUpStep

NOW = datetime(2026, 12, 6, 14, 20, tzinfo=UTC)
UID = "9d2f0c1e-1111-4c3b-8a1d-000000000001"
HASHES = {1: "6c9f8b7d5", 2: "7d5b9c8f6"}
INCIDENT = "shop-20261206-141900-abcd"


def template(tag: str, pod_hash: str | None = None) -> dict[str, Any]:
    labels = {"app": "shop"} | ({"rollouts-pod-template-hash": pod_hash} if pod_hash else {})
    return {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": f"shop:{tag}"}]}}


def replicaset(revision: int, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"shop-{HASHES[revision]}",
            "namespace": "shop",
            "uid": f"rs-{revision}",
            "creationTimestamp": "2026-12-06T14:10:00Z",
            "labels": {"app": "shop", "rollouts-pod-template-hash": HASHES[revision]},
            "annotations": {"rollout.argoproj.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Rollout", "name": "shop", "uid": UID, "controller": True}],
        },
        "spec": {"replicas": replicas, "template": template(f"v{revision}", HASHES[revision])},
    }


def rollout(current: int, stable: int, *, abort: bool = False, annotations: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "shop",
            "namespace": "shop",
            "uid": UID,
            "generation": 4,
            "labels": {"app": "shop"},
            "annotations": {"rollout.argoproj.io/revision": str(current), **(annotations or {})},
        },
        "spec": {"replicas": 5, "template": template(f"v{current}")},
        "status": {
            "currentPodHash": HASHES[current],
            "stableRS": HASHES[stable],
            "abort": abort,
            "phase": "Paused",
            "currentStepIndex": 1,
        },
    }


def planned(body: dict, replicasets: list[dict], *, detected: int = 2) -> Any:
    trimmed = world.trim_target(body)  # what the watch cache keeps is enough to plan on
    facts = rollback.facts_from(trimmed, [world.trim_replicaset(rs) for rs in replicasets])
    return rollback.plan(
        facts,
        RollbackStep(),
        incident=INCIDENT,
        index=0,
        detected_revision=detected,
        rollout_window=timedelta(hours=1),
        now=NOW,
        current_since=NOW - timedelta(minutes=5),
    )


def test_a_canary_in_progress_is_aborted_through_the_status_subresource_then_marked() -> None:
    out = planned(rollout(2, 1), [replicaset(1, 4), replicaset(2, 1)])
    assert isinstance(out, Plan) and out.action == "abort" and out.kind == "Rollout"
    assert (out.from_, out.to) == ("canary revision 2 (shop:v2)", "stable revision 1 (shop:v1)")
    # the abort is guarded on the update it aborts: a newer update (another hash) is not aborted
    assert out.status_patch is not None
    assert {"op": "test", "path": "/status/currentPodHash", "value": HASHES[2]} in out.status_patch
    assert {"op": "test", "path": "/metadata/generation", "value": 4} in out.status_patch
    assert out.status_patch[-1] == {"op": "add", "path": "/status/abort", "value": True}
    # the spec is left as it is (what `kubectl argo rollouts abort` does): only the marker is written
    changed = [op for op in out.patch if op["op"] != "test"]
    assert [op["path"] for op in changed] == [f"/metadata/annotations/{MARKER.replace('/', '~1')}"]
    assert out.undoes == "shop-" + HASHES[2]  # never rolled back onto again within the window


def test_a_crash_after_the_abort_leaves_an_aborted_rollout_that_is_not_aborted_again() -> None:
    out = planned(rollout(2, 1, abort=True), [replicaset(1, 4), replicaset(2, 0)])
    assert isinstance(out, Skip) and "already aborted (status.abort)" in out.reason


def test_the_marker_of_an_abort_makes_the_step_done_after_a_restart() -> None:
    marker = marker_value(
        INCIDENT, 0, "abort", "canary revision 2 (shop:v2)", "stable revision 1 (shop:v1)", "2026-12-06T14:19:30Z"
    )
    out = planned(rollout(2, 1, abort=True, annotations={MARKER: marker}), [replicaset(1, 4), replicaset(2, 0)])
    assert isinstance(out, rollback.Done) and out.action == "abort"


def test_a_promoted_rollout_is_undone_to_the_previous_revision_without_its_hash_label() -> None:
    out = planned(rollout(2, 2), [replicaset(1, 0), replicaset(2, 5)])
    assert isinstance(out, Plan) and out.action == "rollback" and out.kind == "Rollout"
    assert out.status_patch is None
    assert (out.from_, out.to) == ("revision 2 (shop:v2)", "revision 1 (shop:v1)")
    new_template = next(op["value"] for op in out.patch if op["path"] == "/spec/template")
    assert new_template == template("v1")  # as `kubectl argo rollouts undo`: the hash label dropped
    assert rollback.applied({"spec": {"template": template("v1")}}, out)


def test_a_rollout_without_a_previous_revision_is_skipped_saying_so() -> None:
    out = planned(rollout(2, 2), [replicaset(2, 5)])
    assert isinstance(out, Skip) and "no revision older than 2" in out.reason


def test_the_abort_is_verified_on_the_status_the_server_returned() -> None:
    out = planned(rollout(2, 1), [replicaset(1, 4), replicaset(2, 1)])
    assert rollback.applied({"status": {"abort": True}}, out)
    assert not rollback.applied({"status": {}}, out)


def test_an_abort_needs_no_gitops_pause_but_an_undo_does() -> None:
    flux = {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
    body = rollout(2, 1)
    body["metadata"]["labels"].update(flux)
    objects = Objects(body, (replicaset(1, 4), replicaset(2, 1)))
    ctx = Context(INCIDENT, 0, NOW, detected_revision=2)
    abort = rollback.STEP.plan(objects, RollbackStep(), ctx)
    kept, before = planner.unreconciled(abort, objects, "pause", ctx, {})
    assert kept == abort and before is None  # the abort is in status: Flux has nothing to undo

    promoted = rollout(2, 2)
    promoted["metadata"]["labels"].update(flux)
    objects = Objects(promoted, (replicaset(1, 0), replicaset(2, 5)))
    undo, _ = planner.unreconciled(rollback.STEP.plan(objects, RollbackStep(), ctx), objects, "pause", ctx, {})
    assert isinstance(undo, Plan)
    assert {
        "op": "add",
        "path": "/metadata/annotations/kustomize.toolkit.fluxcd.io~1reconcile",
        "value": "disabled",
    } in (undo.patch)


def test_the_hold_on_a_rollout_is_lifted_in_the_undo() -> None:
    held = rollout_pause.pause_ops(rollout(2, 2), INCIDENT, True, NOW)
    body = rollout(2, 2, annotations={rollout_pause.HELD: held[-1]["value"]})
    body["spec"]["paused"] = True
    out = rollback.STEP.plan(
        Objects(body, (replicaset(1, 0), replicaset(2, 5))),
        RollbackStep(),
        Context(INCIDENT, 0, NOW, detected_revision=2, held_rollout=True),
    )
    assert isinstance(out, Plan)
    assert {"op": "replace", "path": "/spec/paused", "value": False} in out.patch
    assert {"op": "remove", "path": rollout_pause.HELD_POINTER} in out.patch


def test_scale_up_scales_the_rollout_or_the_hpa_that_targets_it() -> None:
    body = rollout(2, 2)
    out = scale.STEP.plan(Objects(body), ScaleUpStep(factor=2, maxReplicas=20), Context(INCIDENT, 1, NOW))
    assert isinstance(out, Plan) and out.kind == "Rollout" and out.to == "10 replicas"
    hpa = {
        "metadata": {"name": "shop", "namespace": "shop", "generation": 1},
        "spec": {"scaleTargetRef": {"kind": "Rollout", "name": "shop"}, "minReplicas": 2, "maxReplicas": 30},
    }
    out = scale.STEP.plan(Objects(body, hpas=(hpa,)), ScaleUpStep(factor=2, maxReplicas=20), Context(INCIDENT, 1, NOW))
    assert isinstance(out, Plan) and out.kind == "HorizontalPodAutoscaler"
    around = planner.Around.of([], [hpa]).objects(body, {})
    assert around.hpas == (hpa,)  # an HPA of a Deployment of the same name would not be picked


def test_a_rollout_policy_is_invalid_where_the_operator_does_not_watch_rollouts() -> None:
    signal = {"name": "errors", "prometheus": {"query": "vector(0)"}, "breachWhen": {"above": 1}}
    spec_ = {
        "target": {"kind": "Rollout", "selector": {}},
        "signals": [signal],
        "mitigation": {"steps": [{"rollback": {}}]},
    }
    body = {"spec": spec_}
    off = Settings(default_prometheus_url="http://prom:9090")
    spec, invalid = parse_spec(body, off)
    assert (
        spec is None and invalid is not None and "does not watch Argo Rollouts (run it with --argo-rollouts" in invalid
    )
    spec, invalid = parse_spec(body, replace(off, argo_rollouts=True))
    assert invalid is None and spec is not None and spec.target.kind == "Rollout"
    assert world.Cached({"deployment_index": {}}, {}).watches("Rollout") is False


def test_a_rollout_changed_since_detection_is_left_alone_and_named_as_a_rollout() -> None:
    out = planned(rollout(2, 1), [replicaset(1, 4), replicaset(2, 1)], detected=1)
    assert isinstance(out, Skip)
    assert out.reason.startswith("the Rollout changed since detection (revision 1 -> 2)"), out.reason
