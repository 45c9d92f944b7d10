"""A delivery records its own outcome on the Incident, so the last update of a Resolved Incident is
recorded, retried when it failed, and neither lost nor repeated by a restart."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from conftest import Cluster
from cycles import Story, scripted_policy, stories
from receivers import Receiver

BAD, GOOD = 0.5, 0.0


@pytest.fixture
def story(testenv: Cluster, crds: None, namespace: str) -> Iterator[Callable[..., Story]]:
    yield from stories(testenv, namespace)


def notified(s: Story, target: str) -> tuple[dict, dict]:
    status = s.incident(target).get("status") or {}
    condition = {c["type"]: c for c in status.get("conditions", [])}.get("Notified", {})
    return condition, status.get("notifications") or {}


def test_the_resolved_update_is_recorded_retried_and_survives_a_restart(story, receiver: Receiver) -> None:
    s = story(notify=True)
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"}, "stringData": {"url": receiver.url}}, s.ns
    )
    policy = scripted_policy("web", "web", verify_for="20s")
    policy["spec"]["notify"] = {"webhooks": [{"secretRef": {"name": "hooks", "key": "url"}}]}
    s.cluster.apply(policy, s.ns)

    s.readings[("web", "err")] = BAD
    s.cycle("web", 0)
    s.deliveries()
    s.readings[("web", "err")] = GOOD
    s.cycle("web", 10)
    s.deliveries()
    assert notified(s, "web")[1].get("lastPhase") == "Monitoring"

    receiver.code = 503  # the receiver is down when the incident resolves
    s.cycle("web", 40)
    s.deliveries()
    condition, state = notified(s, "web")
    assert (s.incident("web")["status"]["phase"], condition.get("status")) == ("Resolved", "False"), condition
    assert "HTTP 503" in condition["message"] and state["failures"] == 1 and state["retryAt"]

    s.restart()  # nothing of the failed delivery lives in memory
    receiver.code = 204
    s.cycle("web", 120)  # past the backoff
    s.deliveries()
    condition, state = notified(s, "web")
    assert condition["status"] == "True" and state["lastPhase"] == "Resolved"
    assert receiver.phases == ["Monitoring", "Resolved", "Resolved"]

    s.cycle("web", 300)  # delivered: not sent again
    s.deliveries()
    assert receiver.phases == ["Monitoring", "Resolved", "Resolved"]


def test_signals_that_keep_failing_are_said_once_to_people_and_never_acted_on(story, receiver: Receiver) -> None:
    s = story(notify=True)
    s.deploy("web", "app:v1", "app:v2")
    secret = {"url": receiver.url}
    s.cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"}, "stringData": secret}, s.ns)
    policy = scripted_policy("web", "web", consecutiveErrorLimit=3)
    policy["spec"]["notify"] = {"webhooks": [{"secretRef": {"name": "hooks", "key": "url"}}]}
    s.cluster.apply(policy, s.ns)

    s.readings[("web", "err")] = "error"  # Prometheus unreachable
    for seconds in (0, 10):
        s.cycle("web", seconds)
        s.deliveries()
    assert receiver.phases == [] and s.policy("web")["status"]["consecutiveErrors"] == 2

    s.cycle("web", 20)  # the third failed round in a row: the limit
    s.deliveries()
    status = s.policy("web")["status"]
    available = {c["type"]: c for c in status["conditions"]}["SignalsAvailable"]
    assert available["status"] == "False" and "3 rounds in a row" in available["message"], available
    events = s.cluster.kubectl(
        "get", "events", "-n", s.ns, "--field-selector", "involvedObject.kind=MitigationPolicy", "-o", "json"
    )
    reasons = [e["reason"] for e in json.loads(events.stdout)["items"]]
    assert reasons == ["SignalsUnavailable"], reasons
    assert receiver.phases == [None], "one message to the policy's webhooks (not an incident phase)"
    (_, said) = receiver.got[-1]
    assert said["reason"] == "SignalsUnavailable" and said["policy"] == "web"

    s.restart()
    s.cycle("web", 30)  # still failing: said once per outage, also across a restart
    s.deliveries()
    assert len(receiver.phases) == 1
    assert s.incidents() == [] and s.image("web") == "app:v2", "nothing is done on no data"

    s.readings[("web", "err")] = 0.0
    s.cycle("web", 40)
    assert s.policy("web")["status"]["consecutiveErrors"] == 0
