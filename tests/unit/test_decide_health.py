"""From readings to verdicts, breach clocks, one health state per target, and severity.

Pure functions: every test passes a fixed `now`; nothing sleeps or reads a clock.
A NaN never arrives as a VALUE reading (the provider maps it to NO_DATA), so that
path is not exercised here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hemostat.decide.health import (
    Health,
    SignalOutcome,
    State,
    Verdict,
    assess,
    judge,
    outcome,
    severity,
    threshold_text,
)
from hemostat.models.policy import SeverityRule, Signal
from hemostat.reading import Reading

NOW = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)

HIGH = Reading.value_of(0.12, detail="0.12 from 3 series", query="q")
LOW = Reading.value_of(0.01, detail="0.01", query="q")
AT_BOUND = Reading.value_of(0.05, query="q")
EMPTY = Reading.no_data("empty vector", query="q")
DOWN = Reading.error("timeout", "prometheus did not answer in 5s", query="q")


def make_signal(
    name: str = "err",
    *,
    above: float | None = 0.05,
    below: float | None = None,
    for_: str = "30s",
    on_no_data: str = "ignore",
) -> Signal:
    breach = {k: v for k, v in (("above", above), ("below", below)) if v is not None}
    return Signal.model_validate(
        {
            "name": name,
            "prometheus": {"query": f"q_{name}"},
            "breachWhen": breach,
            "for": for_,
            "onNoData": on_no_data,
        }
    )


# --- judge: every reading kind x onNoData ------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "on_no_data", "expected"),
    [
        (HIGH, "ignore", Verdict.BREACHING),
        (HIGH, "breach", Verdict.BREACHING),
        (LOW, "ignore", Verdict.HEALTHY),
        (LOW, "breach", Verdict.HEALTHY),
        (AT_BOUND, "ignore", Verdict.HEALTHY),  # the bound itself is not a breach
        (AT_BOUND, "breach", Verdict.HEALTHY),
        (EMPTY, "ignore", Verdict.NO_DATA),
        (EMPTY, "breach", Verdict.BREACHING),
        (DOWN, "ignore", Verdict.ERROR),  # an outage is never a breach ...
        (DOWN, "breach", Verdict.ERROR),  # ... not even with onNoData: breach
    ],
    ids=lambda p: p if isinstance(p, str) else None,
)
def test_judge_reading_kind_by_on_no_data(reading: Reading, on_no_data: str, expected: Verdict) -> None:
    assert judge(make_signal(on_no_data=on_no_data), reading) is expected


@pytest.mark.parametrize(
    ("above", "below", "value", "expected"),
    [
        (None, 0.9, 0.8, Verdict.BREACHING),
        (None, 0.9, 0.0, Verdict.BREACHING),
        (None, 0.9, 0.9, Verdict.HEALTHY),
        (None, 0.9, 0.95, Verdict.HEALTHY),
        (1.0, 0.1, 1.5, Verdict.BREACHING),
        (1.0, 0.1, 0.05, Verdict.BREACHING),
        (1.0, 0.1, 0.5, Verdict.HEALTHY),
        (1.0, 0.1, 1.0, Verdict.HEALTHY),
        (0.05, None, float("inf"), Verdict.BREACHING),
        (None, 0.9, float("-inf"), Verdict.BREACHING),
        (0.05, None, 0.0, Verdict.HEALTHY),
    ],
)
def test_judge_bounds(above: float | None, below: float | None, value: float, expected: Verdict) -> None:
    assert judge(make_signal(above=above, below=below), Reading.value_of(value)) is expected


@pytest.mark.parametrize(
    ("above", "below", "text"),
    [(0.05, None, "> 0.05"), (None, 0.9, "< 0.9"), (1.0, 0.1, "> 1 or < 0.1"), (250.0, None, "> 250")],
)
def test_threshold_text(above: float | None, below: float | None, text: str) -> None:
    assert threshold_text(make_signal(above=above, below=below)) == text


# --- outcome: the breach clock and `for` ------------------------------------------------


@pytest.mark.parametrize(
    ("for_", "on_no_data", "reading", "since", "want_since", "want_confirmed"),
    [
        pytest.param("30s", "ignore", HIGH, None, NOW, False, id="breach-starts-clock"),
        pytest.param("30s", "ignore", HIGH, NOW - timedelta(seconds=29), NOW - timedelta(seconds=29), False, id="29s"),
        pytest.param("30s", "ignore", HIGH, NOW - timedelta(seconds=30), NOW - timedelta(seconds=30), True, id="30s"),
        pytest.param("30s", "ignore", HIGH, NOW - timedelta(minutes=10), NOW - timedelta(minutes=10), True, id="10m"),
        pytest.param("0s", "ignore", HIGH, None, NOW, True, id="for-0s-confirms-at-once"),
        pytest.param("2m", "ignore", HIGH, NOW - timedelta(seconds=90), NOW - timedelta(seconds=90), False, id="2m"),
        pytest.param("30s", "ignore", DOWN, NOW - timedelta(minutes=10), NOW - timedelta(minutes=10), False, id="err"),
        pytest.param("0s", "ignore", DOWN, NOW - timedelta(minutes=10), NOW - timedelta(minutes=10), False, id="err0s"),
        pytest.param("30s", "ignore", DOWN, None, None, False, id="error-starts-no-clock"),
        pytest.param("30s", "ignore", LOW, NOW - timedelta(minutes=10), None, False, id="healthy-resets"),
        pytest.param("30s", "ignore", AT_BOUND, NOW - timedelta(minutes=10), None, False, id="bound-resets"),
        # like Prometheus' own `for`: a vanished series (ignored) ends the pending breach
        pytest.param("30s", "ignore", EMPTY, NOW - timedelta(minutes=10), None, False, id="nodata-ignore-resets"),
        pytest.param("30s", "breach", EMPTY, None, NOW, False, id="nodata-breach-starts"),
        pytest.param(
            "30s", "breach", EMPTY, NOW - timedelta(minutes=10), NOW - timedelta(minutes=10), True, id="nodata-breach"
        ),
    ],
)
def test_outcome_breach_clock(
    for_: str,
    on_no_data: str,
    reading: Reading,
    since: datetime | None,
    want_since: datetime | None,
    want_confirmed: bool,
) -> None:
    got = outcome(make_signal(for_=for_, on_no_data=on_no_data), reading, since, NOW)
    assert got.breaching_since == want_since
    assert got.confirmed is want_confirmed


def test_outcome_carries_reading_and_threshold() -> None:
    got = outcome(make_signal("err", above=0.05, below=0.001), HIGH, None, NOW)
    assert got == SignalOutcome(
        name="err",
        verdict=Verdict.BREACHING,
        value=0.12,
        detail="0.12 from 3 series",
        threshold="> 0.05 or < 0.001",
        breaching_since=NOW,
        confirmed=False,
    )
    down = outcome(make_signal("err"), DOWN, None, NOW)
    assert (down.verdict, down.value, down.detail) == (Verdict.ERROR, None, "prometheus did not answer in 5s")


def test_breach_clock_across_cycles() -> None:
    """The caller persists breaching_since between cycles, as the cycle does."""
    sig = make_signal("err", for_="30s")
    t0 = NOW
    clock: dict[str, datetime] = {}
    seen: list[tuple[State, datetime | None]] = []
    for offset, reading in [
        (0, HIGH),  # breach begins: pending
        (15, DOWN),  # outage: clock kept, not confirmed
        (30, DOWN),  # 30s since the breach began, but an error never confirms
        (45, HIGH),  # breaching again: confirmed on the clock from t0
        (60, LOW),  # healthy: clock reset
        (75, HIGH),  # a new breach starts a new clock
    ]:
        health = assess([sig], {"err": reading}, clock, t0 + timedelta(seconds=offset))
        out = health.by_name()["err"]
        clock = {"err": out.breaching_since} if out.breaching_since else {}
        seen.append((health.state, out.breaching_since))
    assert seen == [
        (State.PENDING, t0),
        (State.UNAVAILABLE, t0),
        (State.UNAVAILABLE, t0),
        (State.BREACHING, t0),
        (State.HEALTHY, None),
        (State.PENDING, t0 + timedelta(seconds=75)),
    ]


# --- assess: one state per target ---------------------------------------------------------

OLD = timedelta(minutes=5)  # a breach older than every `for` used here


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        pytest.param([(LOW, None, "ignore"), (LOW, None, "ignore")], State.HEALTHY, id="all-healthy"),
        pytest.param([(LOW, None, "ignore"), (EMPTY, None, "ignore")], State.INCONCLUSIVE, id="nodata"),
        pytest.param([(EMPTY, None, "ignore"), (DOWN, None, "ignore")], State.UNAVAILABLE, id="error>nodata"),
        pytest.param([(LOW, None, "ignore"), (DOWN, OLD, "ignore")], State.UNAVAILABLE, id="error-old-clock"),
        pytest.param([(DOWN, None, "ignore"), (HIGH, None, "ignore")], State.PENDING, id="pending>error"),
        pytest.param([(EMPTY, None, "ignore"), (HIGH, None, "ignore")], State.PENDING, id="pending>nodata"),
        pytest.param([(LOW, None, "ignore"), (EMPTY, None, "breach")], State.PENDING, id="nodata-breach-pending"),
        pytest.param([(LOW, None, "ignore"), (EMPTY, OLD, "breach")], State.BREACHING, id="nodata-breach-confirmed"),
        pytest.param([(HIGH, None, "ignore"), (HIGH, OLD, "ignore")], State.BREACHING, id="breaching>pending"),
        pytest.param(
            [(DOWN, None, "ignore"), (EMPTY, None, "ignore"), (HIGH, OLD, "ignore")],
            State.BREACHING,
            id="breaching>all",
        ),
    ],
)
def test_assess_state_precedence(signals: list[tuple[Reading, timedelta | None, str]], expected: State) -> None:
    sigs = [make_signal(f"s{i}", on_no_data=ond) for i, (_, _, ond) in enumerate(signals)]
    readings = {f"s{i}": r for i, (r, _, _) in enumerate(signals)}
    since = {f"s{i}": NOW - ago for i, (_, ago, _) in enumerate(signals) if ago is not None}
    health = assess(sigs, readings, since, NOW)
    assert health.state is expected
    assert [s.name for s in health.signals] == [f"s{i}" for i in range(len(signals))]


def test_assess_uses_each_signals_own_for() -> None:
    fast, slow = make_signal("fast", for_="30s"), make_signal("slow", for_="5m")
    since = {"fast": NOW - timedelta(minutes=1), "slow": NOW - timedelta(minutes=1)}
    health = assess([fast, slow], {"fast": HIGH, "slow": HIGH}, since, NOW)
    assert health.state is State.BREACHING
    assert {n: o.confirmed for n, o in health.by_name().items()} == {"fast": True, "slow": False}

    health = assess([slow], {"slow": HIGH}, {"slow": NOW - timedelta(minutes=1)}, NOW)
    assert health.state is State.PENDING


def test_health_errors_and_by_name() -> None:
    sigs = [make_signal("a"), make_signal("b"), make_signal("c")]
    health = assess(sigs, {"a": LOW, "b": DOWN, "c": EMPTY}, {}, NOW)
    assert [o.name for o in health.errors] == ["b"]
    assert {n: o.verdict for n, o in health.by_name().items()} == {
        "a": Verdict.HEALTHY,
        "b": Verdict.ERROR,
        "c": Verdict.NO_DATA,
    }
    assert isinstance(health, Health)


# --- severity ----------------------------------------------------------------------------


def rule(signal: str, level: str, *, above: float | None = None, below: float | None = None) -> SeverityRule:
    data: dict = {"signal": signal, "level": level}
    if above is not None:
        data["above"] = above
    if below is not None:
        data["below"] = below
    return SeverityRule.model_validate(data)


def seen(name: str, value: float | None) -> SignalOutcome:
    verdict = Verdict.NO_DATA if value is None else Verdict.BREACHING
    return SignalOutcome(name, verdict, value, "", "", None, False)


ERR_RULES = [rule("err", "SEV1", above=0.5), rule("err", "SEV2", above=0.1)]


@pytest.mark.parametrize(
    ("rules", "outcomes", "expected"),
    [
        pytest.param([], [seen("err", 0.9)], "SEV3", id="no-rules-default"),
        pytest.param(ERR_RULES, [seen("err", 0.6)], "SEV1", id="first-rule"),
        pytest.param(ERR_RULES, [seen("err", 0.2)], "SEV2", id="second-rule"),
        pytest.param(ERR_RULES, [seen("err", 0.08)], "SEV3", id="none-match-default"),
        pytest.param(ERR_RULES, [seen("err", 0.5)], "SEV2", id="bound-is-not-crossed"),
        pytest.param(list(reversed(ERR_RULES)), [seen("err", 0.6)], "SEV2", id="first-match-wins-not-worst"),
        pytest.param([rule("avail", "SEV1", below=0.9)], [seen("avail", 0.8)], "SEV1", id="below"),
        pytest.param([rule("avail", "SEV1", below=0.9)], [seen("avail", 0.95)], "SEV3", id="below-not-crossed"),
        pytest.param(
            [rule("lat", "SEV2", above=2, below=0.001)], [seen("lat", 0.0)], "SEV2", id="above-or-below-below"
        ),
        pytest.param(ERR_RULES, [seen("err", None)], "SEV3", id="no-value-no-match"),
        pytest.param(
            [rule("lat", "SEV1", above=1), rule("err", "SEV2", above=0.1)],
            [seen("err", 0.2)],
            "SEV2",
            id="unknown-signal-skipped",
        ),
        pytest.param(
            [rule("lat", "SEV1", above=1), rule("err", "SEV2", above=0.1)],
            [seen("err", 0.2), seen("lat", 1.5)],
            "SEV1",
            id="other-signal-first",
        ),
    ],
)
def test_severity(rules: list[SeverityRule], outcomes: list[SignalOutcome], expected: str) -> None:
    assert severity(rules, {o.name: o for o in outcomes}, "SEV3") == expected


def test_severity_default_is_passed_through() -> None:
    assert severity(ERR_RULES, {"err": seen("err", 0.0)}, "SEV4") == "SEV4"
