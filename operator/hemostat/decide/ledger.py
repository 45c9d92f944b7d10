"""Guardrail state that every actor shares, kept on the Deployment itself.

Cooldown and the hourly budget must see every action on a Deployment, whoever took it: any
policy, or a person through a manual Incident. So each action appends to an annotation on
the Deployment (`hemostat.dev/actions`), written in the same patch as the change when the
change is to the Deployment, or just before it when the change is to another object (an HPA,
a flag source): a crash between the two then over-counts one action, which only delays the
next one; it never allows a second one early.

A rollback's entry also names the ReplicaSet it rolled back from (`undone`), kept as long as
the longest rollout window, so no later rollback ever goes back onto it. An entry that does
not parse or is dated in the future is not trusted: ignored, and said (`problem`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..clock import SKEW, now_iso, parse_iso

LEDGER = "hemostat.dev/actions"
KEEP = timedelta(hours=24)  # the longest cooldown the schema allows
KEEP_UNDONE = timedelta(hours=168)  # the longest rollout window the schema allows
MAX_ENTRIES = 100  # the largest hourly budget the schema allows


@dataclass(frozen=True)
class Entry:
    at: datetime
    by: str  # namespace/incident
    action: str
    undone: str | None = None  # a rollback: the ReplicaSet it rolled back from


@dataclass(frozen=True)
class Ledger:
    entries: tuple[Entry, ...]  # trusted, oldest first
    problem: str | None = None  # what was ignored, and why

    def times(self) -> list[datetime]:
        return [e.at for e in self.entries]

    def undone(self, since: datetime) -> dict[str, Entry]:
        """The ReplicaSets rolled back from since `since`, with the last entry that did it."""
        return {e.undone: e for e in self.entries if e.undone and e.at >= since}


def _entry(raw: object) -> Entry:
    if not isinstance(raw, dict):
        raise TypeError("not an object")
    undone = raw.get("undone")
    return Entry(parse_iso(raw["at"]), str(raw["by"]), str(raw["action"]), str(undone) if undone else None)


def read(annotations: dict[str, str] | None, now: datetime | None = None) -> Ledger:
    """The recorded actions; a value that does not parse, and entries dated after `now`, are ignored."""
    raw = (annotations or {}).get(LEDGER)
    if not raw:
        return Ledger(())
    try:
        loaded = json.loads(raw)
        if not isinstance(loaded, list):
            raise TypeError("not a list")
        entries = sorted(map(_entry, loaded), key=lambda e: e.at)
    except (ValueError, TypeError, KeyError) as exc:
        return Ledger((), f"does not parse ({type(exc).__name__}); cooldown and budget start afresh")
    if now is None:
        return Ledger(tuple(entries))
    future = [e for e in entries if e.at > now + SKEW]
    problem = f"an entry dated {now_iso(future[0].at)} is in the future; ignored" if future else None
    return Ledger(tuple(e for e in entries if e.at <= now + SKEW), problem)


def _kept(e: Entry, at: datetime) -> bool:
    return e.at <= at + SKEW and at - e.at < (KEEP_UNDONE if e.undone else KEEP)


def with_entry(annotations: dict[str, str] | None, entry: Entry) -> str:
    """The annotation value with `entry` added and entries past the guardrail horizon (or dated
    after it) dropped."""
    kept = [e for e in read(annotations).entries if _kept(e, entry.at)][-(MAX_ENTRIES - 1) :]
    return json.dumps([_dump(e) for e in [*kept, entry]], separators=(",", ":"))


def _dump(e: Entry) -> dict[str, str]:
    out = {"at": now_iso(e.at), "by": e.by, "action": e.action}
    return {**out, "undone": e.undone} if e.undone else out
