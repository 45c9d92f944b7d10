"""While the cause is unknown, an unfinished rollout is paused: the old revision keeps serving as the
control, and a revision that may be bad reaches no more Pods while the evidence is weighed. Pure.

The pause is `spec.paused: true` on the Deployment (what `kubectl rollout pause` does) with
`hemostat.dev/rollout-held` naming the incident, in one guarded write: the reason travels with the
pause, so the Incident's `RolloutPaused` entry is rebuilt from the object after a crash, and only a
pause Hemostat made is ever lifted by it. It is lifted in the rollback's own patch (when the hold
ends in a rollback), or when the Incident resolves (the rollout goes on). An Incident escalated to a
person leaves it paused, and says so: continuing is then that person's call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import now_iso, parse_iso

HELD = "hemostat.dev/rollout-held"
HELD_POINTER = "/metadata/annotations/" + HELD.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class Held:
    incident: str
    at: datetime


def held(meta: Mapping[str, Any]) -> Held | None:
    raw = (meta.get("annotations") or {}).get(HELD)
    try:
        found = json.loads(raw) if raw else None
        return Held(str(found["incident"]), parse_iso(found["at"])) if found else None
    except (ValueError, KeyError, TypeError):
        return None


def pause_ops(deployment: Mapping[str, Any], incident: str, unfinished: bool, now: datetime) -> list[dict[str, Any]]:
    """Pause the rollout for this incident, when it is unfinished and nobody paused it; [] otherwise."""
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    if not unfinished or spec.get("paused") or held(meta) is not None:
        return []
    value = json.dumps({"incident": incident, "at": now_iso(now)}, separators=(",", ":"))
    note: dict[str, Any] = {"op": "add", "path": HELD_POINTER, "value": value}
    if not meta.get("annotations"):
        note = {"op": "add", "path": "/metadata/annotations", "value": {HELD: value}}
    return [
        {"op": "test", "path": "/metadata/generation", "value": meta.get("generation")},
        {"op": "add", "path": "/spec/paused", "value": True},
        note,
    ]


def release_ops(deployment: Mapping[str, Any], incident: str) -> list[dict[str, Any]]:
    """Lift this incident's pause (guarded on its record); [] when it made none (a person's pause stays)."""
    meta = deployment["metadata"]
    mine = held(meta)
    if mine is None or mine.incident != incident:
        return []
    return [
        {"op": "test", "path": HELD_POINTER, "value": meta["annotations"][HELD]},
        {"op": "replace", "path": "/spec/paused", "value": False},
        {"op": "remove", "path": HELD_POINTER},
    ]
