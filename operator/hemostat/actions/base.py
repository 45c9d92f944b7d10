"""Shared shapes of an action: facts in, a Plan / Skip / Done out.

Idempotence: every apply writes a marker annotation (`hemostat.dev/mitigation`)
on the object it changes, in the same request as the change. A restarted
operator that finds the marker for (incident, step) records the step as done
instead of repeating it, so there is no window in which a crash could cause a
second rollback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MARKER = "hemostat.dev/mitigation"


@dataclass(frozen=True)
class Plan:
    action: str  # rollback | scaleToZero | scaleUp | scaleUpHpa
    from_: str
    to: str
    patch: list[dict[str, Any]]  # JSON patch, guarded by a resourceVersion test
    kind: str = "Deployment"  # the object the patch applies to
    name: str = ""  # its name, when it is not the target Deployment


@dataclass(frozen=True)
class Skip:
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


def read_marker(annotations: dict[str, str] | None, incident: str, index: int) -> Done | None:
    raw = (annotations or {}).get(MARKER)
    if not raw:
        return None
    data = parse_marker(raw)
    if data is None or data["incident"] != incident or data["step"] != index:
        return None
    return Done(action=data["action"], from_=data["from"], to=data["to"], at=data["at"])


def parse_marker(raw: str | None) -> dict[str, Any] | None:
    """The marker as a dict, or None when absent or not ours (a hand-edited value is ignored, never fatal)."""
    try:
        data = json.loads(raw or "")
    except ValueError:
        return None
    keys = ("incident", "step", "action", "from", "to", "at")
    if not isinstance(data, dict) or not all(k in data for k in keys):
        return None
    return data


def escape(key: str) -> str:
    """JSON-pointer escaping for annotation keys in patch paths."""
    return key.replace("~", "~0").replace("/", "~1")


def marker_op(annotations: dict[str, str], value: str) -> dict[str, Any]:
    """The JSON-patch operation that writes the marker beside the change."""
    if not annotations:
        return {"op": "add", "path": "/metadata/annotations", "value": {MARKER: value}}
    return {"op": "add", "path": f"/metadata/annotations/{escape(MARKER)}", "value": value}
