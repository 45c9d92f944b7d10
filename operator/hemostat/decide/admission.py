"""Whether an admission policy of the chart is in force, as plain facts about two objects.

The operator trusts a person's request, or a record only it may write, only because a
ValidatingAdmissionPolicy checks every write of them. Without it (not installed, unbound, only
warning, or bound after the write) nobody checked, so the operator fails closed: it refuses the
request and ignores the record, and says which policy is missing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..clock import now_iso

REQUESTS = "incident-requests"  # a person's request needs their own right to make the change
FIELDS = "incident-fields"  # only the operator opens a policy's Incidents and writes their records
APPROVALS = "incident-approvals"  # an approval needs the approver's own right to make the change
CHECKED = (REQUESTS, FIELDS, APPROVALS)


def not_in_force(
    name: str, policy: dict[str, Any] | None, binding: dict[str, Any] | None, since: datetime | None = None
) -> str | None:
    """Why the policy `name` (and its binding of the same name) did not check a write made at `since`
    (or now, without it); None when it did."""
    if policy is None:
        return f"ValidatingAdmissionPolicy {name} does not exist"
    if binding is None:
        return f"ValidatingAdmissionPolicyBinding {name} does not exist"
    spec, bound = policy.get("spec") or {}, binding.get("spec") or {}
    failure, actions = spec.get("failurePolicy", "Fail"), bound.get("validationActions") or []
    if failure != "Fail":
        return f"ValidatingAdmissionPolicy {name} admits what it cannot evaluate (failurePolicy {failure})"
    if bound.get("policyName") != name:
        return f"ValidatingAdmissionPolicyBinding {name} binds {bound.get('policyName')!r}, not {name}"
    if "Deny" not in actions:
        return f"ValidatingAdmissionPolicyBinding {name} does not deny (validationActions {actions})"
    if since is not None:
        created = max(_time(x["metadata"]["creationTimestamp"]) for x in (policy, binding))
        if created >= since:  # the same second too: a new binding takes a moment to apply
            return f"{name} is in force only since {now_iso(created)}, after the request was written ({now_iso(since)})"
    return None


def last_request_write(incident: dict[str, Any]) -> datetime:
    """When an Incident's spec was last written: its creation, or the latest field manager that owns
    spec fields (a person's `kubectl patch`); status writes (the operator's) do not count."""
    meta = incident["metadata"]
    times = [meta["creationTimestamp"]]
    for entry in meta.get("managedFields") or []:
        if entry.get("subresource") != "status" and "f:spec" in (entry.get("fieldsV1") or {}) and entry.get("time"):
            times.append(entry["time"])
    return max(_time(t) for t in times)


def _time(text: str) -> datetime:
    """An API server time, as JSON has it (…Z) or as the typed client serializes it (…+00:00)."""
    return datetime.fromisoformat(text)
