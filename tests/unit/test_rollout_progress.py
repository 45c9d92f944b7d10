"""A rollout past its progress deadline: the Deployment controller's verdict as a built-in signal, and who
is to blame told by the new revision's Pods."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hemostat.cycle import world
from hemostat.decide import attribution as a
from hemostat.decide import health as h
from hemostat.decide import progress
from hemostat.reading import Reading

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TIMED_OUT = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "web-5d6d" has timed out progressing.',
    "lastTransitionTime": "2026-12-06T11:59:50Z",
    "lastUpdateTime": "2026-12-06T11:59:50Z",
}


def deployment(*conditions: dict[str, Any], generation: int = 2, observed: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "generation": generation},
        "spec": {"progressDeadlineSeconds": 10},
        "status": {"observedGeneration": observed, "unavailableReplicas": 1, "conditions": list(conditions)},
    }


def pod(name: str, template_hash: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"pod-template-hash": template_hash}}, "status": status}


def crash_looping(restarts: int = 3) -> dict[str, Any]:
    waiting = {"waiting": {"reason": "CrashLoopBackOff"}}
    return {"containerStatuses": [{"name": "app", "ready": False, "restartCount": restarts, "state": waiting}]}


UNSCHEDULABLE = {
    "phase": "Pending",
    "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes: Insufficient cpu"}
    ],
}


def test_a_rollout_past_its_deadline_is_a_confirmed_breach_from_when_the_controller_gave_up() -> None:
    stall = progress.stalled(deployment(TIMED_OUT))
    assert stall is not None and stall.deadline_s == 10 and stall.unavailable == 1
    o = progress.outcome(stall)
    assert o.verdict is h.Verdict.BREACHING and o.confirmed and o.built_in
    assert o.breaching_since == datetime(2026, 12, 6, 11, 59, 50, tzinfo=UTC)
    assert o.name == "rolloutProgress" and "progressDeadlineSeconds (10s)" in o.threshold


def test_a_progressing_rollout_or_a_status_about_an_older_spec_is_no_stall() -> None:
    progressing = {**TIMED_OUT, "status": "True", "reason": "NewReplicaSetAvailable"}
    assert progress.stalled(deployment(progressing)) is None
    assert progress.stalled(deployment()) is None
    # just rolled back: the status still says timed out, but about the spec before the rollback
    assert progress.stalled(deployment(TIMED_OUT, generation=3, observed=2)) is None
    paused = {**TIMED_OUT, "reason": "DeploymentPaused"}
    assert progress.stalled(deployment(paused)) is None


def test_the_built_in_outcome_makes_the_target_breach_even_below_min_traffic() -> None:
    gate = h.Gate(Reading.no_data("no traffic"), 1.0)
    stall = progress.stalled(deployment(TIMED_OUT))
    assert stall is not None
    health = h.assess([], {}, {}, NOW, gate, (progress.outcome(stall),))
    assert health.state is h.State.BREACHING
    assert a.breaching(health) == [], "attribution's signal clues leave the built-in outcome to its own clue"


def test_new_pods_that_crash_are_the_revisions_fault() -> None:
    stall = progress.stalled(deployment(TIMED_OUT))
    assert stall is not None
    pods = (pod("web-old-1", "old", phase="Running"), pod("web-new-1", "new", phase="Running", **crash_looping()))
    clue = progress.clue(stall, pods, "new")
    assert clue.says == "deploy"
    assert "1 of 1 Pods of the new revision cannot start: web-new-1: container app CrashLoopBackOff (3 restarts)" in (
        clue.detail
    )
    assert a.attribute([clue, a.Clue("timing", a.SHARED, "")]).verdict == "deploy", "progress is weighed first"


def test_new_pods_the_scheduler_cannot_place_are_capacity_so_a_person_decides() -> None:
    stall = progress.stalled(deployment(TIMED_OUT))
    assert stall is not None
    clue = progress.clue(stall, (pod("web-new-1", "new", **UNSCHEDULABLE),), "new")
    assert clue.says == "unknown" and "Insufficient cpu" in clue.detail and "capacity, not the revision" in clue.detail
    finding = a.attribute([clue, a.Clue("timing", "deploy", "the breach began 10s after revision 2")])
    assert finding.verdict == "unknown", "never a rollback for a breach the evidence blames on capacity"


def test_pods_that_could_not_be_read_leave_the_verdict_to_the_other_evidence() -> None:
    stall = progress.stalled(deployment(TIMED_OUT))
    assert stall is not None
    clue = progress.clue(stall, "pods is forbidden", "new")
    assert clue.says == a.NONE and "could not be read: pods is forbidden" in clue.detail
    many = tuple(pod(f"web-new-{i}", "new", **crash_looping()) for i in range(5))
    assert "; and 2 more" in progress.clue(stall, many, "new").detail


def test_the_cache_keeps_what_a_stall_needs_and_only_that() -> None:
    other = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
    body = deployment(TIMED_OUT, other)
    body["metadata"] |= {"namespace": "shop", "uid": "u1"}
    body["status"] |= {"readyReplicas": 2, "replicas": 3}
    trimmed = world.trim_target(body)
    assert trimmed["status"] == {"observedGeneration": 2, "unavailableReplicas": 1, "conditions": [TIMED_OUT]}
    assert trimmed["spec"]["progressDeadlineSeconds"] == 10
    assert progress.stalled(trimmed) == progress.stalled(body)


def test_a_pod_is_trimmed_to_its_hash_scheduling_and_container_states() -> None:
    raw = pod("web-new-1", "new", phase="Running", **crash_looping())
    raw["status"]["conditions"] = [{"type": "Ready", "status": "False"}, UNSCHEDULABLE["conditions"][0]]
    raw["spec"] = {"containers": [{"name": "app"}]}
    trimmed = progress.trim_pod(raw)
    assert "spec" not in trimmed and trimmed["status"]["conditions"] == [UNSCHEDULABLE["conditions"][0]]
    assert trimmed["status"]["containerStatuses"] == crash_looping()["containerStatuses"]
