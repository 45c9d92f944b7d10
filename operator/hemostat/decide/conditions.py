"""Conditions and reasons: one pure setter, reason strings as constants."""

from __future__ import annotations

from datetime import datetime

from ..clock import now_iso, parse_iso
from ..models.common import Condition

__all__ = ["now_iso", "parse_iso"]  # used as c.now_iso / c.parse_iso throughout the cycle

# Incident timeline / Event reasons.
DETECTED = "Detected"
DECLARED = "Declared"
ROLLED_BACK = "RolledBack"
SCALED_TO_ZERO = "ScaledToZero"
ROLLOUT_ABORTED = "RolloutAborted"  # an Argo Rollout's update aborted (its canary scaled down)
SCALED_UP = "ScaledUp"
RESTARTED = "Restarted"
FLAG_DISABLED = "FlagDisabled"
DRY_RUN = "DryRun"
MITIGATION_SKIPPED = "MitigationSkipped"
MITIGATION_FAILED = "MitigationFailed"
MITIGATION_HELD = "MitigationHeld"
MITIGATION_REFUSED = "MitigationRefused"  # a request nobody's admission policy checked (fail closed)
MONITORING = "Monitoring"
RECOVERED = "Recovered"
ESCALATED = "Escalated"
RESOLVED_BY_PERSON = "ResolvedByPerson"
REOPENED = "Reopened"
APPROVAL_REQUESTED = "ApprovalRequested"
APPROVED = "Approved"
REJECTED = "Rejected"
APPROVAL_TIMED_OUT = "ApprovalTimedOut"
ATTRIBUTED = "Attributed"
RECONCILER_PAUSED = "ReconcilerPaused"
ROLLOUT_PAUSED = "RolloutPaused"
ROLLOUT_RESUMED = "RolloutResumed"
RECONCILER_RESUMED = "ReconcilerResumed"

# Policy condition reasons.
VALID = "Valid"
INVALID = "Invalid"
SIGNALS_OK = "QueriesSucceeded"
SIGNALS_FAILED = "QueryFailed"
TARGETS_FAILING = "TargetsFailing"
TOO_MANY_TARGETS = "TooManyTargets"
ALL_TARGETS_OK = "AllTargetsEvaluated"
EVALUATION_FAILED = "EvaluationFailed"
SIGNALS_UNAVAILABLE = "SignalsUnavailable"  # an Event on the policy at consecutiveErrorLimit
RECORDS_OK = "RecordsTrusted"
RECORDS_IGNORED = "RecordsIgnored"
CONTRAST_OK = "ContrastAvailable"
CONTRAST_UNAVAILABLE = "ContrastUnavailable"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return conditions with `type_` set; lastTransitionTime moves only when status changes."""
    value = "True" if status else "False"
    old = get_condition(conditions, type_)
    condition = Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message[:1024],
        last_transition_time=old.last_transition_time if old and old.status == value else now_iso(now),
        observed_generation=observed_generation,
    )
    if old is None:
        return [*conditions, condition]
    return [condition if c.type == type_ else c for c in conditions]


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
