"""A flapping signal reopens its target's last Incident instead of filling etcd with new ones.

Cycle by cycle on the real API server (scripted clock and readings): what the reopen clears on the
server (resolvedAt, the Resolved condition) and what it keeps (the first detection, the actions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import Cluster
from cycles import Story, scripted_policy, stories

BAD, GOOD = 0.5, 0.0


@pytest.fixture
def story(testenv: Cluster, crds: None, namespace: str) -> Iterator[Callable[..., Story]]:
    yield from stories(testenv, namespace)


def resolve(s: Story, start: float) -> None:
    """A healthy stretch longer than verifyFor (20s) from `start`: the open Incident resolves."""
    s.readings[("web", "err")] = GOOD
    s.cycle("web", start)
    s.cycle("web", start + 25)


def test_a_breach_soon_after_resolution_reopens_the_same_incident(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(scripted_policy("web", "web", steps=[], verify_for="20s"), s.ns)
    s.readings[("web", "err")] = BAD
    s.cycle("web", 0)
    resolve(s, 10)
    first = s.incident("web")
    assert first["status"]["phase"] == "Resolved" and first["status"]["resolvedAt"]

    s.readings[("web", "err")] = BAD  # flaps back 25 s after it resolved
    s.cycle("web", 60)
    again = s.incident("web")  # still one Incident
    status = again["status"]
    assert again["metadata"]["name"] == first["metadata"]["name"]
    # open again, on the server: resolvedAt cleared, and (no step in the ladder) a person is needed again
    assert status["phase"] == "Escalated" and "resolvedAt" not in status and "timeToResolve" not in status
    assert status["detectedAt"] == first["status"]["detectedAt"]  # when the impact was first seen
    assert status["reopened"] == 1
    resolved = {x["type"]: x for x in status["conditions"]}["Resolved"]
    assert resolved["status"] == "False" and resolved["reason"] == "Reopened"
    (entry,) = [e for e in status["timeline"] if e["reason"] == "Reopened"]
    assert entry["message"] == (
        f"err 0.5 > 0.05 again 25s after it resolved at {first['status']['resolvedAt']}, no new revision since: "
        "reopened (1 time)"
    )
    assert entry["type"] == "Warning" and entry["at"] == s.at(60).strftime("%Y-%m-%dT%H:%M:%SZ")

    resolve(s, 70)
    s.readings[("web", "err")] = BAD
    s.cycle("web", 110)
    assert s.incident("web")["status"]["reopened"] == 2


def test_a_new_revision_or_a_window_passed_opens_a_new_incident(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    s.cluster.apply(scripted_policy("web", "web", steps=[], verify_for="20s", reopenWithin="1m"), s.ns)
    s.readings[("web", "err")] = BAD  # the scripted clock is behind the real one here: the rollout
    s.cycle("web", -100)  # below happens (real time) after this Incident resolved (scripted time)
    resolve(s, -90)

    s.roll_out("web", "app:v3")  # a new revision is a new suspect: a new Incident
    s._wait_revision("web", 3)
    s.readings[("web", "err")] = BAD
    s.cycle("web", 40)
    assert len(s.incidents("web")) == 2
    resolve(s, 50)

    s.readings[("web", "err")] = BAD  # resolved at 75; 90 s later is past reopenWithin
    s.cycle("web", 165)
    found = s.incidents("web")
    assert len(found) == 3 and found[-1]["status"].get("reopened", 0) == 0
