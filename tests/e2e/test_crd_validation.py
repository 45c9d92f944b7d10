"""The API server itself rejects malformed policies, naming the field that is wrong."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import Cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "manifests" / "examples" / "checkout-policy.yaml").read_text())


def _policy(mutate) -> str:
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"].pop("namespace")
    mutate(doc["spec"])
    return yaml.safe_dump(doc)


def test_example_policy_is_accepted(testenv: Cluster, crds: None, namespace: str) -> None:
    testenv.apply(_policy(lambda s: None), namespace)
    stored = testenv.get("mitigationpolicy", "checkout", namespace)
    # defaults come from the generated schema
    assert stored["spec"]["guardrails"]["paused"] is False
    assert stored["spec"]["notify"]["cadence"]["SEV1"] == "15m"
    assert testenv.kubectl("get", "mp", "-n", namespace).stdout.split()[:4] == ["NAME", "TARGETS", "OPEN", "VALID"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda s: s["mitigation"]["steps"].append({"reboot": {}}),
            ["spec.mitigation.steps[1]", "reboot"],
            id="unknown-step",
        ),
        pytest.param(
            lambda s: s["signals"][0]["breachWhen"].update(above=-0.5),
            ["spec.signals[0].breachWhen.above", "greater than or equal to 0"],
            id="negative-threshold",
        ),
        pytest.param(
            lambda s: s["signals"][0].update({"for": "5 parsecs"}),
            ["spec.signals[0].for", "should match"],
            id="for-5-parsecs",
        ),
        pytest.param(lambda s: s.update(signals=[]), ["spec.signals", "at least 1 items"], id="empty-signals"),
        pytest.param(
            lambda s: s["mitigation"]["steps"].append({"rollback": {}, "scaleUp": {"maxReplicas": 5}}),
            ["spec.mitigation.steps[1]", "exactly one of rollback, disableFlag, scaleUp"],
            id="two-kinds-in-one-step",
        ),
        pytest.param(
            lambda s: s["severity"].append({"signal": "latency", "above": 1, "level": "SEV1"}),
            ["spec", "every severity rule must name a signal"],
            id="severity-unknown-signal",
        ),
        pytest.param(
            lambda s: s.update(interval="99999999999h"), ["spec.interval", "should match"], id="huge-interval"
        ),
        pytest.param(lambda s: s.update(interval="2h"), ["spec.interval", "must be at most 1h"], id="interval-2h"),
        pytest.param(
            lambda s: s["signals"][0].update({"for": "25h"}), ["spec.signals[0].for", "at most 24h"], id="for-25h"
        ),
        pytest.param(
            lambda s: s["target"]["selector"].update(matchExpressions=[{"key": "app", "operator": "In"}]),
            ["spec.target.selector.matchExpressions[0]", "values must be non-empty for In and NotIn"],
            id="selector-in-without-values",
        ),
        pytest.param(
            lambda s: s["signals"][0].update(alert={"name": "HighErrorRate"}),
            ["spec.signals[0]", "exactly one of prometheus, alert must be set"],
            id="query-and-alert",
        ),
        pytest.param(
            lambda s: s["signals"][0].pop("prometheus") and s["signals"][0].update(alert={"name": "HighErrorRate"}),
            ["spec.signals[0]", "an alert signal breaches while the alert fires"],
            id="alert-with-bounds",
        ),
        pytest.param(
            lambda s: s["signals"][0].pop("breachWhen"), ["spec.signals[0]", "needs breachWhen"], id="query-no-bounds"
        ),
        pytest.param(
            lambda s: s["signals"].append({"name": "x", "alert": {"name": "A", "matchers": {"bad-key": "v"}}}),
            ["spec.signals[1].alert", "matchers keys must be Prometheus label names"],
            id="alert-matcher-key",
        ),
    ],
)
def test_malformed_policy_is_rejected(
    testenv: Cluster, crds: None, namespace: str, mutate, expected: list[str]
) -> None:
    proc = testenv.kubectl("apply", "-n", namespace, "-f", "-", input=_policy(mutate), check=False)
    assert proc.returncode != 0, f"the API server accepted a malformed policy: {proc.stdout}"
    for fragment in expected:
        assert fragment in proc.stderr, proc.stderr
    assert testenv.kubectl("get", "mp", "-n", namespace, "-o", "name").stdout.strip() == ""
