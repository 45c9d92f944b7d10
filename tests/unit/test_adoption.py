"""The policy loop adopts only Incidents the operator opened for that policy."""

from __future__ import annotations

import pytest

from hemostat.cycle.snapshot import POLICY_LABEL, adoptable


def incident(source: str = "policy", policy_ref: str | None = "checkout", label: str = "checkout") -> dict:
    spec = {"severity": "SEV2", "summary": "s", "target": {"name": "web"}, "source": source}
    if policy_ref is not None:
        spec["policyRef"] = {"name": policy_ref}
    return {"metadata": {"name": "i", "labels": {POLICY_LABEL: label}}, "spec": spec}


def test_the_operators_own_incident_is_adopted() -> None:
    assert adoptable(incident(), "checkout")


@pytest.mark.parametrize(
    "forged",
    [
        incident(source="manual"),  # a person's Incident wearing the policy's label
        incident(policy_ref=None),
        incident(policy_ref="search"),  # another policy's
        incident(label="search"),
    ],
)
def test_anything_else_is_not(forged: dict) -> None:
    assert not adoptable(forged, "checkout")
