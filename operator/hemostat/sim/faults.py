"""Faults that live outside the Deployments: a failing dependency, a traffic surge, bad data.

A fault on a Pod's annotations leaves with the Pod, so a rollback "fixes" it; these do not. Each
names a namespace and Deployments (none: every Deployment of the namespace) and hits every Ready
Pod of them whatever its revision, Pods created after the fault began included. They are declared
through the simulator's HTTP API (`PUT /faults`, `GET /faults`), so a test starts and ends them:

    {"faults": [
      {"kind": "dependency", "namespace": "shop", "deployments": ["web", "cart"], "errorRate": 0.3},
      {"kind": "surge", "namespace": "shop", "deployments": ["web"], "factor": 5},
      {"kind": "noTraffic" | "scrapeGap" | "counterReset", "namespace": "shop", "deployments": ["web"]}
    ]}

- dependency: each request also fails with `errorRate` and takes `latencyMs` longer;
- surge: `factor` times the requests; past a Pod's `capacity-rps` the excess fails and latency grows
  as in the capacity model;
- noTraffic: no requests at all; scrapeGap: the series leave the exposition (Prometheus sees them go
  stale); counterReset: the counters restart from zero once, as after a process restart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from .behaviour import CAPACITY_RPS, OVERLOAD_SLOWDOWN, Behaviour, ReadyPod, positive

Kind = Literal["dependency", "surge", "noTraffic", "scrapeGap", "counterReset"]
KINDS: tuple[str, ...] = ("dependency", "surge", "noTraffic", "scrapeGap", "counterReset")


class FaultError(ValueError):
    """A fault declaration that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Fault:
    kind: str
    namespace: str
    deployments: frozenset[str] = frozenset()  # empty: every Deployment of the namespace
    error_rate: float = 0.0
    latency_ms: float = 0.0
    factor: float = 1.0

    def hits(self, namespace: str, deployment: str) -> bool:
        return namespace == self.namespace and (not self.deployments or deployment in self.deployments)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "namespace": self.namespace, "deployments": sorted(self.deployments)}
        if self.kind == "dependency":
            out |= {"errorRate": self.error_rate, "latencyMs": self.latency_ms}
        if self.kind == "surge":
            out["factor"] = self.factor
        return out


def _number(raw: dict[str, Any], key: str, default: float, low: float, high: float, where: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{where}.{key}: expected a number, got {value!r}")
    if not low <= value <= high:
        raise FaultError(f"{where}.{key}: {value:g} is outside [{low:g}, {high:g}]")
    return float(value)


def parse(body: Any) -> list[Fault]:
    """The faults of a `PUT /faults` body; raises FaultError naming the first bad field."""
    if not isinstance(body, dict) or not isinstance(body.get("faults"), list):
        raise FaultError('expected {"faults": [...]}')
    out = []
    for i, raw in enumerate(body["faults"]):
        where = f"faults[{i}]"
        if not isinstance(raw, dict):
            raise FaultError(f"{where}: expected an object")
        kind, namespace, deployments = raw.get("kind"), raw.get("namespace"), raw.get("deployments", [])
        if kind not in KINDS:
            raise FaultError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(namespace, str) or not namespace:
            raise FaultError(f"{where}.namespace: expected a namespace")
        if not isinstance(deployments, list) or not all(isinstance(d, str) and d for d in deployments):
            raise FaultError(f"{where}.deployments: expected a list of Deployment names")
        out.append(
            Fault(
                kind=kind,
                namespace=namespace,
                deployments=frozenset(deployments),
                error_rate=_number(raw, "errorRate", 0.0, 0.0, 1.0, where),
                latency_ms=_number(raw, "latencyMs", 0.0, 0.0, 60_000.0, where),
                factor=_number(raw, "factor", 1.0, 0.0, 1000.0, where),
            )
        )
    return out


def _apply(fault: Fault, pod: ReadyPod) -> ReadyPod:
    b = pod.behaviour
    if fault.kind == "dependency":
        failing = 1.0 - (1.0 - b.error_rate) * (1.0 - fault.error_rate)  # either may fail a request
        return replace(pod, behaviour=Behaviour(failing, b.latency_ms + fault.latency_ms, b.rps))
    if fault.kind == "surge":
        rps = b.rps * fault.factor
        cap = positive(pod.annotations, CAPACITY_RPS)
        if cap is None or rps <= cap:
            return replace(pod, behaviour=Behaviour(b.error_rate, b.latency_ms, rps))
        overload = rps / cap - 1.0
        failing = 1.0 - (1.0 - b.error_rate) * (cap / rps)  # what the Pod cannot serve fails
        return replace(pod, behaviour=Behaviour(failing, b.latency_ms * (1.0 + OVERLOAD_SLOWDOWN * overload), rps))
    if fault.kind == "noTraffic":
        return replace(pod, behaviour=Behaviour(b.error_rate, b.latency_ms, 0.0))
    return pod  # scrapeGap and counterReset act on the exposition (TrafficMetrics)


class Faults:
    """The faults in force: an Effect for the traffic model, and which series the exposition hides.
    A counterReset happens once, when declared, and is not kept."""

    def __init__(self) -> None:
        self._faults: tuple[Fault, ...] = ()  # replaced whole: readers on other threads need no lock

    def replace(self, faults: Sequence[Fault]) -> None:
        self._faults = tuple(f for f in faults if f.kind != "counterReset")

    def current(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self._faults]

    def hidden(self, namespace: str, deployment: str) -> bool:
        return any(f.kind == "scrapeGap" and f.hits(namespace, deployment) for f in self._faults)

    def __call__(self, pods: Sequence[ReadyPod]) -> Sequence[ReadyPod]:
        faults = self._faults
        if not faults:
            return pods
        out = []
        for pod in pods:
            for fault in faults:
                if fault.hits(pod.ref.namespace, pod.ref.deployment):
                    pod = _apply(fault, pod)
            out.append(pod)
        return out
