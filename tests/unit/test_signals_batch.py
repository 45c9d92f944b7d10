"""Batched signals: one answer split into one reading per target, the four verdicts kept honest."""

from __future__ import annotations

import pytest

from hemostat.cycle.snapshot import check_templates
from hemostat.models.policy import MitigationPolicySpec
from hemostat.signals.base import Reading, ReadingKind, Series, split, targets_regex

TARGETS = ["cart", "web", "search"]


def series(deployment: str | None, value: float, namespace: str | None = "shop") -> Series:
    labels = {}
    if deployment is not None:
        labels["deployment"] = deployment
    if namespace is not None:
        labels["namespace"] = namespace
    return Series(labels, Reading.value_of(value))


def run(answer) -> dict[str, Reading]:
    return split(answer, TARGETS, "shop", "deployment", "namespace", "q")


def test_each_target_gets_its_own_series() -> None:
    got = run([series("cart", 0.5), series("web", 0.0), series("search", 0.01)])
    assert {k: v.value for k, v in got.items()} == {"cart": 0.5, "web": 0.0, "search": 0.01}


def test_a_target_missing_from_the_answer_is_no_data_never_healthy() -> None:
    got = run([series("cart", 0.5)])
    assert got["web"].kind is ReadingKind.NO_DATA and "web" in got["web"].detail
    assert got["cart"].value == 0.5


def test_two_series_for_one_target_are_an_error_for_that_target_only() -> None:
    got = run([series("cart", 0.5), series("cart", 0.1), series("web", 0.0)])
    assert got["cart"].kind is ReadingKind.ERROR and got["cart"].error_type == "ambiguous"
    assert got["web"].value == 0.0


@pytest.mark.parametrize("bad", [series(None, 0.9), series("cart", 0.9, namespace=None)])
def test_a_series_that_cannot_be_attributed_makes_every_target_an_error(bad: Series) -> None:
    got = run([series("web", 0.0), bad])
    assert {r.kind for r in got.values()} == {ReadingKind.ERROR}
    assert "group it by (namespace, deployment)" in got["web"].detail


def test_series_of_other_namespaces_and_deployments_are_ignored() -> None:
    got = run([series("cart", 0.9, namespace="other"), series("cart", 0.1), series("unknown", 0.9)])
    assert got["cart"].value == 0.1


def test_a_failed_query_is_an_error_for_every_target() -> None:
    error = Reading.error("timeout", "slow")
    assert set(run(error).values()) == {error}


def test_the_targets_regex_matches_exactly_the_round() -> None:
    assert targets_regex(["web", "cart", "api.v2"]) == "api\\\\.v2|cart|web"
    assert targets_regex([]) == "$^"


def policy(query: str, batch: bool) -> MitigationPolicySpec:
    prom = {"query": query, **({"batch": {}} if batch else {})}
    return MitigationPolicySpec.model_validate(
        {
            "target": {"selector": {"matchLabels": {"app": "x"}}},
            "signals": [{"name": "err", "prometheus": prom, "breachWhen": {"above": 0.05}}],
        }
    )


def test_a_batch_query_cannot_name_one_deployment() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{\{ deployment \}\}.*runs once for all targets"):
        check_templates(policy('x{deployment="{{ deployment }}"}', batch=True))
    check_templates(policy('sum by (namespace, deployment) (x{deployment=~"{{ deployments }}"})', batch=True))


def test_a_per_target_query_cannot_use_the_batch_regex() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{\{ deployments \}\}"):
        check_templates(policy('x{deployment=~"{{ deployments }}"}', batch=False))
