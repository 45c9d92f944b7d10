"""A person approves each step before it is taken (guardrails.approval). Pure: the Incident's status, the
person's decision from its spec and the step as planned this cycle in; the status and whether to go out.

A request is numbered, and a decision names the number it decides, so a decision never carries over to
another change: when the plan changes (a new revision to roll back from, say) the operator asks again
under a new number. The chart's admission policy admits a decision only from someone who may make the
change themselves, naming themselves; a decision written while that policy was not in force (`problem`)
is not taken: the operator asks again, so it can never count later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..models.common import format_duration, parse_duration
from ..models.incident import ApprovalDecision, IncidentStatus, PendingApproval
from ..models.policy import Approval, MitigationStep
from . import conditions as c
from . import lifecycle as lc


@dataclass(frozen=True)
class Planned:
    """The change a step would make now, as its plug-in planned it."""

    index: int
    step: MitigationStep
    action: str
    from_: str
    to: str

    def said(self) -> str:
        change = f"{self.from_} -> {self.to}" if self.from_ or self.to else ""
        return f"{self.action}: {change}" if change else self.action


def required(settings: Approval, severity: str) -> bool:
    return settings.mode == "required" and (not settings.severities or severity in settings.severities)


def _asked(pending: PendingApproval | None, planned: Planned) -> bool:
    """The pending request is for exactly this change."""
    return pending is not None and (pending.index, pending.action, pending.from_, pending.to) == (
        planned.index,
        planned.action,
        planned.from_,
        planned.to,
    )


def gate(
    status: IncidentStatus,
    decision: ApprovalDecision | None,
    settings: Approval,
    planned: Planned,
    problem: str | None,
    command: str,
    now: datetime,
) -> tuple[IncidentStatus, bool]:
    """The status after this cycle's look at the approval, and whether the step may be taken now.
    `command` is how a person approves it (named in the timeline and the update)."""
    pending = status.approval
    if _asked(pending, planned) and pending is not None:
        if pending.decision == "Approved":
            return status, True  # approved and not applied yet (a lost race, a crash): the same change
        if pending.decision is None and decision is not None and decision.request == pending.request:
            if problem is not None:
                said = f"{decision.decision.lower()} by {decision.by} not taken: {problem}"
                return _ask(status, decision, planned, settings, command, now, said), False
            return _decided(status, pending, decision, now)
        if pending.decision is None and now >= c.parse_iso(pending.deadline):
            waited = format_duration(parse_duration(settings.timeout).total_seconds())
            message = f"no decision on {planned.step.kind} within {waited}: nothing changed; a person leads from here"
            return lc.record_escalated(status, message, now, reason=c.APPROVAL_TIMED_OUT), False
        return status, False
    again = "the planned change is not the one asked for" if pending is not None and pending.decision is None else ""
    return _ask(status, decision, planned, settings, command, now, again), False


def _ask(
    status: IncidentStatus,
    decision: ApprovalDecision | None,
    planned: Planned,
    settings: Approval,
    command: str,
    now: datetime,
    why: str,
) -> IncidentStatus:
    out = status.model_copy(deep=True)
    # past every number asked or decided: a decision written ahead of a request never answers it
    number = max(out.approval.request if out.approval else 0, decision.request if decision else 0) + 1
    deadline = c.now_iso(now + parse_duration(settings.timeout))
    out.approval = PendingApproval(
        request=number,
        index=planned.index,
        step=planned.step,
        action=planned.action,
        from_=planned.from_,
        to=planned.to,
        requested_at=c.now_iso(now),
        deadline=deadline,
    )
    out.phase = "AwaitingApproval"
    message = f"{planned.step.kind} waits for a person's approval until {deadline} ({planned.said()})"
    out.conditions = c.set_condition(out.conditions, "AwaitingApproval", True, c.APPROVAL_REQUESTED, message, now)
    lead = f"{why}; asked again: " if why else ""
    lc.append_entry(out, now, c.APPROVAL_REQUESTED, f"{lead}{message}; to approve: {command} (or reject)")
    return out


def _decided(
    status: IncidentStatus, pending: PendingApproval, decision: ApprovalDecision, now: datetime
) -> tuple[IncidentStatus, bool]:
    out = status.model_copy(deep=True)
    assert out.approval is not None
    out.approval.decision, out.approval.decided_by = decision.decision, decision.by
    because = f": {decision.reason}" if decision.reason else ""
    what = f"{pending.step.kind} ({pending.change})"
    if decision.decision == "Approved":
        message = f"{decision.by} approved {what}{because}"
        out.conditions = c.set_condition(out.conditions, "AwaitingApproval", False, c.APPROVED, message, now)
        lc.append_entry(out, now, c.APPROVED, message)
        return out, True
    message = f"{decision.by} rejected {what}{because}: nothing changed; a person leads from here"
    out.conditions = c.set_condition(out.conditions, "AwaitingApproval", False, c.REJECTED, message, now)
    return lc.record_escalated(out, message, now, reason=c.REJECTED), False
