"""What a guarded patch does on the real API server: status churn passes, a real change conflicts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Cluster
from cycles import Story, stories
from kubernetes import config as kube_config

from hemostat.actions import rollback
from hemostat.kube import Conflict, Kube, merge_patch
from hemostat.models.policy import RollbackStep


@pytest.fixture
def story(testenv: Cluster, crds: None, namespace: str) -> Iterator[Callable[..., Story]]:
    yield from stories(testenv, namespace)


def _plan(s: Story) -> rollback.Plan:
    deployment = s.deployment("web")
    replicasets = json.loads(s.cluster.kubectl("get", "rs", "-n", s.ns, "-o", "json").stdout)["items"]
    planned = rollback.plan(
        rollback.facts_from(deployment, replicasets),
        RollbackStep(),
        incident="web-1",
        index=0,
        detected_revision=2,
        rollout_window=timedelta(hours=1),
        now=datetime.now(UTC),
    )
    assert isinstance(planned, rollback.Plan), planned
    return planned


def _send(s: Story, patch: list[dict]) -> dict:
    kube = Kube(kube_config.new_client_from_config(config_file=s.cluster.kubeconfig))
    return asyncio.run(kube.json_patch_deployment(s.ns, "web", patch))


def test_a_status_update_after_planning_does_not_block_the_rollback(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    planned = _plan(s)
    # The Deployment controller rewrites status all through a rollout; each write is a new resourceVersion.
    s.cluster.kubectl(
        "patch",
        "deployment",
        "web",
        "-n",
        s.ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"collisionCount":7}}',
    )
    _send(s, planned.patch)
    assert s.image("web") == "app:v1"


def test_a_new_rollout_after_planning_conflicts_and_nothing_changes(story) -> None:
    s = story()
    s.deploy("web", "app:v1", "app:v2")
    planned = _plan(s)
    s.roll_out("web", "app:v3")  # a person rolled out a fix meanwhile
    with pytest.raises(Conflict):
        _send(s, planned.patch)
    assert s.image("web") == "app:v3"


def test_a_cleared_status_field_is_cleared_on_the_server(story) -> None:
    s = story()
    s.cluster.apply(
        {
            "apiVersion": "hemostat.dev/v1alpha1",
            "kind": "Incident",
            "metadata": {"name": "i1"},
            "spec": {"severity": "SEV3", "summary": "x", "target": {"name": "web"}},
        },
        s.ns,
    )
    kube = Kube(kube_config.new_client_from_config(config_file=s.cluster.kubeconfig))
    before = {"phase": "Monitoring", "healthySince": "2026-11-23T14:00:00Z", "nextStep": 1}
    after = {"phase": "Monitoring", "nextStep": 1}
    asyncio.run(kube.patch_status("incidents", s.ns, "i1", before))
    asyncio.run(kube.patch_status("incidents", s.ns, "i1", merge_patch(before, after)))
    assert s.cluster.get("incident", "i1", s.ns)["status"] == after
