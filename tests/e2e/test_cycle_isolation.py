"""One target's broken Incident fails that target only: the policy's other targets go on.

Cycle by cycle on the real API server (scripted clock and readings), as in test_cycle_story.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from conftest import Cluster
from cycles import Story, scripted_policy, stories

BAD, GOOD = 0.5, 0.0


@pytest.fixture
def story(testenv: Cluster, crds: None, namespace: str) -> Iterator[Callable[..., Story]]:
    yield from stories(testenv, namespace)


def targets(s: Story, policy: str) -> dict[str, dict]:
    return {t["name"]: t for t in s.policy(policy)["status"]["targets"]}


def degraded(s: Story, policy: str) -> dict:
    return {c["type"]: c for c in s.policy(policy)["status"]["conditions"]}["Degraded"]


def test_an_incident_deleted_mid_cycle_fails_only_its_target(story) -> None:
    s = story()
    s.deploy("cart", "app:v1", "app:v2", app="shop")
    s.deploy("feed", "app:v1", "app:v2", app="shop")
    s.cluster.apply(scripted_policy("shop", "shop"), s.ns)
    s.readings[("cart", "err")] = s.readings[("feed", "err")] = BAD
    s.cycle("shop", 0)
    cart, feed = s.incident("cart")["metadata"]["name"], s.incident("feed")["metadata"]["name"]

    original = s.engine.applier.kube.patch_status

    async def delete_first(resource, ns, name, *args, **kwargs):  # someone deletes it between read and write
        if resource == "incidents" and name == cart:
            s.cluster.kubectl("delete", "incident", name, "-n", ns)
        return await original(resource, ns, name, *args, **kwargs)

    s.engine.applier.kube.patch_status = delete_first
    s.readings[("cart", "err")] = s.readings[("feed", "err")] = GOOD
    s.cycle("shop", 10)

    assert s.incident("feed")["status"]["healthySince"], "the other target's status was not written"
    assert s.incidents("cart") == []
    now = targets(s, "shop")
    assert "404" in now["cart"]["error"] and "error" not in now["feed"], now
    assert degraded(s, "shop")["reason"] == "TargetsFailing" and cart in degraded(s, "shop")["message"]

    s.engine.applier.kube.patch_status = original
    s.cycle("shop", 20)  # gone for good: nothing of it is left to fail, and nothing new is opened
    assert "error" not in targets(s, "shop")["cart"] and s.incidents("cart") == []
    assert degraded(s, "shop")["status"] == "False"
    assert s.incident("feed")["metadata"]["name"] == feed


def test_an_incident_status_from_a_newer_version_fails_only_its_target(story) -> None:
    s = story()
    s.deploy("cart", "app:v1", "app:v2", app="shop")
    s.deploy("feed", "app:v1", "app:v2", app="shop")
    s.cluster.apply(scripted_policy("shop", "shop"), s.ns)
    # A newer operator opened this Incident, its first status (a field this version does not know)
    # in the detection annotation, and stopped before writing the status (the server prunes unknown
    # status fields, but never an annotation).
    first = {"phase": "Detected", "detectedAt": s.at(-5).strftime("%Y-%m-%dT%H:%M:%SZ"), "blastRadius": "3 pods"}
    s.cluster.apply(
        {
            "apiVersion": "hemostat.dev/v1alpha1",
            "kind": "Incident",
            "metadata": {
                "name": "cart-newer",
                "labels": {"hemostat.dev/policy": "shop", "hemostat.dev/target": "cart"},
                "annotations": {"hemostat.dev/detection": json.dumps(first)},
            },
            "spec": {
                "severity": "SEV3",
                "summary": "x",
                "target": {"name": "cart"},
                "source": "policy",
                "policyRef": {"name": "shop"},
            },
        },
        s.ns,
    )
    s.readings[("cart", "err")] = s.readings[("feed", "err")] = BAD

    s.cycle("shop", 0)

    assert s.image("feed") == "app:v1" and s.incident("feed")["status"]["phase"] == "Monitoring"
    assert s.image("cart") == "app:v2", "a target whose incident cannot be read is not acted on"
    assert [i["metadata"]["name"] for i in s.incidents("cart")] == ["cart-newer"], "nor given a second incident"
    error = targets(s, "shop")["cart"]["error"]
    assert error.startswith("incident cart-newer: ") and "blastRadius" in error, error
    assert degraded(s, "shop")["status"] == "True" and "cart-newer" in degraded(s, "shop")["message"]
