"""Who else reconciles a target, and how Hemostat stops them from undoing a step. Pure.

Under GitOps a rollback is undone within one reconcile interval: the reconciler sees drift from Git
and applies the bad revision again. So a step that changes an object a reconciler owns carries, in
the same patch, what pauses that reconciler for that object, the least invasive way it offers:

- Flux Kustomization (labels kustomize.toolkit.fluxcd.io/name, /namespace): the per-object
  annotation `kustomize.toolkit.fluxcd.io/reconcile: disabled`. One write: the step and the pause
  land together or not at all, so a crash can never leave a paused reconciler without its reason.
- Flux HelmRelease (helm.toolkit.fluxcd.io/name) and Argo CD Application (annotation
  argocd.argoproj.io/tracking-id): recognised, but pausing them (a suspend, selfHeal off) is a write
  on another object, not yet made: the step is skipped saying so, never taken unprotected.

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


def pause_ops(meta: Mapping[str, Any], mode: str, incident: str, now: datetime) -> list[dict[str, Any]] | str:
    """The operations that keep the object's reconciler from undoing a step, to append to the step's
    patch (which leaves an annotations map); [] when there is none to pause; a str: why the step must
    not be taken."""
    reconciler = reconciler_of(meta)
    if reconciler is None or mode == "ignore":
        return []
    owner = reconciler.describe()
    if mode == "skip":
        return f"reconciled by {owner} and the policy says mitigation.gitops: skip"
    if reconciler.kind != "Kustomization":
        return f"reconciled by {owner}, which Hemostat cannot pause yet; acting would be undone at its next sync"
    if (meta.get("annotations") or {}).get(FLUX_RECONCILE) == "disabled":
        return []  # already left alone by Flux (by a person, or by an earlier step)
    record = json.dumps({"incident": incident, "reconciler": owner, "at": now_iso(now)}, separators=(",", ":"))
    return [
        {"op": "add", "path": _pointer(FLUX_RECONCILE), "value": "disabled"},
        {"op": "add", "path": _pointer(PAUSED), "value": record},
    ]


def resume_ops(meta: Mapping[str, Any], incident: str) -> list[dict[str, Any]]:
    """Undo a pause this incident made on the object (guarded on the record); [] when it made none."""
    pause = paused(meta)
    if pause is None or pause.incident != incident:
        return []
    annotations = meta.get("annotations") or {}
    ops: list[dict[str, Any]] = [{"op": "test", "path": _pointer(PAUSED), "value": annotations[PAUSED]}]
    if annotations.get(FLUX_RECONCILE) == "disabled":
        ops.append({"op": "remove", "path": _pointer(FLUX_RECONCILE)})
    ops.append({"op": "remove", "path": _pointer(PAUSED)})
    return ops
