"""The Incident lifecycle: next_move, guardrails and the record_* functions.

Pure functions over (status, health, guardrails, now); every `now` is fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from hemostat.decide import conditions as c
from hemostat.decide import lifecycle as lc
from hemostat.decide.health import Health, State, assess
from hemostat.models.incident import MAX_TIMELINE, ActionRecord, IncidentSpec, IncidentStatus
from hemostat.models.policy import MitigationPolicySpec, Signal
from hemostat.reading import Reading

T0 = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)  # detection
NOW = T0 + timedelta(minutes=5)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_policy(steps: list[dict] | None = None, verify_for: str = "2m") -> MitigationPolicySpec:
    return MitigationPolicySpec.model_validate(
        {
            "target": {"selector": {"matchLabels": {"app": "checkout"}}},
            "signals": [
                {"name": "err", "prometheus": {"query": "q"}, "breachWhen": {"above": 0.05}, "for": "30s"},
            ],
            "mitigation": {
                "steps": [{"rollback": {}}, {"scaleUp": {"maxReplicas": 10}}] if steps is None else steps,
                "verifyFor": verify_for,
            },
        }
    )


POLICY = make_policy()


def health(state: State) -> Health:
    return Health(state=state, signals=())


def guard(
    *,
    dry_run: bool = False,
    paused: str | None = None,
    cooldown: timedelta = timedelta(minutes=10),
    max_per_hour: int = 3,
    recent: Sequence[datetime] = (),
) -> lc.Guardrails:
    return lc.Guardrails(
        dry_run=dry_run, paused=paused, cooldown=cooldown, max_actions_per_hour=max_per_hour, recent_actions=recent
    )


def status(phase: str = "Detected", **fields) -> IncidentStatus:
    base = {"phase": phase, "revision": 3, "image": "app:v3", "detected_at": iso(T0), "started_at": iso(T0)}
    return IncidentStatus(**{**base, **fields})


def action(step: str = "rollback", index: int = 0, result: str = "Succeeded", **fields) -> ActionRecord:
    return ActionRecord(step=step, index=index, result=result, at=fields.pop("at", iso(T0)), **fields)


STEPS = POLICY.mitigation.steps
OPEN = ["Detected", "Mitigating", "Monitoring", "Escalated"]


# --- next_move ----------------------------------------------------------------------------


@pytest.mark.parametrize("state", [State.BREACHING, State.PENDING])
def test_detected_and_breaching_acts_with_the_first_step(state: State) -> None:
    move = lc.next_move(status("Detected"), False, POLICY, health(state), guard(), NOW)
    assert move == lc.Act(index=0, step=STEPS[0], dry_run=False)
    assert move.step.kind == "rollback"


def test_act_uses_next_step() -> None:
    move = lc.next_move(status("Mitigating", next_step=1), False, POLICY, health(State.BREACHING), guard(), NOW)
    assert move == lc.Act(index=1, step=STEPS[1], dry_run=False)
    assert move.step.kind == "scaleUp"


@pytest.mark.parametrize("phase", ["Detected", "Mitigating"])
@pytest.mark.parametrize("state", [State.HEALTHY, State.INCONCLUSIVE, State.UNAVAILABLE])
def test_no_breach_waits(phase: str, state: State) -> None:
    st = status(phase, healthy_since=iso(NOW - timedelta(seconds=30)) if state is State.HEALTHY else None)
    assert lc.next_move(st, False, POLICY, health(state), guard(), NOW) == lc.Wait()


@pytest.mark.parametrize(
    ("g", "note"),
    [
        pytest.param(
            guard(paused="policy is paused"),
            "next step rollback held: actions paused: policy is paused",
            id="paused",
        ),
        pytest.param(
            guard(paused="Deployment is annotated hemostat.dev/paused", dry_run=True),
            "next step rollback held: actions paused: Deployment is annotated hemostat.dev/paused",
            id="paused-beats-dry-run",
        ),
        pytest.param(
            guard(recent=[NOW - timedelta(minutes=5)]),
            "next step rollback held: cooldown 10m after the action at 2026-11-23T14:00:00Z",
            id="cooldown",
        ),
        pytest.param(
            guard(cooldown=timedelta(minutes=15), recent=[NOW - timedelta(minutes=20), NOW - timedelta(seconds=90)]),
            "next step rollback held: cooldown 15m after the action at 2026-11-23T14:03:30Z",
            id="cooldown-from-latest-action",
        ),
        pytest.param(
            guard(recent=[NOW - timedelta(minutes=m) for m in (50, 40, 30)]),
            "next step rollback held: action budget spent: 3 of 3 actions in the last hour",
            id="budget",
        ),
        pytest.param(
            guard(max_per_hour=0),
            "next step rollback held: action budget spent: 0 of 0 actions in the last hour",
            id="budget-zero",
        ),
    ],
)
def test_guardrails_hold_with_a_note(g: lc.Guardrails, note: str) -> None:
    move = lc.next_move(status("Detected"), False, POLICY, health(State.BREACHING), g, NOW)
    assert move == lc.Wait(note=note)


@pytest.mark.parametrize(
    "g",
    [
        pytest.param(guard(recent=[NOW - timedelta(minutes=10)]), id="cooldown-just-over"),
        pytest.param(guard(recent=[NOW - timedelta(minutes=m) for m in (61, 40, 30)]), id="oldest-outside-hour"),
        pytest.param(guard(recent=[NOW - timedelta(minutes=m) for m in (50, 40)]), id="budget-left"),
    ],
)
def test_guardrails_allow(g: lc.Guardrails) -> None:
    move = lc.next_move(status("Detected"), False, POLICY, health(State.BREACHING), g, NOW)
    assert move == lc.Act(index=0, step=STEPS[0], dry_run=False)


def test_dry_run_acts_ignoring_cooldown_and_budget() -> None:
    g = guard(dry_run=True, recent=[NOW - timedelta(minutes=m) for m in (50, 40, 1)])
    assert lc.blocked_by(guard(recent=g.recent_actions), NOW) is not None  # would be held without dry run
    move = lc.next_move(status("Detected"), False, POLICY, health(State.BREACHING), g, NOW)
    assert move == lc.Act(index=0, step=STEPS[0], dry_run=True)


@pytest.mark.parametrize("state", [State.BREACHING, State.PENDING])
def test_monitoring_waits_for_verify_for(state: State) -> None:
    st = status("Monitoring", next_step=1, monitoring_since=iso(NOW - timedelta(seconds=119)), last_mitigation="r")
    assert lc.next_move(st, False, POLICY, health(state), guard(), NOW) == lc.Wait()


@pytest.mark.parametrize("state", [State.BREACHING, State.PENDING])
def test_monitoring_after_verify_for_still_breaching_takes_next_step(state: State) -> None:
    st = status("Monitoring", next_step=1, monitoring_since=iso(NOW - timedelta(minutes=2)), last_mitigation="rollback")
    move = lc.next_move(st, False, POLICY, health(state), guard(), NOW)
    assert move == lc.Act(index=1, step=STEPS[1], dry_run=False)


@pytest.mark.parametrize("state", [State.INCONCLUSIVE, State.UNAVAILABLE, State.HEALTHY])
def test_monitoring_after_verify_for_without_breach_waits(state: State) -> None:
    st = status(
        "Monitoring",
        next_step=1,
        monitoring_since=iso(NOW - timedelta(minutes=3)),
        healthy_since=iso(NOW - timedelta(seconds=10)) if state is State.HEALTHY else None,
        last_mitigation="rollback",
    )
    assert lc.next_move(st, False, POLICY, health(state), guard(), NOW) == lc.Wait()


def test_monitoring_next_step_is_held_by_cooldown_after_the_first() -> None:
    st = status("Monitoring", next_step=1, monitoring_since=iso(NOW - timedelta(minutes=2)), last_mitigation="rollback")
    move = lc.next_move(st, False, POLICY, health(State.BREACHING), guard(recent=[NOW - timedelta(minutes=2)]), NOW)
    assert move == lc.Wait(note="next step scaleUp held: cooldown 10m after the action at 2026-11-23T14:03:00Z")


@pytest.mark.parametrize("g", [guard(), guard(paused="policy is paused")])
def test_monitoring_with_no_step_left_escalates(g: lc.Guardrails) -> None:
    st = status(
        "Monitoring",
        next_step=2,
        monitoring_since=iso(NOW - timedelta(minutes=2)),
        last_mitigation="rollback",
        actions=[action("rollback", 0), action("scaleUp", 1, "Skipped", message="not implemented")],
    )
    move = lc.next_move(st, False, POLICY, health(State.BREACHING), g, NOW)
    assert move == lc.Escalate(
        "still breaching and no mitigation step left (tried: rollback, scaleUp); a person is needed"
    )


def test_empty_ladder_escalates_at_once() -> None:
    move = lc.next_move(status("Detected"), False, make_policy(steps=[]), health(State.BREACHING), guard(), NOW)
    assert move == lc.Escalate("still breaching and no mitigation step left (tried: none); a person is needed")


@pytest.mark.parametrize(
    ("phase", "extra", "healthy_for", "message"),
    [
        (
            "Monitoring",
            {"last_mitigation": "rollback"},
            timedelta(minutes=2),
            "all signals healthy for 2m after rollback",
        ),
        (
            "Monitoring",
            {"last_mitigation": "rollback (dry run)"},
            timedelta(seconds=150),
            "all signals healthy for 2m30s after rollback (dry run)",
        ),
        ("Detected", {}, timedelta(minutes=2), "all signals healthy for 2m without mitigation"),
        (
            "Escalated",
            {"last_mitigation": "rollback"},
            timedelta(minutes=4),
            "all signals healthy for 4m after escalation",
        ),
    ],
)
def test_healthy_for_verify_for_resolves(phase: str, extra: dict, healthy_for: timedelta, message: str) -> None:
    st = status(phase, healthy_since=iso(NOW - healthy_for), monitoring_since=iso(T0), **extra)
    assert lc.next_move(st, False, POLICY, health(State.HEALTHY), guard(), NOW) == lc.Resolve(message)


def test_resolve_message_names_last_mitigation_after_a_later_step_failed() -> None:
    st = status(
        "Mitigating",
        next_step=2,
        last_mitigation="rollback",
        healthy_since=iso(NOW - timedelta(minutes=2)),
        actions=[action("rollback", 0), action("scaleUp", 1, "Failed", message="quota exceeded")],
    )
    assert lc.next_move(st, False, POLICY, health(State.HEALTHY), guard(), NOW) == lc.Resolve(
        "all signals healthy for 2m after rollback"
    )


def test_healthy_state_without_healthy_since_does_not_resolve() -> None:
    st = status("Monitoring", next_step=1, monitoring_since=iso(T0), last_mitigation="rollback")
    assert lc.next_move(st, False, POLICY, health(State.HEALTHY), guard(), NOW) == lc.Wait()


@pytest.mark.parametrize(
    ("state", "healthy_for"),
    [
        (State.BREACHING, None),
        (State.PENDING, None),
        (State.UNAVAILABLE, None),
        (State.HEALTHY, timedelta(seconds=119)),
    ],
)
def test_escalated_stays_escalated(state: State, healthy_for: timedelta | None) -> None:
    st = status(
        "Escalated",
        next_step=2,
        escalated_at=iso(T0),
        healthy_since=iso(NOW - healthy_for) if healthy_for else None,
    )
    assert lc.next_move(st, False, POLICY, health(state), guard(), NOW) == lc.Wait()


@pytest.mark.parametrize("spec_resolve", [False, True])
@pytest.mark.parametrize("state", [State.BREACHING, State.HEALTHY])
def test_resolved_never_moves(spec_resolve: bool, state: State) -> None:
    st = status("Resolved", resolved_at=iso(T0), healthy_since=iso(T0))
    assert lc.next_move(st, spec_resolve, POLICY, health(state), guard(), NOW) == lc.Wait()


@pytest.mark.parametrize("phase", OPEN)
def test_spec_resolve_resolves_any_open_incident(phase: str) -> None:
    g = guard(paused="policy is paused")
    move = lc.next_move(status(phase, next_step=1), True, POLICY, health(State.BREACHING), g, NOW)
    assert move == lc.Resolve("resolved by a person (spec.resolve)", by_person=True)


# --- record_action ------------------------------------------------------------------------

ROLLED = {"from_": "revision 3 (app:v3)", "to": "revision 2 (app:v2)"}
CHANGE = "revision 3 (app:v3) -> revision 2 (app:v2)"
AT = T0 + timedelta(seconds=90)


def detected() -> IncidentStatus:
    st = status("Detected", healthy_since=iso(T0))
    st.timeline = []
    return st


def test_record_action_succeeded() -> None:
    before = detected()
    rec = action("rollback", 0, "Succeeded", at=iso(AT), **ROLLED)
    after = lc.record_action(before, rec, c.ROLLED_BACK, AT)
    assert after.phase == "Monitoring"
    assert after.next_step == 1
    assert after.actions == [rec]
    assert after.last_mitigation == "rollback"
    assert after.mitigated_at == "2026-11-23T14:01:30Z"
    assert after.monitoring_since == "2026-11-23T14:01:30Z"
    assert after.healthy_since is None
    assert after.time_to_mitigate == "1m30s"
    cond = c.get_condition(after.conditions, "Mitigated")
    assert (cond.status, cond.reason, cond.message, cond.last_transition_time) == (
        "True",
        "RolledBack",
        f"rollback: {CHANGE}",
        "2026-11-23T14:01:30Z",
    )
    assert [(e.reason, e.type, e.message) for e in after.timeline] == [("RolledBack", "Normal", f"rollback: {CHANGE}")]
    # a new status; the input is untouched
    assert before.phase == "Detected" and before.actions == [] and before.timeline == []


def test_record_action_dry_run() -> None:
    rec = action("rollback", 0, "DryRun", at=iso(AT), message="dry run: would rollback", **ROLLED)
    after = lc.record_action(detected(), rec, c.DRY_RUN, AT)
    assert after.phase == "Monitoring"
    assert after.next_step == 1
    assert after.last_mitigation == "rollback (dry run)"
    assert after.monitoring_since == "2026-11-23T14:01:30Z"
    assert after.mitigated_at is None
    assert after.time_to_mitigate is None
    cond = c.get_condition(after.conditions, "Mitigated")
    assert (cond.status, cond.reason) == ("False", "DryRun")
    assert [(e.reason, e.type, e.message) for e in after.timeline] == [
        ("DryRun", "Normal", f"rollback: {CHANGE}; dry run: would rollback")
    ]


@pytest.mark.parametrize(
    ("result", "reason", "type_", "message"),
    [
        (
            "Skipped",
            "MitigationSkipped",
            "Normal",
            "rollback skipped: no revision older than 1 is left to roll back to",
        ),
        ("Failed", "MitigationFailed", "Warning", "rollback failed: no revision older than 1 is left to roll back to"),
    ],
)
def test_record_action_skipped_or_failed_moves_on(result: str, reason: str, type_: str, message: str) -> None:
    rec = action("rollback", 0, result, at=iso(AT), message="no revision older than 1 is left to roll back to")
    after = lc.record_action(detected(), rec, c.MITIGATION_SKIPPED, AT)
    assert after.phase == "Mitigating"
    assert after.next_step == 1
    assert after.actions == [rec]
    assert after.last_mitigation is None
    assert after.monitoring_since is None
    assert after.mitigated_at is None
    assert after.time_to_mitigate is None
    assert c.get_condition(after.conditions, "Mitigated") is None
    assert [(e.reason, e.type, e.message) for e in after.timeline] == [(reason, type_, message)]


@pytest.mark.parametrize(("next_step", "index", "expected"), [(0, 0, 1), (2, 0, 2), (1, 1, 2), (0, -1, 0), (3, -1, 3)])
def test_record_action_next_step_never_goes_back(next_step: int, index: int, expected: int) -> None:
    st = status("Mitigating", next_step=next_step)
    after = lc.record_action(st, action("rollback", index, "Skipped", message="x"), c.MITIGATION_SKIPPED, NOW)
    assert after.next_step == expected


def test_mitigated_condition_transition_time_moves_only_on_status_change() -> None:
    t1, t2, t3 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=4), T0 + timedelta(minutes=8)
    st = lc.record_action(detected(), action(result="DryRun", at=iso(t1), **ROLLED), c.DRY_RUN, t1)
    st = lc.record_action(st, action(index=1, at=iso(t2), **ROLLED), c.ROLLED_BACK, t2)
    cond = c.get_condition(st.conditions, "Mitigated")
    assert (cond.status, cond.last_transition_time) == ("True", iso(t2))
    st = lc.record_action(st, action(index=2, at=iso(t3), from_="revision 4 (app:v2)", to="x"), c.ROLLED_BACK, t3)
    cond = c.get_condition(st.conditions, "Mitigated")
    assert (cond.status, cond.last_transition_time) == ("True", iso(t2))
    assert cond.message == "rollback: revision 4 (app:v2) -> x"
    assert [x.type for x in st.conditions].count("Mitigated") == 1


def test_record_action_keeps_the_last_20_actions() -> None:
    st = detected()
    for i in range(25):
        st = lc.record_action(st, action(index=i, result="Skipped", message=f"m{i}"), c.MITIGATION_SKIPPED, NOW)
    assert len(st.actions) == 20
    assert [a.message for a in st.actions] == [f"m{i}" for i in range(5, 25)]


# --- record_note --------------------------------------------------------------------------

HELD = "next step rollback held: actions paused: policy is paused"


def test_record_note_writes_a_hold_once() -> None:
    st = detected()
    first = lc.record_note(st, HELD, T0)
    assert [(e.at, e.reason, e.type, e.message) for e in first.timeline] == [
        ("2026-11-23T14:00:00Z", "MitigationHeld", "Normal", HELD)
    ]
    again = lc.record_note(first, HELD, T0 + timedelta(seconds=30))
    assert again.timeline == first.timeline
    assert lc.new_entries(first, again) == []
    assert st.timeline == []  # the input is untouched


def test_record_note_writes_a_changed_hold() -> None:
    other = "next step rollback held: cooldown 10m after the action at 2026-11-23T13:55:00Z"
    st = lc.record_note(detected(), HELD, T0)
    st = lc.record_note(st, other, T0 + timedelta(seconds=30))
    st = lc.record_note(st, other, T0 + timedelta(seconds=60))
    st = lc.record_note(st, HELD, T0 + timedelta(seconds=90))
    assert [(e.at, e.message) for e in st.timeline] == [
        ("2026-11-23T14:00:00Z", HELD),
        ("2026-11-23T14:00:30Z", other),
        ("2026-11-23T14:01:30Z", HELD),
    ]


# --- open_status --------------------------------------------------------------------------


def make_signal(name: str, above: float, for_: str) -> Signal:
    return Signal.model_validate(
        {"name": name, "prometheus": {"query": f"q_{name}"}, "breachWhen": {"above": above}, "for": for_}
    )


def breach_health() -> Health:
    signals = [
        make_signal("err", 0.05, "30s"),
        make_signal("lat", 1, "1m"),
        make_signal("p99", 0.2, "5m"),
        make_signal("cpu", 0.9, "30s"),
    ]
    readings = {
        "err": Reading.value_of(0.1234),
        "lat": Reading.value_of(2.5),
        "p99": Reading.value_of(0.3),
        "cpu": Reading.value_of(0.5),
    }
    since = {
        "err": T0 - timedelta(seconds=50),  # confirmed
        "lat": T0 - timedelta(seconds=75),  # confirmed, began first
        "p99": T0 - timedelta(minutes=3),  # still pending (5m `for`): does not count
    }
    return assess(signals, readings, since, T0)


def test_open_status() -> None:
    hl = breach_health()
    assert hl.state is State.BREACHING
    st = lc.open_status(hl, {"err": "q_err", "lat": "q_lat"}, 3, "app:v3", T0)
    assert st.phase == "Detected"
    assert st.started_at == "2026-11-23T13:58:45Z"
    assert st.detected_at == "2026-11-23T14:00:00Z"
    assert st.time_to_detect == "1m15s"
    assert (st.revision, st.image, st.next_step) == (3, "app:v3", 0)
    assert [(e.signal, e.value, e.threshold, e.query) for e in st.evidence] == [
        ("err", "0.1234", "> 0.05", "q_err"),
        ("lat", "2.5", "> 1", "q_lat"),
        ("p99", "0.3", "> 0.2", ""),
        ("cpu", "0.5", "> 0.9", ""),
    ]
    summary = "err 0.1234 > 0.05; lat 2.5 > 1; p99 0.3 > 0.2"
    cond = c.get_condition(st.conditions, "Detected")
    assert (cond.status, cond.reason, cond.message, cond.last_transition_time) == (
        "True",
        "ThresholdBreached",
        summary,
        "2026-11-23T14:00:00Z",
    )
    assert [(e.at, e.type, e.reason, e.message) for e in st.timeline] == [
        ("2026-11-23T14:00:00Z", "Warning", "Detected", f"{summary} at revision 3 (app:v3)")
    ]


def test_open_status_without_confirmed_breach_or_revision() -> None:
    hl = assess([make_signal("err", 0.05, "30s")], {"err": Reading.no_data("empty")}, {}, T0)
    st = lc.open_status(hl, {}, None, "app:v3", T0)
    assert (st.started_at, st.time_to_detect) == ("2026-11-23T14:00:00Z", "0s")
    assert [(e.signal, e.value) for e in st.evidence] == [("err", "NoData")]
    assert st.timeline[0].message == ""
    assert st.revision is None


# --- timeline bound and new_entries -------------------------------------------------------


@pytest.mark.parametrize(("notes", "second"), [(MAX_TIMELINE - 1, "note 0"), (150, "note 51")])
def test_timeline_is_bounded_and_keeps_detection(notes: int, second: str) -> None:
    st = lc.open_status(breach_health(), {}, 3, "app:v3", T0)
    for i in range(notes):
        st = lc.record_note(st, f"note {i}", T0 + timedelta(seconds=i + 1))
    assert len(st.timeline) == MAX_TIMELINE
    assert st.timeline[0].reason == "Detected"
    assert st.timeline[1].message == second
    assert st.timeline[-1].message == f"note {notes - 1}"


def test_new_entries_returns_only_added_entries() -> None:
    opened = lc.open_status(breach_health(), {}, 3, "app:v3", T0)
    assert lc.new_entries(None, opened) == opened.timeline
    assert len(opened.timeline) == 1

    acted = lc.record_action(opened, action(at=iso(AT), **ROLLED), c.ROLLED_BACK, AT)
    assert [(e.reason, e.message) for e in lc.new_entries(opened, acted)] == [("RolledBack", f"rollback: {CHANGE}")]
    assert lc.new_entries(acted, acted) == []

    two = lc.record_note(acted, "a", AT + timedelta(seconds=30))
    two = lc.record_escalated(two, "no step left", AT + timedelta(seconds=30))
    assert [e.reason for e in lc.new_entries(acted, two)] == ["MitigationHeld", "Escalated"]


def test_new_entries_on_a_full_timeline() -> None:
    st = lc.open_status(breach_health(), {}, 3, "app:v3", T0)
    for i in range(MAX_TIMELINE + 5):
        st = lc.record_note(st, f"note {i}", T0 + timedelta(seconds=i + 1))
    after = lc.record_note(st, "last", T0 + timedelta(hours=1))
    assert len(after.timeline) == MAX_TIMELINE
    assert [(e.at, e.message) for e in lc.new_entries(st, after)] == [("2026-11-23T15:00:00Z", "last")]


def test_time_to_mitigate_counts_from_the_first_breaching_reading() -> None:
    before = status("Detected", started_at=iso(T0 - timedelta(seconds=30)))
    after = lc.record_action(before, action("rollback", 0, "Succeeded", at=iso(AT), **ROLLED), c.ROLLED_BACK, AT)
    assert after.time_to_mitigate == "2m"


# --- record_resolved / record_escalated ---------------------------------------------------


def test_record_resolved_after_recovery() -> None:
    st = status("Monitoring", detected_at=iso(T0))
    st.timeline = []
    after = lc.record_resolved(st, "all signals healthy for 2m after rollback", T0 + timedelta(minutes=7))
    assert (after.phase, after.resolved_at, after.time_to_resolve) == ("Resolved", "2026-11-23T14:07:00Z", "7m")
    cond = c.get_condition(after.conditions, "Resolved")
    assert (cond.status, cond.reason) == ("True", "Recovered")
    assert [(e.reason, e.message) for e in after.timeline] == [
        ("Recovered", "all signals healthy for 2m after rollback")
    ]


def test_record_resolved_by_a_person_timeline() -> None:
    st = status("Escalated")
    st.timeline = []
    after = lc.record_resolved(st, "resolved by a person (spec.resolve)", NOW, by_person=True)
    assert after.phase == "Resolved"
    assert [(e.reason, e.message) for e in after.timeline] == [
        ("ResolvedByPerson", "resolved by a person (spec.resolve)")
    ]


def test_record_resolved_by_a_person_condition_reason() -> None:
    after = lc.record_resolved(status("Escalated"), "resolved by a person (spec.resolve)", NOW, by_person=True)
    assert c.get_condition(after.conditions, "Resolved").reason == "ResolvedByPerson"


def test_record_escalated() -> None:
    st = status("Monitoring")
    after = lc.record_escalated(st, "still breaching and no mitigation step left (tried: rollback)", NOW)
    assert (after.phase, after.escalated_at) == ("Escalated", "2026-11-23T14:05:00Z")
    cond = c.get_condition(after.conditions, "Escalated")
    assert (cond.status, cond.reason) == ("True", "LadderExhausted")
    assert [(e.type, e.reason) for e in after.timeline] == [("Warning", "Escalated")]


# --- manual incidents -------------------------------------------------------------------------


def manual_spec(**fields) -> IncidentSpec:
    base = {"severity": "SEV2", "summary": "reported by support", "target": {"name": "api"}, "source": "manual"}
    return IncidentSpec.model_validate({**base, **fields})


def test_declared_status_records_the_person_and_the_revision() -> None:
    st = lc.declared_status("reported by support", 3, "app:v3", T0, NOW)
    assert (st.phase, st.revision, st.image, st.detected_at) == ("Detected", 3, "app:v3", iso(T0))
    assert [(e.reason, e.message) for e in st.timeline] == [
        ("Declared", "declared by a person: reported by support (revision 3, app:v3)")
    ]


def test_manual_move_runs_the_requested_step_once() -> None:
    spec = manual_spec(mitigation={"rollback": {}})
    st = lc.declared_status("x", 3, "app:v3", T0, NOW)
    move = lc.manual_move(st, spec, guard(), None, NOW)
    assert isinstance(move, lc.Act) and move.index == lc.MANUAL_STEP and move.step.kind == "rollback"
    st.actions = [action("rollback", lc.MANUAL_STEP)]
    assert lc.manual_move(st, spec, guard(), None, NOW) == lc.Wait()


def test_manual_move_holds_for_a_missing_target_and_resolves_on_request() -> None:
    st = lc.declared_status("x", None, None, T0, NOW)
    held = lc.manual_move(st, manual_spec(mitigation={"rollback": {}}), guard(), "Deployment api does not exist", NOW)
    assert held == lc.Wait(note="requested rollback held: Deployment api does not exist")
    assert lc.manual_move(st, manual_spec(resolve=True), guard(), None, NOW) == lc.Resolve(
        "resolved by a person (spec.resolve)", by_person=True
    )
    assert lc.manual_move(st, manual_spec(), guard(), None, NOW) == lc.Wait()


@pytest.mark.parametrize(
    ("by_person", "ago", "rollout_ago", "reopens"),
    [
        pytest.param(False, timedelta(minutes=3), timedelta(hours=1), True, id="recovered-3m-ago"),
        pytest.param(True, timedelta(minutes=3), timedelta(hours=1), False, id="a-persons-call-stands"),
        pytest.param(False, timedelta(minutes=10), timedelta(hours=1), False, id="window-passed"),
        pytest.param(False, timedelta(minutes=3), timedelta(minutes=1), False, id="new-revision-since"),
    ],
)
def test_only_the_same_trouble_back_soon_reopens_an_incident(
    by_person: bool, ago: timedelta, rollout_ago: timedelta, reopens: bool
) -> None:
    resolved = lc.record_resolved(IncidentStatus(phase="Monitoring"), "healthy", NOW - ago, by_person=by_person)
    found = lc.reopenable(resolved, NOW - rollout_ago, timedelta(minutes=10), NOW)
    assert found == ((NOW - ago) if reopens else None)
    assert lc.reopenable(IncidentStatus(phase="Escalated"), NOW - rollout_ago, timedelta(minutes=10), NOW) is None
