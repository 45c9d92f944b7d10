"""Input that passed validation and then broke the loop: refused at the edge now, with the field named."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from hemostat.models import MitigationPolicySpec

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "checkout-policy.yaml"


def example_spec() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())["spec"]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda s: s.update(interval="99999999999h"), ["interval", "should match pattern"]),  # no overflow
        (lambda s: s.update(interval="2h"), ["interval", "at most 1h"]),
        (lambda s: s.update(interval="500ms"), ["interval", "at least 1s"]),
        (lambda s: s["signals"][0].update({"for": "99999999999h"}), ["for", "should match pattern"]),
        (lambda s: s["signals"][0].update({"for": "1h1h"}), ["for", "should match pattern"]),
        (lambda s: s["signals"][0].update({"for": "25h"}), ["for", "at most 24h"]),
        (lambda s: s["mitigation"].update(verifyFor="25h"), ["verifyFor", "at most 24h"]),
        (lambda s: s["guardrails"].update(cooldown="48h"), ["cooldown", "at most 24h"]),
        (
            lambda s: s["target"]["selector"].update(matchExpressions=[{"key": "app", "operator": "In"}]),
            ["matchExpressions", "values must be non-empty for In and NotIn"],
        ),
        (
            lambda s: s["target"]["selector"].update(
                matchExpressions=[{"key": "app", "operator": "Exists", "values": ["a"]}]
            ),
            ["matchExpressions", "values must be empty for Exists and DoesNotExist"],
        ),
        (lambda s: s["target"]["selector"].update(matchLabels={"app": "a b"}), ["matchLabels"]),
        (lambda s: s["target"]["selector"].update(matchLabels={"-bad": "a"}), ["matchLabels"]),
    ],
)
def test_out_of_range_input_is_refused(mutate, fragments: list[str]) -> None:
    spec = example_spec()
    mutate(spec)
    with pytest.raises(ValidationError) as err:
        MitigationPolicySpec.model_validate(spec)
    text = str(err.value)
    for fragment in fragments:
        assert fragment in text, text


def test_pod_template_hash_is_no_longer_a_placeholder() -> None:
    from hemostat.signals.base import TEMPLATE_VARIABLES

    # It always rendered empty, so a query using it read NoData and could never breach.
    assert "pod_template_hash" not in TEMPLATE_VARIABLES


def test_a_successful_flag_evaluation_logs_no_error_and_needs_no_writable_tmp(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hemostat import flageval

    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("TMPDIR", str(readonly))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR, as a fresh process in the pod would
    doc = '{"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}'
    with caplog.at_level(logging.DEBUG):
        result = flageval.evaluate(doc, "f")
        import time

        time.sleep(1.5)  # the provider's file watcher would poll a deleted file in this time
    if os.geteuid() != 0:  # root ignores the mode bits; the in-memory path is what matters
        assert not any(readonly.iterdir())
    assert result.variant == "off" and result.error is None, result
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
