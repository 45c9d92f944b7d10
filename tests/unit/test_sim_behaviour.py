"""Pure tests of the simulator model: annotation parsing and exact per-tick increments."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction

import pytest

from hemostat.sim.behaviour import (
    ERROR_RATE,
    FAILS_AFTER_S,
    LATENCY_MS,
    RPS,
    Behaviour,
    Increment,
    ObservedPod,
    PodRef,
    PodTraffic,
    ReadyPod,
    accrue,
    leak,
    parse_behaviour,
    resolve,
)

WEB_A = PodRef("shop", "web", "aaa111", "web-aaa111-x1")
WEB_A2 = PodRef("shop", "web", "aaa111", "web-aaa111-x2")
WEB_B = PodRef("shop", "web", "bbb222", "web-bbb222-y1")


def run_ticks(
    pods: Sequence[ReadyPod], dt: float, ticks: int, state: dict[tuple[str, str], PodTraffic] | None = None
) -> tuple[dict[tuple[str, str], PodTraffic], list[list[Increment]]]:
    state = state or {}
    history = []
    for _ in range(ticks):
        state, increments = accrue(state, pods, dt)
        history.append(increments)
    return state, history


# --- parsing -----------------------------------------------------------------


def test_defaults_when_no_annotations() -> None:
    assert parse_behaviour({}) == (Behaviour(error_rate=0.0, latency_ms=20.0, rps=10.0), [])


def test_unrelated_annotations_are_ignored() -> None:
    assert parse_behaviour({"other/thing": "x", "sim.hemostat.dev/unknown": "9"}) == (Behaviour(), [])


def test_valid_values_are_parsed() -> None:
    behaviour, warnings = parse_behaviour({ERROR_RATE: "0.25", LATENCY_MS: " 150 ", RPS: "4.5"})
    assert behaviour == Behaviour(error_rate=0.25, latency_ms=150.0, rps=4.5)
    assert warnings == []


@pytest.mark.parametrize("value", ["0", "1", "1.0", "0.0001", "1e-1"])
def test_error_rate_bounds_are_inclusive(value: str) -> None:
    behaviour, warnings = parse_behaviour({ERROR_RATE: value})
    assert behaviour.error_rate == float(value)
    assert warnings == []


@pytest.mark.parametrize(
    ("key", "value", "default"),
    [
        (ERROR_RATE, "lots", 0.0),
        (ERROR_RATE, "", 0.0),
        (ERROR_RATE, "1.5", 0.0),
        (ERROR_RATE, "-0.1", 0.0),
        (ERROR_RATE, "nan", 0.0),
        (LATENCY_MS, "fast", 20.0),
        (LATENCY_MS, "-5", 20.0),
        (LATENCY_MS, "inf", 20.0),
        (RPS, "10rps", 10.0),
        (RPS, "-1", 10.0),
        (RPS, "Infinity", 10.0),
    ],
)
def test_bad_value_falls_back_to_default_with_one_warning(key: str, value: str, default: float) -> None:
    behaviour, warnings = parse_behaviour({key: value})
    field = {ERROR_RATE: "error_rate", LATENCY_MS: "latency_ms", RPS: "rps"}[key]
    assert getattr(behaviour, field) == default
    assert len(warnings) == 1
    assert key in warnings[0]
    assert repr(value) in warnings[0]


def test_each_bad_value_warns_and_good_values_still_apply() -> None:
    behaviour, warnings = parse_behaviour({ERROR_RATE: "x", LATENCY_MS: "y", RPS: "7"})
    assert behaviour == Behaviour(error_rate=0.0, latency_ms=20.0, rps=7.0)
    assert len(warnings) == 2


# --- resolve: behaviour now ----------------------------------------------------


def test_resolve_tags_warnings_with_their_pod() -> None:
    observed = [ObservedPod(WEB_A, {ERROR_RATE: "0.5"}), ObservedPod(WEB_B, {RPS: "many"})]
    ready, warnings = resolve(observed)
    assert [p.behaviour for p in ready] == [Behaviour(error_rate=0.5), Behaviour()]
    assert [ref for ref, _ in warnings] == [WEB_B]


def test_effects_rewrite_behaviour_in_order_before_accrual() -> None:
    # The extension point: e.g. a feature flag that makes one ReplicaSet fail harder.
    def flag_on(pods: Sequence[ReadyPod]) -> list[ReadyPod]:
        return [
            dataclasses.replace(p, behaviour=dataclasses.replace(p.behaviour, error_rate=1.0))
            if p.ref.pod_template_hash == "bbb222"
            else p
            for p in pods
        ]

    def halve_rps(pods: Sequence[ReadyPod]) -> list[ReadyPod]:
        return [
            dataclasses.replace(p, behaviour=dataclasses.replace(p.behaviour, rps=p.behaviour.rps / 2)) for p in pods
        ]

    ready, _ = resolve([ObservedPod(WEB_A), ObservedPod(WEB_B)], effects=[flag_on, halve_rps])
    assert [p.behaviour for p in ready] == [Behaviour(rps=5.0), Behaviour(error_rate=1.0, rps=5.0)]
    _, increments = accrue({}, ready, 1.0)
    assert [(i.ok, i.error) for i in increments] == [(5.0, 0.0), (0.0, 5.0)]


# --- accrue: behaviour into increments --------------------------------------------


def test_exact_increments_over_several_ticks_with_fractional_carry() -> None:
    pod = ReadyPod(WEB_A, Behaviour(error_rate=0.2, latency_ms=150.0, rps=10.0))
    _, history = run_ticks([pod], dt=0.25, ticks=4)
    assert [len(tick) for tick in history] == [1, 1, 1, 1]
    incs = [tick[0] for tick in history]
    # 2.5 requests per tick: 2.0 ok + 0.5 failed; histogram gets 2, 3, 2, 3 whole requests.
    assert [i.ok for i in incs] == pytest.approx([2.0] * 4)
    assert [i.error for i in incs] == pytest.approx([0.5] * 4)
    assert [i.observations for i in incs] == [2, 3, 2, 3]
    assert all(i.latency_seconds == pytest.approx(0.150) for i in incs)
    assert all(i.ref == WEB_A for i in incs)


def test_carry_never_loses_or_invents_a_request() -> None:
    # 0.3 requests per tick: float sums like 0.1+0.2 must not drop a whole request.
    pod = ReadyPod(WEB_A, Behaviour(rps=3.0))
    state: dict[tuple[str, str], PodTraffic] = {}
    observed = 0
    for k in range(1, 201):
        state, (inc,) = accrue(state, [pod], 0.1)
        observed += inc.observations
        assert observed == math.floor(Fraction(3, 10) * k)
        assert 0.0 <= state[WEB_A.key].observation_carry < 1.0


def test_error_ratio_is_exactly_the_error_rate() -> None:
    pod = ReadyPod(WEB_A, Behaviour(error_rate=0.37, rps=13.0))
    _, history = run_ticks([pod], dt=0.173, ticks=50)
    ok = sum(t[0].ok for t in history)
    error = sum(t[0].error for t in history)
    assert error / (ok + error) == pytest.approx(0.37, rel=1e-12)
    assert ok + error == pytest.approx(13.0 * 0.173 * 50, rel=1e-12)


def test_zero_rps_and_zero_dt_add_nothing() -> None:
    pods = [ReadyPod(WEB_A, Behaviour(rps=0.0)), ReadyPod(WEB_B, Behaviour(rps=5.0))]
    _, (first,) = run_ticks(pods, dt=1.0, ticks=1)
    assert (first[0].ok, first[0].error, first[0].observations) == (0.0, 0.0, 0)
    _, (second,) = run_ticks(pods, dt=0.0, ticks=1)
    assert [(i.ok, i.error, i.observations) for i in second] == [(0.0, 0.0, 0)] * 2


def test_accrue_does_not_modify_the_given_state() -> None:
    pod = ReadyPod(WEB_A, Behaviour(rps=1.0))
    before = {WEB_A.key: PodTraffic(observation_carry=0.5)}
    after, (inc,) = accrue(before, [pod], 0.75)
    assert before == {WEB_A.key: PodTraffic(observation_carry=0.5)}
    assert inc.observations == 1
    assert after[WEB_A.key].observation_carry == pytest.approx(0.25)


def test_negative_dt_is_rejected() -> None:
    with pytest.raises(ValueError):
        accrue({}, [ReadyPod(WEB_A, Behaviour())], -0.1)


def test_pod_leaving_the_ready_set_stops_accruing() -> None:
    a1 = ReadyPod(WEB_A, Behaviour(rps=4.0))
    a2 = ReadyPod(WEB_A2, Behaviour(rps=4.0))
    state, _ = run_ticks([a1, a2], dt=0.25, ticks=2)
    assert set(state) == {WEB_A.key, WEB_A2.key}

    state, history = run_ticks([a1], dt=0.25, ticks=3, state=state)
    assert all([i.ref for i in tick] == [WEB_A] for tick in history)
    assert set(state) == {WEB_A.key}

    # Gone entirely: nothing at all accrues.
    state, (last,) = run_ticks([], dt=0.25, ticks=1, state=state)
    assert last == []
    assert state == {}


def test_two_replicasets_of_one_deployment_produce_per_hash_series() -> None:
    stable = Behaviour(error_rate=0.0, latency_ms=20.0, rps=10.0)
    canary = Behaviour(error_rate=0.5, latency_ms=400.0, rps=2.0)
    pods = [ReadyPod(WEB_A, stable), ReadyPod(WEB_A2, stable), ReadyPod(WEB_B, canary)]
    _, history = run_ticks(pods, dt=0.5, ticks=4)

    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    latencies: dict[str, set[float]] = defaultdict(set)
    for tick in history:
        for inc in tick:
            series = totals[(inc.ref.namespace, inc.ref.deployment, inc.ref.pod_template_hash)]
            series[0] += inc.ok
            series[1] += inc.error
            series[2] += inc.observations
            latencies[inc.ref.pod_template_hash].add(inc.latency_seconds)

    assert dict(totals) == {
        ("shop", "web", "aaa111"): pytest.approx([40.0, 0.0, 40.0]),
        ("shop", "web", "bbb222"): pytest.approx([2.0, 2.0, 4.0]),
    }
    assert latencies == {"aaa111": {0.02}, "bbb222": {0.4}}


# --- capacity effect: offered load shared by Ready pods --------------------------------------


def _pods(n: int, annotations: dict[str, str], deployment: str = "api") -> list:
    from hemostat.sim.behaviour import ObservedPod, PodRef

    return [ObservedPod(PodRef("ns", deployment, "h1", f"{deployment}-{i}"), annotations) for i in range(n)]


def test_overloaded_pods_slow_down_and_more_pods_recover() -> None:
    from hemostat.sim.behaviour import capacity, resolve

    load = {
        "sim.hemostat.dev/load-rps": "40",
        "sim.hemostat.dev/capacity-rps": "10",
        "sim.hemostat.dev/latency-ms": "20",
    }
    two, _ = resolve(_pods(2, load), [capacity])
    assert [(p.behaviour.rps, p.behaviour.latency_ms) for p in two] == [(20.0, 220.0)] * 2  # 100 % over: 11x
    four, _ = resolve(_pods(4, load), [capacity])
    assert [(p.behaviour.rps, p.behaviour.latency_ms) for p in four] == [(10.0, 20.0)] * 4  # at capacity: base


def test_capacity_effect_leaves_pods_without_load_alone() -> None:
    from hemostat.sim.behaviour import capacity, resolve

    plain, _ = resolve(_pods(2, {"sim.hemostat.dev/rps": "7"}), [capacity])
    assert [(p.behaviour.rps, p.behaviour.latency_ms) for p in plain] == [(7.0, 20.0)] * 2
    bad, _ = resolve(_pods(1, {"sim.hemostat.dev/load-rps": "x"}), [capacity])
    assert bad[0].behaviour.rps == 10.0


def test_a_slow_leak_serves_clean_until_its_pod_has_been_ready_long_enough() -> None:
    ref = PodRef("shop", "web", "h2", "web-h2-1")
    annotations = {ERROR_RATE: "0.3", FAILS_AFTER_S: "45"}
    (pod,), _ = resolve([ObservedPod(ref, annotations, ready_at=1000.0)])
    assert pod.behaviour.error_rate == 0.3
    (early,) = leak([pod], now=1044.0)
    (late,) = leak([pod], now=1045.0)
    assert early.behaviour.error_rate == 0.0 and early.ready_at == 1000.0
    assert late.behaviour.error_rate == 0.3
    (unknown,) = leak([dataclasses.replace(pod, ready_at=None)], now=5000.0)
    assert unknown.behaviour.error_rate == 0.0, "no Ready time: not yet failing, never failing early"
    plain = dataclasses.replace(pod, annotations={ERROR_RATE: "0.3"})
    assert leak([plain], now=1001.0)[0].behaviour.error_rate == 0.3, "without the annotation, no delay"
