"""Manifests and waits shared by the core-loop e2e tests."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from conftest import Cluster, deployment, wait_for

ERROR_RATE = "sim.hemostat.dev/error-rate"
# 5s rate windows over a 1s scrape interval keep the tests short and the numbers real.
ERROR_RATIO = (
    'sum(rate(http_requests_total{namespace="{{ namespace }}",deployment="{{ deployment }}",code="500"}[5s]))'
    ' / sum(rate(http_requests_total{namespace="{{ namespace }}",deployment="{{ deployment }}"}[5s]))'
)


# The batched form of ERROR_RATIO: one query for every target of the policy, one series each.
# `or ... * 0` keeps a Deployment without errors in the answer (0, not a missing series).
_BY = "sum by (namespace, deployment)"
_ALL = 'rate(http_requests_total{namespace="{{ namespace }}",deployment=~"{{ deployments }}"}[5s])'
_ERRORS = 'rate(http_requests_total{namespace="{{ namespace }}",deployment=~"{{ deployments }}",code="500"}[5s])'
BATCHED_ERROR_RATIO = f"({_BY} ({_ERRORS}) or {_BY} ({_ALL}) * 0) / {_BY} ({_ALL})"


def policy(
    app: str,
    *,
    dry_run: bool = False,
    steps: list[dict[str, Any]] | None = None,
    prometheus_url: str | None = None,
    verify_for: str = "8s",
    for_: str = "2s",
) -> dict[str, Any]:
    prom: dict[str, Any] = {"query": ERROR_RATIO}
    if prometheus_url:
        prom["url"] = prometheus_url
    return {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": app},
        "spec": {
            "target": {"selector": {"matchLabels": {"app": app}}},
            "interval": "1s",
            "signals": [{"name": "error-rate", "prometheus": prom, "breachWhen": {"above": 0.05}, "for": for_}],
            "severity": [{"signal": "error-rate", "above": 0.4, "level": "SEV1"}],
            "mitigation": {"steps": steps if steps is not None else [{"rollback": {}}], "verifyFor": verify_for},
            "guardrails": {"cooldown": "1s", "dryRun": dry_run},
        },
    }


def app(name: str, image: str, error_rate: float = 0.0, replicas: int = 2, **extra: Any) -> dict[str, Any]:
    return deployment(name, image=image, replicas=replicas, annotations={ERROR_RATE: str(error_rate)}, **extra)


def rollout(cluster: Cluster, ns: str, name: str, image: str, error_rate: float) -> None:
    patch = {
        "spec": {
            "template": {
                "metadata": {"annotations": {ERROR_RATE: str(error_rate)}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            }
        }
    }
    cluster.kubectl("patch", "deployment", name, "-n", ns, "--type=strategic", "-p", json.dumps(patch))


def deployment_state(cluster: Cluster, ns: str, name: str) -> tuple[str, str]:
    d = cluster.get("deployment", name, ns)
    return d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], d["spec"]["template"]["spec"][
        "containers"
    ][0]["image"]


def wait_ready(cluster: Cluster, ns: str, name: str) -> None:
    def ready() -> bool:
        d = cluster.get("deployment", name, ns)
        s = d.get("status", {})
        want = d["spec"]["replicas"]
        return (
            s.get("observedGeneration") == d["metadata"]["generation"]
            and s.get("updatedReplicas", 0) == want
            and s.get("readyReplicas", 0) == want
            and s.get("replicas", 0) == want
        )

    wait_for(f"{name} rolled out", ready, timeout=60)


def target_verdict(cluster: Cluster, ns: str, policy_name: str, target: str, signal: str = "error-rate") -> str | None:
    status = cluster.get("mitigationpolicy", policy_name, ns).get("status", {})
    for t in status.get("targets", []):
        if t["name"] == target:
            return t.get("verdicts", {}).get(signal)
    return None


def incidents(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return json.loads(cluster.kubectl("get", "incidents", "-n", ns, "-o", "json").stdout)["items"]


def wait_phase(cluster: Cluster, ns: str, phase: str, timeout: float = 90) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        items = incidents(cluster, ns)
        assert len(items) <= 1, f"more than one incident: {[i['metadata']['name'] for i in items]}"
        return items[0] if items and items[0].get("status", {}).get("phase") == phase else None

    return wait_for(f"an incident in phase {phase}", found, timeout=timeout)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def events(cluster: Cluster, ns: str, kind: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.kind={kind},involvedObject.name={name}",
        "-o",
        "json",
    ).stdout
    return json.loads(out)["items"]


def hemostat(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    """The `hemostat` command as a person runs it, against the test cluster."""
    return subprocess.run(
        [sys.executable, "-m", "hemostat", *args], capture_output=True, text=True, env=cluster.env, timeout=60
    )


def incident_of(cluster: Cluster, ns: str, target: str) -> dict[str, Any] | None:
    return next((i for i in incidents(cluster, ns) if i["spec"]["target"]["name"] == target), None)


def rolled_back(cluster: Cluster, ns: str, target: str) -> dict[str, Any]:
    """The target's Incident once a rollback of it succeeded; its timeline and verdict shown if none comes."""

    def probe() -> dict[str, Any] | None:
        inc = incident_of(cluster, ns, target)
        actions = (inc or {}).get("status", {}).get("actions", [])
        return inc if any(a["step"] == "rollback" and a["result"] == "Succeeded" for a in actions) else None

    try:
        found: dict[str, Any] = wait_for(f"{target} rolled back", probe, timeout=90)
    except AssertionError:
        seen = (incident_of(cluster, ns, target) or {}).get("status", {})
        raise AssertionError(json.dumps(seen.get("timeline"), indent=1) + json.dumps(seen.get("attribution"))) from None
    return found


def flux_sync(cluster: Cluster, ns: str, url: str, interval_s: int) -> None:
    """A GitRepository `shop` on `url` and a Kustomization `shop` applying its ./deploy into `ns`, both
    every `interval_s` seconds (Flux's source- and kustomize-controller must run)."""
    every = f"{interval_s}s"
    source = {"url": url, "ref": {"branch": "main"}, "interval": every, "timeout": "20s"}
    cluster.apply(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "shop"},
            "spec": source,
        },
        ns,
    )
    sync = {
        "sourceRef": {"kind": "GitRepository", "name": "shop"},
        "path": "./deploy",
        "interval": every,
        "retryInterval": every,
        "timeout": "30s",
        "prune": False,
        "targetNamespace": ns,
    }
    cluster.apply(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "shop"},
            "spec": sync,
        },
        ns,
    )
