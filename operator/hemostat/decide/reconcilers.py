"""Who else reconciles a target, and how Hemostat stops them from undoing a step. Pure.

Under GitOps a rollback is undone within one reconcile interval: the reconciler sees drift from Git
and applies the bad revision again. So a step that changes an object a reconciler owns carries, in
the same patch, what pauses that reconciler for that object, the least invasive way it offers:

- Flux Kustomization (labels kustomize.toolkit.fluxcd.io/name, /namespace): the per-object
  annotation `kustomize.toolkit.fluxcd.io/reconcile: disabled`. One write: the step and the pause
  land together or not at all, so a crash can never leave a paused reconciler without its reason.
- Flux HelmRelease (labels helm.toolkit.fluxcd.io/name, /namespace): `spec.suspend: true` on the
  HelmRelease; Argo CD Application (annotation argocd.argoproj.io/tracking-id): `selfHeal: false` in
  its automated sync policy (new commits still sync; drift is left alone). These are writes on the
  reconciler's own object, made before the step and carrying their record (what was there before,
  the source revision then): a crash between the two leaves a pause whose reason is on the object,
  and the next cycle takes the step without pausing again. The object is read only for a target
  with an open Incident, so the first cycle of a new one waits for it (a hold, about one interval).

Beside the pause the object carries `hemostat.dev/gitops-paused` (the incident, the reconciler, when):
the Incident's record is rebuilt from it every cycle, and only a pause Hemostat made is ever resumed.
A policy chooses `mitigation.gitops`: pause (default), ignore (act, let the reconciler be), or skip
(never act on a reconciled object; the next step is tried).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import now_iso, parse_iso

FLUX_KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace")
FLUX_HELMRELEASE = ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace")
ARGOCD_TRACKING = "argocd.argoproj.io/tracking-id"
FLUX_RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"  # "disabled": Flux leaves the object alone
PAUSED = "hemostat.dev/gitops-paused"


@dataclass(frozen=True)
class Reconciler:
    kind: str  # Kustomization | HelmRelease | Application
    namespace: str
    name: str

    def describe(self) -> str:
        system = "Argo CD" if self.kind == "Application" else "Flux"
        return f"{system} {self.kind} {self.namespace}/{self.name}"


def reconciler_of(meta: Mapping[str, Any]) -> Reconciler | None:
    """The GitOps reconciler that owns an object, from the marks each leaves on what it applies."""
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    for kind, (name_key, ns_key) in (("Kustomization", FLUX_KUSTOMIZATION), ("HelmRelease", FLUX_HELMRELEASE)):
        if labels.get(name_key):
            return Reconciler(kind, labels.get(ns_key) or meta.get("namespace", ""), labels[name_key])
    tracking = annotations.get(ARGOCD_TRACKING)
    if tracking and ":" in tracking:  # <app>:<group>/<kind>:<namespace>/<name>; <app> may be <ns>_<app>
        app = tracking.split(":", 1)[0]
        namespace, _, name = app.rpartition("_")
        return Reconciler("Application", namespace or "argocd", name)
    return None


@dataclass(frozen=True)
class Pause:
    """A pause Hemostat made, as recorded on the paused object."""

    incident: str
    reconciler: str  # Reconciler.describe()
    at: datetime


def paused(meta: Mapping[str, Any]) -> Pause | None:
    """Hemostat's record of a pause on this object; None when absent or not readable as ours."""
    raw = (meta.get("annotations") or {}).get(PAUSED)
    try:
        found = json.loads(raw) if raw else None
        return Pause(str(found["incident"]), str(found["reconciler"]), parse_iso(found["at"])) if found else None
    except (ValueError, KeyError, TypeError):
        return None


def _pointer(key: str) -> str:
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


# where each kind of reconciler object is served: (group, version, plural)
API = {
    "HelmRelease": ("helm.toolkit.fluxcd.io", "v2", "helmreleases"),
    "Application": ("argoproj.io", "v1alpha1", "applications"),
}


HOW = {
    "HelmRelease": "spec.suspend: true on the HelmRelease",
    "Application": "spec.syncPolicy.automated.selfHeal: false on the Application (new commits still sync)",
}


@dataclass(frozen=True)
class ObjectPause:
    """A guarded JSON patch on the reconciler's own object, written before the step."""

    reconciler: Reconciler
    ops: list[dict[str, Any]]


@dataclass(frozen=True)
class Protection:
    """What keeps a step from being undone: ops in the step's own patch, or a write before it; or a wait
    for the reconciler's object, or a refusal (the step is skipped saying why)."""

    ops: tuple[dict[str, Any], ...] = ()
    before: ObjectPause | None = None
    wait: str | None = None
    refuse: str | None = None


Owners = Mapping[Reconciler, "dict[str, Any] | str | None"]  # its object; a str: why it could not be read


def _record(incident: str, owner: Reconciler, now: datetime, **extra: Any) -> str:
    fields = {"incident": incident, "reconciler": owner.describe(), "at": now_iso(now), **extra}
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


def protect(meta: Mapping[str, Any], mode: str, incident: str, now: datetime, owners: Owners | None) -> Protection:
    """How to keep the reconciler of an object a step changes from undoing it (`owners`: the reconciler
    objects read this cycle, one missing is read on the next; None: none are read, as for a person's
    declared Incident)."""
    reconciler = reconciler_of(meta)
    if reconciler is None or mode == "ignore":
        return Protection()
    owner = reconciler.describe()
    if mode == "skip":
        return Protection(refuse=f"reconciled by {owner} and the policy says mitigation.gitops: skip")
    if reconciler.kind == "Kustomization":
        if (meta.get("annotations") or {}).get(FLUX_RECONCILE) == "disabled":
            return Protection()  # already left alone by Flux (by a person, or by an earlier step)
        record = _record(incident, reconciler, now)
        return Protection(
            ops=(
                {"op": "add", "path": _pointer(FLUX_RECONCILE), "value": "disabled"},
                {"op": "add", "path": _pointer(PAUSED), "value": record},
            )
        )
    if owners is None:
        return Protection(
            refuse=f"reconciled by {owner}, which Hemostat pauses only for a policy's Incident, never on a person's "
            "request (pausing it is its owner's call: suspend it yourself, or revert in Git)"
        )
    if reconciler not in owners:
        return Protection(wait=f"reading {owner}, which reconciles it, before acting")
    found = owners[reconciler]
    if isinstance(found, str):
        return Protection(refuse=f"reconciled by {owner}, which could not be read ({found}): not paused, not acted on")
    if found is None:
        return Protection()  # a stale mark: no such reconciler, nothing undoes the step
    pause = paused(found["metadata"])
    if pause is not None and pause.incident == incident:
        return Protection()  # paused by this incident already (a crash before the step)
    ops = (_suspend if reconciler.kind == "HelmRelease" else _no_self_heal)(found, reconciler, incident, now)
    return Protection(before=ObjectPause(reconciler, ops)) if ops else Protection()


def _annotate(obj: Mapping[str, Any], value: str) -> dict[str, Any]:
    if obj["metadata"].get("annotations"):
        return {"op": "add", "path": _pointer(PAUSED), "value": value}
    return {"op": "add", "path": "/metadata/annotations", "value": {PAUSED: value}}


def _guard(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]}]


def source_revision(kind: str, obj: Mapping[str, Any]) -> str | None:
    """What the reconciler last took from its source: a new commit (or chart, or values) changes it."""
    status = obj.get("status") or {}
    if kind == "Application":
        return (status.get("sync") or {}).get("revision")
    chart = status.get("lastAttemptedRevision")
    config = status.get("lastAttemptedConfigDigest") or status.get("lastAttemptedValuesChecksum")
    return f"{chart} ({config})" if chart else None


def _suspend(obj: Mapping[str, Any], owner: Reconciler, incident: str, now: datetime) -> list[dict[str, Any]]:
    if (obj.get("spec") or {}).get("suspend"):
        return []  # suspended already (by a person): nothing reconciles it
    record = _record(incident, owner, now, was={"suspend": False}, revision=source_revision(owner.kind, obj))
    return [*_guard(obj), {"op": "add", "path": "/spec/suspend", "value": True}, _annotate(obj, record)]


def _no_self_heal(obj: Mapping[str, Any], owner: Reconciler, incident: str, now: datetime) -> list[dict[str, Any]]:
    policy = (obj.get("spec") or {}).get("syncPolicy") or {}
    automated = policy.get("automated")
    if automated is None or not automated.get("selfHeal") or automated.get("enabled") is False:
        return []  # Argo CD does not undo drift for this Application
    record = _record(incident, owner, now, was={"syncPolicy": policy}, revision=source_revision(owner.kind, obj))
    return [
        *_guard(obj),
        {"op": "replace", "path": "/spec/syncPolicy/automated/selfHeal", "value": False},
        _annotate(obj, record),
    ]


def resume_ops(obj: Mapping[str, Any], incident: str) -> list[dict[str, Any]]:
    """Undo a pause this incident made on the object (guarded on the record): the per-object annotation,
    or the reconciler object's spec as it was; [] when it made none."""
    meta = obj["metadata"]
    pause = paused(meta)
    if pause is None or pause.incident != incident:
        return []
    annotations = meta.get("annotations") or {}
    was = json.loads(annotations[PAUSED]).get("was") or {}
    ops: list[dict[str, Any]] = [{"op": "test", "path": _pointer(PAUSED), "value": annotations[PAUSED]}]
    if annotations.get(FLUX_RECONCILE) == "disabled":
        ops.append({"op": "remove", "path": _pointer(FLUX_RECONCILE)})
    if "suspend" in was:
        ops.append({"op": "add", "path": "/spec/suspend", "value": was["suspend"]})
    if "syncPolicy" in was:
        ops.append({"op": "add", "path": "/spec/syncPolicy", "value": was["syncPolicy"]})
    ops.append({"op": "remove", "path": _pointer(PAUSED)})
    return ops


def recorded_revision(meta: Mapping[str, Any]) -> str | None:
    """The source revision the reconciler was at when Hemostat paused it, as recorded."""
    raw = (meta.get("annotations") or {}).get(PAUSED)
    try:
        value = json.loads(raw).get("revision") if raw else None
    except ValueError:
        return None
    return str(value) if value else None
