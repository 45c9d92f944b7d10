"""The watch caches: selectors evaluated as the API server does, trimmed copies that plan the same."""

from __future__ import annotations

import asyncio

import pytest
from test_rollback_plan import deployment_obj, history

from hemostat.actions import rollback
from hemostat.cycle import world
from hemostat.kube import matches
from hemostat.models.common import LabelSelector


def selector(**raw) -> LabelSelector:
    return LabelSelector.model_validate(raw)


@pytest.mark.parametrize(
    ("raw", "labels", "expected"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "web", "tier": "x"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "api"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}, {"tier": "b"}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "a"}, False),
        ({"matchExpressions": [{"key": "canary", "operator": "Exists"}]}, {"canary": ""}, True),
        ({"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}, {"canary": ""}, False),
        ({}, {"anything": "x"}, True),
    ],
)
def test_selectors_match_as_the_api_server_matches(raw: dict, labels: dict, expected: bool) -> None:
    assert matches(selector(**raw), labels) is expected


def test_trimmed_copies_plan_the_same_rollback() -> None:
    dep, rss = deployment_obj(3, "v3"), history()
    full = rollback.facts_from(dep, rss)
    trimmed = rollback.facts_from(world.trim_deployment(dep), [world.trim_replicaset(rs) for rs in rss])
    assert trimmed == full


def test_an_incident_created_but_not_yet_cached_is_seen_until_the_cache_has_it() -> None:
    body = {"metadata": {"name": "web-1", "namespace": "shop", "labels": {"hemostat.dev/policy": "errors"}}}
    cached: dict = {"incident_index": {}}
    w = world.Cached(cached, {})
    w.created(body)
    assert [i["metadata"]["name"] for i in asyncio.run(w.incidents("shop", "errors"))] == ["web-1"]
    assert asyncio.run(w.incidents("shop", "latency")) == []
    cached["incident_index"] = {("shop", "errors"): [body]}  # the watch delivered it
    assert len(asyncio.run(w.incidents("shop", "errors"))) == 1
