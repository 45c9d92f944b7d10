"""Is it the deploy? Pure functions from one cycle's evidence to a verdict, before any step.

Each piece of evidence is a `Clue` computed from the snapshot alone; `attribute` weighs them in a
fixed order, so every verdict can be told in one line and checked by a test:

- contrast: the new revision against the old one over the same seconds (while both serve). A
  cause shared by both revisions (a dependency, a surge, a global outage) cancels out; a new
  revision far worse than the old is to blame even during a shared outage (compound).
- fleet: the same signal on the policy's other targets, and on the namespace's other policies' targets
  (cycle/neighbours.py), that had no new revision since the target's own (or for `QUIET`):
  difference-in-differences against the untouched. Peers breaching too: the cause is shared, `global` when
  most of them breach; a target far worse than its breaching peers is to blame alone. Without an untouched
  peer, peers that changed about when it did and breach alike leave the cause `unknown`.
- traffic: the request rate against its recent baseline: a jump of `jump` times is a surge.
- dataQuality: a breach that rests only on missing data never acts.
- timing: a breach that began before the revision became current is not that revision's.
- progress: a rollout past its progress deadline, told by the new revision's Pods (decide/progress.py).

A comparison is a tolerance band (Kayenta's judge, without its hours of data): one side must be
`EXCESS` times further past the threshold than the other to be told apart. Evidence that cannot be
read is said as unavailable, never guessed; what cannot be decided is `unknown`.

A comparison is over the same seconds or it is no evidence: until the new revision has served a whole
window of a signal's queries (decide/windows.py), its Pods' series average fewer seconds than the old
revision's and the peers', so a cause that began as it did reads worse on it, by at most window/served.
A comparison that still blames it allowing for that stands; one that blames it only without says
`UNSETTLED`, and the verdict waits for the window (weighed again every cycle), or is `unknown` when the
window is longer than `WAIT_AT_MOST`. While the contrast waits, the peers do not blame in its place: the old
revision is the nearer control, and peers scraped a moment after a shared fault began read far lower.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..clock import now_iso
from ..models.common import format_duration
from ..models.policy import Attribution, Signal
from ..reading import Reading, ReadingKind
from . import windows
from .health import Health, SignalOutcome, Verdict, breaches

# a peer is a control when its revision has not changed since the target's own, or for this long
QUIET = timedelta(minutes=10)
# without untouched peers: a revision that served within bounds this long before it and the peers that changed
# with it breached alike is less suspect than a shared cause (bad revisions breach as their Pods serve)
SERVED = timedelta(seconds=30)
EXCESS = 2.0  # this many times further past the threshold than the control: to blame on its own
# ... or, when the control stays within bounds, this many times: a band that noise (0.1 against 0.1 across a
# 10 % bound) stays inside and a real regression (p99 +50 %) does not
TOLERANCE = 1.2
GLOBAL_SHARE = 0.8  # of the untouched peers breaching: most of the fleet
GLOBAL_MIN_PEERS = 3  # fewer peers than this cannot tell a global outage from a dependency
WAIT_AT_MOST = timedelta(minutes=1)  # for a young revision to serve a signal's window before comparing it
# status and Kubernetes keep times to the whole second, floored: what they stamp may have come this much later
STAMP = timedelta(seconds=1)

# what a clue can say besides a verdict
SHARED = "shared"  # the cause is outside the new revision
ALONE = "alone"  # the target breaches alone among untouched peers
NONE = "none"  # no opinion (nothing seen, or the evidence is unavailable)
UNSETTLED = "unsettled"  # would blame the new revision, compared over different seconds: not yet evidence


@dataclass(frozen=True)
class Clue:
    kind: str  # progress | contrast | fleet | traffic | dataQuality | timing
    says: str  # a verdict, SHARED, ALONE or NONE
    detail: str


@dataclass(frozen=True)
class Finding:
    verdict: str  # a verdict, or UNSETTLED: none yet (nothing recorded, weighed again next cycle)
    confidence: float
    reason: str
    clues: tuple[Clue, ...]


def overshoot(value: float, signal: Signal) -> float:
    """How far a value is past the signal's threshold, as a ratio: above 1 breaches, 1 at the bound."""
    above, below = signal.bounds.above, signal.bounds.below
    ratios = []
    if above is not None:
        ratios.append(value / above if above > 0 else (math.inf if value > 0 else 0.0))
    if below is not None:
        ratios.append(below / value if value > 0 else (math.inf if below > 0 else 0.0))
    return max(ratios)


def _value(r: Reading | None) -> float | None:
    return r.value if r is not None and r.kind is ReadingKind.VALUE and r.value is not None else None


def _shown(v: float) -> str:
    return f"{v:.4g}"


def breaching(health: Health) -> list[SignalOutcome]:
    """The policy's signals that make the target breach now (confirmed or not yet); built-in ones have clues
    of their own."""
    return [s for s in health.signals if s.verdict is Verdict.BREACHING and not s.built_in]


@dataclass(frozen=True)
class Young:
    """A revision that has served less than a signal's window: the other side's value may read up to `factor`
    times too low against it (only 1/`factor` of its window covers the same seconds)."""

    window: timedelta
    served: timedelta
    why: str

    @property
    def factor(self) -> float:
        return self.window / self.served if self.served > timedelta(0) else math.inf

    @property
    def waits(self) -> bool:
        """The window ends within WAIT_AT_MOST: wait for it, else a person decides."""
        return self.window <= WAIT_AT_MOST

    def blames(self, signal: Signal, mine: float, theirs: float) -> bool:
        """Still to blame with the other side's overshoot at its most: EXCESS times under it, or TOLERANCE
        times when that is within bounds. A value that must stay above a bound has no such bound (its
        overshoot is not proportional)."""
        if signal.bounds.below is not None:
            return False
        most = theirs * self.factor if theirs > 0 else 0.0  # 0 x an infinite allowance is 0, not NaN
        return mine >= (TOLERANCE if most <= 1 else EXCESS) * most

    def clue(self, kind: str, what: str) -> Clue:
        if self.waits:
            return Clue(kind, UNSETTLED, f"{what} yet: {self.why}")
        return Clue(
            kind, "unknown", f"{what}: {self.why}, a wait longer than {format_duration(WAIT_AT_MOST.total_seconds())}"
        )


def young(
    signal: Signal, windows: Mapping[str, timedelta | None] | None, since: datetime | None, now: datetime
) -> Young | None:
    """A revision that cannot be compared as it is on a signal: it has served less than the signal's window."""
    window = (windows or {}).get(signal.name)
    if window is None or since is None:
        return None
    served = now - since - STAMP
    if served >= window:
        return None
    began, length = now_iso(since), format_duration(window.total_seconds())
    until = now_iso(since + STAMP + window)
    why = f"its revision serves since {began}, less than the {length} {signal.name} averages over (until {until})"
    return Young(window, served, why)


def young_breach(signal: Signal, new: Reading | None, since: datetime | None, now: datetime) -> bool:
    """A revision that replaced another less than a window ago breaching above its bound on its own reading,
    which the Deployment's rate, still averaging the replaced revision's seconds in, may not show yet. Not below
    a bound: a series younger than the window may read low."""
    n = _value(new)
    if n is None or not breaches(n, signal.bounds.above, None):
        return False
    return young(signal, {signal.name: windows.of(signal)}, since, now) is not None


def contrast(
    signal: Signal, new: Reading | None, old: Reading | None, old_revision: str, young: Young | None = None
) -> Clue:
    """The new revision's reading against the old one's, from one query; `young` while their seconds differ."""
    n, o = _value(new), _value(old)
    if n is None or o is None:
        side, missing = ("new", new) if n is None else ("old", old)
        why = missing.detail if missing is not None else "no series"
        if n is None and young is not None and young.served < WAIT_AT_MOST:  # its first samples are on their way
            return Clue("contrast", UNSETTLED, f"{signal.name}: the new revision not read yet: {young.why}")
        return Clue("contrast", NONE, f"{signal.name}: unavailable, no value for the {side} revision ({why})")
    bounds = signal.bounds
    new_bad, old_bad = breaches(n, bounds.above, bounds.below), breaches(o, bounds.above, bounds.below)
    head = f"{signal.name}: new revision {_shown(n)}, old {old_revision} {_shown(o)}"
    mine, theirs = overshoot(n, signal), overshoot(o, signal)
    blamed = new_bad and mine >= (EXCESS if old_bad else TOLERANCE) * theirs
    if blamed and young is not None and not young.blames(signal, mine, theirs):
        return young.clue("contrast", f"{signal.name}: the new revision not compared with {old_revision}")
    if blamed and not old_bad:
        return Clue("contrast", "deploy", f"{head}: only the new revision breaches")
    if blamed:
        return Clue("contrast", "deploy", f"{head}: both breach, the new at least {EXCESS:g}x further")
    if new_bad and old_bad:
        return Clue("contrast", SHARED, f"{head}: both revisions breach alike, the cause is shared")
    if new_bad:
        return Clue("contrast", SHARED, f"{head}: within {TOLERANCE:g}x of each other, the bound between them")
    return Clue("contrast", SHARED, f"{head}: the new revision is within bounds")


@dataclass(frozen=True)
class Peer:
    name: str
    since: datetime | None  # when its revision became current (None: not known)
    overshoot: Mapping[str, float]  # breaching signal -> how far past the bound


def peers_of(seen: Mapping[str, tuple[Health, datetime | None]], signals: Sequence[Signal]) -> list[Peer]:
    """One policy's targets as peers: when their revision became current, how far each breaching signal is past."""
    by_name = {s.name: s for s in signals}

    def past(health: Health) -> dict[str, float]:
        return {o.name: overshoot(o.value, by_name[o.name]) for o in breaching(health) if o.value is not None}

    return [Peer(name, since, past(health)) for name, (health, since) in seen.items()]


def _key(since: datetime | None) -> float:
    return since.timestamp() if since is not None else -math.inf


class Fleet:
    """The policy's targets this cycle, ordered by when their revision became current, so the controls of
    one target (the peers without a change since its own, or for `QUIET`) are a prefix found by bisection:
    a round of 10,000 targets costs O(n log n), not O(n²)."""

    def __init__(self, peers: Sequence[Peer]) -> None:
        ordered = sorted(peers, key=lambda x: _key(x.since))
        self._since = [_key(x.since) for x in ordered]
        self._breaching: dict[str, list[tuple[float, str, float]]] = {}
        for x in ordered:
            for signal, value in x.overshoot.items():
                self._breaching.setdefault(signal, []).append((_key(x.since), x.name, value))

    def controls(self, target: str, since: datetime | None, now: datetime) -> tuple[int, dict[str, list[float]]]:
        """How many peers had no new revision since the target's own (or for QUIET), and per signal how
        far past the bound the breaching ones are (the 200 latest: a median needs no more)."""
        cutoff = max(_key(since), (now - QUIET).timestamp())
        count = bisect.bisect_left(self._since, cutoff) - (1 if _key(since) < cutoff else 0)
        out = {}
        for signal, entries in self._breaching.items():
            end = bisect.bisect_left(entries, (cutoff,))
            out[signal] = [v for _, name, v in entries[max(0, end - 201) : end] if name != target][-200:]
        return count, out

    def changed_with(self, target: str, since: datetime | None, now: datetime) -> tuple[int, dict[str, list[float]]]:
        """The other peers, those that are no controls (a new revision since the target's own or within
        QUIET): how many, and per signal how far past the bound the breaching ones are (the 200 earliest)."""
        cutoff = max(_key(since), (now - QUIET).timestamp())
        count = len(self._since) - bisect.bisect_left(self._since, cutoff) - (1 if _key(since) >= cutoff else 0)
        out = {}
        for signal, entries in self._breaching.items():
            start = bisect.bisect_left(entries, (cutoff,))
            out[signal] = [v for _, name, v in entries[start : start + 201] if name != target][:200]
        return count, out


def fleet(
    target: str,
    outcomes: Sequence[SignalOutcome],
    signals: Mapping[str, Signal],
    peers: Fleet,
    since: datetime | None,
    now: datetime,
    windows: Mapping[str, timedelta | None] | None = None,
) -> Clue:
    """The breaching signals of one target against the same signals on its untouched peers; `windows` (per
    signal) tell when the target's revision has served long enough to be compared with them."""
    others, breaching_peers = peers.controls(target, since, now)
    if others <= 0:
        return _changed_with(target, outcomes, signals, peers, since, now, windows)
    worst: tuple[float, str] | None = None  # (share, detail) of the most shared signal
    for o in outcomes:
        theirs = breaching_peers.get(o.name, [])
        if o.value is None or not theirs:
            continue
        share = min(1.0, len(theirs) / others)
        seen = f"{o.name}: {len(theirs)} of {others} untouched peers breach too"
        if blamed := _far_worse(o.value, signals[o.name], theirs, seen, young(signals[o.name], windows, since, now)):
            return blamed
        if worst is None or share > worst[0]:
            worst = (share, seen)
    if worst is None:
        return Clue("fleet", ALONE, f"all {others} untouched peers are within bounds on the breaching signals")
    scope = "global" if worst[0] >= GLOBAL_SHARE and others >= GLOBAL_MIN_PEERS else "dependency"
    return Clue("fleet", scope, worst[1])


def _far_worse(value: float, signal: Signal, theirs: list[float], seen: str, young: Young | None) -> Clue | None:
    """The target's deploy, when it is EXCESS times further past the bound than its breaching peers' median
    (allowing for `young`: not compared yet when only its younger series make it so)."""
    mine, typical = overshoot(value, signal), statistics.median(theirs)
    if mine < EXCESS * typical:
        return None
    if young is not None and not young.blames(signal, mine, typical):
        return young.clue("fleet", f"{signal.name}: not compared with the peers breaching too")
    return Clue("fleet", "deploy", f"{seen}, but this target is {mine / typical:.1f}x further past the bound")


def _changed_with(
    target: str,
    outcomes: Sequence[SignalOutcome],
    signals: Mapping[str, Signal],
    peers: Fleet,
    since: datetime | None,
    now: datetime,
    windows: Mapping[str, timedelta | None] | None,
) -> Clue:
    """Without an untouched peer, the peers that changed about when the target did: breaching alike long after
    the target's revision began to serve (`SERVED`), the cause is theirs as much as the target's (a shared cause,
    or a change they share), so nobody can tell. A breach as its revision began to serve says nothing new."""
    unavailable = Clue("fleet", NONE, "unavailable: no other target of the policy without a change since this one's")
    starts = [o.breaching_since for o in outcomes if o.breaching_since is not None]
    if since is None or not starts or min(starts) - since < SERVED:
        return unavailable
    changed, breaching_peers = peers.changed_with(target, since, now)
    for o in outcomes:
        theirs = breaching_peers.get(o.name, [])
        if o.value is None or not theirs:
            continue
        seen = f"{o.name}: no untouched peer, and {len(theirs)} of {changed} peers changed within "
        seen += f"{format_duration(QUIET.total_seconds())} of this one breach too"
        if blamed := _far_worse(o.value, signals[o.name], theirs, seen, young(signals[o.name], windows, since, now)):
            return blamed
        served = format_duration((min(starts) - since).total_seconds())
        return Clue(
            "fleet", "unknown", f"{seen}, {served} after its revision began: a shared cause, or a change they share"
        )
    return unavailable


def traffic(
    config: Attribution,
    reading: Reading | None,
    began: datetime | None = None,
    now: datetime | None = None,
    unread: str | None = None,
) -> Clue:
    """The request rate over its baseline. Under `jump` is no surge only once the query's window (its shortest
    range: the rate now) covers the breach, which began at `began`: a surge that began with it reads
    1 + (F - 1) x covered/window before, so until then a reading that a surge of `jump` could explain waits.
    Nor while the new revision's series have no rate yet (`unread` says so): the rate misses its requests."""
    if config.traffic is None:
        return Clue("traffic", NONE, "unavailable: the policy has no attribution.traffic query")
    v = _value(reading)
    if v is None:
        return Clue("traffic", NONE, f"unavailable: {reading.detail if reading else 'not read'}")
    jump = config.traffic.jump
    if v >= jump:
        return Clue("traffic", "traffic", f"request rate {_shown(v)}x its baseline (a surge from {jump:g}x)")
    if unread is not None:
        return Clue("traffic", UNSETTLED, f"request rate not compared with its baseline yet: {unread}")
    window = windows.shortest_range(config.traffic.prometheus.query)
    if window is not None and began is not None and now is not None and now - began - STAMP < window and v > 1:
        covered = (now - began - STAMP).total_seconds()
        if covered <= 0 or 1 + (v - 1) * window.total_seconds() / covered >= jump:
            length, until = format_duration(window.total_seconds()), now_iso(began + STAMP + window)
            why = f"the breach began {now_iso(began)}, less than the {length} the rate averages over (until {until})"
            return Clue("traffic", UNSETTLED, f"request rate not compared with its baseline yet: {why}")
    return Clue("traffic", NONE, f"request rate {_shown(v)}x its baseline: no surge")


def data_quality(outcomes: Sequence[SignalOutcome]) -> Clue:
    empty = [o.name for o in outcomes if o.value is None]
    if outcomes and len(empty) == len(outcomes):
        return Clue("dataQuality", "dataQuality", f"the breach rests only on missing data: {', '.join(empty)}")
    return Clue("dataQuality", NONE, "every breaching signal read a value")


def timing(
    outcomes: Sequence[SignalOutcome], revision: int | None, since: datetime | None, window: timedelta, now: datetime
) -> Clue:
    starts = [o.breaching_since for o in outcomes if o.breaching_since is not None]
    if revision is None or since is None or not starts:
        return Clue("timing", NONE, "unavailable: the revision or the breach start is not known")
    began, age = min(starts), now - since
    if age > window:
        old = format_duration(age.total_seconds())
        return Clue("timing", NONE, f"revision {revision} is {old} old, past the rollout window")
    lag = (began - since).total_seconds()
    became = f"revision {revision} became current"
    if lag < 0:
        return Clue("timing", SHARED, f"the breach began {format_duration(-lag)} before {became}")
    return Clue("timing", "deploy", f"the breach began {format_duration(lag)} after {became}")


def attribute(clues: Sequence[Clue]) -> Finding:
    """Weigh the clues in a fixed order; the first rule that holds gives the verdict."""
    said = {c.kind: c for c in clues}

    def says(kind: str, *what: str) -> Clue | None:
        c = said.get(kind)
        return c if c is not None and c.says in what else None

    def found(verdict: str, confidence: float, because: Clue | None, also: str = "") -> Finding:
        reason = (because.detail if because else "") + also
        return Finding(verdict, confidence, reason, tuple(clues))

    if c := says("progress", "deploy"):  # the new revision's own Pods cannot start
        return found("deploy", 0.9, c)
    if c := says("progress", "unknown"):
        return found("unknown", 0.5, c)
    if c := says("dataQuality", "dataQuality"):
        return found("dataQuality", 0.9, c)
    if c := says("contrast", "deploy"):
        return found("deploy", 0.95, c)
    # the old revision, the nearer control, may yet blame it: no verdict before then, the peers' included
    if c := says("contrast", UNSETTLED):
        return found(UNSETTLED, 0.0, c)
    if (c := says("fleet", "deploy")) and says("timing", "deploy", SHARED):  # far worse, with a fresh revision
        return found("deploy", 0.8, c)
    if c := says("fleet", UNSETTLED):
        return found(UNSETTLED, 0.0, c)
    if c := says("contrast", "unknown"):  # too long to wait for a fair comparison
        return found("unknown", 0.5, c)
    if c := says("fleet", "global", "dependency"):  # a surge the fleet shares is the fleet's outage too
        return found(c.says, 0.85 if says("contrast", SHARED) else 0.75, c)
    if c := says("traffic", UNSETTLED):  # may yet be a surge
        return found(UNSETTLED, 0.0, c)
    if c := says("traffic", "traffic"):
        return found("traffic", 0.85 if says("contrast", SHARED) else 0.7, c)
    if c := says("contrast", SHARED):
        return found("dependency", 0.7, c)
    if c := says("fleet", "unknown"):  # peers that changed with it breach alike: theirs as much as its own
        return found("unknown", 0.5, c)
    if c := says("timing", SHARED):
        return found("unknown", 0.5, c)
    if c := says("timing", "deploy"):
        if says("fleet", ALONE):
            return found("deploy", 0.7, c, "; untouched peers within bounds")
        return found("deploy", 0.5, c, "; nothing points elsewhere")
    if c := says("fleet", ALONE, "deploy"):
        return found("deploy", 0.5, c, " (no new revision in the window: the target's own, as without attribution)")
    return Finding("unknown", 0.0, "no evidence could be read", tuple(clues))
