"""The watch cache's index and what a LIST or a watch event does to it (the thread is e2e)."""

from __future__ import annotations

import asyncio

from hemostat.cycle import world
from hemostat.informer import STALE_AFTER, Index, Informer, Source


def deployment(name: str, uid: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": labels}, "spec": {}}


def informer(changes: list | None = None) -> Informer:
    source = Source("Deployments in shop", lambda *a, **k: None, ("shop",), "apps/v1", "Deployment")
    on_change = (lambda event, obj: changes.append((event, obj["metadata"]["name"]))) if changes is not None else None
    return Informer(source, world.deployment_keys, Index(), on_change=on_change)


def names(index: Index, key: object) -> list[str]:
    return sorted(index.get(key) or ())


def test_an_object_is_found_under_each_of_its_keys_and_leaves_the_ones_it_lost() -> None:
    index = Index()
    index.replace("u1", world.deployment_keys(deployment("web", "u1", app="web", tier="front")))
    assert names(index, ("shop", "tier", "front")) == ["web"]
    index.replace("u1", world.deployment_keys(deployment("web", "u1", app="web")))  # label removed
    assert ("shop", "tier", "front") not in index
    assert names(index, ("shop", "app", "web")) == ["web"]
    index.discard("u1")
    assert index.get(("shop", "app", "web")) is None
    assert index.uids() == set()


def test_a_list_replaces_the_cache_and_drops_what_was_deleted_meanwhile() -> None:
    async def run() -> Informer:
        i = informer()
        i._relisted([deployment("a", "ua", app="a"), deployment("b", "ub", app="b")])
        assert i.synced.is_set()
        i._relisted([deployment("b", "ub", app="b")])  # "a" deleted while the watch was down
        return i

    i = asyncio.run(run())
    assert names(i.index, "shop") == ["b"]
    assert i.index.get(("shop", "a")) is None


def test_watch_events_update_the_cache_then_tell_the_listener() -> None:
    changes: list = []
    i = informer(changes)
    i._changed("ADDED", deployment("web", "u1", app="web"))
    (stored,) = i.index.get(("shop", "web"))
    assert (stored["apiVersion"], stored["kind"]) == (
        "apps/v1",
        "Deployment",
    )  # watch objects carry them; LIST items don't
    i._changed("DELETED", deployment("web", "u1", app="web"))
    assert i.index.get(("shop", "web")) is None
    assert changes == [("ADDED", "web"), ("DELETED", "web")]


def test_a_silent_watch_is_stale() -> None:
    i = informer()
    assert i.stale(i.last_contact + STALE_AFTER - 1) is None
    assert i.stale(i.last_contact + STALE_AFTER + 1) == (
        f"the watch of Deployments in shop has been silent for {STALE_AFTER + 1:.0f}s"
    )
