"""The watch cache's index and what a LIST or a watch event does to it (the thread is e2e)."""

from __future__ import annotations

import asyncio
import json

import pytest

from hemostat import informer as informer_module
from hemostat.cycle import world
from hemostat.informer import STALE_AFTER, Index, Informer, Source


def deployment(name: str, uid: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": labels}, "spec": {}}


def informer(changes: list | None = None) -> Informer:
    source = Source("Deployments in shop", lambda *a, **k: None, ("shop",), "apps/v1", "Deployment")
    on_change = (lambda event, obj: changes.append((event, obj["metadata"]["name"]))) if changes is not None else None
    return Informer(source, world.target_keys, Index(), on_change=on_change)


def names(index: Index, key: object) -> list[str]:
    return sorted(index.get(key) or ())


def test_an_object_is_found_under_each_of_its_keys_and_leaves_the_ones_it_lost() -> None:
    index = Index()
    index.replace("u1", world.target_keys(deployment("web", "u1", app="web", tier="front")))
    assert names(index, ("shop", "tier", "front")) == ["web"]
    index.replace("u1", world.target_keys(deployment("web", "u1", app="web")))  # label removed
    assert ("shop", "tier", "front") not in index
    assert names(index, ("shop", "app", "web")) == ["web"]
    index.discard("u1")
    assert index.get(("shop", "app", "web")) is None
    assert index.get("shop") is None


class Pages:
    """A list function serving `objects` in pages of `limit`, as the API server does with `continue`."""

    def __init__(self, objects: list[dict]) -> None:
        self.objects, self.calls = objects, []

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append(kwargs)
        start = int(kwargs.get("_continue") or 0)
        end = start + int(kwargs["limit"])  # type: ignore[call-overload]
        more = str(end) if end < len(self.objects) else None
        body = {"metadata": {"resourceVersion": "42", "continue": more}, "items": self.objects[start:end]}
        return type("Response", (), {"data": json.dumps(body).encode()})()


def listed(i: Informer, pages: Pages) -> str:
    """Run one LIST as the informer's thread does, then let the loop apply what it posted."""

    async def run() -> str:
        i._loop = asyncio.get_running_loop()
        i.source = Source("Deployments in shop", pages, ("shop",), "apps/v1", "Deployment")
        version = await asyncio.to_thread(i._list)
        await asyncio.sleep(0)
        return version

    return asyncio.run(run())


def test_a_list_comes_in_pages_and_replaces_the_cache_after_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_module, "PAGE", 2)
    i = informer()
    first = Pages([deployment(n, f"u{n}", app=n) for n in "abcde"])
    assert listed(i, first) == "42"
    assert [c.get("_continue") for c in first.calls] == [None, "2", "4"]
    assert {c["limit"] for c in first.calls} == {2}
    assert i.synced.is_set()
    assert names(i.index, "shop") == list("abcde")

    again = Pages([deployment(n, f"u{n}", app=n) for n in "bde"])  # "a" and "c" deleted while the watch was down
    assert listed(i, again) == "42"
    assert names(i.index, "shop") == list("bde")
    assert i.index.get(("shop", "a")) is None


def test_objects_of_the_previous_list_stay_until_the_last_page() -> None:
    i = informer()
    i._listed([deployment("a", "ua", app="a"), deployment("b", "ub", app="b")], first=True, last=True)
    i._listed([deployment("b", "ub", app="b")], first=True, last=False)
    assert names(i.index, "shop") == ["a", "b"]  # a cache that is behind, never one with holes
    i._listed([deployment("c", "uc", app="c")], first=False, last=True)
    assert names(i.index, "shop") == ["b", "c"]


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


def test_a_list_in_one_namespace_keeps_the_objects_another_namespaces_informer_stored() -> None:
    # one index per kind, one informer per watched namespace: a LIST again in "shop" (after 410 Gone, or any
    # watch error) must not take "cart"'s objects with it, which no event of "cart" would bring back
    index = Index()
    shop = Informer(
        Source("Deployments in shop", Pages([]), ("shop",), "apps/v1", "Deployment"), world.target_keys, index
    )
    cart = Informer(
        Source("Deployments in cart", Pages([]), ("cart",), "apps/v1", "Deployment"), world.target_keys, index
    )
    in_cart = {
        **deployment("api", "u-api", app="api"),
        "metadata": {"name": "api", "namespace": "cart", "uid": "u-api"},
    }
    cart._listed([in_cart], first=True, last=True)
    shop._listed([deployment("web", "u-web", app="web")], first=True, last=True)
    assert names(index, "cart") == ["api"]
    shop._listed([deployment("web", "u-web", app="web")], first=True, last=True)  # shop's LIST again
    assert names(index, "cart") == ["api"], "a LIST replaces its own namespace's objects, no other's"
    shop._listed([], first=True, last=True)  # web deleted while shop's watch was down
    assert index.get("shop") is None and names(index, "cart") == ["api"]
