"""When an update is due, what it says, and how failures back off."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from hemostat.models.incident import IncidentSpec, IncidentStatus, NotificationState, TimelineEntry
from hemostat.models.policy import Cadence
from hemostat.notify import after_attempt, deliver, due, payload

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
ISO = "%Y-%m-%dT%H:%M:%SZ"


def sent(phase: str, at: datetime) -> NotificationState:
    return NotificationState(last_phase=phase, last_sent_at=at.strftime(ISO))


def test_every_phase_change_is_due() -> None:
    assert due(None, "Monitoring", "SEV2", Cadence(), T0) == "phase Monitoring"
    assert due(sent("Monitoring", T0), "Resolved", "SEV2", Cadence(), T0) == "phase Resolved"
    assert due(sent("Monitoring", T0), "Monitoring", "SEV2", Cadence(), T0 + timedelta(minutes=1)) is None


def test_reminders_follow_the_severity_cadence_while_open() -> None:
    st = sent("Escalated", T0)
    assert due(st, "Escalated", "SEV1", Cadence(), T0 + timedelta(minutes=14)) is None
    assert due(st, "Escalated", "SEV1", Cadence(), T0 + timedelta(minutes=15)) == "SEV1 reminder every 15m"
    assert due(st, "Escalated", "SEV2", Cadence(), T0 + timedelta(minutes=15)) is None
    assert due(st, "Escalated", "SEV4", Cadence(), T0 + timedelta(days=1)) is None  # SEV4: phase changes only
    assert due(sent("Resolved", T0), "Resolved", "SEV1", Cadence(), T0 + timedelta(hours=5)) is None


def test_failures_back_off_exponentially_and_success_resets() -> None:
    one = after_attempt(None, "Monitoring", "hooks.example answered HTTP 500", T0)
    assert (one.failures, one.retry_at, one.last_phase) == (1, "2026-11-23T14:00:10Z", None)
    assert due(one, "Monitoring", "SEV2", Cadence(), T0 + timedelta(seconds=5)) is None
    two = after_attempt(one, "Monitoring", "again", T0 + timedelta(seconds=10))
    assert (two.failures, two.retry_at) == (2, "2026-11-23T14:00:30Z")
    ok = after_attempt(two, "Monitoring", None, T0 + timedelta(seconds=40))
    assert ok == NotificationState(last_phase="Monitoring", last_sent_at="2026-11-23T14:00:40Z")


def test_payloads() -> None:
    spec = IncidentSpec.model_validate(
        {"severity": "SEV1", "summary": "error-rate 0.6 > 0.05", "target": {"name": "api"}}
    )
    status = IncidentStatus(
        phase="Resolved",
        timeline=[TimelineEntry(at="2026-11-23T14:03:00Z", reason="Recovered", message="all signals healthy for 2m")],
    )
    body = payload("json", "api-1", "shop", spec, status, "phase Resolved")
    assert (body["incident"], body["phase"], body["severity"], body["reason"]) == (
        "api-1",
        "Resolved",
        "SEV1",
        "phase Resolved",
    )
    assert body["latest"]["reason"] == "Recovered"
    slack = payload("slack", "api-1", "shop", spec, status, "phase Resolved")
    assert slack == {
        "text": ":white_check_mark: *SEV1* `shop/api-1` is *Resolved*: error-rate 0.6 &gt; 0.05\n"
        "> 2026-11-23T14:03:00Z Recovered: all signals healthy for 2m"
    }


def test_slack_text_cannot_ping_or_link_from_user_text() -> None:
    # a person wrote the summary; Slack reads <!channel>, <@U…> and <url|text> as commands
    spec = IncidentSpec.model_validate(
        {"severity": "SEV2", "summary": "<!channel> pay now & <https://evil.example|see>", "target": {"name": "api"}}
    )
    status = IncidentStatus(
        phase="Monitoring",
        timeline=[TimelineEntry(at="2026-11-23T14:03:00Z", reason="NoteAdded", message="<@U123> look")],
    )
    text = payload("slack", "api-1", "shop", spec, status, "phase Monitoring")["text"]
    assert "<" not in text and ">" not in text.replace("\n> ", "\n")
    assert "&lt;!channel&gt; pay now &amp; &lt;https://evil.example|see&gt;" in text
    assert "&lt;@U123&gt; look" in text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/services/SECRETTOKEN",
        "http://[::1/SECRETTOKEN",
        "http://127.0.0.1:99999/SECRETTOKEN",
        "htp://hooks.example/SECRETTOKEN",
    ],
)
def test_a_failed_delivery_is_an_error_that_never_shows_the_secret_url(url: str) -> None:
    async def attempt() -> str | None:
        async with httpx.AsyncClient() as client:
            return await deliver(client, [(url, {})], timeout=2)

    error = asyncio.run(attempt())
    assert error and "SECRETTOKEN" not in error


def test_a_delivery_outcome_keeps_the_rest_of_the_status_and_sets_notified() -> None:
    from hemostat.cycle.notifier import after_delivery, keep_deliveries

    at = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    status = IncidentStatus(phase="Resolved", revision=2)
    failed = after_delivery(status, "Resolved", "hooks.example answered HTTP 503", 1, at)
    assert (failed.phase, failed.revision) == ("Resolved", 2)
    assert failed.notifications.failures == 1 and failed.notifications.retry_at == "2026-11-23T14:00:10Z"
    (notified,) = failed.conditions
    assert (notified.type, notified.status, notified.reason) == ("Notified", "False", "DeliveryFailed")

    # a cycle that decided on an older copy keeps what the delivery recorded
    decided = IncidentStatus(phase="Resolved", revision=2)
    kept = keep_deliveries(decided, failed.model_dump(by_alias=True, exclude_none=True, mode="json"))
    assert kept.notifications == failed.notifications and kept.conditions == failed.conditions


def test_only_a_recently_resolved_incident_with_its_update_undelivered_is_unsent() -> None:
    from hemostat.cycle.snapshot import is_unsent

    now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)

    def incident(phase: str, last: str | None, resolved: str = "2026-11-23T13:00:00Z") -> dict:
        return {"status": {"phase": phase, "resolvedAt": resolved, "notifications": {"lastPhase": last}}}

    assert is_unsent(incident("Resolved", "Monitoring"), now)
    assert not is_unsent(incident("Resolved", "Resolved"), now)
    assert not is_unsent(incident("Monitoring", "Detected"), now)
    assert not is_unsent(incident("Resolved", "Monitoring", resolved="2026-11-21T13:00:00Z"), now)


def test_the_cause_and_a_hold_deadline_reach_the_people_told() -> None:
    spec = IncidentSpec.model_validate(
        {"severity": "SEV2", "summary": "error-rate 0.3 > 0.05", "target": {"name": "web"}}
    )
    status = IncidentStatus.model_validate(
        {
            "phase": "Detected",
            "attribution": {
                "verdict": "unknown",
                "confidence": 0.5,
                "mode": "enforce",
                "reason": "the breach began 2m before revision 3 became current",
                "at": "2026-11-23T14:00:00Z",
                "holdUntil": "2026-11-23T14:02:00Z",
                "evidence": [{"kind": "timing", "says": "shared", "detail": "the breach began 2m before revision 3"}],
            },
        }
    )
    body = payload("json", "web-1", "shop", spec, status, "phase Detected")
    assert body["cause"]["verdict"] == "unknown" and body["cause"]["holdUntil"] == "2026-11-23T14:02:00Z"
    assert body["cause"]["evidence"][0]["kind"] == "timing"
    text = payload("slack", "web-1", "shop", spec, status, "phase Detected")["text"]
    assert "\n> cause: unknown (0.50): the breach began 2m before revision 3 became current" in text
    assert "; nothing is changed until 2026-11-23T14:02:00Z" in text


def test_an_update_awaiting_approval_says_what_would_be_done_and_how_to_approve() -> None:
    spec = IncidentSpec.model_validate(
        {"severity": "SEV2", "summary": "error-rate 0.3 > 0.05", "target": {"name": "web"}}
    )
    asked = {
        "request": 1,
        "index": 0,
        "step": {"rollback": {}},
        "action": "rollback",
        "from": "revision 2 (web:v2)",
        "to": "revision 1 (web:v1)",
        "requestedAt": "2026-11-23T14:00:00Z",
        "deadline": "2026-11-23T14:15:00Z",
    }
    status = IncidentStatus.model_validate({"phase": "AwaitingApproval", "approval": asked})
    body = payload("json", "web-1", "shop", spec, status, "phase AwaitingApproval")
    assert body["approval"] == {
        "request": 1,
        "step": "rollback",
        "change": "rollback: revision 2 (web:v2) -> revision 1 (web:v1)",
        "deadline": "2026-11-23T14:15:00Z",
        "approve": "hemostat incident approve web-1 -n shop",
        "reject": "hemostat incident reject web-1 -n shop",
    }
    text = payload("slack", "web-1", "shop", spec, status, "phase AwaitingApproval")["text"]
    assert "\n> waiting for approval until 2026-11-23T14:15:00Z: rollback: revision 2 (web:v2) -&gt; revision 1" in text
    assert "\n> `hemostat incident approve web-1 -n shop` (or `reject`)" in text
    decided = IncidentStatus.model_validate({"phase": "Monitoring", "approval": {**asked, "decision": "Approved"}})
    assert "approval" not in payload("json", "web-1", "shop", spec, decided, "phase Monitoring")
