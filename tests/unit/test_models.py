"""The models accept what the docs show and reject what the API server rejects."""

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from hemostat.models import IncidentSpec, MitigationPolicySpec, parse_duration
from hemostat.models.common import format_duration

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "checkout-policy.yaml"


def example_spec() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())["spec"]


def test_example_policy_parses_with_defaults() -> None:
    spec = MitigationPolicySpec.model_validate(example_spec())
    assert spec.signals[0].for_ == "30s"
    assert spec.signals[0].breach_when.above == 0.05
    assert spec.mitigation.steps[0].kind == "rollback"
    assert spec.mitigation.steps[0].rollback.canary_action == "scaleToZero"
    assert spec.notify.cadence.SEV1 == "15m"
    assert spec.default_severity == "SEV3"
    # round trip on the wire keeps camelCase and the `for` keyword
    wire = spec.model_dump(by_alias=True, exclude_none=True)
    assert wire["signals"][0]["for"] == "30s"
    assert "breachWhen" in wire["signals"][0]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda s: s["mitigation"]["steps"].append({"reboot": {}}), "reboot"),
        (lambda s: s["mitigation"]["steps"].append({}), "exactly one of rollback, disableFlag, scaleUp, restart"),
        (
            lambda s: s["mitigation"]["steps"].append({"rollback": {}, "scaleUp": {"maxReplicas": 3}}),
            "exactly one of rollback, disableFlag, scaleUp, restart",
        ),
        (lambda s: s["signals"][0]["breachWhen"].update(above=-1), "greater than or equal to 0"),
        (lambda s: s["signals"][0].update({"for": "5 parsecs"}), "should match pattern"),
        (lambda s: s.update(signals=[]), "at least 1 item"),
        (lambda s: s["signals"].append(dict(s["signals"][0])), "signal names must be unique"),
        (
            lambda s: s["severity"].append({"signal": "latency", "above": 1, "level": "SEV1"}),
            "unknown signals",
        ),
        (lambda s: s["severity"].append({"signal": "error-rate", "level": "SEV1"}), "set above, below"),
        (lambda s: s["signals"][0].update(breachWhen={}), "set above, below"),
        (lambda s: s["severity"][0].update(level="SEV0"), "SEV1"),
        (
            lambda s: s["mitigation"]["steps"].append({"disableFlag": {}}),
            "exactly one of featureFlag, configMap",
        ),
        (
            lambda s: s["mitigation"]["steps"].append({"scaleUp": {"factor": 1, "maxReplicas": 3}}),
            "greater than 1",
        ),
    ],
)
def test_invalid_policies_are_rejected_with_the_field(mutate, fragment) -> None:
    spec = example_spec()
    mutate(spec)
    with pytest.raises(ValidationError) as err:
        MitigationPolicySpec.model_validate(spec)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h30m", 5400), ("1.5h", 5400), ("0s", 0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5 parsecs", "-1s", "1d", "1m 30s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (41.4, "41s"), (192, "3m12s"), (120, "2m"), (7500, "2h5m")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_manual_incident_with_requested_rollback() -> None:
    spec = IncidentSpec.model_validate(
        {
            "severity": "SEV2",
            "summary": "checkout errors after deploy",
            "target": {"name": "checkout"},
            "mitigation": {"rollback": {}},
        }
    )
    assert spec.source == "manual"
    assert spec.target.kind == "Deployment"
    assert spec.mitigation is not None and spec.mitigation.kind == "rollback"
