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
    trimmed = rollback.facts_from(world.trim_target(dep), [world.trim_replicaset(rs) for rs in rss])
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


class Index(dict):
    """A kopf index as the handlers fill it: key -> the values of every object under that key."""

    def add(self, keys: dict) -> None:
        for key, value in keys.items():
            self.setdefault(key, []).append(value)


def dep(name: str, ns: str = "shop", **labels: str) -> dict:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels},
        "spec": {"replicas": 1, "template": {}},
    }


def cached_world(*deployments: dict, replicasets: tuple[dict, ...] = ()) -> world.Cached:
    deps, rss = Index(), Index()
    for d in deployments:
        deps.add(world.target_keys(d))
    for rs in replicasets:
        rss.add(world.replicaset_keys(rs))
    return world.Cached({"deployment_index": deps, "replicaset_index": rss}, {})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"matchLabels": {"app": "web"}}, ["web-a", "web-b"]),
        ({"matchLabels": {"app": "web", "tier": "front"}}, ["web-a"]),
        ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, ["web-b"]),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, ["api", "web-a"]),
        ({}, ["api", "web-a", "web-b"]),
        ({"matchLabels": {"app": "nothing"}}, []),
    ],
)
def test_cached_deployments_are_found_by_label_as_the_api_server_selects_them(raw: dict, expected: list) -> None:
    w = cached_world(
        dep("web-a", app="web", tier="front"),
        dep("web-b", app="web"),
        dep("api", app="api", tier="back"),
        dep("other-ns", ns="elsewhere", app="web"),
    )
    assert [d["metadata"]["name"] for d in asyncio.run(w.targets("shop", selector(**raw), "Deployment"))] == expected


def test_cached_replicasets_are_those_owned_by_the_round_s_deployments() -> None:
    def rs(name: str, *owners: str) -> dict:
        refs = [{"uid": f"uid-{o}", "kind": "Deployment", "name": o} for o in owners]
        return {"metadata": {"name": name, "namespace": "shop", "ownerReferences": refs}, "spec": {"template": {}}}

    w = cached_world(replicasets=(rs("web-1", "web"), rs("web-2", "web"), rs("api-1", "api"), rs("orphan")))
    found = asyncio.run(w.replicasets("shop", ["uid-web"]))
    assert sorted(r["metadata"]["name"] for r in found) == ["web-1", "web-2"]
    assert asyncio.run(w.replicasets("shop", [])) == []


def test_a_manual_request_finds_its_deployment_by_name_in_the_cache() -> None:
    w = cached_world(dep("web", app="web"), dep("web", ns="elsewhere"))
    found = asyncio.run(w.target("shop", "web", "Deployment"))
    assert found is not None and found["metadata"]["uid"] == "uid-web" and found["metadata"]["namespace"] == "shop"
    assert asyncio.run(w.target("shop", "nope", "Deployment")) is None
