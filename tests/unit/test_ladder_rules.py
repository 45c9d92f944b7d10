"""Ladder rules that were wrong: a transient fact held as a wait, untrusted records ignored and said,
a target's failure its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from test_cycle_plan import NOW, deployment, iso, monitoring, only, open_incident, policy, snapshot, view

from hemostat.actions.base import MARKER
from hemostat.cycle import plan as p
from hemostat.cycle import status as status_
from hemostat.cycle.snapshot import Snapshot, TargetView
from hemostat.decide import conditions as c
from hemostat.decide import ledger
from hemostat.models.policy import MitigationPolicySpec


def test_a_revision_without_its_replicaset_yet_is_a_wait_not_a_skip() -> None:
    # two watch caches out of step: the Deployment says revision 3, its ReplicaSet is not cached yet
    spec = policy(steps=[{"rollback": {}}, {"scaleUp": {"maxReplicas": 10}}])
    tp = only(p.decide(snapshot(view(0.5, dep=deployment(revision=3)), spec=spec), NOW))
    assert tp.change is None and tp.status.actions == [], "the ladder must not move on"
    assert tp.status.next_step == 0
    assert tp.status.timeline[-1].reason == c.MITIGATION_HELD
    assert "revision 3 has no ReplicaSet yet" in tp.status.timeline[-1].message


def test_a_ledger_entry_dated_in_the_future_is_ignored_and_said() -> None:
    forged = ledger.with_entry({}, ledger.Entry(datetime(2099, 1, 1, tzinfo=UTC), "shop/x", "rollback"))
    snap = snapshot(view(0.5, dep=deployment(annotations={ledger.LEDGER: forged})))
    plan = p.decide(snap, NOW)
    assert only(plan).change is not None, "a forged date must not hold every action"
    said = {x.type: x for x in status_.policy_status(snap, [t.target for t in plan.targets], NOW).conditions}
    assert said["RecordsReadable"].status == "False"
    assert "web: hemostat.dev/actions" in said["RecordsReadable"].message
    assert "2099-01-01T00:00:00Z is in the future" in said["RecordsReadable"].message


def test_an_unreadable_marker_is_ignored_and_said() -> None:
    marker = json.dumps({"incident": "web-1", "step": 1, "action": "bogus", "from": "a", "to": "b", "at": iso(NOW)})
    status = monitoring(phase="Monitoring", next_step=0, monitoring_since=iso(NOW))
    bad = view(0.5, dep=deployment(annotations={MARKER: marker}), incident=open_incident(status))
    spec = policy(steps=[{"rollback": {}}, {"scaleUp": {"maxReplicas": 10}}])
    other = view(0.5, name="cart")
    plan = p.decide(snapshot(bad, other, spec=spec), NOW)
    by = {t.name: t for t in plan.targets}
    assert by["cart"].create is not None, "the other target is decided"
    assert by["web"].target.error is None, "an unreadable marker is ignored, not an error"
    assert by["web"].status is not None and by["web"].status.actions == []
    assert by["web"].target.ignored and "unknown action 'bogus'" in by["web"].target.ignored


def test_a_target_whose_decision_raises_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    decide_target = p.decide_target

    def fails_for_web(snap: Snapshot, spec: MitigationPolicySpec, v: TargetView, *args: Any) -> p.TargetPlan:
        if v.name == "web":
            raise KeyError("something no test foresaw")
        return decide_target(snap, spec, v, *args)

    monkeypatch.setattr(p, "decide_target", fails_for_web)
    plan = p.decide(snapshot(view(0.01), view(0.5, name="cart")), NOW)  # cart breaches alone: it acts
    by = {t.name: t for t in plan.targets}
    assert by["cart"].change is not None
    assert by["web"].change is None and "could not decide: KeyError" in (by["web"].target.error or "")


# --- rollback: never back onto what Hemostat removed; another step's marker is no rollback -------


def rollback_plan(dep: dict[str, Any], rss: list[dict[str, Any]], *, index: int = 0) -> Any:
    from test_rollback_plan import INCIDENT, WINDOW
    from test_rollback_plan import NOW as T

    from hemostat.actions import rollback
    from hemostat.actions.base import Context, Objects
    from hemostat.models.policy import RollbackStep

    ctx = Context(INCIDENT, index, T, detected_revision=3, rollout_window=WINDOW)
    return rollback.STEP.plan(Objects(dep, tuple(rss)), RollbackStep(), ctx)


def test_a_revision_hemostat_rolled_back_from_is_not_a_rollback_target() -> None:
    from test_rollback_plan import HASHES, deployment_obj, history

    from hemostat.actions.base import Skip

    # revision 2 was rolled back from 20 minutes ago (its ReplicaSet is named in the ledger)
    entry = {"at": "2026-11-23T14:00:00Z", "by": "shop/old", "action": "rollback", "undone": f"checkout-{HASHES[2]}"}
    dep = deployment_obj(3, "v3", annotations={ledger.LEDGER: json.dumps([entry])})
    got = rollback_plan(dep, history())
    assert isinstance(got, Skip)
    assert got.reason.startswith("revision 2 (registry.example/checkout:v2) is the revision Hemostat rolled back from")


def test_a_rollback_long_past_the_window_does_not_hold_the_revision() -> None:
    from test_rollback_plan import HASHES, deployment_obj, history

    from hemostat.actions.base import Plan

    entry = {"at": "2026-11-23T10:00:00Z", "by": "shop/old", "action": "rollback", "undone": f"checkout-{HASHES[2]}"}
    dep = deployment_obj(3, "v3", annotations={ledger.LEDGER: json.dumps([entry])})
    assert isinstance(rollback_plan(dep, history()), Plan)


def test_the_marker_of_an_earlier_scale_up_does_not_stop_a_rollback() -> None:
    from test_rollback_plan import INCIDENT, deployment_obj, history

    from hemostat.actions.base import Plan, marker_value

    marker = marker_value(INCIDENT, 0, "scaleUp", "2 replicas", "4 replicas", "2026-11-23T14:16:00Z")
    got = rollback_plan(deployment_obj(3, "v3", annotations={MARKER: marker}), history(), index=1)
    assert isinstance(got, Plan) and got.action == "rollback"
