"""Webhook notifications: an update on every phase change and, while open, at the
per-severity cadence (playbook defaults: SEV1 15m, SEV2 30m, SEV3 1h).

Deciding (pure) and delivering (httpx, in a background task) are apart: a slow or failing
receiver never delays a mitigation. Delivery state lives in the Incident's status
(`notifications`), with exponential backoff between failed attempts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from .clock import now_iso, parse_iso
from .models.common import parse_duration
from .models.incident import IncidentSpec, IncidentStatus, NotificationState
from .models.policy import Cadence
from .outbound import Webhooks

BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_MAX = timedelta(minutes=10)


def due(state: NotificationState | None, phase: str, severity: str, cadence: Cadence, now: datetime) -> str | None:
    """Pure: why an update is due now, or None."""
    state = state or NotificationState()
    if state.retry_at and now < parse_iso(state.retry_at):
        return None
    if state.last_phase != phase:
        return f"phase {phase}"
    every = getattr(cadence, severity, None)
    reminder = phase != "Resolved" and every and state.last_sent_at
    if reminder and now - parse_iso(state.last_sent_at) >= parse_duration(every):
        return f"{severity} reminder every {every}"
    return None


def after_attempt(state: NotificationState | None, phase: str, error: str | None, now: datetime) -> NotificationState:
    """Pure: the delivery state after one attempt (all webhooks), with backoff on failure."""
    state = (state or NotificationState()).model_copy()
    if error is None:
        return NotificationState(last_phase=phase, last_sent_at=now_iso(now))
    state.failures += 1
    state.last_error = error[:1024]
    wait = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (state.failures - 1))
    state.retry_at = now_iso(now + wait)
    return state


def payload(
    fmt: str, name: str, namespace: str, spec: IncidentSpec, status: IncidentStatus, why: str
) -> dict[str, Any]:
    """Pure: the JSON body for a receiver; `slack` is Slack-compatible (a `text` field)."""
    latest = status.timeline[-1] if status.timeline else None
    facts = {
        "incident": name,
        "namespace": namespace,
        "severity": spec.severity,
        "phase": status.phase,
        "summary": spec.summary,
        "target": f"{spec.target.kind}/{spec.target.name}",
        "reason": why,
        "lastMitigation": status.last_mitigation,
        "timeToMitigate": status.time_to_mitigate,
        "latest": {"at": latest.at, "reason": latest.reason, "message": latest.message} if latest else None,
        "timeline": [{"at": e.at, "reason": e.reason, "message": e.message} for e in status.timeline[-10:]],
    }
    cause = status.attribution
    if cause is not None:
        facts["cause"] = cause.model_dump(
            by_alias=True, exclude_none=True, include={"verdict", "confidence", "reason", "hold_until", "evidence"}
        )
    asked = status.approval if status.phase == "AwaitingApproval" else None
    if asked is not None:
        facts["approval"] = {
            "request": asked.request,
            "step": asked.step.kind,
            "change": asked.change,
            "deadline": asked.deadline,
            "approve": f"hemostat incident approve {name} -n {namespace}",
            "reject": f"hemostat incident reject {name} -n {namespace}",
        }
    if fmt != "slack":
        return facts
    icon = {"Resolved": ":white_check_mark:", "Escalated": ":rotating_light:"}.get(status.phase or "", ":warning:")
    line = f"{icon} *{spec.severity}* `{namespace}/{name}` is *{status.phase}*: {slack_escape(spec.summary)}"
    if latest:
        line += f"\n> {latest.at} {latest.reason}: {slack_escape(latest.message)}"
    if cause is not None:
        line += f"\n> cause: {cause.verdict} ({cause.confidence:.2f}): {slack_escape(cause.reason)}"
        line += f"; nothing is changed until {cause.hold_until}" if cause.hold_until else ""
    if asked is not None:
        change = slack_escape(asked.change)
        line += f"\n> waiting for approval until {asked.deadline}: {change}"
        line += f"\n> `hemostat incident approve {name} -n {namespace}` (or `reject`)"
    return {"text": line}


def policy_payload(fmt: str, policy: str, namespace: str, reason: str, message: str) -> dict[str, Any]:
    """Pure: a message about a policy itself (e.g. its signals unavailable), not about an Incident."""
    if fmt == "slack":
        return {"text": f":warning: policy `{namespace}/{policy}`: *{reason}*: {slack_escape(message)}"}
    return {"policy": policy, "namespace": namespace, "reason": reason, "message": message}


def slack_escape(text: str) -> str:
    """Slack reads <!channel>, <@user> and <url|label> in text as commands; people's text stays text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def deliver(
    sender: Webhooks | httpx.AsyncClient, targets: list[tuple[str, dict[str, Any]]], timeout: float = 5.0
) -> str | None:
    """Post to every webhook; the errors (or None). Retries happen across cycles (backoff)."""
    errors = []
    for url, body in targets:
        client = sender.client_for(url) if isinstance(sender, Webhooks) else sender
        if isinstance(client, str):
            errors.append(f"{_host(url)}: {client}")
            continue
        try:
            response = await client.post(url, json=body, timeout=timeout)
            if response.status_code >= 300:
                errors.append(f"{_host(url)} answered HTTP {response.status_code}")
        except Exception as exc:  # a bad URL raises more than httpx.HTTPError
            errors.append(f"{_host(url)}: {_describe(exc, url)}")
    return "; ".join(errors) or None


def _describe(exc: BaseException, url: str) -> str:
    """The error without any part of the URL after the host: that part is the secret."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0], url)
    text = str(exc)
    rest = url.split("://", 1)[-1]
    secret = rest[len(rest.split("/")[0].split("?")[0].split("#")[0]) :]  # path, query, fragment
    if not secret or (secret not in text and url not in text):
        return f"{exc.__class__.__name__} {text}".strip()
    return exc.__class__.__name__


def _host(url: str) -> str:
    """Never log a webhook's full URL: it is a secret."""
    try:
        return httpx.URL(url).host or "webhook"
    except Exception:
        return "webhook"
