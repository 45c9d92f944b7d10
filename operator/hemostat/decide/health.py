"""From readings to a verdict per signal and one health state per target.

Four verdicts, never three: Healthy, Breaching, NoData, Error. A query error is
never healthy and never a breach; no data is a breach only when the policy says
`onNoData: breach`. A breach counts ("confirmed") only after it has lasted the
signal's `for`; the start of each breach is carried between cycles by the caller
(persisted in the policy status), so a restart does not reset the clock. Below the
policy's minTraffic nothing breaches: one error in two requests is noise, not an outage.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from ..models.common import parse_duration
from ..models.policy import SeverityRule, Signal
from ..reading import Reading, ReadingKind


class Verdict(enum.StrEnum):
    HEALTHY = "Healthy"
    BREACHING = "Breaching"
    NO_DATA = "NoData"
    ERROR = "Error"


class State(enum.StrEnum):
    HEALTHY = "Healthy"  # every signal read a value inside its bounds
    PENDING = "Pending"  # something breaches, but not yet for its `for`
    BREACHING = "Breaching"  # at least one signal breached for its `for`
    INCONCLUSIVE = "Inconclusive"  # no breach, but some signal had no data
    UNAVAILABLE = "Unavailable"  # no breach, but some query failed


@dataclass(frozen=True)
class SignalOutcome:
    name: str
    verdict: Verdict
    value: float | None
    detail: str
    threshold: str
    breaching_since: datetime | None
    confirmed: bool
    built_in: bool = False  # judged by Hemostat itself (decide/progress.py), not a policy signal


@dataclass(frozen=True)
class Health:
    state: State
    signals: tuple[SignalOutcome, ...]

    def by_name(self) -> dict[str, SignalOutcome]:
        return {s.name: s for s in self.signals}

    @property
    def errors(self) -> list[SignalOutcome]:
        return [s for s in self.signals if s.verdict is Verdict.ERROR]


def threshold_text(signal: Signal) -> str:
    parts = []
    if signal.bounds.above is not None:
        parts.append(f"> {signal.bounds.above:g}")
    if signal.bounds.below is not None:
        parts.append(f"< {signal.bounds.below:g}")
    text = " or ".join(parts)
    return f"{text} (alert {signal.alert.name} firing)" if signal.alert is not None else text


def breaches(value: float, above: float | None, below: float | None) -> bool:
    return (above is not None and value > above) or (below is not None and value < below)


def judge(signal: Signal, reading: Reading) -> Verdict:
    if reading.kind is ReadingKind.ERROR:
        return Verdict.ERROR
    if reading.kind is ReadingKind.NO_DATA:
        return Verdict.BREACHING if signal.on_no_data == "breach" else Verdict.NO_DATA
    assert reading.value is not None and not math.isnan(reading.value)
    bounds = signal.bounds
    return Verdict.BREACHING if breaches(reading.value, bounds.above, bounds.below) else Verdict.HEALTHY


def outcome(signal: Signal, reading: Reading, since: datetime | None, now: datetime) -> SignalOutcome:
    verdict = judge(signal, reading)
    start: datetime | None
    if verdict is Verdict.BREACHING:
        start = since or now
        confirmed = now - start >= parse_duration(signal.for_)
    elif verdict is Verdict.ERROR:
        # An outage says nothing about the service: keep the breach clock as it was,
        # but never confirm a breach on the strength of an error.
        start, confirmed = since, False
    else:
        start, confirmed = None, False
    return SignalOutcome(
        name=signal.name,
        verdict=verdict,
        value=reading.value,
        detail=reading.detail,
        threshold=threshold_text(signal),
        breaching_since=start,
        confirmed=confirmed,
    )


@dataclass(frozen=True)
class Gate:
    """The policy's minTraffic: a reading and the minimum it must reach."""

    reading: Reading
    at_least: float


def _gated(o: SignalOutcome, gate: Gate | None) -> SignalOutcome:
    """Low traffic turns a breach into NoData (clock reset); an unreadable gate into an Error (clock kept)."""
    if gate is None or o.verdict is not Verdict.BREACHING:
        return o
    r = gate.reading
    if r.kind is ReadingKind.ERROR:
        return replace(o, verdict=Verdict.ERROR, detail=f"minTraffic query failed: {r.detail}", confirmed=False)
    if r.kind is ReadingKind.NO_DATA or (r.value is not None and r.value < gate.at_least):
        seen = f"{r.value:.4g}" if r.value is not None else "no data"
        detail = f"traffic {seen} below minTraffic {gate.at_least:g}"
        return replace(o, verdict=Verdict.NO_DATA, detail=detail, breaching_since=None, confirmed=False)
    return o


def assess(
    signals: list[Signal],
    readings: Mapping[str, Reading],
    breaching_since: Mapping[str, datetime],
    now: datetime,
    gate: Gate | None = None,
    built_in: Sequence[SignalOutcome] = (),
) -> Health:
    """`built_in`: outcomes judged elsewhere (decide/progress.py), never gated by traffic."""
    judged = (_gated(outcome(s, readings[s.name], breaching_since.get(s.name), now), gate) for s in signals)
    outcomes = (*judged, *built_in)
    verdicts = {o.verdict for o in outcomes}
    if any(o.confirmed for o in outcomes):
        state = State.BREACHING
    elif Verdict.BREACHING in verdicts:
        state = State.PENDING
    elif Verdict.ERROR in verdicts:
        state = State.UNAVAILABLE
    elif Verdict.NO_DATA in verdicts:
        state = State.INCONCLUSIVE
    else:
        state = State.HEALTHY
    return Health(state=state, signals=outcomes)


def severity(rules: Sequence[SeverityRule], outcomes: Mapping[str, SignalOutcome], default: str) -> str:
    """First rule whose signal value crosses its bound wins."""
    for rule in rules:
        seen = outcomes.get(rule.signal)
        if seen is not None and seen.value is not None and breaches(seen.value, rule.above, rule.below):
            return str(rule.level)
    return default
