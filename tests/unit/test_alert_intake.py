"""Alertmanager as a source: its payload (version 4), what one alert does to an Incident (pure), and the
receiver's answers over real HTTP on loopback: 401 without the token, 400 for a malformed payload
(nothing queued), 429 when the queue is full (counted), 200 otherwise."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx

from hemostat import alerts
from hemostat.cycle.alert_intake import AlertIntake
from hemostat.metrics import Metrics
from hemostat.models.incident import IncidentStatus

NOW = datetime(2026, 12, 6, 14, 0, 5, tzinfo=UTC)


def alert(status: str = "firing", fingerprint: str = "f00d", **labels: str) -> dict:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", "namespace": "shop", "deployment": "web", **labels},
        "annotations": {"summary": "5xx above 5% for 1m"},
        "startsAt": "2026-12-06T14:00:01.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-06T14:09:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }


def payload(*items: dict) -> bytes:
    return json.dumps(
        {"version": "4", "status": "firing", "receiver": "hemostat", "groupKey": "{}", "alerts": list(items)}
    ).encode()


def test_an_alert_opens_records_once_and_a_resend_changes_nothing() -> None:
    parsed, error = alerts.parse(payload(alert(severity="critical")))
    assert error is None and parsed is not None
    (a,) = parsed.alerts
    assert alerts.target_of(a, "namespace", "deployment") == alerts.Target("shop", "web")
    assert alerts.severity_of(a, "severity") == "SEV1"
    first = alerts.opened(a, NOW)
    assert (first.phase, first.started_at, first.detected_at) == (
        "Detected",
        "2026-12-06T14:00:01Z",
        "2026-12-06T14:00:05Z",
    )
    assert (
        first.timeline[-1].message
        == "alert HighErrorRate firing since 2026-12-06T14:00:01.123456789Z: 5xx above 5% for 1m"
    )
    assert alerts.record(first, a, NOW) is None  # Alertmanager's resend: nothing new
    resolved = alerts.parse(payload(alert("resolved")))[0]
    assert resolved is not None
    closed = alerts.record(first, resolved.alerts[0], NOW)
    assert closed is not None and alerts.all_resolved(closed)
    assert closed.timeline[-1].message == "alert HighErrorRate resolved at 2026-12-06T14:09:00Z"
    assert alerts.record(IncidentStatus(phase="Detected"), resolved.alerts[0], NOW) is None  # never seen firing


def test_a_payload_that_is_not_alertmanagers_says_why() -> None:
    for body, where in (
        (b"not json", "body"),
        (json.dumps({"version": "3", "status": "firing", "alerts": []}).encode(), "version"),
        (payload({"status": "firing", "labels": {}}), "alerts.0.startsAt"),
    ):
        parsed, error = alerts.parse(body)
        assert parsed is None and error is not None and where in error, (body, error)


def test_the_receiver_answers_401_400_429_and_200(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    metrics = Metrics()
    intake = AlertIntake(object(), metrics, token, queue=3)  # type: ignore[arg-type]  # no worker: nothing applied

    async def go() -> list[tuple[int, str]]:
        runner = await intake.serve("127.0.0.1", 0)
        port = runner.addresses[0][1]
        url, auth = f"http://127.0.0.1:{port}/alerts", {"Authorization": "Bearer s3cret"}
        out = []
        async with httpx.AsyncClient() as http:
            for headers, body in (
                ({}, payload(alert())),
                ({"Authorization": "Bearer nope"}, payload(alert())),
                (auth, b'{"version": "4"}'),
                (auth, payload(alert(fingerprint="a"), alert(fingerprint="b"))),
                (auth, payload(alert(fingerprint="c"), alert(fingerprint="d"))),  # 2 waiting + 2 > 3
            ):
                answer = await http.post(url, content=body, headers=headers)
                out.append((answer.status_code, answer.text))
        await runner.cleanup()
        return out

    answers = asyncio.run(go())
    assert [code for code, _ in answers] == [401, 401, 400, 200, 429]
    assert "not an Alertmanager webhook payload (version 4): status: Field required" in answers[2][1]
    assert answers[4][1] == "2 alerts are waiting; send again later\n"
    assert intake.queue.qsize() == 2  # the refused ones queued nothing
    refused = {
        s.labels["code"]: s.value for s in metrics.alerts_refused.collect()[0].samples if s.name.endswith("_total")
    }
    assert refused == {"401": 2.0, "400": 1.0, "429": 1.0}
