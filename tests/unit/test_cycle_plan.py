"""decide(snapshot, now): every guardrail, marker and status rule of one cycle, with plain values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hemostat.actions.base import MARKER, marker_value
from hemostat.cycle import objects
from hemostat.cycle import plan as p
from hemostat.cycle import status as status_
from hemostat.cycle.snapshot import OpenIncident, Settings, Snapshot, TargetView
from hemostat.decide import conditions as c
from hemostat.decide import ledger
from hemostat.kube import merge_patch
from hemostat.models.incident import IncidentSpec, IncidentStatus
from hemostat.models.policy import MAX_TARGETS_IN_STATUS, MitigationPolicySpec, MitigationPolicyStatus, TargetStatus
from hemostat.reading import Reading

NOW = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)
UID = "dep-uid"


def iso(t: datetime) -> str:
    return c.now_iso(t)


def policy(steps: list[dict] | None = None, **extra: Any) -> MitigationPolicySpec:
    return MitigationPolicySpec.model_validate(
        {
            "target": {"selector": {"matchLabels": {"app": "web"}}},
            "signals": [{"name": "err", "prometheus": {"query": "q"}, "breachWhen": {"above": 0.05}}],
            "mitigation": {"steps": steps if steps is not None else [{"rollback": {}}], "verifyFor": "1m"},
            "guardrails": {"cooldown": "5m", "maxActionsPerHour": 3},
            **extra,
        }
    )


def replicaset(revision: int, image: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"web-{revision}",
            "uid": f"rs-{revision}",
            "creationTimestamp": iso(NOW - timedelta(minutes=5)),
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": UID}],
        },
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": image}]}}},
    }


def deployment(name: str = "web", revision: int = 2, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": UID,
            "resourceVersion": "77",
            "generation": 4,
            "annotations": {"deployment.kubernetes.io/revision": str(revision), **(annotations or {})},
        },
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"image": f"app:v{revision}"}]},
            },
        },
    }


def view(
    value: float | None = 0.5,
    *,
    name: str = "web",
    dep: dict | None = None,
    incident: OpenIncident | None = None,
    previous: TargetStatus | None = None,
    gate: Reading | None = None,
    error: str | None = None,
) -> TargetView:
    reading = Reading.value_of(value) if value is not None else Reading.error("timeout", "slow")
    return TargetView(
        name=name,
        deployment=dep or deployment(name),
        readings={"err": reading},
        queries={"err": "q"},
        gate=gate,
        previous=previous,
        incident=incident,
        last_incident=None,
        error=error,
    )


def snapshot(*views: TargetView, spec: MitigationPolicySpec | None = None, **extra: Any) -> Snapshot:
    return Snapshot(
        namespace="shop",
        name=extra.pop("name", "errors"),
        generation=1,
        resource_version="1",
        spec=spec or policy(),
        invalid=None,
        status=extra.pop("status", MitigationPolicyStatus()),
        written={},
        paused=False,
        settings=Settings("http://prom"),
        targets=views,
        replicasets=(replicaset(1, "app:v1"), replicaset(2, "app:v2")),
        **extra,
    )


def open_incident(status: IncidentStatus, name: str = "web-1") -> OpenIncident:
    spec = IncidentSpec(
        severity="SEV3", summary="x", target={"name": "web"}, policy_ref={"name": "errors"}, source="policy"
    )
    body = {"metadata": {"name": name, "namespace": "shop", "uid": "i-uid"}}
    return OpenIncident(body=body, spec=spec, status=status, written=objects.dump(status))


def monitoring(**fields: Any) -> IncidentStatus:
    base = {
        "phase": "Detected",
        "revision": 2,
        "image": "app:v2",
        "detected_at": iso(NOW - timedelta(minutes=1)),
        "started_at": iso(NOW - timedelta(minutes=1)),
    }
    return IncidentStatus(**{**base, **fields})


def only(plan: p.CyclePlan) -> p.TargetPlan:
    (target,) = plan.targets
    return target


# --- opening and acting ----------------------------------------------------------------------


def test_a_breach_opens_an_incident_and_plans_a_guarded_rollback_with_its_ledger_entry() -> None:
    tp = only(p.decide(snapshot(view(0.5)), NOW))
    assert tp.create is not None and tp.incident_name == tp.create["metadata"]["name"]
    assert tp.create["metadata"]["labels"] == {"hemostat.dev/policy": "errors", "hemostat.dev/target": "web"}
    assert json.loads(tp.create["metadata"]["annotations"]["hemostat.dev/detection"])["phase"] == "Detected"
    assert tp.change is not None and tp.change.plan.action == "rollback"
    assert tp.change.patch[0] == {"op": "test", "path": "/metadata/generation", "value": 4}
    last = tp.change.patch[-1]
    assert last["path"] == "/metadata/annotations/hemostat.dev~1actions"
    entry = ledger.Entry(NOW, f"shop/{tp.incident_name}", "rollback", undone="web-2")
    assert ledger.read({ledger.LEDGER: last["value"]}).entries == (entry,)
    assert tp.change.ledger_patch is None  # the entry travels in the same patch as the rollback
    assert tp.target.incident == tp.incident_name


def test_a_healthy_target_opens_nothing() -> None:
    tp = only(p.decide(snapshot(view(0.0)), NOW))
    assert (tp.create, tp.change, tp.status) == (None, None, None)
    assert tp.target.verdicts == {"err": "Healthy"}


def test_incident_names_never_collide_between_policies_in_the_same_second() -> None:
    a = objects.incident_name("web", "errors", NOW)
    b = objects.incident_name("web", "latency", NOW)
    assert a != b and a.startswith("web-20261123-140000-")
    assert len(objects.incident_name("x" * 253, "errors", NOW)) <= 253


def test_a_long_deployment_name_gets_a_valid_label_value() -> None:
    name = "checkout-" + "x" * 60
    value = objects.label_value(name)
    assert len(value) <= 63 and value[-1].isalnum()
    assert value != objects.label_value(name + "y")
    assert objects.label_value("web") == "web"


def test_a_skipped_step_falls_through_to_the_next_in_the_same_cycle() -> None:
    spec = policy(steps=[{"rollback": {}}, {"scaleUp": {"maxReplicas": 10}}])
    snap = snapshot(view(0.5), spec=spec)
    snap = Snapshot(**{**snap.__dict__, "replicasets": (replicaset(2, "app:v2"),)})  # nothing to roll back to
    tp = only(p.decide(snap, NOW))
    assert [(a.step, a.result) for a in tp.status.actions] == [("rollback", "Skipped")]
    assert tp.change is not None and tp.change.plan.action == "scaleUp"


# --- guardrails shared on the Deployment -------------------------------------------------------


def test_an_action_by_another_actor_holds_the_step_for_the_cooldown() -> None:
    other = ledger.with_entry({}, ledger.Entry(NOW - timedelta(minutes=1), "shop/latency-1", "rollback"))
    tp = only(p.decide(snapshot(view(0.5, dep=deployment(annotations={ledger.LEDGER: other}))), NOW))
    assert tp.change is None
    assert "cooldown 5m after the action at" in tp.status.timeline[-1].message


def test_a_failed_step_counts_for_the_budget() -> None:
    # The plan's half: three ledger entries in the last hour spend the budget, whatever their results. That a
    # refused step leaves its entry is apply's half (e2e test_a_step_the_api_server_refuses_...).
    annotations: dict[str, str] = {}
    for minutes in (50, 40, 30):
        entry = ledger.Entry(NOW - timedelta(minutes=minutes), "shop/web-1", "rollback")
        annotations = {ledger.LEDGER: ledger.with_entry(annotations, entry)}
    status = monitoring(phase="Mitigating", next_step=0)
    tp = only(
        p.decide(snapshot(view(0.5, dep=deployment(annotations=annotations), incident=open_incident(status))), NOW)
    )
    assert tp.change is None
    assert "action budget spent: 3 of 3" in tp.status.timeline[-1].message


def test_the_ledger_keeps_a_day_and_at_most_a_hundred_entries() -> None:
    annotations: dict[str, str] = {}
    for i in range(150):
        entry = ledger.Entry(NOW - timedelta(minutes=150 - i), "shop/x", "scaleUp")
        annotations = {ledger.LEDGER: ledger.with_entry(annotations, entry)}
    entries = ledger.read(annotations).entries
    assert len(entries) == ledger.MAX_ENTRIES and entries[-1].at == NOW - timedelta(minutes=1)
    old = ledger.with_entry(annotations, ledger.Entry(NOW + timedelta(hours=25), "shop/y", "rollback"))
    assert len(ledger.read({ledger.LEDGER: old}).entries) == 1


@pytest.mark.parametrize("raw", ["not json", "{}", '[{"at": "yesterday"}]', "[1]"])
def test_a_ledger_someone_spoiled_is_ignored_not_fatal(raw: str) -> None:
    read = ledger.read({ledger.LEDGER: raw})
    assert read.entries == () and read.problem is not None


# --- the record survives a crash ---------------------------------------------------------------


def test_a_step_whose_marker_is_found_while_healthy_is_recorded_and_counted() -> None:
    marker = marker_value(
        "web-1", 0, "rollback", "revision 2 (app:v2)", "revision 1 (app:v1)", iso(NOW - timedelta(seconds=30))
    )
    dep = deployment(revision=3, annotations={MARKER: marker})
    tp = only(p.decide(snapshot(view(0.0, dep=dep, incident=open_incident(monitoring()))), NOW))
    (action,) = tp.status.actions
    assert (action.step, action.result, action.message) == ("rollback", "Succeeded", p.FROM_MARKER)
    assert tp.status.phase == "Monitoring" and tp.status.last_mitigation == "rollback"
    assert tp.change is None


# --- verification ------------------------------------------------------------------------------


def test_a_breach_during_verification_clears_the_healthy_streak() -> None:
    status = monitoring(
        phase="Monitoring",
        next_step=1,
        monitoring_since=iso(NOW - timedelta(seconds=30)),
        healthy_since=iso(NOW - timedelta(seconds=20)),
        last_mitigation="rollback",
    )
    tp = only(p.decide(snapshot(view(0.5, incident=open_incident(status))), NOW))
    assert tp.status.healthy_since is None
    patch = merge_patch(objects.dump(status), objects.dump(tp.status))
    assert patch["healthySince"] is None  # sent as null, so the server clears it


def test_merge_patch_sends_nulls_for_removed_keys_and_nothing_when_equal() -> None:
    before = {"a": 1, "b": {"x": 1, "y": 2}, "c": [1], "gone": "x"}
    after = {"a": 1, "b": {"x": 1}, "c": [1, 2], "new": True}
    assert merge_patch(before, after) == {"gone": None, "b": {"y": None}, "c": [1, 2], "new": True}
    assert merge_patch(after, after) is None


# --- minimum traffic -----------------------------------------------------------------------------


def test_below_min_traffic_nothing_breaches() -> None:
    spec = policy(minTraffic={"prometheus": {"query": "rate(x[1m])"}, "atLeast": 1})
    tp = only(p.decide(snapshot(view(0.5, gate=Reading.value_of(0.2)), spec=spec), NOW))
    assert tp.create is None and tp.target.verdicts == {"err": "NoData"}
    assert tp.target.breaching_since == {}


def test_enough_traffic_lets_the_breach_count() -> None:
    spec = policy(minTraffic={"prometheus": {"query": "rate(x[1m])"}, "atLeast": 1})
    tp = only(p.decide(snapshot(view(0.5, gate=Reading.value_of(12)), spec=spec), NOW))
    assert tp.create is not None


def test_an_unreadable_traffic_gate_is_an_error_never_a_breach() -> None:
    spec = policy(minTraffic={"prometheus": {"query": "rate(x[1m])"}, "atLeast": 1})
    tp = only(p.decide(snapshot(view(0.5, gate=Reading.error("timeout", "slow")), spec=spec), NOW))
    assert tp.create is None and tp.target.verdicts == {"err": "Error"}


# --- the policy status -------------------------------------------------------------------------


def test_a_target_with_an_error_keeps_its_clock_and_is_named_in_degraded() -> None:
    previous = TargetStatus(name="web", breaching_since={"err": iso(NOW - timedelta(seconds=10))}, incident="web-1")
    snap = snapshot(view(0.5, previous=previous, error="incident web-1: healthySince: not a UTC timestamp"))
    tp = only(p.decide(snap, NOW))
    assert tp.change is None and tp.target.incident == "web-1"
    status = status_.policy_status(snap, [tp.target], NOW)
    degraded = c.get_condition(status.conditions, "Degraded")
    assert degraded.status == "True" and "web: incident web-1: healthySince" in degraded.message


def full_target(i: int, name_length: int = 40, signals: int = 2, error: int = 120) -> TargetStatus:
    name = f"{'x' * (name_length - 6)}-{i:05d}"
    names = [f"signal-{k:02d}" for k in range(signals)]
    return TargetStatus(
        name=name,
        verdicts=dict.fromkeys(names, "Breaching"),
        breaching_since=dict.fromkeys(names, iso(NOW)),
        revision=123456,
        revision_since=iso(NOW),
        incident=objects.incident_name(name, "errors", NOW),
        error="e" * error,
    )


def test_a_status_with_every_field_set_at_1000_targets_is_under_1_mib() -> None:
    snap = snapshot()
    status = status_.policy_status(snap, [full_target(i) for i in range(1000)], NOW)
    assert len(status.targets) == 1000
    size = len(json.dumps(objects.dump(status)))
    assert size < 1024 * 1024, f"{size} bytes at 1000 targets"


def test_targets_at_their_longest_are_capped_by_bytes_and_the_policy_says_so() -> None:
    snap = snapshot()
    worst = [full_target(i, name_length=253, signals=16, error=512) for i in range(1000)]
    status = status_.policy_status(snap, worst, NOW)
    assert 0 < len(status.targets) < 1000
    assert len(json.dumps(objects.dump(status))) < status_.STATUS_BUDGET + 64 * 1024
    assert c.get_condition(status.conditions, "Degraded").status == "True"


def test_past_the_limit_targets_with_state_are_kept_and_the_policy_says_so() -> None:
    views = [view(0.0, name=f"web-{i:04d}", dep=deployment(f"web-{i:04d}")) for i in range(MAX_TARGETS_IN_STATUS + 5)]
    breaching = TargetStatus(name="zzz", breaching_since={"err": iso(NOW)})
    snap = snapshot(*views)
    targets = [p.decide_target(snap, snap.spec, v, NOW).target for v in views] + [breaching]
    status = status_.policy_status(snap, targets, NOW)
    assert len(status.targets) == MAX_TARGETS_IN_STATUS and status.matched_targets == MAX_TARGETS_IN_STATUS + 6
    assert "zzz" in {t.name for t in status.targets}
    assert c.get_condition(status.conditions, "Degraded").reason == c.TOO_MANY_TARGETS


def test_targets_cut_from_status_and_a_failing_target_are_both_said() -> None:
    # the failing target keeps its own line; the cut is said nowhere but in the condition
    views = [view(0.0, name=f"web-{i:04d}", dep=deployment(f"web-{i:04d}")) for i in range(MAX_TARGETS_IN_STATUS + 5)]
    snap = snapshot(*views)
    targets = [p.decide_target(snap, snap.spec, v, NOW).target for v in views]
    targets.append(TargetStatus(name="broken", error="403 Forbidden: incidents is forbidden"))
    status = status_.policy_status(snap, targets, NOW)
    degraded = c.get_condition(status.conditions, "Degraded")
    assert (degraded.status, degraded.reason) == ("True", c.TOO_MANY_TARGETS)
    assert f"{MAX_TARGETS_IN_STATUS + 6} targets match; status lists {MAX_TARGETS_IN_STATUS}" in degraded.message
    assert "1 target(s) failing: broken: 403 Forbidden: incidents is forbidden" in degraded.message
    assert "broken" in {t.name for t in status.targets}


def test_last_evaluated_moves_only_with_a_change_or_the_heartbeat() -> None:
    snap = snapshot(view(0.0))
    first = status_.policy_status(snap, [only(p.decide(snap, NOW)).target], NOW)
    later = Snapshot(**{**snap.__dict__, "status": first})
    second = status_.policy_status(
        later, [only(p.decide(later, NOW + timedelta(seconds=10))).target], NOW + timedelta(seconds=10)
    )
    assert second == first  # nothing to write
    third = status_.policy_status(
        later, [only(p.decide(later, NOW + status_.HEARTBEAT)).target], NOW + status_.HEARTBEAT
    )
    assert third.last_evaluated == iso(NOW + status_.HEARTBEAT)


def test_an_invalid_policy_is_reported_once_and_decides_nothing() -> None:
    snap = Snapshot(**{**snapshot(view(0.5)).__dict__, "spec": None, "invalid": "spec.interval: must be at most 1h"})
    assert p.decide(snap, NOW).targets == ()
    status = status_.policy_status(snap, [], NOW)
    valid = c.get_condition(status.conditions, "Valid")
    assert (valid.status, valid.message) == ("False", "spec.interval: must be at most 1h")
    again = status_.policy_status(Snapshot(**{**snap.__dict__, "status": status}), [], NOW + timedelta(minutes=5))
    assert again == status  # nothing new to write: no status churn, no log line per cycle


def test_phase_counts_cover_every_open_phase_and_only_open_ones() -> None:
    from hemostat.cycle.plan import CyclePlan, TargetPlan
    from hemostat.cycle.status import phase_counts
    from hemostat.models.incident import IncidentStatus
    from hemostat.models.policy import TargetStatus

    def target(phase: str | None) -> TargetPlan:
        status = IncidentStatus(phase=phase) if phase else None
        return TargetPlan(name="t", deployment=None, target=TargetStatus(name="t"), status=status)

    plan = CyclePlan(None, tuple(target(p) for p in ("Escalated", "Monitoring", "Escalated", "Resolved", None)), NOW)  # type: ignore[arg-type]
    expected = {"Detected": 0, "AwaitingApproval": 0, "Mitigating": 0, "Monitoring": 1, "Escalated": 2}
    assert phase_counts(plan) == expected
