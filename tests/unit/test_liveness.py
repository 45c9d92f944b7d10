"""Liveness comes from evaluations completing, not from the process being up."""

import time
from types import SimpleNamespace

from hemostat.runtime import Heartbeat, Runtime, stalled


def test_idle_operator_without_policies_is_alive() -> None:
    assert stalled([], seconds_since_cycle=10_000) is None


def test_recent_evaluation_is_alive() -> None:
    assert stalled([10, 10, 30], seconds_since_cycle=30, limit=300) is None


def test_no_evaluation_for_too_long_is_dead() -> None:
    assert (
        stalled([10, 10, 30], seconds_since_cycle=301, limit=300)
        == "no policy evaluation completed for 301s (3 policies)"
    )


def test_a_slow_policy_is_not_a_stall() -> None:
    assert stalled([3600], seconds_since_cycle=3000, limit=300) is None
    assert stalled([3600], seconds_since_cycle=3 * 3600 + 1, limit=300) is not None


def test_a_watch_that_delivers_our_writes_is_alive() -> None:
    from hemostat.runtime import watch_stale

    assert watch_stale([], seconds_now=10_000) is None
    assert watch_stale([9_900.0], seconds_now=10_000, limit=180) is None


def test_a_status_write_never_seen_back_means_the_watch_is_dead() -> None:
    from hemostat.runtime import watch_stale

    reason = watch_stale([9_700.0, 9_950.0], seconds_now=10_000, limit=180)
    assert reason == "the policy watch has not delivered a status write made 300s ago"


def runtime_with(leader: object, last_cycle: float, intervals: dict[str, float]) -> Runtime:
    informers = SimpleNamespace(stale=lambda _now: None, indices={})
    return Runtime(
        evaluator=None,  # type: ignore[arg-type]
        informers=informers,  # type: ignore[arg-type]
        leader=leader,  # type: ignore[arg-type]
        heartbeat=Heartbeat(last_cycle=last_cycle, intervals=intervals),
    )


def test_a_new_leader_is_alive_before_its_first_cycle() -> None:
    # a standby's last cycle was long ago (it evaluates nothing); it took the Lease a second ago
    now = time.monotonic()
    leader = SimpleNamespace(is_leader=True, acquired_at=now - 1, stalled=lambda _now: None)
    ago, reason = runtime_with(leader, now - 3600, {"uid": 10.0}).liveness(now)
    assert reason is None and ago < 5


def test_a_hung_election_fails_liveness() -> None:
    now = time.monotonic()
    leader = SimpleNamespace(is_leader=False, acquired_at=None, stalled=lambda _now: "leader election hangs")
    assert runtime_with(leader, now, {}).liveness(now)[1] == "leader election hangs"
