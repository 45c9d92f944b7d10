"""Pages with the playbooks' escalation, beside the updates (notify.py): pure decisions and payloads.

A SEV1/SEV2 Incident pages level 0 at once; while nobody acknowledges it (`hemostat incident ack`),
each further level is paged `after` its time since detection (playbook defaults: 15m, 30m, then every
15m). An ack is sent as an acknowledge and resolution as a resolve, to every level paged, under one
dedup key per Incident (PagerDuty's `dedup_key`, Opsgenie's `alias`). What was sent lives in the
Incident's `status.paging`, so a restart never pages twice; a failed send is retried with backoff.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from .clock import now_iso, parse_iso
from .models.common import parse_duration
from .models.incident import IncidentSpec, IncidentStatus, PagingState
from .models.policy import Paging
from .notify import BACKOFF_BASE, BACKOFF_MAX, slack_escape

PLAYBOOK_AFTER = (timedelta(0), timedelta(minutes=15), timedelta(minutes=30))
LATER = timedelta(minutes=15)  # each level past the playbooks' three
PAGERDUTY_SEVERITY = {"SEV1": "critical", "SEV2": "error", "SEV3": "warning", "SEV4": "info"}
OPSGENIE_PRIORITY = {"SEV1": "P1", "SEV2": "P2", "SEV3": "P3", "SEV4": "P4"}
Action = Literal["trigger", "acknowledge", "resolve"]


@dataclass(frozen=True)
class Page:
    action: Action
    levels: tuple[int, ...]  # the escalation levels it goes to


def after(paging: Paging, level: int) -> timedelta:
    """How long after detection, unacknowledged, `level` is paged."""
    set_ = paging.levels[level].after
    if set_ is not None:
        return parse_duration(set_)
    if level < len(PLAYBOOK_AFTER):
        return PLAYBOOK_AFTER[level]
    return PLAYBOOK_AFTER[-1] + LATER * (level - len(PLAYBOOK_AFTER) + 1)


def dedup_key(namespace: str, name: str) -> str:
    return f"hemostat/{namespace}/{name}"


def due(
    state: PagingState | None,
    paging: Paging,
    spec: IncidentSpec,
    status: IncidentStatus,
    now: datetime,
) -> Page | None:
    """What to send now, if anything: the next level, an acknowledge, or a resolve."""
    if not paging.levels or spec.severity not in paging.severities or status.phase is None:
        return None
    if state is not None and state.retry_at and now < parse_iso(state.retry_at):
        return None
    paged = len(state.paged_at) if state else 0
    sent = tuple(range(paged))
    if status.phase == "Resolved":
        return Page("resolve", sent) if paged and state and not state.resolved else None
    if spec.acknowledged_by:
        return Page("acknowledge", sent) if paged and state and not state.acknowledged else None
    detected = parse_iso(status.detected_at) if status.detected_at else None
    if paged < len(paging.levels) and detected and now >= detected + after(paging, paged):
        return Page("trigger", (paged,))
    return None


def after_attempt(state: PagingState | None, page: Page, key: str, error: str | None, now: datetime) -> PagingState:
    """The paging state after one send, with backoff on failure (nothing counted as sent)."""
    out = (state or PagingState(dedup_key=key)).model_copy(deep=True)
    if error is not None:
        out.failures += 1
        out.last_error = error[:1024]
        out.retry_at = now_iso(now + min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (out.failures - 1)))
        return out
    out.failures, out.last_error, out.retry_at = 0, None, None
    if page.action == "trigger":
        out.paged_at = [*out.paged_at, now_iso(now)]
    elif page.action == "acknowledge":
        out.acknowledged = True
    else:
        out.resolved = True
    return out


def message(
    fmt: str,
    url: str,
    routing_key: str | None,
    page: Page,
    level: int,
    namespace: str,
    name: str,
    spec: IncidentSpec,
    status: IncidentStatus,
) -> tuple[str, dict[str, Any]]:
    """The (URL, JSON body) of one page to one level, as the receiver's API takes it."""
    key = dedup_key(namespace, name)
    summary = f"[{spec.severity}] {namespace}/{name}: {spec.summary}"
    target = f"{spec.target.kind}/{spec.target.name}"
    latest = status.timeline[-1] if status.timeline else None
    details = {
        "incident": name,
        "namespace": namespace,
        "target": target,
        "phase": status.phase,
        "level": level,
        "acknowledgedBy": spec.acknowledged_by,
        "latest": f"{latest.at} {latest.reason}: {latest.message}" if latest else None,
    }
    if fmt == "pagerduty":
        body: dict[str, Any] = {"routing_key": routing_key, "event_action": page.action, "dedup_key": key}
        if page.action == "trigger":
            body["payload"] = {
                "summary": summary[:1024],
                "source": f"{namespace}/{target}",
                "severity": PAGERDUTY_SEVERITY[spec.severity],
                "timestamp": status.detected_at,
                "component": spec.target.name,
                "group": namespace,
                "class": "hemostat",
                "custom_details": details,
            }
            body["client"] = "Hemostat"
        return url, body
    if fmt == "opsgenie":
        if page.action == "trigger":
            return url, {
                "message": summary[:130],
                "alias": key,
                "description": spec.summary,
                "priority": OPSGENIE_PRIORITY[spec.severity],
                "source": "Hemostat",
                "tags": ["hemostat", spec.severity],
                "details": {k: str(v) for k, v in details.items() if v is not None},
            }
        verb = "acknowledge" if page.action == "acknowledge" else "close"
        alias = urllib.parse.quote(key, safe="")
        note = f"acknowledged by {spec.acknowledged_by}" if verb == "acknowledge" else "resolved"
        return f"{url.rstrip('/')}/{alias}/{verb}?identifierType=alias", {"source": "Hemostat", "note": note}
    said = {"trigger": f"PAGE (level {level})", "acknowledge": "acknowledged", "resolve": "resolved"}[page.action]
    if fmt == "slack":
        return url, {"text": f":rotating_light: {said}: {slack_escape(summary)}"}
    return url, {"page": page.action, "dedupKey": key, "summary": summary, **details}
