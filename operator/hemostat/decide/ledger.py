"""Guardrail state that every actor shares, kept on the Deployment itself.

Cooldown and the hourly budget must see every action on a Deployment, whoever took it: any
policy, or a person through a manual Incident. So each action appends to an annotation on
the Deployment (`hemostat.dev/actions`), written in the same patch as the change when the
change is to the Deployment, or just before it when the change is to another object (an HPA,
a flag source): a crash between the two then over-counts one action, which only delays the
next one; it never allows a second one early.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from .conditions import now_iso, parse_iso

LEDGER = "hemostat.dev/actions"
KEEP = timedelta(hours=24)  # the longest cooldown the schema allows
MAX_ENTRIES = 100  # the largest hourly budget the schema allows


@dataclass(frozen=True)
class Entry:
    at: datetime
    by: str  # namespace/incident
    action: str


def read(annotations: dict[str, str] | None) -> list[Entry]:
    """The recorded actions, oldest first; a hand-edited or foreign value is ignored, never fatal."""
    try:
        raw = json.loads((annotations or {}).get(LEDGER) or "[]")
        return sorted((Entry(parse_iso(e["at"]), str(e["by"]), str(e["action"])) for e in raw), key=lambda e: e.at)
    except (ValueError, TypeError, KeyError):
        return []


def with_entry(annotations: dict[str, str] | None, entry: Entry) -> str:
    """The annotation value with `entry` added and entries past the guardrail horizon dropped."""
    kept = [e for e in read(annotations) if entry.at - e.at < KEEP][-(MAX_ENTRIES - 1) :]
    return json.dumps(
        [{"at": now_iso(e.at), "by": e.by, "action": e.action} for e in [*kept, entry]], separators=(",", ":")
    )


def times(annotations: dict[str, str] | None) -> list[datetime]:
    return [e.at for e in read(annotations)]
