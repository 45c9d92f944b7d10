"""crds/ is generated from the models, and what is generated is a structural schema."""

import json
import re
from pathlib import Path

import pytest

from hemostat.crdgen import crds, render

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("directory", ["crds", "charts/hemostat/files/crds"])
def test_crd_files_match_the_models(directory: str) -> None:
    generated = crds()
    on_disk = {p.name for p in (ROOT / directory).glob("*.yaml")}
    assert on_disk == set(generated), f"{directory}/ has extra or missing files: run `make crds`"
    for name, doc in generated.items():
        assert (ROOT / directory / name).read_text() == render(doc), f"{directory}/{name} is stale: run `make crds`"


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def test_schemas_are_structural() -> None:
    for doc in crds().values():
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "const"} & set(node), path
            if "properties" in node:
                assert node.get("type") == "object", path
                assert "additionalProperties" not in node, path
            if "default" in node:
                assert node["default"] is not None, path


def test_names_columns_and_status_subresource() -> None:
    docs = {d["spec"]["names"]["kind"]: d for d in crds().values()}
    inc = docs["Incident"]["spec"]
    assert inc["names"]["shortNames"] == ["inc"] and inc["names"]["categories"] == ["hemostat"]
    assert docs["MitigationPolicy"]["spec"]["names"]["shortNames"] == ["mp"]
    version = inc["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Severity", "Phase", "Kind", "Target", "Cause", "Mitigation", "TTM", "Age"]


def test_cross_field_rules_are_cel() -> None:
    text = json.dumps(crds())
    assert "exactly one of rollback, disableFlag, scaleUp, restart must be set" in text
    assert "signal names must be unique" in text


def test_the_admission_step_rules_match_the_step_registry() -> None:
    from hemostat.crdgen import (
        APPROVAL_STEP_RULES,
        POLICY_STEP_RULES,
        STEP_RULES,
        policy_step_rules,
        render_step_rules,
    )

    assert (ROOT / STEP_RULES).read_text() == render_step_rules(), f"{STEP_RULES} is stale: run `make crds`"
    approvals = render_step_rules(approvals=True)
    assert (ROOT / APPROVAL_STEP_RULES).read_text() == approvals, f"{APPROVAL_STEP_RULES} is stale: run `make crds`"
    assert "spec.mitigation." not in approvals, "an approver asked for nothing: the refusal names the approval"
    policy = render_step_rules(policy=True)
    assert (ROOT / POLICY_STEP_RULES).read_text() == policy, f"{POLICY_STEP_RULES} is stale: run `make crds`"
    assert "variables.step." not in policy, "a policy's rules bind each rung to `step`"
    # the API server evaluates no authorizer in a message, not even through a variable that calls it
    for rule in policy_step_rules():
        assert not any(x in rule["messageExpression"] for x in ("authorizer", "mayPatch")), rule


def test_every_step_of_the_model_has_a_plugin_with_admission_rules() -> None:
    from hemostat.actions.steps import STEPS
    from hemostat.models.policy import STEP_KINDS

    assert set(STEPS) == set(STEP_KINDS)
    assert all(kind.admission and kind.actions for kind in STEPS.values())


def test_the_workload_state_admission_policy_guards_every_annotation_only_the_operator_writes() -> None:
    from hemostat.actions.base import MARKER
    from hemostat.actions.flags import PREVIOUS
    from hemostat.decide.ledger import LEDGER
    from hemostat.decide.reconcilers import PAUSED as GITOPS_PAUSED
    from hemostat.decide.rollout_pause import HELD

    text = (ROOT / "charts/hemostat/templates/admission-workload-state.yaml").read_text()
    keys = text.split("- name: keys", 1)[1].split("- name:", 1)[0]
    assert set(re.findall(r"'(hemostat\.dev/[a-z-]+)'", keys)) == {MARKER, LEDGER, PREVIOUS, HELD, GITOPS_PAUSED}
