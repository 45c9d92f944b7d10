"""The watch caches against the real API server: a LIST fills them, WATCH events keep them current."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import Cluster, deployment
from kubernetes import client, config

from hemostat import informer, runtime
from hemostat.cycle import world
from hemostat.models.common import GROUP, VERSION


async def _until(what: str, probe: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def test_the_deployment_cache_follows_the_api_server(testenv: Cluster, namespace: str) -> None:
    testenv.apply(deployment("before", labels={"app": "before", "team": "a"}), namespace)
    config.load_kube_config(testenv.kubeconfig)
    api = client.ApiClient()
    (source,) = informer.sources(api, [namespace], GROUP, VERSION)["deployment_index"]
    seen: list[tuple[str, str]] = []

    async def run() -> informer.Index:
        index = informer.Index()
        i = informer.Informer(
            source, world.target_keys, index, on_change=lambda e, o: seen.append((e, o["metadata"]["name"]))
        )
        i.start()
        try:
            await asyncio.wait_for(i.synced.wait(), 30)
            assert sorted(index.get(namespace)) == ["before"]  # the LIST
            testenv.apply(deployment("after", labels={"app": "after", "team": "a"}), namespace)
            await _until("the new Deployment", lambda: ("ADDED", "after") in seen)
            assert sorted(index.get((namespace, "team", "a"))) == ["after", "before"]
            testenv.kubectl("label", "deployment", "before", "-n", namespace, "team=b", "--overwrite")
            await _until("the label change", lambda: sorted(index.get((namespace, "team", "a")) or ()) == ["after"])
            assert sorted(index.get((namespace, "team", "b"))) == ["before"]
            testenv.kubectl("delete", "deployment", "after", "-n", namespace, "--wait=false")
            await _until("the deletion", lambda: (namespace, "after") not in index)
        finally:
            i.stop()
        return index

    index = asyncio.run(run())
    assert sorted(index.get(namespace)) == ["before"]


def test_a_list_in_pages_fills_the_cache_with_every_object(testenv: Cluster, namespace: str, monkeypatch: Any) -> None:
    monkeypatch.setattr(informer, "PAGE", 2)
    for n in range(5):
        testenv.apply(deployment(f"d{n}", labels={"app": f"d{n}"}), namespace)
    config.load_kube_config(testenv.kubeconfig)
    (source,) = informer.sources(client.ApiClient(), [namespace], GROUP, VERSION)["deployment_index"]
    calls: list[str] = []

    async def run() -> informer.Index:
        index = informer.Index()
        i = informer.Informer(source, world.target_keys, index, on_call=calls.append)
        i.start()
        try:
            await asyncio.wait_for(i.synced.wait(), 30)
        finally:
            i.stop()
        return index

    index = asyncio.run(run())
    assert sorted(index.get(namespace)) == [f"d{n}" for n in range(5)]
    assert calls.count("list Deployment") == 3  # 2 + 2 + 1, continued by the server's token


def test_each_watched_namespace_keeps_its_objects_when_another_lists_again(
    testenv: Cluster, namespace: str, crds: None
) -> None:
    # the operator's own caches for two namespaces: one index per kind, one informer per namespace and kind
    other = f"{namespace}-b"
    testenv.kubectl("create", "namespace", other)
    try:
        owners = {namespace: "web", other: "api"}
        for ns, name in owners.items():
            testenv.apply(deployment(name), ns)
        config.load_kube_config(testenv.kubeconfig)
        uids = {ns: testenv.get("deployment", name, ns)["metadata"]["uid"] for ns, name in owners.items()}

        def owned(index: informer.Index, ns: str) -> list[str]:
            return [rs["metadata"]["name"] for rs in index.get((ns, uids[ns])) or ()]

        async def run() -> None:
            caches = runtime._informers((namespace, other), False, runtime.FastLane(), on_call=None)
            replicasets = caches.indices["replicaset_index"]
            caches.start()
            try:
                await asyncio.wait_for(caches.synced(), 30)
                await _until("both namespaces' ReplicaSets", lambda: all(owned(replicasets, ns) for ns in owners))
                deployments = caches.indices["deployment_index"]
                assert sorted(deployments.get(namespace)) == ["web"] and sorted(deployments.get(other)) == ["api"]
                # a LIST again in one namespace, as after 410 Gone: the other's objects stay, and no event of
                # theirs would bring them back (a steady ReplicaSet is not written to)
                (web_rs,) = [i for i in caches.all if i.source.name == f"ReplicaSets in {namespace}"]
                await asyncio.to_thread(web_rs._list)
                await asyncio.sleep(0.1)
                assert owned(replicasets, other) != [], "api's ReplicaSet was dropped by web's LIST"
                assert owned(replicasets, namespace) != []
            finally:
                caches.stop()

        asyncio.run(run())
    finally:
        testenv.kubectl("delete", "namespace", other, "--wait=false", check=False)
