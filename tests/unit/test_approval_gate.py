"""guardrails.approval, pure: a step that needs a person's approval waits with the planned change in the
status, goes only on a decision for exactly that request, asks again when the plan changes or a decision
was not checked, and escalates (nothing changed) on a rejection or when nobody decides in time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hemostat.decide import approval
from hemostat.models.incident import ApprovalDecision, IncidentStatus
from hemostat.models.policy import Approval, MitigationStep

NOW = datetime(2026, 12, 6, 14, 0, 0, tzinfo=UTC)
REQUIRED = Approval(mode="required", timeout="15m")
ROLLBACK = approval.Planned(0, MitigationStep(rollback={}), "rollback", "revision 2 (web:v2)", "revision 1 (web:v1)")
COMMAND = "hemostat incident approve web-1 -n shop"


def decided(decision: str, request: int = 1, by: str = "alice") -> ApprovalDecision:
    return ApprovalDecision(decision=decision, request=request, by=by, at="2026-12-06T14:01:00Z", reason="checked")


def asked(status: IncidentStatus | None = None, decision: ApprovalDecision | None = None) -> IncidentStatus:
    out, go = approval.gate(
        status or IncidentStatus(phase="Detected"), decision, REQUIRED, ROLLBACK, None, COMMAND, NOW
    )
    assert not go
    return out


def test_a_step_waits_with_the_planned_change_and_how_to_approve_it() -> None:
    status = asked()
    assert status.phase == "AwaitingApproval"
    pending = status.approval
    assert pending is not None and (pending.request, pending.index, pending.action) == (1, 0, "rollback")
    assert (pending.from_, pending.to, pending.deadline) == (ROLLBACK.from_, ROLLBACK.to, "2026-12-06T14:15:00Z")
    assert pending.step.kind == "rollback" and pending.decision is None
    (entry,) = status.timeline
    assert (entry.reason, entry.message) == (
        "ApprovalRequested",
        "rollback waits for a person's approval until 2026-12-06T14:15:00Z (rollback: revision 2 (web:v2) -> "
        "revision 1 (web:v1)); to approve: hemostat incident approve web-1 -n shop (or reject)",
    )
    waiting = {x.type: x for x in status.conditions}["AwaitingApproval"]
    assert (waiting.status, waiting.reason) == ("True", "ApprovalRequested")
    # the next cycles without a decision change nothing
    again, go = approval.gate(status, None, REQUIRED, ROLLBACK, None, COMMAND, NOW + timedelta(minutes=14))
    assert again == status and not go


def test_an_approval_of_that_request_lets_the_step_go_once_recorded() -> None:
    status = asked()
    after, go = approval.gate(status, decided("Approved"), REQUIRED, ROLLBACK, None, COMMAND, NOW)
    assert go and after.approval is not None
    assert (after.approval.decision, after.approval.decided_by) == ("Approved", "alice")
    assert after.timeline[-1].message == (
        "alice approved rollback (rollback: revision 2 (web:v2) -> revision 1 (web:v1)): checked"
    )
    # a cycle that lost its race redoes the same change: still approved, nothing recorded twice
    again, go = approval.gate(after, decided("Approved"), REQUIRED, ROLLBACK, None, COMMAND, NOW)
    assert go and again == after


def test_a_decision_for_another_request_or_written_ahead_never_counts() -> None:
    status = asked()
    stale, go = approval.gate(status, decided("Approved", request=7), REQUIRED, ROLLBACK, None, COMMAND, NOW)
    assert not go and stale == status
    ahead = asked(decision=decided("Approved", request=4))  # written before anything was asked
    assert ahead.approval is not None and ahead.approval.request == 5


def test_a_changed_plan_is_asked_again_under_a_new_number() -> None:
    status = asked()
    newer = approval.Planned(0, ROLLBACK.step, "rollback", "revision 3 (web:v3)", "revision 1 (web:v1)")
    again, go = approval.gate(status, decided("Approved"), REQUIRED, newer, None, COMMAND, NOW)
    assert not go and again.approval is not None and again.approval.request == 2
    assert again.approval.from_ == "revision 3 (web:v3)"
    assert again.timeline[-1].message.startswith("the planned change is not the one asked for; asked again: ")


def test_an_unchecked_decision_is_not_taken_and_asked_again() -> None:
    status = asked()
    problem = "ValidatingAdmissionPolicyBinding hs-incident-approvals does not exist"
    again, go = approval.gate(status, decided("Approved"), REQUIRED, ROLLBACK, problem, COMMAND, NOW)
    assert not go and again.approval is not None and again.approval.request == 2
    assert again.timeline[-1].message.startswith(f"approved by alice not taken: {problem}; asked again: ")


def test_a_rejection_or_no_decision_in_time_escalates_with_nothing_changed() -> None:
    status = asked()
    rejected, go = approval.gate(status, decided("Rejected"), REQUIRED, ROLLBACK, None, COMMAND, NOW)
    assert not go and rejected.phase == "Escalated"
    assert rejected.timeline[-1].message == (
        "alice rejected rollback (rollback: revision 2 (web:v2) -> revision 1 (web:v1)): checked: nothing changed; "
        "a person leads from here"
    )
    assert {x.type: x.reason for x in rejected.conditions}["Escalated"] == "Rejected"
    late, go = approval.gate(status, None, REQUIRED, ROLLBACK, None, COMMAND, NOW + timedelta(minutes=15))
    assert not go and late.phase == "Escalated"
    assert late.timeline[-1].message == "no decision on rollback within 15m: nothing changed; a person leads from here"
    assert {x.type: x.reason for x in late.conditions}["Escalated"] == "ApprovalTimedOut"


def test_approval_may_be_required_for_some_severities_only() -> None:
    assert not approval.required(Approval(), "SEV1")
    assert approval.required(REQUIRED, "SEV4")
    some = Approval(mode="required", severities=["SEV3", "SEV4"])
    assert approval.required(some, "SEV3") and not approval.required(some, "SEV1")


def test_a_decision_on_the_waiting_request_wakes_the_namespaces_policies_at_once() -> None:
    from hemostat.runtime import FastLane

    lane = FastLane()
    waker = lane.waker("shop", "policy-uid")

    def incident(asked: dict, decided: dict | None) -> dict:
        return {"metadata": {"namespace": "shop"}, "spec": {"approval": decided}, "status": {"approval": asked}}

    lane.approval_decided("MODIFIED", incident({"request": 2}, None))  # asked, nobody decided yet
    lane.approval_decided("MODIFIED", incident({"request": 2}, {"request": 1}))  # an old decision
    lane.approval_decided("MODIFIED", incident({"request": 2, "decision": "Approved"}, {"request": 2}))  # taken
    assert not waker.is_set()
    lane.approval_decided("MODIFIED", incident({"request": 2}, {"request": 2}))
    assert waker.is_set()
