"""The Incident resource: the machine-written timeline of one incident.

One open Incident per (Deployment, policy). Status is written only after the
thing it records happened, with the real values, and every list is bounded.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..workloads import TargetKind
from .common import Condition, Model, ObjectName, Severity, Timestamp
from .policy import MitigationStep, StepName, Verdict

KIND = "Incident"
PLURAL = "incidents"

Phase = Literal["Detected", "AwaitingApproval", "Mitigating", "Monitoring", "Resolved", "Escalated"]
OPEN_PHASES: tuple[Phase, ...] = ("Detected", "AwaitingApproval", "Mitigating", "Monitoring", "Escalated")
ActionResult = Literal["Pending", "Succeeded", "Failed", "Skipped", "DryRun"]

MAX_TIMELINE = 100
MAX_ACTIONS = 20
Text = Annotated[str, Field(max_length=1024)]


class TargetRef(Model):
    kind: TargetKind = "Deployment"
    name: ObjectName


class PolicyRef(Model):
    name: ObjectName


class Note(Model):
    at: str
    author: Annotated[str, Field(max_length=253)] = ""
    text: Text


class ApprovalDecision(Model):
    """A person's decision on the step the Incident waits for (`hemostat incident approve|reject`). The chart's
    admission policy admits it only from someone who may make that change, naming themselves in `by`."""

    decision: Literal["Approved", "Rejected"]
    request: int = Field(ge=1, description="The request decided on (status.approval.request).")
    by: Annotated[str, Field(min_length=1, max_length=253)]
    at: Timestamp
    reason: Text = ""


class IncidentSpec(Model):
    severity: Severity
    summary: Text
    target: TargetRef
    policy_ref: PolicyRef | None = None
    source: Literal["policy", "manual", "alert"] = "manual"
    mitigation: MitigationStep | None = Field(
        None, description="A mitigation a person asks the operator to carry out (manual incidents)."
    )
    commander: Annotated[str, Field(max_length=253)] | None = None
    acknowledged_by: Annotated[str, Field(max_length=253)] | None = None
    resolve: bool = Field(False, description="Set by a person to close the incident.")
    previous_incident: ObjectName | None = None
    notes: Annotated[list[Note], Field(max_length=100)] = []
    approval: ApprovalDecision | None = None


class Evidence(Model):
    """What a signal read when the incident was detected."""

    signal: Annotated[str, Field(max_length=63)]
    value: Annotated[str, Field(max_length=64)]
    threshold: Annotated[str, Field(max_length=64)]
    query: Annotated[str, Field(max_length=4096)] = ""


class ActionRecord(Model):
    step: StepName
    action: Annotated[str, Field(max_length=64)] = Field(
        "", description="What was done, e.g. scaleToZero for a canary."
    )
    index: int = Field(description="Position in the policy's ladder (or -1 for a manual request).")
    result: ActionResult
    from_: Text = Field("", alias="from")
    to: Text = ""
    message: Text = ""
    at: Timestamp


class TimelineEntry(Model):
    at: Timestamp
    type: Literal["Normal", "Warning"] = "Normal"
    reason: Annotated[str, Field(max_length=64)]
    message: Text


class AlertRecord(Model):
    """An Alertmanager alert that opened or joined this Incident, as its last notification said."""

    name: Annotated[str, Field(max_length=253)]
    fingerprint: Annotated[str, Field(max_length=64)]
    state: Literal["firing", "resolved"]
    starts_at: Annotated[str, Field(max_length=64)]
    ends_at: Annotated[str, Field(max_length=64)] | None = None
    labels: Annotated[dict[str, str], Field(max_length=32)] = {}
    summary: Annotated[str, Field(max_length=1024)] = ""


class NotificationState(Model):
    """Webhook delivery, kept in the Incident so a restart neither loses nor repeats much."""

    last_phase: Annotated[str, Field(max_length=32)] | None = None
    last_sent_at: Timestamp | None = None
    failures: int = 0
    last_error: Annotated[str, Field(max_length=1024)] | None = None
    retry_at: Timestamp | None = None


class PagingState(Model):
    """Pages sent for this Incident (one dedup key for all), kept here so a restart never pages twice."""

    dedup_key: Annotated[str, Field(max_length=512)]
    paged_at: Annotated[list[Timestamp], Field(max_length=5)] = Field(
        [], description="When each escalation level was paged, in order."
    )
    acknowledged: bool = Field(False, description="The acknowledge was sent to every level paged.")
    resolved: bool = Field(False, description="The resolve was sent to every level paged.")
    failures: int = 0
    last_error: Annotated[str, Field(max_length=1024)] | None = None
    retry_at: Timestamp | None = None


class Clue(Model):
    """One piece of attribution evidence: what it pointed to, and the numbers behind it."""

    kind: Literal["progress", "contrast", "fleet", "traffic", "dataQuality", "timing"]
    says: Annotated[str, Field(max_length=32)] = Field(
        description="The verdict it points to, shared (the cause is not in the new revision), alone, or none."
    )
    detail: Text


class AttributionStatus(Model):
    """Is it the deploy? The verdict, and everything it was drawn from."""

    verdict: Verdict
    confidence: Annotated[float, Field(ge=0, le=1)]
    mode: Literal["enforce", "observe"]
    reason: Text
    at: Timestamp = Field(description="When this verdict was reached.")
    revision: int | None = Field(None, description="The Deployment's revision when it was reached.")
    hold_until: Timestamp | None = Field(None, description="For unknown: when the hold ends.")
    evidence: Annotated[list[Clue], Field(max_length=8)] = []


class GitopsPause(Model):
    """A GitOps reconciler kept from undoing a step: which, on what, since when, and how to resume it."""

    reconciler: Text = Field(description="e.g. Flux Kustomization flux-system/shop.")
    object: Text = Field(description="The object it no longer reconciles, e.g. Deployment web.")
    how: Text
    at: Timestamp
    resume: Text = Field(description="How a person resumes it, once the bad change is reverted in Git.")


class PendingApproval(Model):
    """The step the Incident waits to have approved (guardrails.approval), as planned when it was asked."""

    request: int = Field(ge=1, description="Counts the requests of this Incident; a decision names one.")
    index: int = Field(description="The step's position in the policy's ladder.")
    step: MitigationStep = Field(description="The step, as the admission policy checks the approver's rights.")
    action: Annotated[str, Field(max_length=64)]
    from_: Text = Field("", alias="from")
    to: Text = ""
    requested_at: Timestamp
    deadline: Timestamp
    decision: Literal["Approved", "Rejected"] | None = None
    decided_by: Annotated[str, Field(max_length=253)] | None = None

    @property
    def change(self) -> str:
        return f"{self.action}: {self.from_} -> {self.to}"


class IncidentStatus(Model):
    observed_generation: int | None = None
    phase: Phase | None = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = []
    evidence: Annotated[list[Evidence], Field(max_length=16)] = []
    gitops: Annotated[list[GitopsPause], Field(max_length=8)] = Field(
        [], description="Reconcilers paused so a step sticks; rebuilt from the objects' own records."
    )
    actions: Annotated[list[ActionRecord], Field(max_length=MAX_ACTIONS)] = []
    timeline: Annotated[list[TimelineEntry], Field(max_length=MAX_TIMELINE)] = []
    next_step: int = Field(0, description="Index of the next ladder step to try.")
    revision: int | None = Field(None, description="Deployment revision when the incident was detected.")
    image: Annotated[str, Field(max_length=1024)] | None = None
    started_at: Timestamp | None = Field(None, description="When the first signal began to breach.")
    detected_at: Timestamp | None = None
    mitigated_at: Timestamp | None = None
    monitoring_since: Timestamp | None = Field(None, description="When the last mitigation step was applied.")
    healthy_since: Timestamp | None = Field(None, description="Start of the current all-signals-healthy streak.")
    resolved_at: Timestamp | None = None
    reopened: int | None = Field(None, description="How often a breach soon after it resolved reopened it.")
    escalated_at: Timestamp | None = None
    last_mitigation: Annotated[str, Field(max_length=64)] | None = None
    time_to_detect: Annotated[str, Field(max_length=32)] | None = None
    time_to_mitigate: Annotated[str, Field(max_length=32)] | None = None
    time_to_resolve: Annotated[str, Field(max_length=32)] | None = None
    notifications: NotificationState | None = None
    paging: PagingState | None = None
    alerts: Annotated[list[AlertRecord], Field(max_length=16)] = Field(
        [], description="Alertmanager alerts that opened or joined it (source: alert, or beside a policy's)."
    )
    attribution: AttributionStatus | None = None
    approval: PendingApproval | None = None
