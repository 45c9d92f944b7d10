"""The Incident lifecycle: Detected -> Mitigating -> Monitoring -> Resolved, or Escalated.

Pure functions over (incident status, health, guardrails, now). `next_move` says
what should happen this cycle; the `record_*` functions return the new status
after the cycle has made it happen, so every timeline entry is written after the
fact, with the real values. A Resolved incident moves again only when the same cause breaches
again soon after (`reopenable`): it is reopened instead of a new one opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..models.common import format_duration, parse_duration
from ..models.incident import (
    MAX_ACTIONS,
    MAX_TIMELINE,
    ActionRecord,
    AttributionStatus,
    Clue,
    Evidence,
    GitopsPause,
    IncidentSpec,
    IncidentStatus,
    TimelineEntry,
)
from ..models.policy import MitigationPolicySpec, MitigationStep
from . import conditions as c
from .attribution import Finding
from .health import Health, State, Verdict
from .reconcilers import Pause
from .rollout_pause import Held


@dataclass(frozen=True)
class Guardrails:
    """What may forbid acting now, as plain facts."""

    dry_run: bool
    paused: str | None  # why actions are paused, or None
    cooldown: timedelta
    max_actions_per_hour: int
    recent_actions: Sequence[datetime]  # actions taken on this target, any incident


@dataclass(frozen=True)
class Wait:
    note: str | None = None  # a reason worth one timeline entry (e.g. held by cooldown)


@dataclass(frozen=True)
class Act:
    index: int
    step: MitigationStep
    dry_run: bool


@dataclass(frozen=True)
class Resolve:
    message: str
    by_person: bool = False


@dataclass(frozen=True)
class Escalate:
    message: str


Move = Wait | Act | Resolve | Escalate


def blocked_by(guard: Guardrails, now: datetime) -> str | None:
    if guard.paused:
        return f"actions paused: {guard.paused}"
    if guard.dry_run:
        return None  # a dry run changes nothing, so cooldown and budget do not apply
    if guard.recent_actions:
        last = max(guard.recent_actions)
        if now - last < guard.cooldown:
            return f"cooldown {format_duration(guard.cooldown.total_seconds())} after the action at {c.now_iso(last)}"
    in_hour = [t for t in guard.recent_actions if now - t < timedelta(hours=1)]
    if len(in_hour) >= guard.max_actions_per_hour:
        return f"action budget spent: {len(in_hour)} of {guard.max_actions_per_hour} actions in the last hour"
    return None


def recovered(status: IncidentStatus, health: Health) -> bool:
    """Healthy; or, after a canary was scaled to zero, silent (no traffic left to judge)."""
    if health.state is State.HEALTHY:
        return True
    return status.last_mitigation == "scaleToZero" and health.state is State.INCONCLUSIVE


def _healthy_for(status: IncidentStatus, now: datetime) -> timedelta:
    return now - c.parse_iso(status.healthy_since) if status.healthy_since else timedelta(0)


def next_move(
    status: IncidentStatus,
    spec_resolve: bool,
    policy: MitigationPolicySpec,
    health: Health,
    guard: Guardrails,
    now: datetime,
) -> Move:
    if status.phase == "Resolved":
        return Wait()
    if spec_resolve:
        return Resolve("resolved by a person (spec.resolve)", by_person=True)
    verify_for = parse_duration(policy.mitigation.verify_for)
    healthy = _healthy_for(status, now)
    if recovered(status, health) and status.healthy_since and healthy >= verify_for:
        if status.phase == "Escalated":
            how = "after escalation"
        elif status.last_mitigation:
            how = f"after {status.last_mitigation}"
        else:
            how = "without mitigation"
        return Resolve(f"all signals healthy for {format_duration(healthy.total_seconds())} {how}")
    if status.phase == "Escalated":
        return Wait()
    if status.phase == "Monitoring":
        since = c.parse_iso(status.monitoring_since) if status.monitoring_since else now
        if now - since < verify_for or health.state not in (State.BREACHING, State.PENDING):
            return Wait()
    elif health.state not in (State.BREACHING, State.PENDING):
        return Wait()
    steps = policy.mitigation.steps
    if status.next_step >= len(steps):
        tried = ", ".join(a.step for a in status.actions) or "none"
        return Escalate(f"still breaching and no mitigation step left (tried: {tried}); a person is needed")
    reason = blocked_by(guard, now)
    if reason:
        return Wait(note=f"next step {steps[status.next_step].kind} held: {reason}")
    return Act(status.next_step, steps[status.next_step], guard.dry_run)


def _append(status: IncidentStatus, now: datetime, reason: str, message: str, warning: bool = False) -> None:
    entry = TimelineEntry(at=c.now_iso(now), type="Warning" if warning else "Normal", reason=reason, message=message)
    timeline = [*status.timeline, entry]
    if len(timeline) > MAX_TIMELINE:  # keep the detection entry, drop the oldest after it
        timeline = [timeline[0], *timeline[len(timeline) - MAX_TIMELINE + 1 :]]
    status.timeline = timeline


append_entry = _append  # for the notifier's own records (a page sent)


def record_paused(
    status: IncidentStatus, found: Sequence[tuple[str, str, Pause]], incident: str, now: datetime
) -> IncidentStatus:
    """The reconcilers this incident paused, as the paused objects record it (object, how, pause): written
    once each, and rebuilt after a crash between the pause and its record."""
    known = {(g.reconciler, g.object) for g in status.gitops}
    new = [(obj, how, p) for obj, how, p in found if (p.reconciler, obj) not in known]
    if not new:
        return status
    out = status.model_copy(deep=True)
    for obj, how, p in new:
        resume = f"revert the bad change in Git, then: hemostat incident resolve {incident} --resume-gitops"
        out.gitops.append(GitopsPause(reconciler=p.reconciler, object=obj, how=how, at=c.now_iso(p.at), resume=resume))
        said = f"{p.reconciler} paused since {c.now_iso(p.at)} ({how}), so the step sticks"
        _append(out, now, c.RECONCILER_PAUSED, f"{said}; to resume: {resume}")
    return out


def record_rollout_held(
    status: IncidentStatus, held: Held | None, incident: str, revision: int | None, now: datetime
) -> IncidentStatus:
    """The rollout this incident paused, said once, from the Deployment's own record of it."""
    if held is None or held.incident != incident or any(e.reason == c.ROLLOUT_PAUSED for e in status.timeline):
        return status
    out = status.model_copy(deep=True)
    at = f"revision {revision}" if revision is not None else "the new revision"
    said = f"the rollout of {at} is paused since {c.now_iso(held.at)} (spec.paused) while the cause is unknown"
    _append(out, now, c.ROLLOUT_PAUSED, f"{said}: the old revision keeps serving; nothing else is changed")
    return out


def record_rollout_resumed(status: IncidentStatus, now: datetime) -> IncidentStatus:
    out = status.model_copy(deep=True)
    _append(out, now, c.ROLLOUT_RESUMED, "the rollout paused while the cause was unknown goes on (spec.paused: false)")
    return out


def new_entries(before: IncidentStatus | None, after: IncidentStatus) -> list[TimelineEntry]:
    """Timeline entries added between two statuses (what to post as Events)."""
    seen = {(e.at, e.reason, e.message) for e in (before.timeline if before else [])}
    return [e for e in after.timeline if (e.at, e.reason, e.message) not in seen]


def track_health(status: IncidentStatus, health: Health, now: datetime) -> IncidentStatus:
    out = status.model_copy(deep=True)
    if recovered(status, health):
        out.healthy_since = out.healthy_since or c.now_iso(now)
    else:
        out.healthy_since = None
    return out


def evidence(health: Health, queries: dict[str, str]) -> list[Evidence]:
    return [
        Evidence(
            signal=s.name,
            value=f"{s.value:.4g}" if s.value is not None else s.verdict.value,
            threshold=s.threshold,
            query=queries.get(s.name, "")[:4096],
        )
        for s in health.signals
    ]


def breach_summary(health: Health) -> str:
    parts = []
    for s in health.signals:
        if s.verdict is Verdict.BREACHING:
            shown = f"{s.value:.4g}" if s.value is not None else "no data"
            parts.append(f"{s.name} {shown} {s.threshold}")
    return "; ".join(parts)


def open_status(
    health: Health, queries: dict[str, str], revision: int | None, image: str, now: datetime
) -> IncidentStatus:
    starts = [s.breaching_since for s in health.signals if s.confirmed and s.breaching_since]
    started = min(starts) if starts else now
    status = IncidentStatus(
        phase="Detected",
        evidence=evidence(health, queries),
        revision=revision,
        image=image,
        started_at=c.now_iso(started),
        detected_at=c.now_iso(now),
        time_to_detect=format_duration((now - started).total_seconds()),
    )
    status.conditions = c.set_condition([], "Detected", True, "ThresholdBreached", breach_summary(health), now)
    at_rev = f" at revision {revision} ({image})" if revision is not None else ""
    _append(status, now, c.DETECTED, f"{breach_summary(health)}{at_rev}", warning=True)
    return status


def attributable(status: IncidentStatus, revision: int | None) -> bool:
    """The verdict is weighed again each cycle until a step is recorded after it, then kept: the ladder
    walks on the evidence it started from. Unless someone else rolls out a new revision during the
    incident (no rollback or restart of ours made it): a new suspect, weighed on its own the same way."""
    a = status.attribution
    if status.phase == "Resolved":
        return False
    if a is None:
        return status.phase in ("Detected", "Mitigating") and not status.actions
    if made_a_revision(status):
        return False
    return a.revision != revision or not any(x.at >= a.at for x in status.actions)


def made_a_revision(status: IncidentStatus) -> bool:
    """A rollback or restart of this incident succeeded: the revisions after it are its own doing."""
    return any(x.step in ("rollback", "restart") and x.result == "Succeeded" for x in status.actions)


def record_attribution(
    status: IncidentStatus, finding: Finding, policy: MitigationPolicySpec, revision: int | None, now: datetime
) -> IncidentStatus:
    """A new verdict, with the evidence of its moment; an unchanged verdict keeps its first evidence and time.
    An incident escalated for the old verdict goes on; a new revision rolled out during the incident
    starts the ladder again from its first step, for it."""
    before = status.attribution
    if before is not None and before.verdict == finding.verdict and before.revision == revision:
        return status
    out = status.model_copy(deep=True)
    new_revision = before is not None and before.revision != revision
    if new_revision:
        out.next_step = 0
    if before is not None and out.phase == "Escalated":  # escalated for the old verdict: the ladder goes on
        out.phase = "Mitigating"
        out.escalated_at = None
        out.conditions = c.set_condition(out.conditions, "Escalated", False, c.ATTRIBUTED, "the cause changed", now)
    config = policy.attribution
    hold = parse_duration(config.unknown.hold)
    mode = "observe" if config.mode == "observe" else "enforce"
    out.attribution = AttributionStatus(
        verdict=finding.verdict,
        confidence=round(finding.confidence, 2),
        mode=mode,
        reason=finding.reason[:1024],
        at=c.now_iso(now),
        revision=revision,
        hold_until=c.now_iso(now + hold) if finding.verdict == "unknown" else None,
        evidence=[Clue(kind=x.kind, says=x.says, detail=x.detail[:1024]) for x in finding.clues],
    )
    was = f" (was {before.verdict})" if before and before.verdict != finding.verdict else ""
    new = f" for revision {revision}, rolled out during the incident" if new_revision else ""
    then = "; observe mode: acting as without attribution" if mode == "observe" else ""
    text = f"cause: {finding.verdict}{was}{new}, confidence {finding.confidence:.2f}: {finding.reason}{then}"
    _append(out, now, c.ATTRIBUTED, text[:1024], warning=finding.verdict != "deploy")
    return out


def allowed_steps(policy: MitigationPolicySpec, verdict: str) -> Sequence[str]:
    steps = policy.attribution.steps
    by_verdict = {
        "deploy": steps.deploy,
        "traffic": steps.traffic,
        "dependency": steps.dependency,
        "global": steps.global_,
    }
    return by_verdict.get(verdict, [])  # dataQuality never acts; unknown holds before it gets here


def follow_verdict(
    status: IncidentStatus, policy: MitigationPolicySpec, move: Act, now: datetime
) -> Wait | Escalate | str | None:
    """What the verdict makes of the next step: None to take it, a reason to skip it, or a Wait/Escalate."""
    a = status.attribution
    if a is None or a.mode != "enforce" or policy.attribution.mode != "enforce":
        return None
    kind = move.step.kind
    if a.verdict == "unknown":
        then = policy.attribution.unknown.then
        if a.hold_until and now < c.parse_iso(a.hold_until):
            until = f"deciding until {a.hold_until}, then {then}"
            return Wait(note=f"next step {kind} held: cause unknown ({a.reason}); {until}")
        if then == "escalate":
            return Escalate(f"cause still unknown when the hold ended ({a.reason}); a person is needed")
        return None
    allowed = allowed_steps(policy, a.verdict)
    if not any(s.kind in allowed for s in policy.mitigation.steps[move.index :]):
        steps = ", ".join(allowed) or "none"
        return Escalate(
            f"cause: {a.verdict} ({a.reason}); no step left in the ladder is for a {a.verdict} cause "
            f"(attribution.steps: {steps}); a person is needed"
        )
    if kind not in allowed:
        return f"not for a {a.verdict} cause ({a.reason})"
    return None


def record_note(status: IncidentStatus, note: str, now: datetime) -> IncidentStatus:
    """A hold reason, written once until it changes (no timeline spam every cycle)."""
    out = status.model_copy(deep=True)
    last_hold = next((e for e in reversed(out.timeline) if e.reason == c.MITIGATION_HELD), None)
    if last_hold is None or last_hold.message != note:
        _append(out, now, c.MITIGATION_HELD, note)
    return out


def record_action(status: IncidentStatus, record: ActionRecord, reason: str, now: datetime) -> IncidentStatus:
    """Record a step's outcome: Succeeded/DryRun start monitoring, Skipped/Failed move on."""
    out = status.model_copy(deep=True)
    out.actions = [*out.actions, record][-MAX_ACTIONS:]
    out.next_step = max(out.next_step, record.index + 1)
    change = f"{record.from_} -> {record.to}" if record.from_ or record.to else ""
    text = "; ".join(x for x in (change, record.message) if x)
    if record.result in ("Succeeded", "DryRun"):
        out.phase = "Monitoring"
        out.monitoring_since = c.now_iso(now)
        out.healthy_since = None
        what = record.action or record.step
        out.last_mitigation = what if record.result == "Succeeded" else f"{what} (dry run)"
        if record.result == "Succeeded":
            out.mitigated_at = record.at
            began = _impact_start(out)
            if began:
                took = c.parse_iso(record.at) - began
                out.time_to_mitigate = format_duration(took.total_seconds())
        _append(out, now, c.DRY_RUN if record.result == "DryRun" else reason, f"{what}: {text}")
        out.conditions = c.set_condition(
            out.conditions, "Mitigated", record.result == "Succeeded", reason, f"{what}: {text}", now
        )
    elif record.result == "Skipped":
        out.phase = "Mitigating"
        _append(out, now, c.MITIGATION_SKIPPED, f"{record.step} skipped: {record.message}")
    else:
        out.phase = "Mitigating"
        _append(out, now, c.MITIGATION_FAILED, f"{record.step} failed: {record.message}", warning=True)
    return out


def _impact_start(status: IncidentStatus) -> datetime | None:
    """TTM and TTR count from the first breaching reading (impact), not from detection."""
    first = status.started_at or status.detected_at
    return c.parse_iso(first) if first else None


def record_resolved(status: IncidentStatus, message: str, now: datetime, by_person: bool = False) -> IncidentStatus:
    out = status.model_copy(deep=True)
    out.phase = "Resolved"
    out.resolved_at = c.now_iso(now)
    began = _impact_start(out)
    if began:
        out.time_to_resolve = format_duration((now - began).total_seconds())
    reason = c.RESOLVED_BY_PERSON if by_person else c.RECOVERED
    out.conditions = c.set_condition(out.conditions, "Resolved", True, reason, message, now)
    if out.approval is not None and out.approval.decision is None:  # a request nobody needs to answer now
        out.conditions = c.set_condition(out.conditions, "AwaitingApproval", False, reason, message, now)
    _append(out, now, reason, message)
    return out


def reopenable(
    status: IncidentStatus, revision_since: datetime | None, within: timedelta, now: datetime
) -> datetime | None:
    """When a Resolved incident resolved, if a breach now reopens it: the operator saw it recover (not a
    person's call) less than `within` ago, and no new revision came since (a new one is a new suspect)."""
    resolved = next((x for x in status.conditions if x.type == "Resolved" and x.status == "True"), None)
    if status.phase != "Resolved" or not status.resolved_at or resolved is None or resolved.reason != c.RECOVERED:
        return None
    at = c.parse_iso(status.resolved_at)
    if now - at >= within or revision_since is None or revision_since > at:
        return None
    return at


def record_reopened(status: IncidentStatus, health: Health, resolved: datetime, now: datetime) -> IncidentStatus:
    """The same incident, open again: its first detection and its actions kept, the ladder going on."""
    out = status.model_copy(deep=True)
    out.phase = "Detected"
    out.reopened = (out.reopened or 0) + 1
    out.resolved_at = out.time_to_resolve = out.healthy_since = out.monitoring_since = None
    after, at = format_duration((now - resolved).total_seconds()), c.now_iso(resolved)
    times = "1 time" if out.reopened == 1 else f"{out.reopened} times"
    message = f"{breach_summary(health)} again {after} after it resolved at {at}, no new revision since"
    out.conditions = c.set_condition(out.conditions, "Resolved", False, c.REOPENED, message, now)
    _append(out, now, c.REOPENED, f"{message}: reopened ({times})", warning=True)
    return out


def record_escalated(
    status: IncidentStatus, message: str, now: datetime, reason: str = "LadderExhausted"
) -> IncidentStatus:
    out = status.model_copy(deep=True)
    out.phase = "Escalated"
    out.escalated_at = c.now_iso(now)
    out.conditions = c.set_condition(out.conditions, "Escalated", True, reason, message, now)
    _append(out, now, c.ESCALATED, message, warning=True)
    return out


def declared_status(
    summary: str, revision: int | None, image: str | None, created: datetime, now: datetime
) -> IncidentStatus:
    """The first status of an Incident a person declared (source: manual)."""
    status = IncidentStatus(
        phase="Detected", revision=revision, image=image, started_at=c.now_iso(created), detected_at=c.now_iso(created)
    )
    status.conditions = c.set_condition([], "Detected", True, c.DECLARED, summary, now)
    at_rev = f" (revision {revision}, {image})" if revision is not None else ""
    _append(status, now, c.DECLARED, f"declared by a person: {summary}{at_rev}")
    return status


MANUAL_STEP = -1  # the index a person's requested mitigation is recorded under


def record_refused(status: IncidentStatus, spec: IncidentSpec, unchecked: str, now: datetime) -> IncidentStatus:
    """A person's request that no admission policy checked: refused, said once per reason, never carried out
    (`unchecked`: why the policy did not check it). Resolving stays theirs."""
    if spec.mitigation is None or spec.resolve or status.phase == "Resolved":
        return status
    if any(a.index == MANUAL_STEP for a in status.actions):
        return status
    said = f"{unchecked}, so nobody checked that the requester may make this change; nothing was done"
    out = status.model_copy(deep=True)
    out.conditions = c.set_condition(out.conditions, "Authorized", False, "AdmissionPolicyMissing", said, now)
    last = next((e for e in reversed(out.timeline) if e.reason == c.MITIGATION_REFUSED), None)
    message = f"requested {spec.mitigation.kind} refused: {said}"
    if last is None or last.message != message:
        _append(out, now, c.MITIGATION_REFUSED, message, warning=True)
    return out


def manual_move(
    status: IncidentStatus, spec: IncidentSpec, guard: Guardrails, missing: str | None, now: datetime
) -> Move:
    """A declared incident: resolve when a person says so; run the requested step once (`missing`: why
    its target cannot be read, e.g. it does not exist)."""
    if status.phase == "Resolved":
        return Wait()
    if spec.resolve:
        return Resolve("resolved by a person (spec.resolve)", by_person=True)
    if spec.mitigation is None or any(a.index == MANUAL_STEP for a in status.actions):
        return Wait()
    if missing is not None:
        return Wait(note=f"requested {spec.mitigation.kind} held: {missing}")
    reason = blocked_by(guard, now)
    if reason:
        return Wait(note=f"requested {spec.mitigation.kind} held: {reason}")
    return Act(MANUAL_STEP, spec.mitigation, guard.dry_run)
