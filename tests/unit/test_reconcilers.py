"""Who else reconciles a target, how a step keeps it from undoing the change, and how only Hemostat's own
pause is resumed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_cycle_plan import NOW, deployment, only, policy, snapshot, view

from hemostat.actions.base import Objects
from hemostat.cycle import plan as p
from hemostat.decide import lifecycle as lc
from hemostat.decide import reconcilers as r

FLUX = {"kustomize.toolkit.fluxcd.io/name": "shop", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}


def flux_managed(**annotations: str) -> dict[str, Any]:
    dep = deployment(annotations=annotations)
    dep["metadata"]["labels"] = {"app": "web", **FLUX}
    return dep


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        (FLUX, {}, r.Reconciler("Kustomization", "flux-system", "shop")),
        (
            {"helm.toolkit.fluxcd.io/name": "web", "helm.toolkit.fluxcd.io/namespace": "apps"},
            {},
            ("HelmRelease", "apps", "web"),
        ),
        ({}, {r.ARGOCD_TRACKING: "shop:apps/Deployment:prod/web"}, ("Application", "argocd", "shop")),
        ({}, {r.ARGOCD_TRACKING: "team-a_shop:apps/Deployment:prod/web"}, ("Application", "team-a", "shop")),
        ({"app.kubernetes.io/instance": "web"}, {}, None),  # Helm sets it too: not a reconciler's mark
        ({}, {}, None),
    ],
)
def test_a_reconciler_is_known_by_the_marks_it_leaves(labels: dict, annotations: dict, expected: Any) -> None:
    found = r.reconciler_of({"namespace": "prod", "labels": labels, "annotations": annotations})
    assert (
        found if found is None or isinstance(expected, r.Reconciler) else tuple(found.__dict__.values())
    ) == expected


def test_a_rollback_of_a_flux_managed_deployment_pauses_flux_for_it_in_the_same_patch() -> None:
    tp = only(p.decide(snapshot(view(0.5, dep=flux_managed())), NOW))
    assert tp.change is not None and tp.change.plan.action == "rollback"
    ops = {op["path"]: op for op in tp.change.patch}
    assert ops["/metadata/annotations/kustomize.toolkit.fluxcd.io~1reconcile"]["value"] == "disabled"
    record = json.loads(ops["/metadata/annotations/hemostat.dev~1gitops-paused"]["value"])
    assert record["incident"] == tp.incident_name and record["reconciler"] == "Flux Kustomization flux-system/shop"
    template = next(i for i, op in enumerate(tp.change.patch) if op["path"] == "/spec/template")
    paused = next(i for i, op in enumerate(tp.change.patch) if op["path"].endswith("reconcile"))
    assert paused > template and tp.change.ledger_patch is None, "one write: the step and the pause together"


def test_the_incident_records_the_pause_from_the_object_once_even_after_a_crash() -> None:
    first = only(p.decide(snapshot(view(0.5, dep=flux_managed())), NOW))
    assert first.change is not None and first.status is not None and first.incident_name is not None
    name, added = first.incident_name, [op for op in first.change.patch if op["op"] == "add"]
    marks = {op["path"].rsplit("/", 1)[-1].replace("~1", "/"): op["value"] for op in added}
    # the operator died after the patch, before recording anything: the next cycle has only the object
    after = Objects(flux_managed(**{k: v for k, v in marks.items() if k in (r.FLUX_RECONCILE, r.PAUSED)}))
    status = lc.record_paused(first.status, p.pauses(after, name), name, NOW)
    (g,) = status.gitops
    assert (g.reconciler, g.object) == ("Flux Kustomization flux-system/shop", "Deployment web")
    assert [e.reason for e in status.timeline].count("ReconcilerPaused") == 1
    assert lc.record_paused(status, p.pauses(after, name), name, NOW) == status, "recorded once"
    assert p.pauses(after, "another-incident") == []


@pytest.mark.parametrize(
    ("mode", "marks", "reason"),
    [
        ("skip", {"labels": FLUX}, "the policy says mitigation.gitops: skip"),
        (
            "pause",
            {"labels": {"helm.toolkit.fluxcd.io/name": "web"}},
            "Flux HelmRelease shop/web, which Hemostat cannot pause yet",
        ),
        (
            "pause",
            {"annotations": {r.ARGOCD_TRACKING: "shop:apps/Deployment:shop/web"}},
            "Argo CD Application argocd/shop",
        ),
    ],
)
def test_a_step_that_would_be_undone_is_skipped_saying_why_and_the_next_one_tried(
    mode: str, marks: dict, reason: str
) -> None:
    dep = deployment(annotations=marks.get("annotations"))
    dep["metadata"]["labels"] = {"app": "web", **marks.get("labels", {})}
    spec = policy(steps=[{"rollback": {}}, {"scaleUp": {"maxReplicas": 10}}])
    spec.mitigation.gitops = mode  # type: ignore[assignment]
    tp = only(p.decide(snapshot(view(0.5, dep=dep), spec=spec), NOW))
    assert tp.status is not None and tp.change is None
    # each step is tried in turn; both change the same reconciled Deployment, so both are skipped
    assert [(a.step, a.result) for a in tp.status.actions] == [("rollback", "Skipped"), ("scaleUp", "Skipped")]
    assert all(reason in a.message for a in tp.status.actions), [a.message for a in tp.status.actions]


def test_ignore_acts_without_a_pause_and_an_unmanaged_target_is_untouched_by_the_room() -> None:
    spec = policy()
    spec.mitigation.gitops = "ignore"
    tp = only(p.decide(snapshot(view(0.5, dep=flux_managed()), spec=spec), NOW))
    assert tp.change is not None and not any("reconcile" in op["path"] for op in tp.change.patch)
    plain = only(p.decide(snapshot(view(0.5)), NOW))
    assert plain.change is not None and not any("gitops" in op["path"] for op in plain.change.patch)


def test_only_this_incidents_pause_is_resumed_and_guarded_on_its_record() -> None:
    record = json.dumps(
        {"incident": "web-1", "reconciler": "Flux Kustomization flux-system/shop", "at": "2026-12-06T12:00:00Z"}
    )
    meta = {"annotations": {r.FLUX_RECONCILE: "disabled", r.PAUSED: record}}
    ops = r.resume_ops(meta, "web-1")
    assert ops[0] == {"op": "test", "path": "/metadata/annotations/hemostat.dev~1gitops-paused", "value": record}
    assert [op["op"] for op in ops[1:]] == ["remove", "remove"]
    assert r.resume_ops(meta, "web-2") == [], "another incident's pause is not this one's to resume"
    assert r.resume_ops({"annotations": {r.FLUX_RECONCILE: "disabled"}}, "web-1") == [], "a person's opt-out stays"
    assert r.paused({"annotations": {r.PAUSED: "{not json"}}) is None
