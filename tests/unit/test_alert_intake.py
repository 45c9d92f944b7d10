"""Alertmanager as a source: its payload (version 4), what one alert does to an Incident (pure), and the
receiver's answers over real HTTP on loopback: 401 without the token, 400 for a malformed payload
(nothing queued), 429 when the queue is full (counted), 200 otherwise."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
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


def test_open_alert_incidents_are_tended_with_the_notify_policys_settings(tmp_path: Path) -> None:
    """Escalation moves with time, not with alerts: each round hands every open alert-only Incident (not a
    policy's) to the notifier with the notify policy's settings."""
    incident = {
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u"},
        "spec": {"severity": "SEV1", "summary": "x", "target": {"name": "web"}, "source": "alert"},
        "status": {"phase": "Detected", "detectedAt": "2026-12-06T14:00:00Z"},
    }
    theirs = {**incident, "spec": {**incident["spec"], "source": "policy"}}
    old = {
        **incident,
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "o"},
        "status": {"phase": "Resolved", "resolvedAt": "2026-10-01T00:00:00Z"},
    }
    second = {**incident, "metadata": {"name": "api-1", "namespace": "shop", "uid": "a"}}
    deleted: list[str] = []
    pages = {"levels": [{"receiver": {"secretRef": {"name": "p", "key": "url"}, "format": "json"}}]}
    rounds, reads = [0], [0]

    class Kube:
        async def list_incidents(self, namespace: str, selector: str) -> list[dict]:
            assert (namespace, selector) == ("shop", "hemostat.dev/target")
            rounds[0] += 1
            return [incident, theirs, old, second]

        async def delete_incident(self, namespace: str, name: str) -> None:
            deleted.append(name)

        async def get_policy(self, namespace: str, name: str) -> dict:
            reads[0] += 1
            return {"spec": {"notify": {"pages": pages}}}

    class Notifier:
        def __init__(self) -> None:
            self.calls: list[tuple[str, object]] = []

        def start_if_due(self, raw: dict, spec: object, status: object, now: datetime, settings: object) -> None:
            self.calls.append((raw["spec"]["source"], settings))

    notifier = Notifier()
    intake = AlertIntake(
        Kube(), Metrics(), tmp_path, ("shop",), notifier=notifier, notify_policy="oncall", retention=timedelta(days=30)
    )  # type: ignore[arg-type]

    async def go() -> None:
        task = asyncio.create_task(intake.tend(every=0.01))
        while len(notifier.calls) < 4:
            await asyncio.sleep(0.001)
        task.cancel()

    asyncio.run(go())
    source, settings = notifier.calls[0]
    assert source == "alert" and len(settings.pages.levels) == 1  # type: ignore[attr-defined]
    assert all(s == "alert" for s, _ in notifier.calls)
    assert reads[0] <= rounds[0]  # the notify policy once per namespace per round, not once per Incident
    assert deleted and set(deleted) == {"web-0"}  # resolved long past retention; the policy's is not ours
