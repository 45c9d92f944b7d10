"""Whether an admission policy is in force (decide/admission.py), and what the operator does without it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hemostat.cycle.read import status_written
from hemostat.decide import lifecycle as lc
from hemostat.decide.admission import last_request_write, not_in_force
from hemostat.models.incident import ActionRecord, IncidentSpec

NAME = "hemostat-incident-requests"
T = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def policy(created: str = "2026-12-01T00:00:00+00:00", **spec: object) -> dict:
    return {"metadata": {"name": NAME, "creationTimestamp": created}, "spec": {"failurePolicy": "Fail", **spec}}


def binding(created: str = "2026-12-01T00:00:00Z", **spec: object) -> dict:
    body = {"policyName": NAME, "validationActions": ["Deny"], **spec}
    return {"metadata": {"name": NAME, "creationTimestamp": created}, "spec": body}


@pytest.mark.parametrize(
    ("found", "why"),
    [
        ((policy(), binding()), None),
        ((None, binding()), f"ValidatingAdmissionPolicy {NAME} does not exist"),
        ((policy(), None), f"ValidatingAdmissionPolicyBinding {NAME} does not exist"),
        ((policy(), binding(validationActions=["Warn"])), "does not deny (validationActions ['Warn'])"),
        ((policy(), binding(policyName="other")), "binds 'other', not"),
        ((policy(failurePolicy="Ignore"), binding()), "admits what it cannot evaluate (failurePolicy Ignore)"),
        (
            (policy(), binding(created="2026-12-06T12:00:00Z")),  # bound in the request's own second
            f"{NAME} is in force only since 2026-12-06T12:00:00Z, after the request was written (2026-12-06T12:00:00Z)",
        ),
    ],
)
def test_a_policy_is_in_force_only_when_it_exists_is_bound_denies_and_predates_the_write(
    found: tuple[dict | None, dict | None], why: str | None
) -> None:
    problem = not_in_force(NAME, *found, since=T)
    assert problem == why if why is None else why in (problem or "")


def test_the_last_request_write_is_the_latest_spec_owner_not_a_status_or_annotation_write() -> None:
    incident = {
        "metadata": {
            "creationTimestamp": "2026-12-06T11:00:00Z",
            "managedFields": [
                {"manager": "kubectl-create", "time": "2026-12-06T11:00:00Z", "fieldsV1": {"f:spec": {}}},
                {"manager": "kubectl-patch", "time": "2026-12-06T11:30:00Z", "fieldsV1": {"f:spec": {}}},
                {"manager": "kopf", "time": "2026-12-06T11:45:00Z", "fieldsV1": {"f:metadata": {}}},
                {"manager": "hemostat", "subresource": "status", "time": "2026-12-06T11:50:00Z", "fieldsV1": {}},
            ],
        }
    }
    assert last_request_write(incident) == datetime(2026, 12, 6, 11, 30, tzinfo=UTC)


def test_an_unchecked_request_is_refused_once_per_reason_and_never_after_it_was_carried_out() -> None:
    spec = IncidentSpec(
        severity="SEV2", summary="x", target={"name": "web"}, source="manual", mitigation={"rollback": {}}
    )
    status = lc.declared_status("x", 2, "app:v2", T, T)
    refused = lc.record_refused(status, spec, "ValidatingAdmissionPolicyBinding b does not exist", T)
    assert refused.timeline[-1].message == (
        "requested rollback refused: ValidatingAdmissionPolicyBinding b does not exist, so nobody checked that the "
        "requester may make this change; nothing was done"
    )
    authorized = next(x for x in refused.conditions if x.type == "Authorized")
    assert (authorized.status, authorized.reason) == ("False", "AdmissionPolicyMissing")
    again = lc.record_refused(refused, spec, "ValidatingAdmissionPolicyBinding b does not exist", T)
    assert len(again.timeline) == len(refused.timeline)
    done = ActionRecord(
        step="rollback", index=lc.MANUAL_STEP, result="Succeeded", message="ok", at="2026-12-06T12:00:00Z"
    )
    acted = status.model_copy(update={"actions": [done]})
    assert lc.record_refused(acted, spec, "gone", T) == acted
    resolving = spec.model_copy(update={"resolve": True})
    assert lc.record_refused(status, resolving, "gone", T) == status


def test_without_the_fields_policy_only_incidents_the_operator_wrote_status_on_are_adopted() -> None:
    assert status_written({"status": {"phase": "Detected"}})
    assert not status_written({"metadata": {"annotations": {"hemostat.dev/detection": "{}"}}})
    assert not status_written({"status": {}})
