"""Pages with escalation, cycle by cycle on the real API server with a scripted clock (no sleeps): the
exact PagerDuty Events API v2 and Opsgenie requests, one dedup key, the playbooks' escalation times, an
ack that stops escalation and is sent on, a resolve, and no page sent twice across a restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from conftest import Cluster
from cycles import Story, scripted_policy, stories
from receivers import Receiver

BAD, GOOD = 0.5, 0.0


@pytest.fixture
def story(testenv: Cluster, crds: None, namespace: str) -> Iterator[Callable[..., Story]]:
    yield from stories(testenv, namespace)


def test_an_unacknowledged_sev1_escalates_and_an_ack_and_the_resolution_are_sent_on(story, receiver: Receiver) -> None:
    s = story(notify=True)
    s.deploy("web", "app:v1", "app:v2")
    secret = {"pd": f"{receiver.base}/v2/enqueue", "key": "R0UTING", "og": f"{receiver.base}/v2/alerts"}
    secret["lead"] = f"{receiver.base}/lead"
    s.cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pager"}, "stringData": secret}, s.ns)
    policy = scripted_policy("web", "web", steps=[], verify_for="20s", defaultSeverity="SEV1")
    pd = {"secretRef": {"name": "pager", "key": "pd"}, "routingKeyRef": {"name": "pager", "key": "key"}}
    og = {"secretRef": {"name": "pager", "key": "og"}, "format": "opsgenie"}
    lead = {"secretRef": {"name": "pager", "key": "lead"}, "format": "json"}
    levels = [{"receiver": pd}, {"receiver": og}, {"receiver": lead}]  # the playbooks' 0, 15m and 30m
    policy["spec"]["notify"] = {"pages": {"levels": levels}}
    s.cluster.apply(policy, s.ns)

    def cycle(at: float) -> list[tuple[str, dict]]:
        before = len(receiver.got)
        s.cycle("web", at)
        s.deliveries()
        return receiver.got[before:]

    s.readings[("web", "err")] = BAD
    (trigger,) = cycle(0)
    incident = s.incident("web")
    name, key = incident["metadata"]["name"], f"hemostat/{s.ns}/{incident['metadata']['name']}"
    assert trigger == (
        "/v2/enqueue",
        {
            "routing_key": "R0UTING",
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {
                "summary": f"[SEV1] {s.ns}/{name}: {incident['spec']['summary']}",
                "source": f"{s.ns}/Deployment/web",
                "severity": "critical",
                "timestamp": incident["status"]["detectedAt"],
                "component": "web",
                "group": s.ns,
                "class": "hemostat",
                "custom_details": trigger[1]["payload"]["custom_details"],
            },
            "client": "Hemostat",
        },
    )
    assert trigger[1]["payload"]["custom_details"]["level"] == 0
    assert cycle(14 * 60) == []  # level 1 is due at 15 minutes, not before
    (level1,) = cycle(15 * 60)
    assert level1[0] == "/v2/alerts" and level1[1]["alias"] == key and level1[1]["priority"] == "P1"

    s.restart()  # a new process: what was paged is on the Incident, never paged again
    assert cycle(16 * 60) == []
    s.cluster.kubectl("patch", "incident", name, "-n", s.ns, "--type=merge", "-p", '{"spec":{"acknowledgedBy":"dana"}}')
    acks = cycle(17 * 60)
    assert acks == [
        ("/v2/enqueue", {"routing_key": "R0UTING", "event_action": "acknowledge", "dedup_key": key}),
        (
            f"/v2/alerts/{quote(key, safe='')}/acknowledge?identifierType=alias",
            {"source": "Hemostat", "note": "acknowledged by dana"},
        ),
    ]
    assert cycle(45 * 60) == []  # acknowledged: level 2 (due at 30m) is never paged, nothing is sent twice

    s.readings[("web", "err")] = GOOD
    cycle(46 * 60)
    resolves = cycle(46 * 60 + 25)
    assert resolves == [
        ("/v2/enqueue", {"routing_key": "R0UTING", "event_action": "resolve", "dedup_key": key}),
        (f"/v2/alerts/{quote(key, safe='')}/close?identifierType=alias", {"source": "Hemostat", "note": "resolved"}),
    ]
    status = s.incident("web")["status"]
    assert status["phase"] == "Resolved" and status["paging"]["acknowledged"] and status["paging"]["resolved"]
    assert status["paging"]["pagedAt"] == [
        s.at(0).strftime("%Y-%m-%dT%H:%M:%SZ"),
        s.at(900).strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]
    paged = [e["message"] for e in status["timeline"] if e["reason"] == "Paged"]
    assert paged == [f"paged escalation level 0 (dedup key {key})", f"paged escalation level 1 (dedup key {key})"]
    assert cycle(47 * 60) == []
