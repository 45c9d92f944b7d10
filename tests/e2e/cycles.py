"""Drive policy evaluation cycles by hand: a scripted clock and scripted readings, the real API server.

A whole incident story (breach -> act -> flap during verification -> recover -> crash -> restart)
runs in seconds: no Prometheus, no kopf, no sleeps. Everything the cycle reads and writes goes
through the real kube-apiserver (and the real Deployment controller makes the revisions), so
what a patch clears or keeps is what the server did, not what a dict says.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from conftest import Cluster, deployment, wait_for
from kubernetes import config as kube_config

from hemostat.reading import Reading

# The query every scripted policy uses; the provider below answers it from `Story.readings`.
QUERY = 'scripted{signal="{{ signal }}",deployment="{{ deployment }}"}'
_PARSE = re.compile(r'scripted\{signal="([^"]*)",deployment="([^"]*)"\}')


class Crash(BaseException):
    """Stands for SIGKILL between two API calls: nothing after it in the cycle runs."""


class ScriptedProvider:
    def __init__(self, readings: dict[tuple[str, str], Any]) -> None:
        self.readings = readings
        self.queries: list[str] = []

    async def read(self, query: str) -> Reading:
        self.queries.append(query)
        match = _PARSE.fullmatch(query)
        if match is None:
            return Reading.error("api", f"unscripted query {query!r}", query=query)
        value = self.readings.get((match.group(2), match.group(1)))
        if value is None:
            return Reading.no_data("empty result", query=query)
        if value == "error":
            return Reading.error("timeout", "scripted timeout", query=query)
        return Reading.value_of(float(value), query=query)


def scripted_policy(
    name: str,
    app: str,
    *,
    steps: list[dict[str, Any]] | None = None,
    for_: str = "0s",
    verify_for: str = "40s",
    cooldown: str = "5m",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": name},
        "spec": {
            "target": {"selector": {"matchLabels": {"app": app}}},
            "interval": "10s",
            "signals": [{"name": "err", "prometheus": {"query": QUERY}, "breachWhen": {"above": 0.05}, "for": for_}],
            "mitigation": {"steps": steps if steps is not None else [{"rollback": {}}], "verifyFor": verify_for},
            "guardrails": {"cooldown": cooldown, "maxActionsPerHour": 3},
            **spec,
        },
    }


class Story:
    """One namespace, one operator brain, driven cycle by cycle."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        *,
        crash_after_patch: bool = False,
        notify: bool = False,
        **settings: Any,
    ) -> None:
        self.cluster, self.ns = cluster, namespace
        self.readings: dict[tuple[str, str], Any] = {}
        self.provider = ScriptedProvider(self.readings)
        self.loop = asyncio.new_event_loop()
        self.crash_after_patch = crash_after_patch
        self.notify = notify  # webhooks are delivered (httpx), beside the cycles as in the operator
        self.t0 = datetime.now(UTC).replace(microsecond=0)
        self.settings = settings
        self.engine = self._engine()

    def _engine(self) -> Any:
        from hemostat.cycle.evaluator import Evaluator
        from hemostat.cycle.snapshot import Settings
        from hemostat.kube import Kube

        api = kube_config.new_client_from_config(config_file=self.cluster.kubeconfig)
        kube = Kube(api)
        if self.crash_after_patch:
            original = kube.json_patch_deployment

            async def patch_then_die(*args: Any) -> Any:
                await original(*args)
                raise Crash("killed right after the patch")

            kube.json_patch_deployment = patch_then_die  # type: ignore[method-assign]
        http = httpx.AsyncClient() if self.notify else None
        return Evaluator(
            kube, lambda url: self.provider, Settings("http://prometheus.invalid", **self.settings), http=http
        )

    def restart(self) -> None:
        """A new process: nothing kept in memory survives, the fault is gone."""
        self.crash_after_patch = False
        self.engine = self._engine()

    def at(self, seconds: float) -> datetime:
        return self.t0 + timedelta(seconds=seconds)

    def cycle(self, policy: str, seconds: float, body: dict[str, Any] | None = None) -> None:
        """One evaluation of `policy` at t0+seconds; `body` stands for kopf's cached copy (default: fresh)."""
        cached = body if body is not None else self.policy(policy)
        self.loop.run_until_complete(self.engine.evaluate(cached, now=self.at(seconds)))

    def deliveries(self) -> None:
        """Let the webhook deliveries the cycles started finish (they run beside the loop)."""
        notifier = self.engine.notifier
        while notifier is not None and notifier._tasks:
            self.loop.run_until_complete(asyncio.gather(*notifier._tasks))

    # --- reading the world back -------------------------------------------------------------

    def policy(self, name: str) -> dict[str, Any]:
        return self.cluster.get("mitigationpolicy", name, self.ns)

    def incidents(self, target: str | None = None) -> list[dict[str, Any]]:
        items = json.loads(self.cluster.kubectl("get", "incidents", "-n", self.ns, "-o", "json").stdout)["items"]
        items = [i for i in items if target is None or i["spec"]["target"]["name"] == target]
        return sorted(items, key=lambda i: i["metadata"]["creationTimestamp"])

    def incident(self, target: str) -> dict[str, Any]:
        found = self.incidents(target)
        assert len(found) == 1, f"expected one incident for {target}, found {[i['metadata']['name'] for i in found]}"
        return found[0]

    def deployment(self, name: str) -> dict[str, Any]:
        return self.cluster.get("deployment", name, self.ns)

    def image(self, name: str) -> str:
        return self.deployment(name)["spec"]["template"]["spec"]["containers"][0]["image"]

    # --- setting the world up ---------------------------------------------------------------

    def deploy(self, name: str, *images: str, app: str | None = None) -> None:
        """Create `name` at images[0], then roll out each later image; wait for every revision."""
        labels = {"app": app} if app else {}
        body = deployment(name, image=images[0], labels=labels)
        if app:
            body["spec"]["selector"]["matchLabels"] = {"app": app}
        self.cluster.apply(body, self.ns)
        self._wait_revision(name, 1)
        for number, image in enumerate(images[1:], start=2):
            self.roll_out(name, image)
            self._wait_revision(name, number)

    def roll_out(self, name: str, image: str) -> None:
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
        self.cluster.kubectl("patch", "deployment", name, "-n", self.ns, "--type=strategic", "-p", json.dumps(patch))

    def _wait_revision(self, name: str, number: int) -> None:
        def settled() -> bool:
            d = self.deployment(name)
            rev = (d["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
            return rev == str(number) and d.get("status", {}).get("observedGeneration") == d["metadata"]["generation"]

        wait_for(f"{name} at revision {number}", settled, timeout=60)

    def close(self) -> None:
        self.loop.close()


def stories(cluster: Cluster, namespace: str) -> Iterator[Callable[..., Story]]:
    made: list[Story] = []

    def make(**kwargs: Any) -> Story:
        story = Story(cluster, namespace, **kwargs)
        made.append(story)
        return story

    yield make
    for s in made:
        s.close()
