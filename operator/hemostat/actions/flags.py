"""disableFlag: turn an OpenFeature flag off in the flagd JSON that flagd reads (a ConfigMap key).

The kill-switch trap: `state: DISABLED` makes applications fall back to the default in
their own code (which may be "on"), and targeting rules override `defaultVariant`. So a
real kill switch keeps the flag ENABLED, sets `defaultVariant` to the off variant and
drops the targeting. The previous flag spec is kept in an annotation
(`hemostat.dev/previous-flags`) so a person can restore it.

RBAC cannot grant patch on some ConfigMaps (FeatureFlags) and not others, so a flag source is
changed only if it carries FLAG_SOURCE_LABEL; the chart's admission policy holds the operator's
own ServiceAccount to the same rule on the API server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import now_iso
from ..decide import conditions as c
from ..models.policy import DisableFlagStep
from .base import (
    AdmissionRule,
    Context,
    Done,
    Evaluate,
    FlagCheck,
    Objects,
    Plan,
    Skip,
    StepKind,
    Verified,
    escape,
    guard,
    holds,
    marker_op,
    marker_value,
    patch_target_rule,
    read_marker,
)

PREVIOUS = "hemostat.dev/previous-flags"
FLAG_SOURCE_LABEL = "hemostat.dev/flag-source"


@dataclass(frozen=True)
class Facts:
    name: str
    guard: tuple[dict[str, Any], ...]
    data: dict[str, str]
    annotations: dict[str, str]
    opted_in: bool


def facts_from(configmap: dict[str, Any]) -> Facts:
    meta = configmap["metadata"]
    return Facts(
        meta["name"],
        tuple(guard(meta)),
        dict(configmap.get("data") or {}),
        dict(meta.get("annotations") or {}),
        (meta.get("labels") or {}).get(FLAG_SOURCE_LABEL) == "true",
    )


def off_variant(flag: dict[str, Any], wanted: str | None) -> str | None:
    """The variant to force: the one asked for, else the one whose value is false, else one named 'off'."""
    variants = flag.get("variants") or {}
    if wanted is not None:
        return wanted if wanted in variants else None
    falsy = [k for k, v in variants.items() if v is False]
    if len(falsy) == 1:
        return falsy[0]
    return "off" if "off" in variants else None


def describe(flag: dict[str, Any]) -> str:
    targeting = "targeting set" if flag.get("targeting") else "no targeting"
    return f"state {flag.get('state', 'ENABLED')}, defaultVariant {flag.get('defaultVariant')}, {targeting}"


def kill_switch(flag: dict[str, Any], name: str, wanted_off: str | None, where: str) -> dict[str, Any] | Skip:
    """Pure: the flag spec that serves the off variant to everyone, or why there is none."""
    off = off_variant(flag, wanted_off)
    if off is None:
        names = ", ".join(sorted(flag.get("variants") or {})) or "none"
        return Skip(f"flag {name} in {where} has no off variant (variants: {names}); set disableFlag.offVariant")
    new = {k: v for k, v in flag.items() if k != "targeting"}
    new.update(state="ENABLED", defaultVariant=off)
    if new == flag:
        return Skip(f"flag {name} in {where} already serves {off} to everyone")
    return new


def _previous_op(annotations: dict[str, str], name: str, flag: dict[str, Any]) -> dict[str, Any]:
    """Keep the replaced flag spec; runs after marker_op, so the annotations map exists."""
    previous = json.loads(annotations.get(PREVIOUS) or "{}")
    previous[name] = flag
    return {"op": "add", "path": f"/metadata/annotations/{escape(PREVIOUS)}", "value": json.dumps(previous)}


def plan(facts: Facts, step: DisableFlagStep, *, incident: str, index: int, now: datetime) -> Plan | Skip | Done:
    """Pure: the ConfigMap patch that makes the flag evaluate to its off variant for everyone."""
    ref = step.config_map
    assert ref is not None
    done = read_marker(facts.annotations, incident, index, now)
    if done:
        return done
    if not facts.opted_in:
        return Skip(
            f"ConfigMap {facts.name} is not labelled {FLAG_SOURCE_LABEL}=true: Hemostat changes only ConfigMaps "
            f"that opt in (kubectl label configmap {facts.name} {FLAG_SOURCE_LABEL}=true)"
        )
    where = f"ConfigMap {facts.name} key {ref.key}"
    if ref.key not in facts.data:
        return Skip(f"{where} does not exist")
    try:
        doc = json.loads(facts.data[ref.key])
        flags = doc["flags"]
    except (ValueError, KeyError, TypeError):
        return Skip(f"{where} is not flagd flag JSON (no top-level 'flags' object)")
    flag = flags.get(ref.flag) if isinstance(flags, dict) else None
    if not isinstance(flag, dict):
        return Skip(f"flag {ref.flag} is not defined in {where}")
    new = kill_switch(flag, ref.flag, step.off_variant, where)
    if isinstance(new, Skip):
        return new
    flags[ref.flag] = new
    change = {"op": "replace", "path": f"/data/{escape(ref.key)}", "value": json.dumps(doc, indent=2)}
    source = ("ConfigMap", facts.name, facts.guard, facts.annotations)
    return _kill_plan(
        source, change, FlagCheck(ref.flag, new["defaultVariant"], ref.key), flag, new, incident, index, now
    )


def plan_featureflag(
    featureflag: dict[str, Any], step: DisableFlagStep, *, incident: str, index: int, now: datetime
) -> Plan | Skip | Done:
    """Pure: the same kill switch on an OpenFeature Operator FeatureFlag (spec.flagSpec.flags.<key>)."""
    ref = step.feature_flag
    assert ref is not None
    meta = featureflag["metadata"]
    annotations = dict(meta.get("annotations") or {})
    done = read_marker(annotations, incident, index, now)
    if done:
        return done
    if (meta.get("labels") or {}).get(FLAG_SOURCE_LABEL) != "true":
        return Skip(
            f"FeatureFlag {meta['name']} is not labelled {FLAG_SOURCE_LABEL}=true: Hemostat changes only flag sources "
            f"that opt in (kubectl label featureflag {meta['name']} {FLAG_SOURCE_LABEL}=true)"
        )
    where = f"FeatureFlag {meta['name']}"
    flag = ((featureflag.get("spec") or {}).get("flagSpec") or {}).get("flags", {}).get(ref.flag)
    if not isinstance(flag, dict):
        return Skip(f"flag {ref.flag} is not defined in {where}")
    new = kill_switch(flag, ref.flag, step.off_variant, where)
    if isinstance(new, Skip):
        return new
    change = {"op": "replace", "path": f"/spec/flagSpec/flags/{escape(ref.flag)}", "value": new}
    source = ("FeatureFlag", meta["name"], tuple(guard(meta)), annotations)
    return _kill_plan(source, change, FlagCheck(ref.flag, new["defaultVariant"], None), flag, new, incident, index, now)


def _kill_plan(
    source: tuple[str, str, tuple[dict[str, Any], ...], dict[str, str]],
    change: dict[str, Any],
    check: FlagCheck,
    old: dict[str, Any],
    new: dict[str, Any],
    incident: str,
    index: int,
    now: datetime,
) -> Plan:
    """One guarded write whatever the source: the flag change, the marker, the previous spec."""
    kind, obj, guard_ops, annotations = source
    name = check.flag
    frm, to = f"flag {name}: {describe(old)}", describe(new)
    marker = marker_value(incident, index, "disableFlag", frm, to, now_iso(now))
    return Plan(
        "disableFlag",
        frm,
        to,
        [
            *guard_ops,
            change,
            marker_op(annotations, marker),
            _previous_op(annotations, name, old),
        ],
        kind=kind,
        name=obj,
        confirm=check,
    )


def flagd_document(obj: dict[str, Any], check: FlagCheck) -> str:
    """The flagd JSON a flag source object holds, as flagd would read it."""
    if check.key is not None:
        return (obj.get("data") or {}).get(check.key, "")
    flags = ((obj.get("spec") or {}).get("flagSpec") or {}).get("flags") or {}
    return json.dumps({"flags": flags})


def applied(obj: dict[str, Any], plan_: Plan) -> bool:
    """Verify: the patched source serves the off variant to everyone (OpenFeature confirms after)."""
    check = plan_.confirm
    assert check is not None
    try:
        flag = json.loads(flagd_document(obj, check))["flags"][check.flag]
    except (ValueError, KeyError, TypeError):
        return False
    return flag.get("defaultVariant") == check.variant and not flag.get("targeting")


def verify(objects: Objects, plan_: Plan, patched: dict[str, Any]) -> Verified:
    """The patched source serves the off variant to everyone, and OpenFeature must then agree."""
    check = plan_.confirm
    assert check is not None
    held = holds(applied)(objects, plan_, patched)
    if not held.ok:
        return held
    source = objects.sources.get((plan_.kind, plan_.name)) or {}
    return Verified(
        True,
        evaluate=Evaluate(check.flag, check.variant, flagd_document(source, check), flagd_document(patched, check)),
    )


def _source(step: DisableFlagStep) -> tuple[str, str]:
    if step.feature_flag is not None:
        return ("FeatureFlag", step.feature_flag.name)
    assert step.config_map is not None
    return ("ConfigMap", step.config_map.name)


def _plan_step(objects: Objects, step: DisableFlagStep, ctx: Context) -> Plan | Skip | Done:
    kind, name = _source(step)
    obj = objects.sources.get((kind, name))
    if obj is None:
        missing = " (or its CRD is not installed)" if kind == "FeatureFlag" else ""
        return Skip(f"{kind} {name} does not exist{missing}")
    if kind == "FeatureFlag":
        return plan_featureflag(obj, step, incident=ctx.incident, index=ctx.index, now=ctx.now)
    return plan(facts_from(obj), step, incident=ctx.incident, index=ctx.index, now=ctx.now)


STEP = StepKind(
    "disableFlag",
    _plan_step,
    verify,
    actions={"disableFlag": c.FLAG_DISABLED},
    admission=(
        patch_target_rule(
            "disableFlag",
            " (the action is recorded in its ledger, which every policy on it reads for cooldown and budget)",
        ),
        *(
            AdmissionRule(
                f"authorizer.group('{group}').resource('{resource}')"
                f".namespace(variables.ns).name(variables.step.disableFlag.{field}.name).check('patch').allowed()",
                f"'spec.mitigation.disableFlag needs permission to patch {resource}/'"
                f" + variables.step.disableFlag.{field}.name + ' in namespace ' + variables.ns + ', which '"
                " + variables.who + ' does not have'",
                when=f"has(variables.step.disableFlag.{field})",
            )
            for field, group, resource in (
                ("configMap", "", "configmaps"),
                ("featureFlag", "core.openfeature.dev", "featureflags"),
            )
        ),
    ),
    sources=lambda step: [_source(step)],
)
