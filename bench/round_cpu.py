"""CPU of the operator's own code for one round at scale, without a control plane or Prometheus.

    python bench/round_cpu.py [--deployments 10000] [--policies 1 100] [--rounds 5]

Everything is the real cycle (read -> decide -> apply over the watch-cache World, batched
signals split per target, the policy status built and diffed) except the two edges: the
API server is an in-memory policy store and Prometheus answers each batched query with one
healthy series per Deployment the query names. What it measures is what the operator's
process spends per round before any network wait: at interval 10s on a 2-core machine
shared with the control plane, this must stay a small fraction of the interval.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import re
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BATCHED_SIGNALS, _write

from hemostat.cycle import world
from hemostat.cycle.evaluator import Evaluator
from hemostat.cycle.snapshot import Settings
from hemostat.decide.conditions import EVALUATION_FAILED
from hemostat.informer import Index
from hemostat.reading import Reading, Series

NS = "scale"
NAMES = re.compile(r'deployment=~"([^"]*)"')


def objects(n: int, policies: int) -> world.Cached:
    deployments, replicasets = Index(), Index()  # the watch caches' own index
    for i in range(n):
        name, uid = f"svc-{i:05d}", f"uid-{i}"
        template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "v1"}]}}
        meta = {"namespace": NS, "resourceVersion": str(i), "creationTimestamp": "2026-12-04T10:00:00Z"}
        deployments.replace(
            uid,
            world.target_keys(
                {
                    "metadata": {
                        **meta,
                        "name": name,
                        "uid": uid,
                        "generation": 1,
                        "labels": {"app": name, "group": f"g{i % policies}"},
                        "annotations": {"deployment.kubernetes.io/revision": "1"},
                    },
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
                }
            ),
        )
        replicasets.replace(
            f"rs-{uid}",
            world.replicaset_keys(
                {
                    "metadata": {
                        **meta,
                        "name": f"{name}-5d8f",
                        "uid": f"rs-{uid}",
                        "labels": {"app": name, "pod-template-hash": "5d8f"},
                        "annotations": {"deployment.kubernetes.io/revision": "1"},
                        "ownerReferences": [{"uid": uid, "kind": "Deployment", "name": name}],
                        "managedFields": [{"time": "2026-12-04T10:00:00Z", "manager": "kube-controller-manager"}],
                    },
                    "spec": {"template": template},
                }
            ),
        )
    indices = {"deployment_index": deployments, "replicaset_index": replicasets, "hpa_index": {}, "incident_index": {}}
    return world.Cached(indices, {})


class PolicyStore:
    """The API server's side of a policy: GET it, merge-patch its status."""

    def __init__(self, policies: int) -> None:
        self.bodies = {
            f"group-{p}": {
                "apiVersion": "hemostat.dev/v1alpha1",
                "kind": "MitigationPolicy",
                "metadata": {"name": f"group-{p}", "namespace": NS, "uid": f"p{p}", "resourceVersion": "1"},
                "spec": {
                    "target": {"selector": {"matchLabels": {"group": f"g{p}"}}},
                    "interval": "10s",
                    "signals": BATCHED_SIGNALS,
                    "mitigation": {"steps": [{"rollback": {}}], "rolloutWatch": {"window": "0s"}},
                },
                "status": {},
            }
            for p in range(policies)
        }
        self.writes = 0

    async def get_policy(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.bodies[name])

    async def patch_status(self, plural: str, namespace: str, name: str, patch: dict[str, Any], *_: Any) -> Any:
        self.writes += 1
        body = self.bodies[name]
        status = {**body["status"], **json.loads(json.dumps(patch))}
        body["status"] = {k: v for k, v in status.items() if v is not None}
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(body)  # the API server answers with the object written


class Healthy:
    """Prometheus: one healthy series for each Deployment a batched query names."""

    async def read_all(self, query: str) -> list[Series]:
        value = 0.0 if 'code="500"' in query else 5.0
        names = NAMES.search(query)
        return [
            Series({"namespace": NS, "deployment": n}, Reading.value_of(value, query=query))
            for n in (names.group(1).split("|") if names else [])
        ]


def measure(deployments: int, policies: int, rounds: int) -> dict[str, Any]:
    tracemalloc.start()
    cache = objects(deployments, policies)
    cache_bytes = tracemalloc.get_traced_memory()[0]  # what the trimmed objects and their keys hold
    tracemalloc.stop()
    store = PolicyStore(policies)
    evaluator = Evaluator(store, lambda url: Healthy(), Settings("http://prometheus"))  # type: ignore[arg-type]

    async def run() -> list[float]:
        times, start = [], datetime.now(UTC)
        for i in range(rounds + 1):  # the first round writes every status: a warm-up
            started = time.process_time()
            for body in store.bodies.values():  # each round is one interval later, as in the operator
                await evaluator.evaluate(body, now=start + timedelta(seconds=10 * i), world=cache)
            times.append(time.process_time() - started)
        return times[1:]

    times = asyncio.run(run())
    failed = [
        f"{name}: {x['message']}"
        for name, body in store.bodies.items()
        for x in body["status"].get("conditions", [])
        if x["reason"] == EVALUATION_FAILED and x["status"] == "True"
    ]
    if failed:  # a round that failed measures the error path, not the cycle
        raise SystemExit(f"{len(failed)} of {policies} policies failed to evaluate, e.g. {failed[0]}")
    status = next(iter(store.bodies.values()))["status"]
    return {
        "deployments": deployments,
        "policies": policies,
        "rounds": rounds,
        "cpu_s_per_round_p50": round(statistics.median(times), 3),
        "cpu_s_per_round_max": round(max(times), 3),
        "cache_mib": round(cache_bytes / 2**20, 1),
        "targets_in_first_status": len(status.get("targets") or []),
        "status_bytes": len(json.dumps(status)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=10000)
    parser.add_argument("--policies", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = [measure(args.deployments, p, args.rounds) for p in args.policies]
    _write("round-cpu", {"kind": "round-cpu", "at": datetime.now(UTC).isoformat(), "layouts": results})
    print(f"\nCPU of one round (operator code only), {args.deployments} Deployments, 2 batched signals:")
    print(f"  {'policies':>8} {'CPU s/round p50':>16} {'max':>7} {'status bytes':>13} {'cache MiB':>10}")
    for r in results:
        print(
            f"  {r['policies']:>8} {r['cpu_s_per_round_p50']:>16} {r['cpu_s_per_round_max']:>7} "
            f"{r['status_bytes']:>13} {r['cache_mib']:>10}"
        )


if __name__ == "__main__":
    main()
