"""Decide: one pure function from a snapshot and `now` to everything the cycle will do.

No I/O and no clock. Per target it says which Incident to open, which step to apply (with
its guarded patch, ready to send), which status to write; every guardrail, marker and
verification rule is applied here. Apply only carries the plan out and records outcomes
through the same pure `lifecycle.record_*` functions.

Rules kept here, each with its own test:
- a step found applied by its marker (a crash between patch and record) is recorded as
  done before anything else, healthy or not, so it counts for cooldown and budget;
- cooldown and budget read the Deployment's own action ledger, shared by every policy
  and by people, and the ledger entry travels with the change;
- a skipped step falls through to the next in the same cycle; anything else waits;
- one change per target per cycle, planned on the objects read this cycle, guarded by what
  it depends on (generation and annotations; resourceVersion for objects without a spec);
- each target is decided alone: one that raises fails with its own error, never the policy.

The objects the decisions write are assembled in objects.py, the policy's status in status.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from .. import workloads
from ..actions import rollback
from ..actions.base import (
    MARKER,
    Context,
    Done,
    Hold,
    Objects,
    Plan,
    Skip,
    SourceKey,
    find_marker,
    marker_problem,
)
from ..actions.steps import ACTION_REASONS, STEP_OF_ACTION, kind_of
from ..decide import approval, attribution, ledger, progress, reconcilers, rollout_pause
from ..decide import conditions as c
from ..decide import health as h
from ..decide import lifecycle as lc
from ..models.common import parse_duration
from ..models.incident import ActionRecord, IncidentSpec, IncidentStatus
from ..models.policy import MitigationPolicySpec, TargetStatus
from . import attribute
from .objects import Change, change_for, incident_body, incident_name
from .snapshot import PAUSED, OpenIncident, Owners, Snapshot, TargetView, adoptable, open_incident

Body = dict[str, Any]
RETRY = 30.0  # seconds before an invalid policy, or a cycle that could not run, is tried again
# no claim of why: the operator stopped between the change and its record, or the record's writes all failed
FROM_MARKER = "its record was not written when it was made; confirmed from the marker on the changed object"


@dataclass(frozen=True, kw_only=True)
class TargetPlan:
    name: str
    deployment: Body | None  # None: a manual Incident's target does not exist
    target: TargetStatus  # what the policy status will say about this target
    incident_name: str | None = None
    create: Body | None = None  # a new Incident to create (its first status in an annotation)
    incident: Body | None = None  # the existing open Incident
    written: dict[str, Any] | None = None  # its status on the server (None: never written)
    status: IncidentStatus | None = None  # the status after this cycle's decisions
    change: Change | None = None
    spec: IncidentSpec | None = None
    # a guarded patch pausing or resuming the rollout while the cause is unknown (decide/rollout_pause.py)
    rollout: list[Body] | None = None


@dataclass(frozen=True)
class CyclePlan:
    snapshot: Snapshot
    targets: tuple[TargetPlan, ...]
    now: datetime
    peers: tuple[attribution.Peer, ...] = ()  # its targets, as the namespace's other policies see them

    @property
    def next_in(self) -> float:
        """Seconds to the next cycle: the rollout-watch interval while a target is in its window."""
        spec = self.snapshot.spec
        if spec is None:
            return RETRY
        watch = spec.mitigation.rollout_watch
        window = parse_duration(watch.window)
        fresh = any(
            t.target.revision_since and self.now - c.parse_iso(t.target.revision_since) < window for t in self.targets
        )
        return parse_duration(watch.interval if fresh else spec.interval).total_seconds()


def decide(snap: Snapshot, now: datetime) -> CyclePlan:
    if snap.spec is None:
        return CyclePlan(snap, (), now)
    around = Around.of(snap.replicasets, snap.hpas)
    seen = {view.name: seen for view in snap.targets if (seen := _seen(snap.spec, view, around, snap, now))}
    peers = attribution.peers_of({n: (x.health, x.revision_since) for n, x in seen.items()}, snap.spec.signals)
    mine = set(seen)
    neighbours = [x for x in snap.neighbours if x.name not in mine]  # a Deployment two policies watch counts once
    # only attribution reads the fleet: no sort without it
    fleet = attribution.Fleet([*peers, *neighbours] if snap.spec.attribution.mode != "off" else [])
    plans = (_isolated(snap, snap.spec, view, now, around, seen.get(view.name), fleet) for view in snap.targets)
    return CyclePlan(snap, tuple(plans), now, tuple(peers))


@dataclass(frozen=True)
class Seen:
    """One target's health and revision this cycle, computed once for its own decision and for its peers'."""

    health: h.Health
    revision: int | None
    revision_since: datetime | None


def _assess(spec: MitigationPolicySpec, view: TargetView, objects: Objects, now: datetime) -> Seen:
    previous = view.previous
    since = {k: c.parse_iso(v) for k, v in (previous.breaching_since if previous else {}).items()}
    gate = h.Gate(view.gate, spec.min_traffic.at_least) if view.gate and spec.min_traffic else None
    revision, revision_since = _revision(view, objects, now)
    readings = attribute.judged_readings(spec, view, objects, revision_since, now)
    stall = progress.stalled(view.deployment)
    built_in = (progress.outcome(stall),) if stall else ()
    return Seen(h.assess(spec.signals, readings, since, now, gate, built_in), revision, revision_since)


def _seen(spec: MitigationPolicySpec, view: TargetView, around: Around, snap: Snapshot, now: datetime) -> Seen | None:
    try:
        return _assess(spec, view, around.objects(view.deployment, snap.sources), now)
    except Exception:  # left out of the fleet; its own decision raises again and fails it alone
        return None


def _isolated(
    snap: Snapshot,
    spec: MitigationPolicySpec,
    view: TargetView,
    now: datetime,
    around: Around,
    seen: Seen | None,
    fleet: attribution.Fleet,
) -> TargetPlan:
    """One target's decision; one that raises (a case nobody foresaw) fails that target alone."""
    try:
        return decide_target(snap, spec, view, now, around, seen, fleet)
    except Exception as exc:
        error = f"could not decide: {type(exc).__name__}: {exc}"[:512]
        kept = view.previous or TargetStatus(name=view.name)  # its clocks and incident, as a read error keeps them
        return TargetPlan(name=view.name, deployment=view.deployment, target=kept.model_copy(update={"error": error}))


def ignored_records(objects: Objects, now: datetime) -> str | None:
    """Markers and ledger entries on the target's objects that are not trusted, said in one line."""
    said = []
    ledger_problem = ledger.read(objects.deployment["metadata"].get("annotations"), now).problem
    if ledger_problem:
        said.append(f"{ledger.LEDGER} on Deployment {objects.deployment['metadata']['name']}: {ledger_problem}")
    for obj in objects.annotated():
        problem = marker_problem((obj["metadata"].get("annotations") or {}).get(MARKER), now)
        if problem:
            kind = obj.get("kind") or "object"
            said.append(f"{MARKER} on {kind} {obj['metadata']['name']}: {problem}; ignored")
    return "; ".join(said)[:512] or None


@dataclass(frozen=True)
class Around:
    """The namespace's ReplicaSets by owner and HPAs by target, grouped once per cycle (not once per target)."""

    replicasets: Mapping[str, tuple[Body, ...]]
    hpas: Mapping[str, tuple[Body, ...]]

    @classmethod
    def of(cls, replicasets: Iterable[Body], hpas: Iterable[Body]) -> Around:
        owned: dict[str, list[Body]] = {}
        for rs in replicasets:
            for ref in rs["metadata"].get("ownerReferences") or []:
                owned.setdefault(ref.get("uid", ""), []).append(rs)
        scalers: dict[str, list[Body]] = {}
        for hpa in hpas:
            ref = hpa["spec"]["scaleTargetRef"]
            scalers.setdefault(f"{ref.get('kind')}/{ref.get('name')}", []).append(hpa)
        return cls({k: tuple(v) for k, v in owned.items()}, {k: tuple(v) for k, v in scalers.items()})

    def objects(self, deployment: Body, sources: Mapping[SourceKey, Body | None]) -> Objects:
        """The objects around one target: its own ReplicaSets, the HPAs that scale it, the flag sources."""
        meta, kind = deployment["metadata"], workloads.of(deployment).kind
        hpas = self.hpas.get(f"{kind}/{meta['name']}", ())
        return Objects(deployment, self.replicasets.get(meta["uid"], ()), hpas, sources)


def _revision(view: TargetView, objects: Objects, now: datetime) -> tuple[int | None, datetime | None]:
    """The current revision and when it became current, frozen at first sight.

    Frozen because the ReplicaSet's own timestamps move when it is merely scaled
    (e.g. by an HPA), which would make an old revision look freshly rolled out.
    """
    try:
        number = int((view.deployment["metadata"].get("annotations") or {})[workloads.of(view.deployment).revision])
    except (KeyError, ValueError):
        return None, None
    prev = view.previous
    if prev and prev.revision == number and prev.revision_since:
        return number, c.parse_iso(prev.revision_since)
    current = rollback.facts_from(view.deployment, list(objects.replicasets)).current
    return number, min(now, current.rolled_out_at) if current else now


def decide_target(
    snap: Snapshot,
    spec: MitigationPolicySpec,
    view: TargetView,
    now: datetime,
    around: Around | None = None,
    seen: Seen | None = None,
    fleet: attribution.Fleet | None = None,
) -> TargetPlan:
    around = around or Around.of(snap.replicasets, snap.hpas)
    objects = around.objects(view.deployment, snap.sources)
    previous = view.previous
    seen = seen or _assess(spec, view, objects, now)
    health, revision, revision_since = seen.health, seen.revision, seen.revision_since
    target = TargetStatus(
        name=view.name,
        verdicts={s.name: s.verdict.value for s in health.signals},
        breaching_since={s.name: c.now_iso(s.breaching_since) for s in health.signals if s.breaching_since},
        revision=revision,
        revision_since=c.now_iso(revision_since) if revision_since else None,
        error=view.error,
        ignored=ignored_records(objects, now),
    )
    if view.error:  # keep the clocks and the incident it had; decide nothing for it
        kept = target.model_copy(update={"incident": previous and previous.incident})
        return TargetPlan(name=view.name, deployment=view.deployment, target=kept)
    if view.incident is not None:
        name, ispec, status = view.incident.name, view.incident.spec, view.incident.status
        plan = TargetPlan(
            name=view.name,
            deployment=view.deployment,
            target=target,
            incident_name=name,
            incident=view.incident.body,
            written=view.incident.written,
            status=status,
            spec=ispec,
        )
    elif health.state is h.State.BREACHING and (again := _reopened(snap, spec, view, health, revision_since, now)):
        name, ispec, status = again.name, again.spec, again.status
        plan = TargetPlan(
            name=view.name,
            deployment=view.deployment,
            target=target,
            incident_name=name,
            incident=again.body,
            written=again.written,
            status=status,
            spec=ispec,
        )
    elif health.state is h.State.BREACHING:
        plan = _open(snap, spec, view, objects, health, now, target)
        assert plan.incident_name is not None and plan.spec is not None and plan.status is not None
        name, ispec, status = plan.incident_name, plan.spec, plan.status
    else:
        return TargetPlan(name=view.name, deployment=view.deployment, target=target)
    status = recover_markers(status, objects, name, len(spec.mitigation.steps), now)
    status = lc.record_paused(status, pauses(objects, snap.owners, name), name, now)
    status = lc.track_health(status, health, now)
    window = parse_duration(spec.mitigation.rollout_window)
    settling = False  # a comparison that may blame the new revision is not over the same seconds yet
    if spec.attribution.mode != "off" and lc.attributable(status, revision) and health.state is h.State.BREACHING:
        peers = fleet or attribution.Fleet([])
        clues = attribute.evidence(spec, view, objects, health, peers, revision, revision_since, window, now)
        found = attribution.attribute(clues)
        if found.verdict == attribution.UNSETTLED:
            status = lc.record_note(status, f"next step held, the cause not weighed yet: {found.reason}", now)
            settling = spec.attribution.mode == "enforce"  # observe acts as without attribution
        else:
            status = lc.record_attribution(status, found, spec, revision, now)
        if plan.create is not None:  # the verdict travels with the new Incident: a crash after the patch keeps it
            plan = replace(plan, create=incident_body(name, snap.namespace, snap.name, view.name, ispec, status))
    guardrail = guardrails(snap, spec, view.deployment, now)
    # the revision the verdict blames: a bad rollout during an incident blamed elsewhere is its own
    blamed = status.attribution
    detected = blamed.revision if blamed and blamed.verdict == "deploy" and blamed.revision else status.revision
    hold = rollout_pause.held(view.deployment["metadata"])
    status = lc.record_rollout_held(status, hold, name, revision, now)
    ctx = Context(
        incident=name,
        index=0,
        now=now,
        detected_revision=detected,
        rollout_window=window,
        revision_since=revision_since,
        held_rollout=hold is not None and hold.incident == name,
    )
    by = f"{snap.namespace}/{name}"
    approve = Approver(f"hemostat incident approve {name} -n {snap.namespace}", view.approval_problem)
    if settling:
        change = None
    else:
        status, change = advance(status, ispec, spec, health, guardrail, objects, ctx, by, snap.owners, approve)
    status, rollout = (status, None) if change is not None else hold_rollout(status, objects, name, now)
    open_now = status.phase != "Resolved"
    return replace(
        plan,
        status=status,
        change=change,
        rollout=rollout,
        target=target.model_copy(update={"incident": name if open_now else None}),
    )


def hold_rollout(
    status: IncidentStatus, objects: Objects, incident: str, now: datetime
) -> tuple[IncidentStatus, list[Body] | None]:
    """While the cause is unknown and held, an unfinished rollout is paused; when the Incident resolves,
    a pause of its own is lifted (the rollout goes on). The pause is recorded from the Deployment next
    cycle (restart-safe); the resume is said now, its status written only after the patch."""
    deployment, found = objects.deployment, status.attribution
    if status.phase == "Resolved":
        ops = rollout_pause.release_ops(deployment, incident)
        return (lc.record_rollout_resumed(status, now), ops) if ops else (status, None)
    mine = rollout_pause.held(deployment["metadata"])
    if status.phase == "Escalated" and mine is not None and mine.incident == incident:
        name = deployment["metadata"]["name"]
        said = f"the rollout stays paused: going on is a person's call (kubectl rollout resume deployment/{name})"
        return lc.record_note(status, said, now), None
    if found is None or found.verdict != "unknown" or found.mode != "enforce" or not found.hold_until:
        return status, None
    if status.actions or now >= c.parse_iso(found.hold_until):
        return status, None
    new, old = attribute.serving(objects)
    return status, rollout_pause.pause_ops(deployment, incident, new is not None and bool(old), now) or None


def guardrails(snap: Snapshot, spec: MitigationPolicySpec, deployment: Body, now: datetime) -> lc.Guardrails:
    annotations = deployment["metadata"].get("annotations") or {}
    paused = "policy is paused" if snap.paused else None
    if annotations.get(PAUSED) == "true":
        paused = "Deployment is annotated hemostat.dev/paused"
    return lc.Guardrails(
        dry_run=spec.guardrails.dry_run or snap.settings.global_dry_run,
        paused=paused,
        cooldown=parse_duration(spec.guardrails.cooldown),
        max_actions_per_hour=spec.guardrails.max_actions_per_hour,
        recent_actions=ledger.read(annotations, now).times(),
    )


def recover_markers(
    status: IncidentStatus, objects: Objects, incident: str, steps: int, now: datetime
) -> IncidentStatus:
    """Record steps whose marker shows they were applied but whose record was lost (a crash)."""
    recorded = {a.index for a in status.actions}
    for index in [*range(status.next_step, steps), lc.MANUAL_STEP]:
        done = None if index in recorded else find_marker(objects, incident, index, now)
        if done is not None:
            status = lc.record_action(status, from_marker(done, index), ACTION_REASONS[done.action], now)
    return status


def from_marker(done: Done, index: int) -> ActionRecord:
    return ActionRecord(
        step=STEP_OF_ACTION[done.action],
        action=done.action,
        index=index,
        result="Succeeded",
        from_=done.from_,
        to=done.to,
        message=FROM_MARKER,
        at=done.at,
    )


@dataclass(frozen=True)
class Approver:
    command: str  # how a person approves (said in the timeline and the update)
    problem: str | None = None  # why their decision was not checked by the admission policy (None: it was)


def advance(
    status: IncidentStatus,
    ispec: IncidentSpec,
    spec: MitigationPolicySpec,
    health: h.Health,
    guardrail: lc.Guardrails,
    objects: Objects,
    ctx: Context,
    by: str,
    owners: Owners | None = None,
    approver: Approver | None = None,
) -> tuple[IncidentStatus, Change | None]:
    """Walk the ladder: skipped steps fall through; anything else ends this cycle's moves. A change that needs
    a person's approval (guardrails.approval) waits for it."""
    for _ in range(len(spec.mitigation.steps) + 1):
        move = lc.next_move(status, ispec.resolve, spec, health, guardrail, ctx.now)
        if not isinstance(move, lc.Act):
            return _moved(status, move, ctx.now), None
        verdict = lc.follow_verdict(status, spec, move, ctx.now)
        if isinstance(verdict, lc.Wait | lc.Escalate):
            return _moved(status, verdict, ctx.now), None
        step_ctx = replace(ctx, index=move.index)
        planned = Skip(verdict) if verdict else kind_of(move.step).plan(objects, move.step.config, step_ctx)
        planned, before = unreconciled(planned, objects, spec.mitigation.gitops, step_ctx, owners)
        if isinstance(planned, Hold):  # may pass by the next cycle: wait, never skip the step for it
            return lc.record_note(status, f"next step {move.step.kind} held: {planned.reason}", ctx.now), None
        needs = approval.required(spec.guardrails.approval, ispec.severity)
        if isinstance(planned, Plan) and not move.dry_run and needs and approver is not None:
            asked = approval.Planned(move.index, move.step, planned.action, planned.from_, planned.to)
            settings, decision = spec.guardrails.approval, ispec.approval
            status, go = approval.gate(status, decision, settings, asked, approver.problem, approver.command, ctx.now)
            if not go:
                return status, None
        status, change = take(status, move, planned, objects, ctx.now, by, before)
        if change is not None or status.phase == "Monitoring":
            return status, change
    return status, None


def patched_object(objects: Objects, planned: Plan) -> Body | None:
    """The object a step's patch changes, as read this cycle."""
    if planned.kind == workloads.of(objects.deployment).kind:
        return objects.deployment
    if planned.kind == "HorizontalPodAutoscaler":
        return next((h for h in objects.hpas if h["metadata"]["name"] == planned.name), None)
    return objects.sources.get((planned.kind, planned.name))


def unreconciled(
    planned: Plan | Skip | Done | Hold, objects: Objects, mode: str, ctx: Context, owners: Owners | None
) -> tuple[Plan | Skip | Done | Hold, reconcilers.ObjectPause | None]:
    """The step with what keeps a GitOps reconciler from undoing it (decide/reconcilers.py): ops in its own
    patch, or a pause written before it; a hold while the reconciler's object is read; or a skip saying why."""
    if not isinstance(planned, Plan) or (obj := patched_object(objects, planned)) is None:
        return planned, None
    if all(op["path"].startswith("/metadata/") for op in planned.patch if op["op"] != "test"):
        return planned, None  # only its marker: the change is in status (Argo's abort), nothing to undo
    kept = reconcilers.protect(obj["metadata"], mode, ctx.incident, ctx.now, owners)
    what = f"{planned.action} of {planned.kind} {planned.name or obj['metadata']['name']}"
    if kept.refuse:
        return Skip(f"{what} not taken: {kept.refuse}"), None
    if kept.wait:
        return Hold(kept.wait), None
    return (replace(planned, patch=[*planned.patch, *kept.ops]) if kept.ops else planned), kept.before


def pauses(objects: Objects, owners: Owners, incident: str) -> list[tuple[str, str, reconcilers.Pause]]:
    """The pauses this incident made, each read from the object it paused: (object, how, pause)."""
    found = []
    for obj in objects.annotated():
        pause = reconcilers.paused(obj["metadata"])
        if pause is not None and pause.incident == incident:
            what = f"{obj.get('kind') or 'object'} {obj['metadata']['name']}"
            found.append((what, f"annotation {reconcilers.FLUX_RECONCILE}: disabled on {what}", pause))
    for owner, body in owners.items():
        pause = reconcilers.paused(body["metadata"]) if isinstance(body, dict) else None
        if pause is not None and pause.incident == incident:
            found.append((f"{owner.kind} {owner.namespace}/{owner.name}", reconcilers.HOW[owner.kind], pause))
    return found


def _moved(status: IncidentStatus, move: lc.Wait | lc.Resolve | lc.Escalate, now: datetime) -> IncidentStatus:
    if isinstance(move, lc.Wait):
        return lc.record_note(status, move.note, now) if move.note else status
    if isinstance(move, lc.Resolve):
        return lc.record_resolved(status, move.message, now, by_person=move.by_person)
    return lc.record_escalated(status, move.message, now)


def take(
    status: IncidentStatus,
    move: lc.Act,
    planned: Plan | Skip | Done,
    objects: Objects,
    now: datetime,
    by: str,
    before: reconcilers.ObjectPause | None = None,
) -> tuple[IncidentStatus, Change | None]:
    """Record a skip, a dry run or a step already done, or return the change to apply."""
    kind = move.step.kind
    at = c.now_iso(now)
    if isinstance(planned, Done):
        return lc.record_action(status, from_marker(planned, move.index), ACTION_REASONS[planned.action], now), None
    if isinstance(planned, Skip):
        record = ActionRecord(step=kind, index=move.index, result="Skipped", message=planned.reason, at=at)
        return lc.record_action(status, record, c.MITIGATION_SKIPPED, now), None
    if move.dry_run:
        record = ActionRecord(
            step=kind,
            action=planned.action,
            index=move.index,
            result="DryRun",
            from_=planned.from_,
            to=planned.to,
            message=f"dry run: would {planned.action}; nothing changed",
            at=at,
        )
        return lc.record_action(status, record, c.DRY_RUN, now), None
    change = change_for(move, planned, objects, ledger.Entry(now, by, planned.action, planned.undoes))
    return status, replace(change, before=before)


def _reopened(
    snap: Snapshot,
    spec: MitigationPolicySpec,
    view: TargetView,
    health: h.Health,
    revision_since: datetime | None,
    now: datetime,
) -> OpenIncident | None:
    """The target's last Incident, reopened, when this breach is the same trouble back soon after."""
    last = view.last_incident
    if last is None or not adoptable(last, snap.name):
        return None
    try:
        found = open_incident(last)
    except (ValidationError, ValueError):  # a record someone spoiled is not reopened: a new one is opened
        return None
    resolved = lc.reopenable(found.status, revision_since, parse_duration(spec.reopen_within), now)
    if resolved is None:
        return None
    return replace(found, status=lc.record_reopened(found.status, health, resolved, now))


def _open(
    snap: Snapshot,
    spec: MitigationPolicySpec,
    view: TargetView,
    objects: Objects,
    health: h.Health,
    now: datetime,
    target: TargetStatus,
) -> TargetPlan:
    facts = rollback.facts_from(view.deployment, list(objects.replicasets))
    revision = facts.current.number if facts.current else None
    image = facts.current.image if facts.current else rollback.images(view.deployment["spec"]["template"])
    severity = h.severity(spec.severity, health.by_name(), spec.default_severity)
    summary = lc.breach_summary(health) + (f" at revision {revision}" if revision is not None else "")
    name = incident_name(view.name, snap.name, now)
    ispec = IncidentSpec(
        severity=severity,
        summary=summary[:1024],
        target={"kind": workloads.of(view.deployment).kind, "name": view.name},
        policy_ref={"name": snap.name},
        source="policy",
        previous_incident=view.last_incident["metadata"]["name"] if view.last_incident else None,
    )
    first = lc.open_status(health, dict(view.queries), revision, image, now)
    return TargetPlan(
        name=view.name,
        deployment=view.deployment,
        target=target,
        incident_name=name,
        create=incident_body(name, snap.namespace, snap.name, view.name, ispec, first),
        status=first,
        spec=ispec,
    )


MANUAL_COOLDOWN = timedelta(minutes=1)
MANUAL_BUDGET = 6
MANUAL_WINDOW = timedelta(days=3650)  # a person may roll back a revision of any age


def decide_manual(
    name: str,
    created: datetime,
    ispec: IncidentSpec,
    status: IncidentStatus,
    objects: Objects | None,
    dry_run: bool,
    by: str,
    now: datetime,
    missing: str | None = None,
    unchecked: str | None = None,
) -> tuple[IncidentStatus, Change | None]:
    """An Incident a person declared: record it, run the requested step once, close it when told.
    `objects` None: the target cannot be read, for the reason `missing` (default: it does not exist).
    `unchecked`: why no admission policy checked the request (it is refused, never carried out)."""
    if status.phase is None:
        current = rollback.facts_from(objects.deployment, list(objects.replicasets)).current if objects else None
        status = lc.declared_status(
            ispec.summary, current.number if current else None, current.image if current else None, created, now
        )
    if unchecked is not None and not ispec.resolve:
        return lc.record_refused(status, ispec, unchecked, now), None
    if objects is not None:
        status = recover_markers(status, objects, name, 0, now)
    annotations = objects.deployment["metadata"].get("annotations") or {} if objects else {}
    guardrail = lc.Guardrails(
        dry_run=dry_run,
        paused="Deployment is annotated hemostat.dev/paused" if annotations.get(PAUSED) == "true" else None,
        cooldown=MANUAL_COOLDOWN,
        max_actions_per_hour=MANUAL_BUDGET,
        recent_actions=ledger.read(annotations, now).times(),
    )
    if objects is None and missing is None:
        missing = f"{ispec.target.kind} {ispec.target.name} does not exist"
    move = lc.manual_move(status, ispec, guardrail, missing, now)
    if isinstance(move, lc.Resolve):
        return lc.record_resolved(status, move.message, now, by_person=True), None
    if isinstance(move, lc.Wait):
        return (lc.record_note(status, move.note, now) if move.note else status), None
    if isinstance(move, lc.Act) and objects is not None:
        ctx = Context(name, move.index, now, detected_revision=status.revision, rollout_window=MANUAL_WINDOW)
        planned, _ = unreconciled(kind_of(move.step).plan(objects, move.step.config, ctx), objects, "pause", ctx, None)
        if isinstance(planned, Hold):
            return lc.record_note(status, f"requested {move.step.kind} held: {planned.reason}", now), None
        return take(status, move, planned, objects, now, by)
    return status, None
