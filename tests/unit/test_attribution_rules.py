"""Is it the deploy? Each piece of evidence alone, their weighing, and the ladder that follows the verdict."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_cycle_plan import NOW, iso, monitoring, open_incident, policy

from hemostat.cycle import plan as p
from hemostat.cycle import status as status_
from hemostat.cycle.snapshot import Settings, Snapshot, TargetView
from hemostat.decide import attribution as a
from hemostat.decide import conditions as c
from hemostat.decide import windows
from hemostat.decide.health import SignalOutcome, Verdict
from hemostat.models.incident import IncidentStatus
from hemostat.models.policy import MitigationPolicySpec, MitigationPolicyStatus, Signal
from hemostat.reading import Reading

ERR = Signal.model_validate({"name": "err", "prometheus": {"query": "q"}, "breachWhen": {"above": 0.05}})


def value(v: float) -> Reading:
    return Reading.value_of(v)


def breach(v: float | None, name: str = "err", since: timedelta = timedelta(seconds=5)) -> SignalOutcome:
    return SignalOutcome(name, Verdict.BREACHING, v, "", "> 0.05", NOW - since, True)


# --- each clue alone -----------------------------------------------------------------------------


def test_contrast_blames_a_new_revision_that_breaches_alone() -> None:
    clue = a.contrast(ERR, value(0.6), value(0.01), "revision 1")
    assert clue.says == "deploy" and "only the new revision breaches" in clue.detail


def test_contrast_sees_a_cause_both_revisions_share() -> None:
    assert a.contrast(ERR, value(0.3), value(0.28), "revision 1").says == a.SHARED


def test_contrast_does_not_blame_a_new_revision_that_the_bound_merely_falls_between() -> None:
    # a 5 % dependency fault on both revisions with the bound at 5 %: 0.0501 against 0.0499 is noise, not a
    # bad revision; the new one must be as much further past the bound as when the old one breaches too
    clue = a.contrast(ERR, value(0.0501), value(0.0499), "revision 1")
    assert clue.says == a.SHARED, clue
    assert "within 1.2x of each other" in clue.detail
    assert a.contrast(ERR, value(0.2), value(0.049), "revision 1").says == "deploy"


def test_a_young_revision_is_not_blamed_because_the_bound_falls_under_the_other_sides_allowance() -> None:
    # the old revision reads 0.02 over its 5 s, the new one 0.055 over its 2 s: at its most the old one reads
    # 0.05 over the same seconds, just at the 5 % bound, so 0.055 is not clearly worse than it
    young = a.Young(timedelta(seconds=5), timedelta(seconds=2), "2 s of 5")
    assert not young.blames(ERR, a.overshoot(0.055, ERR), a.overshoot(0.02, ERR))
    assert young.blames(ERR, a.overshoot(0.3, ERR), a.overshoot(0.02, ERR))
    assert young.blames(ERR, a.overshoot(0.06, ERR), 0.0), "against a revision at 0, blamed at once"
    just = a.Young(timedelta(seconds=5), timedelta(0), "its first second")  # stamped less than a second ago
    assert just.blames(ERR, a.overshoot(1.0, ERR), 0.0), "100 % errors against 0: no allowance can excuse it"


def test_contrast_blames_a_latency_regression_the_bound_falls_between() -> None:
    # p99 +50 % on the new revision: 0.075 against the old one's 0.05, under a 60 ms bound (the corpus' case)
    p99 = Signal.model_validate({"name": "p99", "prometheus": {"query": "q"}, "breachWhen": {"above": 0.06}})
    assert a.contrast(p99, value(0.075), value(0.05), "revision 1").says == "deploy"


def test_contrast_still_blames_a_new_revision_far_worse_during_a_shared_outage() -> None:
    assert a.contrast(ERR, value(0.9), value(0.3), "revision 1").says == "deploy"


def test_contrast_without_a_value_for_either_revision_is_unavailable_never_a_guess() -> None:
    clue = a.contrast(ERR, Reading.no_data("NaN"), value(0.01), "revision 1")
    assert clue.says == a.NONE and "unavailable" in clue.detail and "NaN" in clue.detail


HOUR_AGO, MINUTE_AGO = NOW - timedelta(hours=1), NOW - timedelta(minutes=1)


def fleet_of(**overshoots: float | None) -> a.Fleet:
    """Peers unchanged for an hour: a value is how far past ERR's bound it breaches; None is a healthy peer."""
    return a.Fleet([a.Peer(t, HOUR_AGO, {"err": v} if v is not None else {}) for t, v in overshoots.items()])


def judged(peers: a.Fleet, value: float = 0.3, since: datetime = MINUTE_AGO) -> a.Clue:
    """web, rolled out a minute ago, breaching at `value`, against `peers`."""
    return a.fleet("web", [breach(value)], {"err": ERR}, peers, since, NOW)


def test_fleet_untouched_peers_breaching_alike_is_a_shared_cause() -> None:
    assert judged(fleet_of(cart=6.0)).says == "dependency"
    assert judged(fleet_of(cart=6.0, api=5.0, db=None, auth=6.0)).says == "dependency"
    assert judged(fleet_of(cart=6.0, api=5.0, auth=6.0)).says == "global"


def test_fleet_a_target_far_worse_than_its_breaching_peers_is_to_blame() -> None:
    clue = judged(fleet_of(cart=6.0, api=5.0, auth=6.0), value=1.0)
    assert clue.says == "deploy" and "3.3x further" in clue.detail


def test_fleet_with_healthy_peers_says_the_target_breaches_alone_and_without_peers_nothing() -> None:
    assert judged(fleet_of(cart=None, api=None)).says == a.ALONE
    alone = a.Fleet([a.Peer("web", MINUTE_AGO, {"err": 6.0})])
    assert judged(alone).says == a.NONE


def test_a_peer_changed_since_the_targets_own_rollout_is_no_control() -> None:
    later = a.Fleet([a.Peer("cart", NOW - timedelta(seconds=30), {"err": 6.0}), a.Peer("api", HOUR_AGO, {})])
    clue = judged(later)
    assert clue.says == a.ALONE and "all 1 untouched peers" in clue.detail, "cart rolled out after web: not a control"
    # a target whose own revision is old compares with peers unchanged for QUIET; one changed since that
    # breaches alike leaves the cause open (its change, or a shared cause)
    recent = a.Fleet([a.Peer("web", HOUR_AGO, {"err": 6.0}), a.Peer("cart", NOW - timedelta(minutes=5), {"err": 6.0})])
    assert judged(recent, since=HOUR_AGO).says == "unknown"


def test_peers_changed_with_the_target_breaching_alike_leave_the_cause_unknown_never_the_deploys() -> None:
    # the whole fleet rolled out together three minutes ago (no untouched peer), then a dependency fails
    together = NOW - timedelta(minutes=3)
    peers = a.Fleet([a.Peer(t, together, {"err": 6.0}) for t in ("web", "cart", "api", "auth")])
    clue = judged(peers, since=together)
    assert clue.says == "unknown"
    assert clue.detail == (
        "err: no untouched peer, and 3 of 3 peers changed within 10m of this one breach too, 2m55s after its "
        "revision began: a shared cause, or a change they share"
    )
    timing = a.timing([breach(0.3)], 1, together, timedelta(minutes=30), NOW)
    assert timing.says == "deploy" and a.attribute([clue, timing]).verdict == "unknown"
    # far worse than its co-changed peers, it is to blame on its own, as against untouched ones
    assert judged(peers, value=1.0, since=together).says == "deploy"
    # co-changed peers within bounds tell nothing: as before
    quiet = a.Fleet([a.Peer("web", together, {"err": 6.0}), a.Peer("cart", together, {})])
    assert judged(quiet, since=together).says == a.NONE
    # revisions rolled out together and breaching as they begin to serve: their deploys, as before (timing says so)
    just = NOW - timedelta(seconds=20)
    fresh = a.Fleet([a.Peer(t, just, {"err": 6.0}) for t in ("web", "cart")])
    assert judged(fresh, since=just).says == a.NONE


def test_a_breach_resting_only_on_missing_data_is_data_quality() -> None:
    assert a.data_quality([breach(None)]).says == "dataQuality"
    assert a.data_quality([breach(None), breach(0.3, "lat")]).says == a.NONE


def test_timing_a_breach_that_began_before_the_revision_is_not_that_revision() -> None:
    window = timedelta(hours=1)
    assert (
        a.timing([breach(0.3, since=timedelta(minutes=5))], 3, NOW - timedelta(minutes=1), window, NOW).says == a.SHARED
    )
    assert a.timing([breach(0.3)], 3, NOW - timedelta(minutes=1), window, NOW).says == "deploy"
    assert a.timing([breach(0.3)], 3, NOW - timedelta(hours=2), window, NOW).says == a.NONE


# --- weighing ------------------------------------------------------------------------------------


def clue(kind: str, says: str) -> a.Clue:
    return a.Clue(kind, says, f"{kind} says {says}")


@pytest.mark.parametrize(
    ("clues", "verdict"),
    [
        ([clue("dataQuality", "dataQuality"), clue("contrast", "deploy")], "dataQuality"),
        ([clue("contrast", "deploy"), clue("fleet", "global"), clue("traffic", "traffic")], "deploy"),  # compound
        ([clue("contrast", a.SHARED), clue("traffic", "traffic")], "traffic"),
        ([clue("fleet", "global"), clue("traffic", "traffic")], "global"),  # request rates jump after a rollout too
        ([clue("contrast", a.SHARED), clue("fleet", "global")], "global"),
        ([clue("contrast", a.SHARED), clue("fleet", a.NONE)], "dependency"),
        ([clue("fleet", "deploy"), clue("timing", "deploy")], "deploy"),
        ([clue("fleet", "dependency"), clue("timing", "deploy")], "dependency"),
        ([clue("timing", a.SHARED), clue("fleet", a.ALONE)], "unknown"),
        ([clue("timing", "deploy"), clue("fleet", a.ALONE)], "deploy"),
        ([clue("timing", "deploy"), clue("fleet", a.NONE), clue("contrast", a.NONE)], "deploy"),
        ([clue("timing", a.NONE), clue("fleet", a.ALONE)], "deploy"),
        ([clue("timing", a.NONE), clue("fleet", a.NONE), clue("contrast", a.NONE)], "unknown"),
        # a comparison not over the same seconds yet: no verdict, even where the peers say global or nothing
        ([clue("contrast", a.UNSETTLED), clue("fleet", "global")], a.UNSETTLED),
        ([clue("contrast", a.UNSETTLED), clue("fleet", a.ALONE), clue("timing", "deploy")], a.UNSETTLED),
        ([clue("contrast", a.UNSETTLED), clue("fleet", "deploy"), clue("timing", "deploy")], a.UNSETTLED),
        ([clue("fleet", a.UNSETTLED), clue("traffic", "traffic")], a.UNSETTLED),
        ([clue("progress", "deploy"), clue("contrast", a.UNSETTLED)], "deploy"),
    ],
)
def test_the_clues_are_weighed_in_a_fixed_order(clues: list[a.Clue], verdict: str) -> None:
    found = a.attribute(clues)
    assert found.verdict == verdict
    assert found.clues == tuple(clues), "every clue is kept as evidence, not only the deciding one"


# --- through the cycle: four Deployments, one freshly rolled out ---------------------------------


def replicaset(dep: str, revision: int, serving: int, minutes_ago: float = 30) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{dep}-{revision}",
            "uid": f"{dep}-rs-{revision}",
            "creationTimestamp": iso(NOW - timedelta(minutes=minutes_ago)),
            "labels": {"pod-template-hash": f"h{revision}"},
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Deployment", "name": dep, "uid": f"{dep}-uid"}],
        },
        "spec": {
            "replicas": serving,
            "template": {
                "metadata": {"labels": {"app": dep}},
                "spec": {"containers": [{"image": f"{dep}:v{revision}"}]},
            },
        },
    }


def deployment(name: str, revision: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"{name}-uid",
            "resourceVersion": "77",
            "generation": 4,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
        },
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"image": f"{name}:v{revision}"}]},
            },
        },
    }


def target(name: str, err: float, *, revision: int = 1, **extra: Any) -> TargetView:
    return TargetView(
        name=name,
        deployment=deployment(name, revision),
        readings={"err": value(err)},
        queries={"err": "q"},
        gate=None,
        previous=None,
        incident=extra.pop("incident", None),
        last_incident=None,
        **extra,
    )


def fleet_snapshot(
    *views: TargetView, spec: MitigationPolicySpec, rolling: bool = False, web_minutes_ago: float = 1
) -> Snapshot:
    """web is at revision 2 since a minute ago (revision 1 still serving when `rolling`); the others at 1 for long."""
    sets = [replicaset("web", 1, 2 if rolling else 0), replicaset("web", 2, 2, minutes_ago=web_minutes_ago)]
    sets += [replicaset(v.name, 1, 2) for v in views if v.name != "web"]
    return Snapshot(
        namespace="shop",
        name="errors",
        generation=1,
        resource_version="1",
        spec=spec,
        invalid=None,
        status=MitigationPolicyStatus(),
        written={},
        paused=False,
        settings=Settings("http://prom"),
        targets=views,
        replicasets=tuple(sets),
    )


PEERS = ("cart", "api", "auth")
LADDER = [{"rollback": {}}, {"scaleUp": {"maxReplicas": 10}}]


def decided(snap: Snapshot) -> p.TargetPlan:
    return next(t for t in p.decide(snap, NOW).targets if t.name == "web")


def test_a_shared_outage_after_a_healthy_rollout_is_not_rolled_back_and_a_person_is_told() -> None:
    # the story of the issue: a dependency fails and all four return errors, one was just rolled out
    spec = policy(steps=LADDER)
    snap = fleet_snapshot(
        target("web", 0.3, revision=2), target("cart", 0.3), target("api", 0.31), target("auth", 0.29), spec=spec
    )
    web = decided(snap)
    assert web.change is None, "the healthy release must stay"
    assert web.status.attribution.verdict == "global"
    assert "3 of 3 untouched peers breach too" in web.status.attribution.reason
    assert web.status.phase == "Escalated"
    assert "no step left in the ladder is for a global cause" in web.status.timeline[-1].message
    said = [e.reason for e in web.status.timeline]
    assert said[:2] == [c.DETECTED, c.ATTRIBUTED], "the verdict is on the timeline before anything is done"


def test_a_bad_rollout_among_healthy_peers_is_rolled_back_as_before() -> None:
    spec = policy(steps=LADDER)
    snap = fleet_snapshot(target("web", 0.6, revision=2), target("cart", 0.01), target("api", 0.01), spec=spec)
    web = decided(snap)
    assert web.status.attribution.verdict == "deploy" and web.status.attribution.confidence == 0.7
    assert web.change is not None and web.change.plan.action == "rollback"


def by_revision(new: float, old: float) -> dict[str, Any]:
    return {"err": {"h2": value(new), "h1": value(old)}}


SPLIT = [
    {
        "name": "err",
        "prometheus": {"query": "q"},
        "byRevision": {"query": "q by (pod_template_hash)"},
        "breachWhen": {"above": 0.05},
    }
]


def test_during_a_rollout_a_bad_new_revision_is_blamed_even_while_a_dependency_fails() -> None:
    spec = policy(steps=LADDER, signals=SPLIT)
    web = target("web", 0.7, revision=2, by_revision=by_revision(0.95, 0.3))
    snap = fleet_snapshot(web, target("cart", 0.3), target("api", 0.3), target("auth", 0.3), spec=spec, rolling=True)
    tp = decided(snap)
    assert tp.status.attribution.verdict == "deploy" and tp.status.attribution.confidence == 0.95
    assert tp.change is not None and tp.change.plan.action == "rollback"


def test_during_a_rollout_both_revisions_failing_alike_is_not_the_deploy() -> None:
    spec = policy(steps=LADDER, signals=SPLIT)
    web = target("web", 0.3, revision=2, by_revision=by_revision(0.3, 0.31))
    tp = decided(fleet_snapshot(web, spec=spec, rolling=True))
    assert tp.status.attribution.verdict == "dependency"
    assert tp.change is None and tp.status.phase == "Escalated"
    assert tp.status.actions == [], "a step the verdict rules out is not even tried when none is left"


def test_a_surge_skips_the_rollback_and_scales_up() -> None:
    surge = {"traffic": {"prometheus": {"query": "rate_now / rate_before"}, "jump": 3}}
    spec = policy(steps=LADDER, attribution=surge)
    tp = decided(fleet_snapshot(target("web", 0.3, revision=2, traffic=value(5.0)), spec=spec))
    assert tp.status.attribution.verdict == "traffic"
    (skipped,) = tp.status.actions
    assert skipped.step == "rollback" and skipped.result == "Skipped"
    assert skipped.message.startswith("not for a traffic cause (request rate 5x its baseline")
    assert tp.change is not None and tp.change.plan.action == "scaleUp"


SURGE = {
    "traffic": {"prometheus": {"query": "sum(rate(requests[5s])) / sum(rate(requests[30s] offset 10s))"}, "jump": 3}
}


def breaching_for(view: TargetView, seconds: float) -> TargetView:
    """The view with its breach first read `seconds` ago."""
    previous = p.TargetStatus(name=view.name, breaching_since={"err": iso(NOW - timedelta(seconds=seconds))})
    return TargetView(**{**view.__dict__, "previous": previous})


def test_a_surge_read_before_its_window_covers_the_breach_is_not_taken_for_the_deploy() -> None:
    # a 3.5x surge on web alone, a second old: its 5 s rate still averages 4 s before it, and reads 2.7x
    spec = policy(steps=LADDER, attribution=SURGE)
    healthy = [target(name, 0.0) for name in PEERS]
    web = breaching_for(target("web", 0.3, revision=2, traffic=value(2.7)), 1)
    early = decided(fleet_snapshot(web, *healthy, spec=spec, web_minutes_ago=1))
    assert early.change is None and early.status.attribution is None, "a surge of up to 9.5x cannot be ruled out"
    assert "request rate not compared with its baseline yet: the breach began" in early.status.timeline[-1].message
    # the same reading 4 s into the breach: a surge of at most 3.1x, still more than the jump: wait
    assert decided(fleet_snapshot(breaching_for(web, 4), *healthy, spec=spec)).status.attribution is None
    # once the window covers the breach, the surge is read as it is
    covered = breaching_for(target("web", 0.3, revision=2, traffic=value(3.5)), 6)
    assert decided(fleet_snapshot(covered, *healthy, spec=spec)).status.attribution.verdict == "traffic"


def test_a_request_rate_near_its_baseline_rules_a_surge_out_before_the_window_covers_the_breach() -> None:
    # 2 s into the breach, 1.1x: a surge that began with it would read at least 1.8x by now
    spec = policy(steps=LADDER, attribution=SURGE)
    healthy = [target(name, 0.0) for name in PEERS]
    web = breaching_for(target("web", 0.3, revision=2, traffic=value(1.1)), 2)
    tp = decided(fleet_snapshot(web, *healthy, spec=spec))
    assert tp.status.attribution.verdict == "deploy" and tp.change is not None


def test_a_request_rate_that_misses_the_new_revisions_requests_rules_no_surge_out() -> None:
    # the corpus' surge-10x-1: a 10x surge on web as its rollout finishes. Revision 2's Pods were scraped once,
    # so their series have no rate yet: the request rate (0.95x) counts only revision 1's last seconds, which,
    # overloaded, already breach (0.13). Revision 2 is not read on the signal's byRevision query either: until
    # it is, a rate under the jump says nothing
    spec = policy(steps=LADDER, signals=SPLIT, attribution=SURGE)
    healthy = [target(name, 0.0) for name in PEERS]
    unread = {"err": {"h1": value(0.13)}}
    web = breaching_for(target("web", 0.13, revision=2, traffic=value(0.95), by_revision=unread), 1)
    early = decided(fleet_snapshot(web, *healthy, spec=spec, web_minutes_ago=2 / 60))
    assert early.change is None and early.status.attribution is None, early.status.attribution
    held = early.status.timeline[-1].message
    assert "request rate not compared with its baseline yet: revision 2 not read yet (err)" in held, held
    # once its series have a rate, the same request rate rules a surge out
    read = breaching_for(target("web", 0.13, revision=2, traffic=value(0.95), by_revision=by_revision(0.13, 0.13)), 1)
    tp = decided(fleet_snapshot(read, *healthy, spec=spec, web_minutes_ago=2 / 60))
    assert tp.status.attribution.verdict == "deploy" and tp.change is not None
    # a revision never read in a minute: its series are not coming, the rate is taken as it is
    late = decided(fleet_snapshot(web, *healthy, spec=spec, web_minutes_ago=2))
    assert late.status.attribution.verdict == "deploy"


def test_times_stored_to_the_second_are_taken_at_their_latest() -> None:
    # a breach stamped 2 s ago (stamps are whole seconds, floored) may have begun 1 s ago: 1.6x is then what
    # a surge of up to 4x reads, not 2.5x, so it is not ruled out yet
    spec = policy(steps=LADDER, attribution=SURGE)
    healthy = [target(name, 0.0) for name in PEERS]
    web = breaching_for(target("web", 0.3, revision=2, traffic=value(1.6)), 2)
    assert decided(fleet_snapshot(web, *healthy, spec=spec)).status.attribution is None
    # likewise a revision stamped as current 5 s ago may have served only 4 s of a 5 s window
    assert a.young(ERR, {"err": timedelta(seconds=5)}, NOW - timedelta(seconds=5), NOW) is not None


def test_unknown_holds_then_escalates_when_the_hold_ends() -> None:
    spec = policy(steps=LADDER, attribution={"unknown": {"hold": "2m", "then": "escalate"}})
    # the breach began before revision 2 became current: not that revision, and nothing else is known
    first = monitoring(revision=2, started_at=iso(NOW - timedelta(minutes=10)))
    web = target("web", 0.3, revision=2, incident=open_incident(first))
    web = TargetView(
        **{
            **web.__dict__,
            "previous": p.TargetStatus(name="web", breaching_since={"err": iso(NOW - timedelta(minutes=10))}),
        }
    )
    tp = decided(fleet_snapshot(web, spec=spec))
    assert tp.status.attribution.verdict == "unknown"
    assert tp.change is None and tp.status.phase == "Detected"
    assert "held: cause unknown" in tp.status.timeline[-1].message
    assert tp.status.attribution.hold_until == iso(NOW + timedelta(minutes=2))
    later = TargetView(**{**web.__dict__, "incident": open_incident(tp.status)})
    after = next(t for t in p.decide(fleet_snapshot(later, spec=spec), NOW + timedelta(minutes=3)).targets)
    assert after.change is None and after.status.phase == "Escalated"
    assert "cause still unknown when the hold ended" in after.status.timeline[-1].message


def test_observe_records_the_verdict_and_acts_as_without_it() -> None:
    spec = policy(steps=LADDER, attribution={"mode": "observe"})
    snap = fleet_snapshot(target("web", 0.3, revision=2), target("cart", 0.3), target("api", 0.3), spec=spec)
    tp = decided(snap)
    assert tp.status.attribution.verdict == "dependency" and tp.status.attribution.mode == "observe"
    assert "observe mode: acting as without attribution" in tp.status.timeline[1].message
    assert tp.change is not None and tp.change.plan.action == "rollback"


def test_off_records_nothing_and_acts_as_before() -> None:
    spec = policy(steps=LADDER, attribution={"mode": "off"})
    snap = fleet_snapshot(target("web", 0.3, revision=2), target("cart", 0.3), target("api", 0.3), spec=spec)
    tp = decided(snap)
    assert tp.status.attribution is None and tp.change is not None


def test_a_signal_that_cannot_be_split_by_revision_is_said_in_the_policy_conditions() -> None:
    spec = policy(steps=LADDER, signals=SPLIT)
    unsplittable = Reading.error("ambiguous", "series without the label 'pod_template_hash'")
    snap = fleet_snapshot(target("web", 0.3, revision=2, by_revision={"err": unsplittable}), spec=spec, rolling=True)
    plan = p.decide(snap, NOW)
    web = plan.targets[0]
    assert web.status.attribution.evidence[1].says == a.NONE
    assert "series without the label 'pod_template_hash'" in web.status.attribution.evidence[1].detail
    said = {x.type: x for x in status_.policy_status(snap, [t.target for t in plan.targets], NOW).conditions}
    assert said["RevisionContrast"].status == "False"
    assert "err's byRevision query: series without the label" in said["RevisionContrast"].message
    plain = fleet_snapshot(target("web", 0.01), spec=policy())
    said = {x.type: x for x in status_.policy_status(plain, [], NOW).conditions}
    assert said["RevisionContrast"].message.startswith("no byRevision query for err")


def blamed(
    status: IncidentStatus, verdict: str, revision: int, at: datetime, confidence: float = 0.85
) -> IncidentStatus:
    """`status` with a verdict reached at `at` on `revision`."""
    found = p.lc.AttributionStatus(
        verdict=verdict, confidence=confidence, mode="enforce", reason="earlier", at=iso(at), revision=revision
    )
    return status.model_copy(update={"attribution": found})


def test_a_bad_rollout_onto_a_target_escalated_for_a_shared_outage_reopens_the_ladder_and_rolls_back() -> None:
    spec = policy(steps=LADDER)
    outage = monitoring(revision=1, image="web:v1", phase="Escalated", escalated_at=iso(NOW - timedelta(minutes=1)))
    outage = blamed(outage, "global", 1, NOW - timedelta(minutes=1))
    peers = [target(n, 0.2) for n in ("cart", "api", "auth")]
    web = target("web", 1.0, revision=2, incident=open_incident(outage))
    web = TargetView(
        **{
            **web.__dict__,
            "previous": p.TargetStatus(name="web", breaching_since={"err": iso(NOW - timedelta(minutes=2))}),
        }
    )
    tp = decided(fleet_snapshot(web, *peers, spec=spec))
    found = tp.status.attribution
    assert found.verdict == "deploy" and found.revision == 2, found
    assert "this target is 5.0x further past the bound" in found.reason
    assert "cause: deploy (was global)" in next(e.message for e in tp.status.timeline if e.reason == c.ATTRIBUTED)
    assert tp.change is not None and tp.change.plan.action == "rollback"


def test_a_verdict_is_weighed_again_until_a_step_follows_it_or_a_new_revision_rolls_out() -> None:
    outage = blamed(
        monitoring(revision=1, phase="Escalated", escalated_at=iso(NOW - timedelta(minutes=1))), "global", 1, NOW
    )
    assert p.lc.attributable(outage, 1), "escalated with no step since: the evidence may still change"
    scaled = p.ActionRecord(step="scaleUp", index=0, result="Succeeded", at=iso(NOW))
    acted = outage.model_copy(update={"actions": [scaled]})
    assert not p.lc.attributable(acted, 1), "a step was taken on this verdict: it is kept"
    assert p.lc.attributable(acted, 2), "someone else rolled out revision 2: a new suspect"
    rollback = p.ActionRecord(step="rollback", index=0, result="Succeeded", at=iso(NOW))
    rolled = outage.model_copy(update={"actions": [rollback]})
    assert not p.lc.attributable(rolled, 2), "a revision our own rollback made is not someone else's rollout"


def test_a_bad_rollout_onto_a_target_whose_earlier_deploy_verdict_had_nothing_to_roll_back_is_rolled_back() -> None:
    # revision 1 was blamed (nothing older to go back to: skipped, scaled up, escalated); then v2 rolls out, worse
    spec = policy(steps=LADDER)
    skipped = p.ActionRecord(
        step="rollback", index=0, result="Skipped", message="no revision older than 1", at=iso(NOW)
    )
    scaled = p.ActionRecord(step="scaleUp", action="scaleUp", index=1, result="Succeeded", at=iso(NOW))
    earlier = monitoring(revision=1, phase="Escalated", next_step=2, actions=[skipped, scaled])
    earlier = blamed(earlier, "deploy", 1, NOW - timedelta(minutes=3), confidence=0.5)
    web = target("web", 1.0, revision=2, incident=open_incident(earlier))
    tp = decided(fleet_snapshot(web, *[target(n, 0.01) for n in PEERS], spec=spec))
    assert tp.status.attribution.revision == 2
    assert "for revision 2, rolled out during the incident" in tp.status.timeline[-1].message
    assert tp.change is not None and tp.change.plan.action == "rollback", tp.status.timeline[-1]


def test_a_bad_new_revision_on_a_third_of_the_pods_does_not_hide_in_the_average() -> None:
    # 2 % errors on the new revision, 0 on the old one still serving: 0.67 % for the Deployment, under 1 %
    signals = [{**SPLIT[0], "breachWhen": {"above": 0.01}}]
    spec = policy(steps=LADDER, signals=signals)
    web = target("web", 0.0067, revision=2, by_revision=by_revision(0.02, 0.0))
    tp = decided(fleet_snapshot(web, spec=spec, rolling=True))
    assert tp.create is not None, "the new revision breaches on its own: an incident"
    assert tp.status.evidence[0].value == "0.02"
    assert "new revision 0.02, old revision 1 0: only the new revision breaches" in tp.status.attribution.reason
    assert tp.change is not None and tp.change.plan.action == "rollback"
    # the old revision breaching as well is not the new one's: the Deployment's own value decides
    shared = target("web", 0.0067, revision=2, by_revision=by_revision(0.02, 0.02))
    assert decided(fleet_snapshot(shared, spec=spec, rolling=True)).create is None


# the same ratio as the corpus': rates over 5 s, so a revision whose Pods serve for less averages fewer seconds
WINDOWED = [
    {
        "name": "err",
        "prometheus": {"query": "sum(rate(errors[5s])) / sum(rate(requests[5s]))"},
        "byRevision": {
            "query": "sum by (pod_template_hash) (rate(errors[5s])) / sum by (pod_template_hash) (rate(requests[5s]))"
        },
        "breachWhen": {"above": 0.01},
    }
]


def test_a_revision_younger_than_its_signals_window_is_not_compared_until_it_has_served_that_long() -> None:
    # a dependency fails for web and cart as web's revision 2 begins to serve (2 s ago): the new Pods' series are
    # younger than the 5 s window, so their rate covers the failing seconds only, while the old revision's and
    # cart's still average in the healthy seconds before: 0.3 against 0.1 reads "the new revision is 3x worse"
    spec = policy(steps=LADDER, signals=WINDOWED)
    web = target("web", 0.2, revision=2, by_revision=by_revision(0.3, 0.1))
    views = (web, target("cart", 0.1), target("api", 0.0), target("auth", 0.0))
    young = decided(fleet_snapshot(*views, spec=spec, rolling=True, web_minutes_ago=2 / 60))
    assert young.change is None, "a comparison over different seconds blames nothing"
    assert young.status.attribution is None and young.status.actions == []
    held = young.status.timeline[-1].message
    assert "err: the new revision not compared with revision 1 yet: its revision serves since" in held
    assert "less than the 5s err averages over (until 2026-11-23T14:00:04Z)" in held, held
    # once the new revision has served a whole window, the same values are a fair comparison: far worse
    settled = decided(fleet_snapshot(*views, spec=spec, rolling=True, web_minutes_ago=10 / 60))
    assert settled.status.attribution.verdict == "deploy"
    assert settled.change is not None and settled.change.plan.action == "rollback"


def test_a_young_revision_without_a_series_yet_is_not_blamed_for_the_old_ones_breach() -> None:
    # the dependency fails as v2's first Pod begins to serve, before Prometheus has two samples of it: the
    # Deployment breaches on v1's Pods alone, and "the breach began after revision 2" is all timing can say
    spec = policy(steps=LADDER, signals=WINDOWED)
    web = target("web", 0.3, revision=2, by_revision={"err": {"h1": value(0.3)}})
    young = decided(fleet_snapshot(web, spec=spec, rolling=True, web_minutes_ago=2 / 60))
    assert young.change is None and young.status.attribution is None, young.status.attribution
    assert "err: the new revision not read yet: its revision serves since" in young.status.timeline[-1].message
    # a revision that has served its window and still has no series: unavailable, as before
    settled = decided(fleet_snapshot(web, spec=spec, rolling=True, web_minutes_ago=10 / 60))
    contrast = next(c for c in settled.status.attribution.evidence if c.kind == "contrast")
    assert contrast.says == a.NONE and "no value for the new revision" in contrast.detail


def test_a_finished_rollout_is_judged_on_its_own_revision_while_the_replaced_one_is_still_in_the_window() -> None:
    # revision 2 replaced revision 1 two seconds ago: the Deployment's 5 s rate still averages revision 1's
    # healthy seconds in (0.08, under the bound), while revision 2, all that serves now, fails 20 % of its requests
    spec = policy(steps=LADDER, signals=[{**WINDOWED[0], "breachWhen": {"above": 0.1}}])
    views = (target("web", 0.08, revision=2, by_revision=by_revision(0.2, 0.0)), *(target(n, 0.0) for n in PEERS))
    now = decided(fleet_snapshot(*views, spec=spec, web_minutes_ago=2 / 60))
    assert now.create is not None, "what serves now breaches: an incident, not one window later"
    assert now.status.evidence[0].value == "0.2"
    # once revision 2 has served a whole window the Deployment's reading is its own: read as it is
    assert decided(fleet_snapshot(*views, spec=spec, web_minutes_ago=10 / 60)).create is None
    # a young series' rate covers fewer seconds than the window, so it may read low: no breach below from it
    floor = policy(steps=LADDER, signals=[{**WINDOWED[0], "breachWhen": {"below": 0.5}}])
    low = (target("web", 0.9, revision=2, by_revision=by_revision(0.3, 1.0)), *(target(n, 1.0) for n in PEERS))
    assert decided(fleet_snapshot(*low, spec=floor, web_minutes_ago=2 / 60)).create is None


def test_a_young_revision_is_not_far_worse_than_its_peers_either() -> None:
    # the rollout finished: no old revision to contrast, but web's young Pods make it read worse than cart
    spec = policy(steps=LADDER, signals=WINDOWED)
    views = (target("web", 0.3, revision=2), target("cart", 0.1), target("api", 0.0), target("auth", 0.0))
    young = decided(fleet_snapshot(*views, spec=spec, web_minutes_ago=2 / 60))
    assert young.change is None and young.status.attribution is None
    settled = decided(fleet_snapshot(*views, spec=spec, web_minutes_ago=10 / 60))
    assert settled.status.attribution.verdict == "deploy" and "3.0x further" in settled.status.attribution.reason


def test_a_young_revision_the_contrast_cannot_judge_yet_is_not_blamed_on_its_peers_instead() -> None:
    # the corpus' wrong rollback (dependency-0.3-all-rolling-2): a dependency fails for the whole fleet as web's
    # new Pod begins to serve. The new revision's young series is all failure (0.3); the old revision's and the
    # peers' 5 s rates have only begun to rise, the peers' least, as Prometheus scraped them just after the
    # fault began (0.0184, "16.3x further past the bound"). The contrast, which sees the same Deployment's old
    # revision, cannot tell yet; the peers, further off, must not decide in its place
    spec = policy(steps=LADDER, signals=WINDOWED)
    web = target("web", 0.3, revision=2, by_revision=by_revision(0.3, 0.12))
    views = (web, *(target(n, 0.0184) for n in PEERS))
    tp = decided(fleet_snapshot(*views, spec=spec, rolling=True, web_minutes_ago=3 / 60))
    assert tp.change is None, "a comparison the contrast will not make yet blames nothing"
    assert tp.status.attribution is None and tp.status.actions == []
    assert "err: the new revision not compared with revision 1 yet" in tp.status.timeline[-1].message


@pytest.mark.parametrize(
    ("new", "old", "why"),
    [
        (0.9, 0.0, "only the new revision breaches"),  # 2.5x the old one's 0 is still 0
        (1.0, 0.2, "both breach, the new at least 2x further"),  # a bad deploy during an outage: 100 >= 2 x 50
    ],
)
def test_a_young_revision_far_worse_than_the_window_could_explain_is_rolled_back_at_once(
    new: float, old: float, why: str
) -> None:
    # stamped 3 s ago, so served at least 2 s of a 5 s window: the old revision's value reads at most 2.5x too low
    spec = policy(steps=LADDER, signals=WINDOWED)
    web = target("web", new, revision=2, by_revision=by_revision(new, old))
    tp = decided(fleet_snapshot(web, spec=spec, rolling=True, web_minutes_ago=3 / 60))
    assert tp.status.attribution.verdict == "deploy" and why in tp.status.attribution.reason
    assert tp.change is not None and tp.change.plan.action == "rollback"


def test_a_young_revision_is_not_waited_for_past_a_minute_a_person_decides() -> None:
    # a ten-minute window: waiting for it would leave the breach alone for minutes
    signals = [{**WINDOWED[0], "byRevision": {"query": "sum by (pod_template_hash) (rate(errors[10m]))"}}]
    spec = policy(steps=LADDER, signals=signals)
    web = target("web", 0.2, revision=2, by_revision=by_revision(0.3, 0.1))
    tp = decided(fleet_snapshot(web, spec=spec, rolling=True, web_minutes_ago=2 / 60))
    assert tp.status.attribution.verdict == "unknown" and tp.change is None
    assert "less than the 10m err averages over" in tp.status.attribution.reason
    assert "longer than 1m" in tp.status.attribution.reason


def test_a_young_revision_on_a_signal_bounded_below_waits_for_the_window() -> None:
    # a success ratio: how far under its bound is no proportion of the seconds, so no allowance is made
    signals = [{**WINDOWED[0], "breachWhen": {"below": 0.99}}]
    spec = policy(steps=LADDER, signals=signals)
    web = target("web", 0.5, revision=2, by_revision=by_revision(0.1, 0.99))
    young = decided(fleet_snapshot(web, spec=spec, rolling=True, web_minutes_ago=2 / 60))
    assert young.change is None and young.status.attribution is None
    settled = decided(fleet_snapshot(web, spec=spec, rolling=True, web_minutes_ago=10 / 60))
    assert settled.status.attribution.verdict == "deploy" and settled.change is not None


def test_a_young_bad_revision_among_healthy_peers_is_rolled_back_without_waiting() -> None:
    # nothing to compare: every untouched peer is within bounds, the revision is the only change
    spec = policy(steps=LADDER, signals=WINDOWED)
    views = (target("web", 0.3, revision=2), target("cart", 0.0), target("api", 0.0), target("auth", 0.0))
    tp = decided(fleet_snapshot(*views, spec=spec, web_minutes_ago=2 / 60))
    assert tp.status.attribution.verdict == "deploy"
    assert tp.change is not None and tp.change.plan.action == "rollback"


@pytest.mark.parametrize(
    ("query", "seconds"),
    [
        ('sum(rate(x{code=~"5.."}[5s])) / sum(rate(x[1m]))', 60.0),
        ('rate(x{path=~"/v[12]/.*"}[30s])', 30.0),  # a regex's brackets are no range
        ("max_over_time(rate(x[1m])[10m:1m])", 600.0),  # a subquery's range
        ("rate(x[1h30m]) + rate(x[500ms])", 5400.0),
        ("rate(x[90])", 90.0),  # Prometheus 3: a bare number of seconds
        ("rate(x[5s]) / rate(x[30s] offset 10s)", 30.0),
        ("sum(x offset 10m)", None),  # an offset moves the instant, it averages nothing
    ],
)
def test_a_querys_window_is_its_longest_range(query: str, seconds: float | None) -> None:
    window = windows.longest_range(query)
    assert (window.total_seconds() if window else None) == seconds


def test_observe_mode_detects_as_without_attribution() -> None:
    signals = [{**SPLIT[0], "breachWhen": {"above": 0.01}}]
    spec = policy(steps=LADDER, signals=signals, attribution={"mode": "observe"})
    web = target("web", 0.0067, revision=2, by_revision=by_revision(0.02, 0.0))
    assert decided(fleet_snapshot(web, spec=spec, rolling=True)).create is None


def test_contrast_says_the_new_revision_is_within_bounds_when_only_the_old_breaches() -> None:
    clue = a.contrast(ERR, value(0.01), value(0.3), "revision 1")
    assert clue.says == a.SHARED and clue.detail.endswith("the new revision is within bounds"), clue.detail


def unknown_web(spec: MitigationPolicySpec, **deployment_annotations: str) -> TargetView:
    """web's breach began before revision 2 became current: the cause is unknown."""
    first = monitoring(revision=2, started_at=iso(NOW - timedelta(minutes=10)))
    web = target("web", 0.3, revision=2, incident=open_incident(first))
    dep = deployment("web", 2)
    dep["metadata"]["annotations"] |= deployment_annotations
    if deployment_annotations:
        dep["spec"]["paused"] = True
    breaching = p.TargetStatus(name="web", breaching_since={"err": iso(NOW - timedelta(minutes=10))})
    return TargetView(**{**web.__dict__, "deployment": dep, "previous": breaching})


def test_while_the_cause_is_unknown_an_unfinished_rollout_is_paused_and_only_then() -> None:
    spec = policy(steps=LADDER, attribution={"unknown": {"hold": "2m", "then": "act"}})
    tp = decided(fleet_snapshot(unknown_web(spec), spec=spec, rolling=True))
    assert tp.status.attribution.verdict == "unknown" and tp.change is None
    assert tp.rollout is not None
    assert tp.rollout[0] == {"op": "test", "path": "/metadata/generation", "value": 4}, "guarded"
    assert tp.rollout[1] == {"op": "add", "path": "/spec/paused", "value": True}
    held = json.loads(tp.rollout[2]["value"])
    assert held == {"incident": tp.incident_name, "at": iso(NOW)}
    done = decided(fleet_snapshot(unknown_web(spec), spec=spec, rolling=False))
    assert done.rollout is None, "a finished rollout has nothing to pause"


def test_the_pause_is_recorded_from_the_deployment_and_lifted_by_the_rollback_when_the_hold_ends() -> None:
    spec = policy(steps=LADDER, attribution={"unknown": {"hold": "2m", "then": "act"}})
    held = json.dumps({"incident": "web-1", "at": iso(NOW)})
    web = unknown_web(spec, **{"hemostat.dev/rollout-held": held})
    tp = decided(fleet_snapshot(web, spec=spec, rolling=True))
    said = [e for e in tp.status.timeline if e.reason == "RolloutPaused"]
    assert len(said) == 1 and "the rollout of revision 2 is paused since" in said[0].message
    assert tp.rollout is None, "already paused: not again"

    later = TargetView(**{**web.__dict__, "incident": open_incident(tp.status)})
    after = next(
        t for t in p.decide(fleet_snapshot(later, spec=spec, rolling=True), NOW + timedelta(minutes=3)).targets
    )
    assert after.change is not None and after.change.plan.action == "rollback"
    assert {"op": "replace", "path": "/spec/paused", "value": False} in after.change.patch
    annotations = next(
        op["value"] for op in after.change.patch if op == {**op, "op": "replace", "path": "/metadata/annotations"}
    )
    assert "hemostat.dev/rollout-held" not in annotations, "lifted in the same write"
    assert [e.reason for e in after.status.timeline].count("RolloutPaused") == 1


def test_a_pause_of_its_own_is_lifted_when_the_incident_resolves_and_a_persons_pause_is_kept() -> None:
    spec = policy(steps=LADDER, attribution={"unknown": {"hold": "2m"}})
    held = json.dumps({"incident": "web-1", "at": iso(NOW)})
    resolving = monitoring(
        revision=2, started_at=iso(NOW - timedelta(minutes=10)), healthy_since=iso(NOW - timedelta(minutes=5))
    )
    for owner, lifted in (("web-1", True), ("someone-else", False)):
        mark = json.dumps({"incident": owner, "at": iso(NOW)}) if owner != "web-1" else held
        web = unknown_web(spec, **{"hemostat.dev/rollout-held": mark})
        web = TargetView(**{**web.__dict__, "readings": {"err": value(0.0)}, "incident": open_incident(resolving)})
        tp = decided(fleet_snapshot(web, spec=spec, rolling=True))
        assert tp.status.phase == "Resolved"
        if lifted:
            assert tp.rollout is not None and tp.rollout[1] == {"op": "replace", "path": "/spec/paused", "value": False}
            assert tp.status.timeline[-1].reason == "RolloutResumed"
        else:
            assert tp.rollout is None
