"""Alertmanager as a source: its webhook payload (version 4), and what one alert does to an Incident.

Pure: a payload in, alerts out (or why it is malformed, for an HTTP 400); an alert and an Incident's
status in, the status with the alert recorded (or None: nothing new, e.g. Alertmanager's resend of the
same state). A firing alert whose labels name a Deployment opens that target's Incident (source: alert)
or joins the open one; it is a record and a notification, never a mitigation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .clock import now_iso
from .decide import conditions as c
from .decide import lifecycle as lc
from .models.incident import AlertRecord, IncidentStatus

# Alertmanager's own severity words, and the playbooks' levels
SEVERITIES = {"critical": "SEV1", "page": "SEV1", "error": "SEV2", "high": "SEV2", "warning": "SEV3", "info": "SEV4"}


class Alert(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: str = Field(alias="startsAt")
    ends_at: str | None = Field(None, alias="endsAt")
    fingerprint: str = Field(min_length=1, max_length=64)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "unnamed")

    @property
    def summary(self) -> str:
        return (self.annotations.get("summary") or self.annotations.get("description") or self.name)[:1024]


class Payload(BaseModel):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: list[Alert] = Field(max_length=1000)


def parse(body: bytes) -> tuple[Payload | None, str | None]:
    """The payload, or why it is not one Alertmanager sends (for an HTTP 400)."""
    try:
        return Payload.model_validate_json(body), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        return None, f"not an Alertmanager webhook payload (version 4): {where}: {first['msg']}"


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str


def target_of(alert: Alert, namespace_label: str, name_label: str) -> Target | None:
    """The Deployment the alert's labels name, if they name one."""
    ns, name = alert.labels.get(namespace_label), alert.labels.get(name_label)
    return Target(ns, name) if ns and name else None


def severity_of(alert: Alert, label: str, default: str = "SEV3") -> str:
    return SEVERITIES.get(alert.labels.get(label, "").lower(), default)


def _ended(alert: Alert) -> str | None:
    # Alertmanager sends endsAt "0001-01-01T00:00:00Z" for an alert still firing
    return alert.ends_at if alert.ends_at and not alert.ends_at.startswith("0001") else None


def record(status: IncidentStatus, alert: Alert, now: datetime) -> IncidentStatus | None:
    """The status with `alert` recorded, or None when it says nothing new (a resend of the same state)."""
    known = next((a for a in status.alerts if a.fingerprint == alert.fingerprint), None)
    if known is not None and known.state == alert.status:
        return None
    if known is None and alert.status == "resolved":
        return None  # never seen firing here: nothing to close
    out = status.model_copy(deep=True)
    entry = AlertRecord(
        name=alert.name[:253],
        fingerprint=alert.fingerprint,
        state=alert.status,
        starts_at=alert.starts_at[:64],
        ends_at=(_ended(alert) or "")[:64] or None,
        labels=dict(list(alert.labels.items())[:32]),
        summary=alert.summary,
    )
    others = [a for a in out.alerts if a.fingerprint != alert.fingerprint]
    out.alerts = [*others[-15:], entry]
    if alert.status == "firing":
        message = f"alert {alert.name} firing since {alert.starts_at}: {alert.summary}"
        lc.append_entry(out, now, "AlertFiring", message[:1024], warning=True)
    else:
        lc.append_entry(out, now, "AlertResolved", f"alert {alert.name} resolved at {_ended(alert) or now_iso(now)}")
    return out


def opened(alert: Alert, now: datetime) -> IncidentStatus:
    """The first status of an Incident an alert opened: Detected, with the alert in it."""
    status = IncidentStatus(phase="Detected", started_at=_iso(alert.starts_at, now), detected_at=now_iso(now))
    status.conditions = c.set_condition([], "Detected", True, "AlertFiring", alert.summary, now)
    out = record(status, alert, now)
    assert out is not None  # a firing alert is always news to a new Incident
    return out


def all_resolved(status: IncidentStatus) -> bool:
    return bool(status.alerts) and all(a.state == "resolved" for a in status.alerts)


def _iso(text: str, now: datetime) -> str:
    """Alertmanager's RFC 3339 time (nanoseconds, offsets) as the status writes times; now if unreadable."""
    try:
        return now_iso(datetime.fromisoformat(re.sub(r"\.\d+", "", text)))
    except ValueError:
        return now_iso(now)


def spec_of(alert: Alert, target: Target, severity: str) -> dict[str, Any]:
    return {
        "severity": severity,
        "summary": f"alert {alert.name}: {alert.summary}"[:1024],
        "target": {"kind": "Deployment", "name": target.name},
        "source": "alert",
    }
