"""Attribution's evidence for one target, gathered from the snapshot. Pure.

Which revision is new and which older ones still serve come from the target's ReplicaSets (their
pod-template-hash is the label the per-revision series carry); the judging is decide/attribution.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from .. import workloads
from ..actions.base import Objects
from ..decide import attribution as a
from ..decide import progress, windows
from ..decide.health import Health
from ..models.policy import MitigationPolicySpec, Signal
from ..reading import Reading
from .snapshot import TargetView


def serving(objects: Objects) -> tuple[str | None, list[tuple[int, str]]]:
    """The current revision's pod-template-hash, and the older revisions still scaled up, newest first."""
    workload = workloads.of(objects.deployment)
    current = (objects.deployment["metadata"].get("annotations") or {}).get(workload.revision)
    new, old = None, []
    for rs in objects.replicasets:
        meta = rs["metadata"]
        template_hash = (meta.get("labels") or {}).get(workload.template_hash)
        revision = (meta.get("annotations") or {}).get(workload.revision)
        if template_hash is None or revision is None or not revision.isdigit():
            continue
        if revision == current:
            new = template_hash
        elif (rs["spec"].get("replicas") or 0) > 0:  # the Deployment controller still wants it serving
            old.append((int(revision), template_hash))
    return new, sorted(old, reverse=True)


def judged_readings(
    spec: MitigationPolicySpec, view: TargetView, objects: Objects, since: datetime | None, now: datetime
) -> Mapping[str, Reading]:
    """The readings the signals are judged on: the Deployment's own, except where its average hides what the
    new revision does. While a rollout is in progress, a signal whose new revision breaches where the old one
    does not reads the new revision's value, so a bad revision on a third of the Pods does not hide in the
    average (what a canary analysis judges). After it, until the new revision has served a whole window of the
    signal, the Deployment's rate still averages the replaced revision's seconds in: a new revision breaching
    above its bound on its own reads its own value (all that serves now), not one window later. Only when
    enforced: `observe` acts as without attribution, detection included."""
    if spec.attribution.mode != "enforce" or not view.by_revision:
        return view.readings
    new, old = serving(objects)
    if new is None:
        return view.readings
    out = dict(view.readings)
    for signal in spec.signals:
        split = view.by_revision.get(signal.name)
        if signal.by_revision is None or split is None or isinstance(split, Reading):
            continue
        if old:
            judged = a.contrast(signal, split.get(new), split.get(old[0][1]), "").says == "deploy"
        else:
            judged = a.young_breach(signal, split.get(new), since, now)
        if judged:
            out[signal.name] = split[new]
    return out


def contrast(
    signals: Mapping[str, Signal],
    view: TargetView,
    revisions: tuple[str | None, list[tuple[int, str]]],
    health: Health,
    window_of: Mapping[str, timedelta | None],
    since: datetime | None,
    now: datetime,
) -> a.Clue:
    """The first breaching signal whose revisions tell something: blame first, then a shared cause."""
    split = [o for o in a.breaching(health) if signals[o.name].by_revision is not None]
    if not split:
        return a.Clue("contrast", a.NONE, "unavailable: no breaching signal has a byRevision query")
    new, old = revisions
    if new is None or not old:
        return a.Clue("contrast", a.NONE, "unavailable: one revision serves (no rollout in progress)")
    old_revision, old_hash = old[0]
    clues = []
    for o in split:
        readings = view.by_revision.get(o.name)
        if readings is None or isinstance(readings, Reading):
            why = readings.detail if readings is not None else "not read"
            clues.append(a.Clue("contrast", a.NONE, f"{o.name}: unavailable, {why}"))
            continue
        signal, young = signals[o.name], a.young(signals[o.name], window_of, since, now)
        clues.append(a.contrast(signal, readings.get(new), readings.get(old_hash), f"revision {old_revision}", young))
    return next((c for c in clues if c.says == "deploy"), None) or next(
        (c for c in clues if c.says in (a.UNSETTLED, "unknown", a.SHARED)), clues[0]
    )


def unread(
    view: TargetView, new: str | None, revision: int | None, since: datetime | None, now: datetime
) -> str | None:
    """The new revision read on none of the signals' byRevision queries, within WAIT_AT_MOST of becoming current:
    its series have no rate yet (a rate needs two samples), so a rate summed over the target's series misses its
    requests. None when it was read, or cannot be told."""
    if new is None or since is None or now - since > a.WAIT_AT_MOST:
        return None
    split = {name: r for name, r in view.by_revision.items() if not isinstance(r, Reading)}
    if not split or any(r.get(new) is not None and r[new].value is not None for r in split.values()):
        return None
    names = ", ".join(sorted(split))
    return f"revision {revision} not read yet ({names}): its series have no rate, the request rate misses its requests"


def evidence(
    spec: MitigationPolicySpec,
    view: TargetView,
    objects: Objects,
    health: Health,
    fleet: a.Fleet,
    revision: int | None,
    revision_since: datetime | None,
    window: timedelta,
    now: datetime,
) -> tuple[a.Clue, ...]:
    outcomes = a.breaching(health)
    stall = progress.stalled(view.deployment)
    revisions = serving(objects)  # the new revision's hash, the older ones still serving
    stalled = (progress.clue(stall, view.pods, revisions[0]),) if stall else ()
    window_of = {s.name: windows.of(s) for s in spec.signals}
    signals = {s.name: s for s in spec.signals}
    return (
        *stalled,
        a.data_quality(outcomes),
        contrast(signals, view, revisions, health, window_of, revision_since, now),
        a.fleet(view.name, outcomes, signals, fleet, revision_since, now, window_of),
        a.traffic(
            spec.attribution,
            view.traffic,
            min((o.breaching_since for o in outcomes if o.breaching_since), default=None),
            now,
            unread(view, revisions[0], revision, revision_since, now),
        ),
        a.timing(outcomes, revision, revision_since, window, now),
    )
