"""Scale-up planning: factor, caps, the HPA path, idempotence."""

import json
from datetime import UTC, datetime

import pytest

from hemostat.actions.base import MARKER, Done, Plan, Skip, marker_value
from hemostat.actions.scale import applied, facts_from, plan
from hemostat.models.policy import ScaleUpStep

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def dep(replicas: int, annotations: dict | None = None) -> dict:
    meta = {"name": "api", "resourceVersion": "41", "annotations": annotations or {}}
    return {"metadata": meta, "spec": {"replicas": replicas}}


def hpa(target: str = "api", min_: int = 2, max_: int = 8, annotations: dict | None = None) -> dict:
    return {
        "metadata": {"name": f"{target}-hpa", "resourceVersion": "7", "annotations": annotations or {}},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": target}, "minReplicas": min_, "maxReplicas": max_},
    }


def do(d: dict, hpas: list[dict] | None = None, factor: float = 2, cap: int = 10, index: int = 1):
    return plan(
        facts_from(d, hpas or []), ScaleUpStep(factor=factor, max_replicas=cap), incident="inc", index=index, now=NOW
    )


@pytest.mark.parametrize(
    ("replicas", "factor", "cap", "target"), [(2, 2, 10, 4), (3, 1.5, 10, 5), (4, 2, 6, 6), (1, 3, 10, 3)]
)
def test_replicas_times_factor_capped(replicas: int, factor: float, cap: int, target: int) -> None:
    got = do(dep(replicas), factor=factor, cap=cap)
    assert isinstance(got, Plan) and got.kind == "Deployment"
    assert (got.from_, got.to) == (f"{replicas} replicas", f"{target} replicas")
    assert got.patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}
    assert got.patch[1] == {"op": "replace", "path": "/spec/replicas", "value": target}
    assert json.loads(got.patch[2]["value"][MARKER])["step"] == 1


def test_at_the_cap_is_skipped() -> None:
    assert do(dep(10), cap=10) == Skip("already at 10 replicas; the step's cap is maxReplicas 10")


def test_hpa_owned_deployment_raises_the_hpa_min_within_its_max() -> None:
    got = do(dep(3), [hpa("other"), hpa(max_=5)], factor=2, cap=10)
    assert isinstance(got, Plan)
    assert (got.kind, got.name, got.action) == ("HorizontalPodAutoscaler", "api-hpa", "scaleUpHpa")
    assert (got.from_, got.to) == ("HPA api-hpa minReplicas 2", "minReplicas 5")  # 6 wanted, HPA max 5
    assert got.patch[0]["value"] == "7" and got.patch[1] == {"op": "replace", "path": "/spec/minReplicas", "value": 5}


def test_hpa_already_at_the_cap_is_skipped() -> None:
    got = do(dep(8), [hpa(min_=8, max_=8)])
    assert isinstance(got, Skip) and "HPA api-hpa already has minReplicas 8" in got.reason


def test_marker_of_this_step_means_done() -> None:
    marker = marker_value("inc", 1, "scaleUp", "2 replicas", "4 replicas", "2026-11-23T13:59:00Z")
    assert do(dep(4, {MARKER: marker})) == Done("scaleUp", "2 replicas", "4 replicas", "2026-11-23T13:59:00Z")
    hpa_marker = marker_value(
        "inc", 1, "scaleUpHpa", "HPA api-hpa minReplicas 2", "minReplicas 4", "2026-11-23T13:59:00Z"
    )
    assert isinstance(do(dep(2), [hpa(annotations={MARKER: hpa_marker})]), Done)


def test_applied_checks_the_planned_field() -> None:
    p = do(dep(2))
    assert applied({"spec": {"replicas": 4}}, p) and not applied({"spec": {"replicas": 2}}, p)
    h = do(dep(3), [hpa()])
    assert applied({"spec": {"minReplicas": 6}}, h) and not applied({"spec": {"minReplicas": 2}}, h)
