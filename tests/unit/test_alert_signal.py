"""A policy's alert signal: what the board of alerts Alertmanager sent reads for a target (a count of firing
alerts, NoData while it cannot know), the policy's shape rules, and which alert a policy claims (no alert-only
Incident for it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hemostat import alerts
from hemostat.cycle.alert_intake import claimed_by
from hemostat.cycle.snapshot import Settings, parse_spec
from hemostat.decide import health
from hemostat.models.policy import AlertSignal, Signal
from hemostat.reading import Reading, ReadingKind

START = datetime(2026, 12, 6, 14, 0, 0, tzinfo=UTC)
RESEND = timedelta(minutes=5)
SIGNAL = AlertSignal(name="HighErrorRate", matchers={"severity": "critical"})


def alert(status: str = "firing", fingerprint: str = "f1", ends: str = "0001-01-01T00:00:00Z", **labels: str):
    return alerts.Alert.model_validate(
        {
            "status": status,
            "labels": {
                "alertname": "HighErrorRate",
                "namespace": "shop",
                "deployment": "web",
                "severity": "critical",
                **labels,
            },
            "startsAt": "2026-12-06T13:59:00Z",
            "endsAt": ends,
            "fingerprint": fingerprint,
        }
    )


def board(since: datetime | None = START) -> alerts.Board:
    return alerts.Board(RESEND, lambda: since)


def read(b: alerts.Board, namespace: str, target: str, now: datetime) -> Reading:
    return b.readings(SIGNAL, namespace, [target], now)[target]


def test_a_firing_alert_counts_for_its_target_only_and_resolved_counts_for_nothing() -> None:
    b = board()
    assert b.take(alert(), START)
    assert b.take(alert(fingerprint="f2", pod="web-2"), START)  # a second alert of the same rule and target
    assert b.take(alert(fingerprint="f3", deployment="api"), START)
    assert b.take(alert(fingerprint="f4", severity="warning"), START)  # the matchers leave it out
    now = START + timedelta(seconds=10)
    web = read(b, "shop", "web", now)
    assert (web.kind, web.value, web.detail) == (ReadingKind.VALUE, 2.0, "alert HighErrorRate firing")
    assert web.query == (
        'count(ALERTS{alertname="HighErrorRate",alertstate="firing",deployment="web",namespace="shop",'
        'severity="critical"}) or vector(0)'
    )
    assert read(b, "shop", "api", now).value == 1.0
    assert read(b, "other", "web", now).kind is ReadingKind.NO_DATA  # nothing known there, still cold
    b.take(alert("resolved", ends="2026-12-06T14:00:09Z"), now)
    b.take(alert("resolved", fingerprint="f2", ends="2026-12-06T14:00:09Z"), now)
    assert read(b, "shop", "web", now + RESEND).value == 0.0  # warm now: not firing is healthy


def test_cold_after_a_start_and_as_a_standby_a_quiet_target_reads_no_data_never_healthy() -> None:
    cold = read(board(), "shop", "web", START + timedelta(seconds=30))
    assert cold.kind is ReadingKind.NO_DATA
    assert cold.detail == (
        "no alert HighErrorRate known: this replica has taken alerts for 30s, and Alertmanager resends firing "
        "alerts every 300s (--alert-resend-interval)"
    )
    standby = read(board(since=None), "shop", "web", START + timedelta(hours=1))
    assert standby.kind is ReadingKind.NO_DATA and "not yet (a standby)" in standby.detail
    warm = read(board(), "shop", "web", START + RESEND)
    assert (warm.kind, warm.value) == (ReadingKind.VALUE, 0.0)


def test_an_alert_unheard_of_for_two_resends_or_past_its_end_no_longer_counts() -> None:
    b = board()
    b.take(alert(), START)
    heard = read(b, "shop", "web", START + 2 * RESEND)
    assert heard.value == 1.0
    stale = read(b, "shop", "web", START + 2 * RESEND + timedelta(seconds=1))
    assert stale.kind is ReadingKind.NO_DATA  # it may have resolved unheard: inconclusive, never healthy
    assert stale.detail.startswith("alert HighErrorRate last heard firing 601s ago")
    b.take(alert(), START + 3 * RESEND)  # the resend
    assert read(b, "shop", "web", START + 3 * RESEND).value == 1.0
    ending = board()
    ending.take(alert(ends="2026-12-06T14:00:30Z"), START)  # another sender's end time (Alertmanager sends none)
    assert read(ending, "shop", "web", START + timedelta(seconds=29)).value == 1.0
    assert read(ending, "shop", "web", START + timedelta(seconds=31)).kind is ReadingKind.NO_DATA


def test_a_full_board_refuses_new_alerts_after_dropping_stale_ones() -> None:
    b = alerts.Board(RESEND, lambda: START, limit=2)
    assert b.take(alert(fingerprint="a"), START) and b.take(alert(fingerprint="b"), START)
    assert not b.take(alert(fingerprint="c"), START + timedelta(seconds=1))
    assert b.take(alert(fingerprint="a"), START + timedelta(seconds=1))  # a known one is always taken
    assert b.take(alert(fingerprint="c"), START + 2 * RESEND + timedelta(seconds=2))  # a and b went stale
    assert set(b.held) == {"c"}


def test_an_alert_signal_breaches_while_one_fires_and_says_so() -> None:
    signal = Signal.model_validate({"name": "errors", "alert": {"name": "HighErrorRate"}})
    b = board()
    b.take(alert(), START)
    assert signal.alert is not None
    outcome = health.outcome(signal, b.readings(signal.alert, "shop", ["web"], START)["web"], None, START)
    assert outcome.verdict is health.Verdict.BREACHING and outcome.confirmed
    assert outcome.threshold == "> 0 (alert HighErrorRate firing)"


@pytest.mark.parametrize(
    ("signal", "message"),
    [
        ({"name": "s"}, "exactly one of prometheus, alert must be set"),
        ({"name": "s", "prometheus": {"query": "up"}}, "a prometheus signal needs breachWhen"),
        (
            {"name": "s", "alert": {"name": "A"}, "breachWhen": {"above": 1}},
            "an alert signal breaches while the alert fires",
        ),
        (
            {"name": "s", "alert": {"name": "A"}, "prometheus": {"query": "up"}, "breachWhen": {"above": 1}},
            "exactly one of prometheus, alert must be set",
        ),
    ],
)
def test_a_signal_is_a_query_with_bounds_or_an_alert(signal: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Signal.model_validate(signal)


def policy(name: str, selector: dict, *signals: dict) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"target": {"selector": {"matchLabels": selector}}, "signals": list(signals)},
    }


ALERTING = {"name": "errors", "alert": {"name": "HighErrorRate", "matchers": {"severity": "critical"}}}
QUERY = {"name": "latency", "prometheus": {"query": "up"}, "breachWhen": {"above": 1}}


def test_an_operator_without_the_receiver_refuses_a_policy_with_an_alert_signal() -> None:
    body = policy("p", {"app": "web"}, ALERTING)
    spec, invalid = parse_spec(body, Settings("http://prometheus"))
    assert spec is None and invalid is not None and "alertmanager.enabled=true" in invalid
    spec, invalid = parse_spec(body, Settings("http://prometheus", alerts=True))
    assert spec is not None and invalid is None
    spec, invalid = parse_spec(body, Settings(None, alerts=True))  # no Prometheus needed for alerts only
    assert spec is not None and invalid is None


def test_an_alert_is_claimed_by_the_policy_whose_signal_uses_it_for_that_deployment() -> None:
    web = {"metadata": {"name": "web", "labels": {"app": "web"}}}
    target = alerts.Target("shop", "web")
    policies = [
        policy("latency", {"app": "web"}, QUERY),
        policy("elsewhere", {"app": "api"}, ALERTING),
        {"metadata": {"name": "broken"}, "spec": {"signals": "no"}},
        policy("errors", {"app": "web"}, QUERY, ALERTING),
    ]
    assert claimed_by(alert(), target, web, policies) == "errors"
    assert claimed_by(alert(severity="warning"), target, web, policies) is None  # not its matchers
    assert claimed_by(alert(alertname="Other"), target, web, policies) is None
    assert claimed_by(alert(), target, web, policies[:3]) is None


def test_matchers_are_prometheus_label_names() -> None:
    with pytest.raises(ValidationError, match="matchers keys must be Prometheus label names: bad-key"):
        AlertSignal.model_validate({"name": "A", "matchers": {"bad-key": "x", "ok": "y"}})


def test_every_targets_reading_comes_from_one_pass_over_the_alerts() -> None:
    b = board()
    b.take(alert(), START)
    b.take(alert(fingerprint="f2", deployment="api"), START)
    b.take(alert(fingerprint="f3", deployment="api", pod="api-2"), START)
    now = START + RESEND
    found = b.readings(SIGNAL, "shop", ["web", "api", "cart"], now)
    assert {t: r.value for t, r in found.items()} == {"web": 1.0, "api": 2.0, "cart": 0.0}
    assert 'alertstate="firing",deployment="cart",namespace="shop"' in found["cart"].query
