"""Pages with escalation (paging.py), on a scripted clock: pure decisions and the receivers' payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hemostat import paging
from hemostat.models.incident import IncidentSpec, IncidentStatus
from hemostat.models.policy import Paging

T = datetime(2026, 12, 6, 14, 0, 0, tzinfo=UTC)
URL = {"secretRef": {"name": "p", "key": "url"}, "format": "json"}


def pages(n: int = 5, **extra: object) -> Paging:
    return Paging.model_validate({"levels": [{"receiver": URL} for _ in range(n)], **extra})


def spec(severity: str = "SEV1", acked: str | None = None) -> IncidentSpec:
    return IncidentSpec.model_validate(
        {"severity": severity, "summary": "errors", "target": {"name": "web"}, "acknowledgedBy": acked}
    )


def status(phase: str = "Detected") -> IncidentStatus:
    return IncidentStatus(phase=phase, detected_at="2026-12-06T14:00:00Z")


def run(p: Paging, minutes: list[float], acked_at: float | None = None, resolved_at: float | None = None) -> list:
    """Ask `due` at each minute, sending whatever it says (successfully): what was sent, when."""
    state, sent = None, []
    for m in minutes:
        now = T + timedelta(minutes=m)
        s = spec(acked="dana" if acked_at is not None and m >= acked_at else None)
        st = status("Resolved" if resolved_at is not None and m >= resolved_at else "Escalated")
        page = paging.due(state, p, s, st, now)
        if page:
            sent.append((m, page.action, page.levels))
            state = paging.after_attempt(state, page, "k", None, now)
    return sent


def test_levels_are_paged_at_the_playbooks_times_until_someone_acknowledges() -> None:
    every_minute = [float(m) for m in range(0, 75)]
    assert run(pages(), every_minute) == [
        (0, "trigger", (0,)),
        (15, "trigger", (1,)),
        (30, "trigger", (2,)),
        (45, "trigger", (3,)),  # past the playbooks' three: every 15 minutes more
        (60, "trigger", (4,)),
    ]
    assert run(pages(), every_minute, acked_at=20, resolved_at=50) == [
        (0, "trigger", (0,)),
        (15, "trigger", (1,)),
        (20, "acknowledge", (0, 1)),  # and no level 2 at 30m
        (50, "resolve", (0, 1)),
    ]
    custom = Paging.model_validate({"levels": [{"receiver": URL}, {"after": "5m", "receiver": URL}]})
    assert run(custom, every_minute) == [(0, "trigger", (0,)), (5, "trigger", (1,))]


def test_only_the_paged_severities_page_and_nothing_before_anything_was_paged() -> None:
    assert paging.due(None, pages(), spec("SEV3"), status(), T) is None
    assert paging.due(None, pages(severities=["SEV3"]), spec("SEV3"), status(), T) is not None
    assert paging.due(None, pages(), spec(acked="dana"), status(), T) is None  # acked before any page
    assert paging.due(None, pages(), spec(), status("Resolved"), T) is None
    assert paging.due(None, Paging(), spec(), status(), T) is None


def test_a_failed_page_is_retried_with_backoff_and_counts_as_sent_only_when_it_went() -> None:
    first = paging.due(None, pages(), spec(), status(), T)
    assert first is not None
    failed = paging.after_attempt(None, first, "k", "127.0.0.1 answered HTTP 503", T)
    assert failed.paged_at == [] and failed.retry_at == "2026-12-06T14:00:10Z"
    assert paging.due(failed, pages(), spec(), status(), T + timedelta(seconds=5)) is None
    again = paging.due(failed, pages(), spec(), status(), T + timedelta(seconds=10))
    assert again == first
    assert paging.after_attempt(failed, first, "k", None, T).paged_at == ["2026-12-06T14:00:00Z"]


def test_pagerduty_needs_its_routing_key() -> None:
    with pytest.raises(ValidationError, match="pagerduty needs routingKeyRef"):
        Paging.model_validate({"levels": [{"receiver": {"secretRef": {"name": "p", "key": "url"}}}]})


def test_opsgenie_acknowledge_and_close_address_the_alert_by_its_alias() -> None:
    s = spec(acked="dana")
    url, body = paging.message(
        "opsgenie", "https://api.opsgenie.com/v2/alerts/", None, paging.Page("acknowledge", (0,)), 0, "shop", "web-1",
        s, status(),
    )  # fmt: skip
    assert url == "https://api.opsgenie.com/v2/alerts/hemostat%2Fshop%2Fweb-1/acknowledge?identifierType=alias"
    assert body == {"source": "Hemostat", "note": "acknowledged by dana"}
