"""Generate the CustomResourceDefinitions from the pydantic models.

The models are the one source of truth for the API. This module turns their
JSON Schema into a *structural* OpenAPI v3 schema that the API server accepts:
references inlined, optionals flattened (absent, never null), titles dropped,
draft-2020 `exclusiveMinimum` rewritten to the OpenAPI 3.0 form, and the CEL
rules attached by the models kept as `x-kubernetes-validations`.
`make crds` writes the result; a test fails when crds/ drifts from it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .actions.base import StepKind
from .actions.steps import STEPS
from .models.common import GROUP, VERSION
from .models.incident import IncidentSpec, IncidentStatus
from .models.policy import MitigationPolicySpec, MitigationPolicyStatus

Schema = dict[str, Any]


def _inline(node: Any, defs: Schema) -> Any:
    if isinstance(node, list):
        return [_inline(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **extra}, defs)
    return {k: _inline(v, defs) for k, v in node.items()}


def _prune_empty(value: Any) -> Any:
    """Drop null / empty members of a default: the API server stores defaults as given."""
    if isinstance(value, dict):
        kept = {k: _prune_empty(v) for k, v in value.items()}
        kept = {k: v for k, v in kept.items() if v is not None}
        return kept or None
    if isinstance(value, list):
        return value or None
    return value


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        options = [o for o in any_of if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf in a structural schema: {any_of}")
        node = {**options[0], **node}
    node.pop("title", None)
    if "default" in node:
        node["default"] = _prune_empty(node["default"])
        if node["default"] is None:
            node.pop("default")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node["exclusiveMinimum"]
        node["exclusiveMinimum"] = True
    if "properties" in node:
        node.pop("additionalProperties", None)
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _structural(node[key])
    return node


def openapi_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(_inline(raw, defs))


def _crd(
    *,
    kind: str,
    plural: str,
    short: str,
    spec: type[BaseModel],
    status: type[BaseModel],
    columns: list[Schema],
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["hemostat"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": openapi_schema(spec),
                                "status": openapi_schema(status),
                            },
                        }
                    },
                }
            ],
        },
    }


def _col(name: str, path: str, type_: str = "string", priority: int = 0, desc: str = "") -> Schema:
    col: Schema = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    if desc:
        col["description"] = desc
    return col


def crds() -> dict[str, Schema]:
    """File name -> CRD document."""
    policy = _crd(
        kind="MitigationPolicy",
        plural="mitigationpolicies",
        short="mp",
        spec=MitigationPolicySpec,
        status=MitigationPolicyStatus,
        columns=[
            _col("Targets", ".status.matchedTargets", "integer", desc="Workloads matched by the selector"),
            _col("Open", ".status.openIncidents", "integer", desc="Open incidents"),
            _col("Valid", '.status.conditions[?(@.type=="Valid")].status'),
            _col("Signals", '.status.conditions[?(@.type=="SignalsAvailable")].status', priority=1),
            _col("DryRun", ".spec.guardrails.dryRun", "boolean", priority=1),
            _col("Queries", ".status.queriesPerRound", "integer", priority=1, desc="Signal queries per round"),
            _col("Age", ".metadata.creationTimestamp", "date"),
        ],
    )
    incident = _crd(
        kind="Incident",
        plural="incidents",
        short="inc",
        spec=IncidentSpec,
        status=IncidentStatus,
        columns=[
            _col("Severity", ".spec.severity"),
            _col("Phase", ".status.phase"),
            _col("Kind", ".spec.target.kind", desc="The target's kind: Deployment or Rollout"),
            _col("Target", ".spec.target.name"),
            _col("Cause", ".status.attribution.verdict", desc="Attribution's verdict: is it the deploy?"),
            _col("Mitigation", ".status.lastMitigation"),
            _col("TTM", ".status.timeToMitigate", desc="Time to mitigate"),
            _col("Policy", ".spec.policyRef.name", priority=1),
            _col("Source", ".spec.source", priority=1),
            _col("Summary", ".spec.summary", priority=1),
            _col("Age", ".metadata.creationTimestamp", "date"),
        ],
    )
    return {
        "hemostat.dev_mitigationpolicies.yaml": policy,
        "hemostat.dev_incidents.yaml": incident,
    }


def render(doc: Schema) -> str:
    header = "# GENERATED by `make crds` from operator/hemostat/models; do not edit.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=120)


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in crds().items():
        path = out_dir / name
        path.write_text(render(doc))
        written.append(path)
    return written


# The Helm chart renders its own copy (templates/crds.yaml); both are generated and drift-tested.
OUTPUT_DIRS = (Path("crds"), Path("charts/hemostat/files/crds"))
# The step rules of the chart's incident-requests admission policy, included by its template.
STEP_RULES = Path("charts/hemostat/files/admission/step-rules.yaml")
POLICY = "hemostat-incident-requests"


def _unless(when: str) -> str:
    return "" if when == "true" else f" || !({when})"


def _also(when: str) -> str:
    return "" if when == "true" else f" && ({when})"


def step_rules(steps: Mapping[str, StepKind] | None = None, approvals: bool = False) -> list[dict[str, str]]:
    """The admission policy's validations, from the step registry: each step's own rules, then one that
    refuses a request for any step the registry has no rules for (a step added to the model only). With
    `approvals`, the same rules for approving the step an Incident waits for (`variables.step` is then
    status.approval.step)."""
    steps = STEPS if steps is None else steps
    policy = APPROVALS if approvals else POLICY

    def said(refusal: str) -> str:
        return refusal.replace("'spec.mitigation.", "'approving ") if approvals else refusal

    rules = [
        {
            "expression": f"!has(variables.step.{name}){_unless(rule.when)} || ({rule.allowed})",
            "messageExpression": f"'{policy}: ' + {said(rule.refusal)}",
            "reason": "Forbidden",
        }
        for name, kind in steps.items()
        for rule in kind.admission
    ]
    known = " || ".join(f"has(variables.step.{name})" for name in steps)
    what = "the step awaiting approval has" if approvals else "spec.mitigation asks for a step that has"
    rules.append(
        {
            "expression": known,
            "messageExpression": f"'{policy}: {what} no admission rule "
            "(it may only be run by a policy); refused for ' + variables.who",
            "reason": "Forbidden",
        }
    )
    return rules


# The same rules for approving a step (the incident-approvals admission policy).
APPROVAL_STEP_RULES = Path("charts/hemostat/files/admission/approval-step-rules.yaml")
APPROVALS = "hemostat-incident-approvals"


# The same rules for a policy's ladder: a policy is a standing request, carried out with the operator's
# rights whenever it breaches, so its writer needs what a person asking for each step needs.
POLICY_STEP_RULES = Path("charts/hemostat/files/admission/policy-step-rules.yaml")
POLICY_REQUESTS = "hemostat-policy-requests"


def policy_step_rules(steps: Mapping[str, StepKind] | None = None) -> list[dict[str, str]]:
    """The policy-requests admission policy's validations: each step's rules over every rung of
    spec.mitigation.steps (`step` bound to the rung), then one that refuses a step without rules. A
    message may not call the authorizer (not even through a variable), so it names every rung the rule
    applies to, not only the refused ones."""
    steps = STEPS if steps is None else steps
    rules = []
    for name, kind in steps.items():
        for rule in kind.admission:
            allowed, when = (x.replace("variables.step", "step") for x in (rule.allowed, rule.when))
            refusal = rule.refusal.replace("variables.step", "step").replace(
                "'spec.mitigation.", "'spec.mitigation.steps[]."
            )
            rules.append(
                {
                    "expression": f"variables.steps.all(step, !has(step.{name}){_unless(when)} || ({allowed}))",
                    "messageExpression": f"'{POLICY_REQUESTS}: ' + variables.steps"
                    f".filter(step, has(step.{name}){_also(when)}).map(step, {refusal}).join('; ')",
                    "reason": "Forbidden",
                }
            )
    known = " || ".join(f"has(step.{name})" for name in steps)
    rules.append(
        {
            "expression": f"variables.steps.all(step, {known})",
            "messageExpression": f"'{POLICY_REQUESTS}: spec.mitigation.steps has a step without an admission "
            "rule; refused for ' + variables.who",
            "reason": "Forbidden",
        }
    )
    return rules


def render_step_rules(
    steps: Mapping[str, StepKind] | None = None, policy: bool = False, approvals: bool = False
) -> str:
    """The incident-requests validations; with `policy`, the policy-requests ones; with `approvals`, the
    incident-approvals ones."""
    header = "# GENERATED by `make crds` from the step registry (operator/hemostat/actions); do not edit.\n"
    rules = policy_step_rules(steps) if policy else step_rules(steps, approvals)
    return header + yaml.safe_dump(rules, sort_keys=False, width=120)


if __name__ == "__main__":
    import sys

    for out in [Path(a) for a in sys.argv[1:]] or OUTPUT_DIRS:
        for p in write(out):
            print(f"wrote {p}")
    if not sys.argv[1:]:
        STEP_RULES.parent.mkdir(parents=True, exist_ok=True)
        STEP_RULES.write_text(render_step_rules())
        POLICY_STEP_RULES.write_text(render_step_rules(policy=True))
        APPROVAL_STEP_RULES.write_text(render_step_rules(approvals=True))
        print(f"wrote {STEP_RULES}, {POLICY_STEP_RULES} and {APPROVAL_STEP_RULES}")
