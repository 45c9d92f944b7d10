"""Shared shapes of an action: facts in, a Plan / Skip / Done out.

Idempotence: every apply writes a marker annotation (`hemostat.dev/mitigation`)
on the object it changes, in the same request as the change. A restarted
operator that finds the marker for (incident, step) records the step as done
instead of repeating it, so there is no window in which a crash could cause a
second rollback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..clock import SKEW

MARKER = "hemostat.dev/mitigation"
# Every action a registered step can record (StepKind adds its own): a marker naming another is not ours.
ACTIONS: set[str] = set()
Body = dict[str, Any]
SourceKey = tuple[str, str]  # (kind, name) of an object a step reads besides the Deployment


@dataclass(frozen=True)
class FlagCheck:
    """A flag that must now evaluate to `variant`, in the flagd document the patched object holds."""

    flag: str
    variant: str
    key: str | None  # the ConfigMap data key holding the document; None for a FeatureFlag


@dataclass(frozen=True)
class Plan:
    action: str  # rollback | scaleToZero | abort | scaleUp | scaleUpHpa
    from_: str
    to: str
    patch: list[dict[str, Any]]  # JSON patch, its first operations a guard (see guard())
    kind: str = "Deployment"  # the object the patch applies to
    name: str = ""  # its name, when it is not the target Deployment
    confirm: FlagCheck | None = None  # what OpenFeature must evaluate after the patch
    undoes: str | None = None  # a rollback: the ReplicaSet it rolls back from (goes into the ledger)
    # written to the object's status subresource before `patch` (Argo's abort lives in status)
    status_patch: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Evaluate:
    """A check a pure step cannot run itself: `flag` must evaluate to `variant` in the flagd JSON `after`
    the patch, as applications evaluate it (the applier runs OpenFeature with the flagd provider)."""

    flag: str
    variant: str
    before: str  # the flagd JSON before the patch, evaluated too for the record
    after: str


@dataclass(frozen=True)
class Verified:
    """Does the patched object hold the planned change? With `evaluate`, only if that evaluation agrees."""

    ok: bool
    message: str = ""
    evaluate: Evaluate | None = None


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Hold:
    """The step cannot be planned yet, for a reason that may pass by the next cycle (two watch
    caches out of step): wait, never skip the step for it."""

    reason: str


@dataclass(frozen=True)
class Done:
    """The marker shows this step was already applied (e.g. before a restart)."""

    action: str
    from_: str
    to: str
    at: str


def marker_value(incident: str, index: int, action: str, from_: str, to: str, at: str) -> str:
    return json.dumps(
        {"incident": incident, "step": index, "action": action, "from": from_, "to": to, "at": at},
        sort_keys=True,
    )


def read_marker(
    annotations: dict[str, str] | None, incident: str, index: int, now: datetime | None = None
) -> Done | None:
    data = parse_marker((annotations or {}).get(MARKER), now)
    if data is None or data["incident"] != incident or data["step"] != index:
        return None
    return Done(action=data["action"], from_=data["from"], to=data["to"], at=data["at"])


def parse_marker(raw: str | None, now: datetime | None = None) -> dict[str, Any] | None:
    """The marker as a dict, or None when absent or not ours (see marker_problem: ignored, never fatal)."""
    return json.loads(raw) if raw and not marker_problem(raw, now) else None


def marker_problem(raw: str | None, now: datetime | None = None) -> str | None:
    """Why a marker cannot be trusted, or None (also when there is none): a value that does not
    parse, names an action no step records, or is dated in the future."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return "not JSON"
    text = ("incident", "action", "from", "to", "at")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in text):
        return "not a marker (needs incident, step, action, from, to, at)"
    if not isinstance(data.get("step"), int) or isinstance(data["step"], bool):
        return "its step is not a number"
    if data["action"] not in ACTIONS:
        return f"unknown action {data['action']!r}"
    try:
        at = datetime.fromisoformat(data["at"].replace("Z", "+00:00"))
    except ValueError:
        return f"its time {data['at']!r} is not a UTC timestamp"
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if now is not None and at > now + SKEW:
        return f"dated {data['at']}, in the future"
    return None


def guard(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The `test` operations that make a patch apply only to the object as it was planned on.

    Objects with a spec/status split are guarded on their generation (which moves with
    every spec change) and their annotations (markers, the action ledger, a person's pause):
    their status churns all through a rollout, and a resourceVersion guard would fail on
    every status write. Objects without one (ConfigMaps) are guarded on resourceVersion.
    """
    if "generation" not in meta:
        return [{"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}]
    ops = [{"op": "test", "path": "/metadata/generation", "value": meta["generation"]}]
    if meta.get("annotations"):
        ops.append({"op": "test", "path": "/metadata/annotations", "value": meta["annotations"]})
    return ops


def escape(key: str) -> str:
    """JSON-pointer escaping for annotation keys in patch paths."""
    return key.replace("~", "~0").replace("/", "~1")


def marker_op(annotations: dict[str, str], value: str) -> dict[str, Any]:
    """The JSON-patch operation that writes the marker beside the change."""
    if not annotations:
        return {"op": "add", "path": "/metadata/annotations", "value": {MARKER: value}}
    return {"op": "add", "path": f"/metadata/annotations/{escape(MARKER)}", "value": value}


@dataclass(frozen=True)
class Objects:
    """What a step may plan against: the target and the objects around it, as read this cycle."""

    deployment: Body
    replicasets: tuple[Body, ...] = ()
    hpas: tuple[Body, ...] = ()
    sources: Mapping[SourceKey, Body | None] = field(default_factory=dict)  # None: does not exist

    def annotated(self) -> list[Body]:
        """Every object a step of this target may have written its marker on."""
        return [self.deployment, *self.hpas, *(s for s in self.sources.values() if s is not None)]


@dataclass(frozen=True)
class Context:
    incident: str
    index: int
    now: datetime
    detected_revision: int | None = None
    rollout_window: timedelta = timedelta(hours=1)
    revision_since: datetime | None = None  # when the operator first saw the current revision
    held_rollout: bool = False  # the rollout is paused by this incident's hold (decide/rollout_pause.py)


@dataclass(frozen=True)
class AdmissionRule:
    """What a person asking for this step (a manual Incident's spec.mitigation) must be allowed to do
    themselves, as the chart's admission policy checks it: a CEL condition and the refusal's text (a CEL
    string). Both may use `variables.step` (spec.mitigation), `ns`, `target` (its name), `resource` (deployments
    or rollouts.argoproj.io), `who`, `mayPatchTarget` and `mayPatchHpas`."""

    allowed: str
    refusal: str
    when: str = "true"  # the rule applies only to such a step (no `authorizer` here: messages use it too)


@dataclass(frozen=True)
class StepKind:
    """One mitigation step: adding one means its module, its model and one line in steps.py."""

    name: str
    plan: Callable[[Objects, Any, Context], Plan | Skip | Done | Hold]  # pure
    verify: Callable[[Objects, Plan, Body], Verified]  # pure: the objects planned on, the plan, the patched object
    actions: Mapping[str, str] = field(default_factory=dict)  # action it records -> its timeline reason
    # what a requester needs (the admission policy is generated from these and refuses any step without)
    admission: tuple[AdmissionRule, ...] = ()
    sources: Callable[[Any], list[SourceKey]] = lambda _config: []  # objects to read for it
    reads: frozenset[str] = frozenset()  # kinds read from the caches besides ReplicaSets: "hpas"

    def __post_init__(self) -> None:
        if not self.actions or not self.admission:
            raise ValueError(f"step {self.name} must declare the actions it records and its admission rules")
        ACTIONS.update(self.actions)


def holds(applied: Callable[[Body, Plan], bool]) -> Callable[[Objects, Plan, Body], Verified]:
    """A step's verify from a check of the patched object alone."""

    def verify(_objects: Objects, plan: Plan, patched: Body) -> Verified:
        if applied(patched, plan):
            return Verified(True)
        return Verified(False, f"the {plan.kind} does not hold the planned change after the patch")

    return verify


def patch_target_rule(step: str, why: str = "") -> AdmissionRule:
    """The rule every step has: it writes the target (the change, or the ledger every policy reads)."""
    return AdmissionRule(
        "variables.mayPatchTarget",
        f"'spec.mitigation.{step} needs permission to patch ' + variables.resource + '/' + variables.target"
        f" + ' in namespace ' + variables.ns + '{why}, which ' + variables.who + ' does not have'",
    )


def find_marker(objects: Objects, incident: str, index: int, now: datetime) -> Done | None:
    """The marker of (incident, step) on any object this target's steps change."""
    for obj in objects.annotated():
        done = read_marker(obj["metadata"].get("annotations"), incident, index, now)
        if done:
            return done
    return None
