"""Who else reconciles a target, how a step keeps it from undoing the change, and how only Hemostat's own
pause is resumed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_cycle_plan import NOW, deployment, only, policy, snapshot, view
from test_rollback_plan import deployment_obj, history

from hemostat.actions.base import Objects
from hemostat.cycle import plan as p
from hemostat.decide import lifecycle as lc
from hemostat.decide import reconcilers as r
from hemostat.models.incident import IncidentSpec, IncidentStatus

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
    status = lc.record_paused(first.status, p.pauses(after, {}, name), name, NOW)
    (g,) = status.gitops
    assert (g.reconciler, g.object) == ("Flux Kustomization flux-system/shop", "Deployment web")
    assert [e.reason for e in status.timeline].count("ReconcilerPaused") == 1
    assert lc.record_paused(status, p.pauses(after, {}, name), name, NOW) == status, "recorded once"
    assert p.pauses(after, {}, "another-incident") == []


def test_skip_mode_never_acts_on_a_reconciled_object_and_says_why() -> None:
    spec = policy(steps=[{"rollback": {}}, {"scaleUp": {"maxReplicas": 10}}])
    spec.mitigation.gitops = "skip"
    tp = only(p.decide(snapshot(view(0.5, dep=flux_managed()), spec=spec), NOW))
    assert tp.status is not None and tp.change is None
    # each step is tried in turn; both change the same reconciled Deployment, so both are skipped
    assert [(a.step, a.result) for a in tp.status.actions] == [("rollback", "Skipped"), ("scaleUp", "Skipped")]
    assert all("mitigation.gitops: skip" in a.message for a in tp.status.actions)


ARGO = {r.ARGOCD_TRACKING: "shop:apps/Deployment:shop/web"}
APP = r.Reconciler("Application", "argocd", "shop")
HELM = r.Reconciler("HelmRelease", "apps", "web")


def argo_managed() -> dict[str, Any]:
    return deployment(annotations=ARGO)


def application(**automated: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "shop", "namespace": "argocd", "resourceVersion": "12"},
        "spec": {"syncPolicy": {"automated": automated, "syncOptions": ["ServerSideApply=true"]}},
        "status": {"sync": {"revision": "abc123"}},
    }


def test_an_argo_cd_target_waits_one_cycle_for_its_application_then_pauses_self_heal_before_the_step() -> None:
    first = only(p.decide(snapshot(view(0.5, dep=argo_managed())), NOW))
    assert first.change is None and first.status is not None
    assert "held: reading Argo CD Application argocd/shop, which reconciles it" in first.status.timeline[-1].message

    owners = {APP: application(prune=True, selfHeal=True)}
    tp = only(p.decide(snapshot(view(0.5, dep=argo_managed()), owners=owners), NOW))
    assert tp.change is not None and tp.change.plan.action == "rollback" and tp.change.before is not None
    ops = tp.change.before.ops
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "12"}, "guarded"
    assert ops[1] == {"op": "replace", "path": "/spec/syncPolicy/automated/selfHeal", "value": False}
    record = json.loads(ops[2]["value"][r.PAUSED])
    assert record["was"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert record["revision"] == "abc123" and record["incident"] == tp.incident_name
    assert not any("reconcile" in op["path"] for op in tp.change.patch), "nothing on the Deployment for Argo CD"


def test_an_application_that_does_not_self_heal_needs_no_pause_and_an_unreadable_one_is_a_skip() -> None:
    for app in (application(prune=True), {**application(), "spec": {}}):
        tp = only(p.decide(snapshot(view(0.5, dep=argo_managed()), owners={APP: app}), NOW))
        assert tp.change is not None and tp.change.before is None
    forbidden = {APP: "applications is forbidden"}
    unreadable = only(p.decide(snapshot(view(0.5, dep=argo_managed()), owners=forbidden), NOW))
    assert unreadable.change is None and unreadable.status is not None
    (skipped,) = unreadable.status.actions
    assert skipped.result == "Skipped" and "could not be read (applications is forbidden)" in skipped.message


def test_a_helmrelease_is_suspended_before_the_step_and_resumed_as_it_was() -> None:
    dep = deployment()
    helm = {"helm.toolkit.fluxcd.io/name": "web", "helm.toolkit.fluxcd.io/namespace": "apps"}
    dep["metadata"]["labels"] = {"app": "web", **helm}
    release = {
        "metadata": {"name": "web", "namespace": "apps", "resourceVersion": "5", "annotations": {"team": "shop"}},
        "spec": {"interval": "5m"},
        "status": {"lastAttemptedRevision": "1.4.0", "lastAttemptedConfigDigest": "sha256:aa"},
    }
    tp = only(p.decide(snapshot(view(0.5, dep=dep), owners={HELM: release}), NOW))
    assert tp.change is not None and tp.change.before is not None
    ops = tp.change.before.ops
    assert ops[1] == {"op": "add", "path": "/spec/suspend", "value": True}
    assert ops[2]["path"] == "/metadata/annotations/hemostat.dev~1gitops-paused"
    assert json.loads(ops[2]["value"])["revision"] == "1.4.0 (sha256:aa)"
    paused_release = {**release, "metadata": {**release["metadata"], "annotations": {r.PAUSED: ops[2]["value"]}}}
    resume = r.resume_ops(paused_release, tp.incident_name or "")
    assert {"op": "add", "path": "/spec/suspend", "value": False} in resume and resume[-1]["op"] == "remove"


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
    ops = r.resume_ops({"metadata": meta}, "web-1")
    assert ops[0] == {"op": "test", "path": "/metadata/annotations/hemostat.dev~1gitops-paused", "value": record}
    assert [op["op"] for op in ops[1:]] == ["remove", "remove"]
    assert r.resume_ops({"metadata": meta}, "web-2") == [], "another incident's pause is not this one's to resume"
    assert r.resume_ops({"metadata": {"annotations": {r.FLUX_RECONCILE: "disabled"}}}, "web-1") == [], (
        "a person's opt-out stays"
    )
    assert r.paused({"annotations": {r.PAUSED: "{not json"}}) is None


@pytest.mark.parametrize(
    ("labels", "annotations", "owner"),
    [
        (
            {"helm.toolkit.fluxcd.io/name": "web", "helm.toolkit.fluxcd.io/namespace": "apps"},
            {},
            "Flux HelmRelease apps/web",
        ),
        ({}, ARGO, "Argo CD Application argocd/shop"),
    ],
)
def test_a_persons_request_never_pauses_a_helmrelease_or_application_for_them(
    labels: dict, annotations: dict, owner: str
) -> None:
    """The admission policy checks only the requester's right on the target: Hemostat never writes the
    reconciler's own object for a person (they could not be checked for it), it skips saying why."""
    dep = deployment_obj(3, "v3")
    dep["metadata"]["labels"] = {**dep["metadata"].get("labels", {}), **labels}
    dep["metadata"]["annotations"].update(annotations)
    ispec = IncidentSpec.model_validate(
        {"severity": "SEV2", "summary": "s", "target": {"name": "checkout"}, "mitigation": {"rollback": {}}}
    )
    status, change = p.decide_manual(
        "ask-1", NOW, ispec, IncidentStatus(), Objects(dep, tuple(history())), False, "x", NOW
    )
    assert change is None
    (skipped,) = status.actions
    assert skipped.result == "Skipped"
    assert f"reconciled by {owner}, which Hemostat pauses only for a policy's Incident, never on a person's" in (
        skipped.message
    )
