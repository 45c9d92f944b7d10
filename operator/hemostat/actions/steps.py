"""The registry of mitigation steps: the one place that lists them.

A step kind is one module that declares, in its `STEP` (base.StepKind): a pure `plan` (objects ->
Plan | Skip | Done | Hold), a pure `verify` of the patched object (with an OpenFeature evaluation the
applier runs, when it needs one), the actions it records and their timeline reasons, its admission
rules (the chart's admission policy is generated from them and refuses any step without), and the
objects it reads besides the Deployment. The cycle knows steps only through this table.
"""

from __future__ import annotations

from ..models.policy import MitigationStep
from . import flags, restart, rollback, scale
from .base import SourceKey, StepKind

STEPS: dict[str, StepKind] = {s.name: s for s in (rollback.STEP, scale.STEP, flags.STEP, restart.STEP)}
# action (what a record or marker names) -> the step that records it, and its timeline reason
STEP_OF_ACTION: dict[str, str] = {action: s.name for s in STEPS.values() for action in s.actions}
ACTION_REASONS: dict[str, str] = {action: r for s in STEPS.values() for action, r in s.actions.items()}


def kind_of(step: MitigationStep) -> StepKind:
    return STEPS[step.kind]


def sources(steps: list[MitigationStep]) -> list[SourceKey]:
    """Flag sources and the like that the steps will plan against, each once."""
    seen: dict[SourceKey, None] = {}
    for step in steps:
        for key in kind_of(step).sources(step.config):
            seen[key] = None
    return list(seen)


def reads(steps: list[MitigationStep]) -> set[str]:
    """What the steps read besides the Deployment and its ReplicaSets (e.g. "hpas")."""
    return {what for step in steps for what in kind_of(step).reads}
