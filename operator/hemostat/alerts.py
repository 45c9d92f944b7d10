"""Alertmanager as a source: its webhook payload (version 4), and what one alert does to an Incident.

Pure: a payload in, alerts out (or why it is malformed, for an HTTP 400); an alert and an Incident's
status in, the status with the alert recorded (or None: nothing new, e.g. Alertmanager's resend of the
same state). A firing alert whose labels name a Deployment opens that target's Incident (source: alert)
or joins the open one; it is a record and a notification, never a mitigation. A policy's alert signal
reads the Board: the alerts Alertmanager has sent, as a count of those firing for a target.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .clock import now_iso
from .decide import conditions as c
from .decide import lifecycle as lc
from .models.incident import AlertRecord, IncidentStatus
from .models.policy import AlertSignal
from .reading import Reading

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


def matches(signal: AlertSignal, labels: dict[str, str], namespace: str, target: str) -> bool:
    """The alert (its labels) is the signal's, for this target."""
    wanted = {
        **signal.matchers,
        "alertname": signal.name,
        signal.namespace_label: namespace,
        signal.deployment_label: target,
    }
    return all(labels.get(k) == v for k, v in wanted.items())


def promql(signal: AlertSignal, namespace: str, target: str) -> str:
    """The same count in Prometheus' terms (its ALERTS series), for the evidence and the postmortem's chart."""
    wanted = {**signal.matchers, signal.namespace_label: namespace, signal.deployment_label: target}
    labels = "".join(f',{k}="{_quoted(v)}"' for k, v in sorted(wanted.items()))
    return f'count(ALERTS{{alertname="{_quoted(signal.name)}",alertstate="firing"{labels}}}) or vector(0)'


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass
class Held:
    labels: dict[str, str]
    seen: datetime  # when Alertmanager last sent it
    ends_at: datetime | None  # past it, a firing alert no longer counts (Alertmanager would resolve it)


class Board:
    """The firing alerts Alertmanager has sent this replica, by fingerprint: what alert signals read.

    In memory, so Alertmanager's resends (every `resend`, its route's repeat_interval) keep it true: after a
    start (or a takeover of the Lease) it knows nothing for one `resend`, and an alert not heard of for two
    may have resolved unheard; either way a target reads NoData (inconclusive), never healthy or breaching
    on a guess. Past `limit` alerts held, a new one is refused (HTTP 429: Alertmanager retries)."""

    def __init__(self, resend: timedelta, since: Callable[[], datetime | None], limit: int = 50_000) -> None:
        self.resend, self.since, self.limit = resend, since, limit
        self.held: dict[str, Held] = {}

    def take(self, alert: Alert, now: datetime) -> bool:
        """Hold what `alert` says now; False when the board is full and it is new."""
        if alert.status == "resolved":
            self.held.pop(alert.fingerprint, None)  # counts for nothing now: nothing to keep
            return True
        if alert.fingerprint not in self.held and len(self.held) >= self.limit:
            stale = [f for f, h in self.held.items() if now - h.seen > 2 * self.resend]
            for fingerprint in stale:  # unheard of for two resends: they read NoData either way
                del self.held[fingerprint]
            if len(self.held) >= self.limit:
                return False
        ended = _ended(alert)
        self.held[alert.fingerprint] = Held(alert.labels, now, _parsed(ended) if ended else None)
        return True

    def readings(self, signal: AlertSignal, namespace: str, targets: list[str], now: datetime) -> dict[str, Reading]:
        """Each target's reading, from one pass over the alerts held (a policy may have thousands of targets)."""
        found: dict[str, list[Held]] = {t: [] for t in targets}
        for h in self.held.values():
            target = h.labels.get(signal.deployment_label)
            if target in found and matches(signal, h.labels, namespace, target):
                found[target].append(h)
        return {t: self._reading(signal, namespace, t, found[t], now) for t in targets}

    def _reading(self, signal: AlertSignal, namespace: str, target: str, found: list[Held], now: datetime) -> Reading:
        query = promql(signal, namespace, target)
        live = [h for h in found if h.ends_at is None or h.ends_at > now]
        firing = [h for h in live if now - h.seen <= 2 * self.resend]
        if firing:
            return Reading.value_of(float(len(firing)), detail=f"alert {signal.name} firing", query=query)
        if live:
            last = max(h.seen for h in live)
            detail = (
                f"alert {signal.name} last heard firing {_seconds(now - last)} ago: Alertmanager should resend "
                f"it every {_seconds(self.resend)} (--alert-resend-interval) while it fires"
            )
            return Reading.no_data(detail, query=query)
        since = self.since()
        if since is None or now - since < self.resend:
            took = "not yet (a standby)" if since is None else f"for {_seconds(now - since)}"
            detail = (
                f"no alert {signal.name} known: this replica has taken alerts {took}, and Alertmanager resends "
                f"firing alerts every {_seconds(self.resend)} (--alert-resend-interval)"
            )
            return Reading.no_data(detail, query=query)
        return Reading.value_of(0.0, detail=f"alert {signal.name} not firing", query=query)


def _seconds(span: timedelta) -> str:
    return f"{int(span.total_seconds())}s"


def _parsed(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(re.sub(r"\.\d+", "", text))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
    parsed = _parsed(text)
    return now_iso(parsed if parsed else now)


def spec_of(alert: Alert, target: Target, severity: str) -> dict[str, Any]:
    return {
        "severity": severity,
        "summary": f"alert {alert.name}: {alert.summary}"[:1024],
        "target": {"kind": "Deployment", "name": target.name},
        "source": "alert",
    }
