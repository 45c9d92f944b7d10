"""Read: the only I/O before the decision; builds the Snapshot.

Everything the decision needs is read here, once, at the start of the cycle: the policy
as the API server has it now (one GET: never kopf's cached copy, which a dead watch would
freeze), its targets, their ReplicaSets and HPAs and its Incidents from the World (watch
caches in the operator, see world.py), the flag sources its steps change (GETs), and every
signal reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from ..actions import steps
from ..decide import progress, reconcilers
from ..kube import Kube, selector_string
from ..models.common import LabelSelector
from ..models.policy import (
    AlertSignal,
    MitigationPolicySpec,
    MitigationPolicyStatus,
    PrometheusQuery,
    Signal,
    TargetStatus,
)
from ..reading import Reading, Series
from ..signals.base import render_query, split, split_by_revision, targets_regex
from .snapshot import (
    EXPIRED_PER_CYCLE,
    PAUSED,
    Body,
    Settings,
    Snapshot,
    TargetView,
    adoptable,
    is_expired,
    is_open,
    is_unsent,
    known_status,
    one_line,
    open_incident,
    parse_spec,
    promql,
)
from .world import World

GATE = "minTraffic"  # the key of the traffic gate among a target's readings
TRAFFIC = "attribution.traffic"  # the key of the surge query


class Reader(Protocol):
    asked: int  # queries sent so far: the round's cost in the operator's shared query slots

    async def read_signal(self, url: str | None, query: str) -> Reading: ...

    async def read_series(self, url: str | None, query: str) -> list[Series] | Reading: ...

    def read_alerts(
        self, signal: AlertSignal, namespace: str, targets: list[str], now: datetime
    ) -> dict[str, Reading]: ...


Readings = dict[str, dict[str, tuple[str, Reading]]]  # target -> key -> (query, reading)


async def read_signals(
    spec: MitigationPolicySpec, namespace: str, policy: str, targets: list[str], reader: Reader, now: datetime
) -> Readings:
    """Every reading of the round: a batched query once for all targets, the others per target; alert
    signals from the alerts Alertmanager sent (no query)."""
    wanted = [(s.name, pq) for s, pq in promql(spec)]
    if spec.min_traffic is not None:
        wanted.append((GATE, spec.min_traffic.prometheus))
    if spec.attribution.mode != "off" and spec.attribution.traffic is not None:
        wanted.append((TRAFFIC, spec.attribution.traffic.prometheus))
    out: Readings = {t: {} for t in targets}
    for s in spec.signals:
        if s.alert is not None:
            for t, reading in reader.read_alerts(s.alert, namespace, targets, now).items():
                out[t][s.name] = (reading.query, reading)

    async def batched(key: str, pq: PrometheusQuery) -> None:
        assert pq.batch is not None
        variables = {"namespace": namespace, "policy": policy, "signal": key, "deployments": targets_regex(targets)}
        query = render_query(pq.query, variables)
        answer = await reader.read_series(pq.url, query)
        b = pq.batch
        for target, reading in split(answer, targets, namespace, b.deployment_label, b.namespace_label, query).items():
            out[target][key] = (query, reading)

    async def one(key: str, pq: PrometheusQuery, target: str) -> None:
        variables = {"namespace": namespace, "deployment": target, "policy": policy, "signal": key}
        query = render_query(pq.query, variables)
        out[target][key] = (query, await reader.read_signal(pq.url, query))

    await asyncio.gather(
        *(batched(k, pq) for k, pq in wanted if pq.batch is not None and targets),
        *(one(k, pq, t) for k, pq in wanted if pq.batch is None for t in targets),
    )
    return out


ByRevision = dict[str, dict[str, dict[str, Reading] | Reading]]  # target -> signal -> hash -> reading


async def read_revisions(
    spec: MitigationPolicySpec, namespace: str, policy: str, targets: list[str], reader: Reader
) -> ByRevision:
    """The signals that have a per-revision form, split by target and revision (attribution's contrast)."""
    out: ByRevision = {t: {} for t in targets}

    async def batched(signal: Signal, pq: PrometheusQuery) -> None:
        assert signal.by_revision is not None and pq.batch is not None
        b = pq.batch
        variables = {"namespace": namespace, "policy": policy, "signal": signal.name}
        query = render_query(signal.by_revision.query, {**variables, "deployments": targets_regex(targets)})
        answer = await reader.read_series(pq.url, query)
        label = signal.by_revision.revision_label
        found = split_by_revision(answer, targets, namespace, label, (b.deployment_label, b.namespace_label), query)
        for t in targets:
            out[t][signal.name] = found if isinstance(found, Reading) else found[t]

    async def one(signal: Signal, pq: PrometheusQuery, target: str) -> None:
        assert signal.by_revision is not None
        variables = {"namespace": namespace, "deployment": target, "policy": policy, "signal": signal.name}
        query = render_query(signal.by_revision.query, variables)
        answer = await reader.read_series(pq.url, query)
        found = split_by_revision(answer, [target], namespace, signal.by_revision.revision_label, None, query)
        out[target][signal.name] = found if isinstance(found, Reading) else found[target]

    split_signals = [(s, pq) for s, pq in promql(spec) if s.by_revision is not None and spec.attribution.mode != "off"]
    await asyncio.gather(
        *(batched(s, pq) for s, pq in split_signals if pq.batch is not None and targets),
        *(one(s, pq, t) for s, pq in split_signals if pq.batch is None for t in targets),
    )
    return out


async def read(
    kube: Kube,
    world: World,
    namespace: str,
    name: str,
    settings: Settings,
    reader: Reader,
    now: datetime,
    trust_unwritten: bool = True,
    vet: Vet | None = None,
) -> Snapshot | None:
    """The snapshot of policy namespace/name, or None when the policy no longer exists. Without
    `trust_unwritten` (the admission policy that keeps the detection annotation the operator's is not in
    force), an Incident whose status the operator never wrote is not adopted. `vet` says why a person's
    approval decision was not checked by the admission policy (None: it was)."""
    body = await kube.get_policy(namespace, name)
    if body is None:
        return None
    meta = body["metadata"]
    written = known_status(body)
    try:
        status = MitigationPolicyStatus.model_validate(written)
    except ValidationError:  # written by another version: start over rather than stop
        status = MitigationPolicyStatus()
    spec, invalid = parse_spec(body, settings)
    base = Snapshot(
        namespace=namespace,
        name=name,
        generation=meta.get("generation"),
        resource_version=meta["resourceVersion"],
        uid=meta.get("uid", ""),
        spec=spec,
        invalid=invalid,
        status=status,
        written=written,
        paused=(meta.get("annotations") or {}).get(PAUSED) == "true" or bool(spec and spec.guardrails.paused),
        settings=settings,
    )
    if spec is None:
        return base

    wanted = steps.sources(spec.mitigation.steps)
    needs_hpas = "hpas" in steps.reads(spec.mitigation.steps)
    deployments = await world.targets(namespace, spec.target.selector, spec.target.kind)
    replicasets, incidents, hpas, found = await asyncio.gather(
        world.replicasets(namespace, [d["metadata"]["uid"] for d in deployments]),
        world.incidents(namespace, name),
        world.hpas(namespace) if needs_hpas else nothing(),
        asyncio.gather(*(source(kube, namespace, kind, obj) for kind, obj in wanted)),
    )
    incidents = [i for i in incidents if adoptable(i, name) and (trust_unwritten or status_written(i))]
    previous = {t.name: t for t in status.targets}
    names = [d["metadata"]["name"] for d in deployments]
    stalled = [d for d in deployments if progress.stalled(d)]
    readings, revisions, pods = await asyncio.gather(
        read_signals(spec, namespace, name, names, reader, now),
        read_revisions(spec, namespace, name, names, reader),
        asyncio.gather(*(stalled_pods(kube, namespace, d["spec"]["selector"]) for d in stalled)),
    )
    pods_of = {d["metadata"]["name"]: found for d, found in zip(stalled, pods, strict=True)}
    views = [
        _view(d, incidents, previous.get(n), readings[n], revisions[n], pods_of.get(n))
        for d, n in zip(deployments, names, strict=True)
    ]
    views = list(await asyncio.gather(*(vetted(v, vet) for v in views)))
    owners = await read_owners(kube, spec, [v.deployment for v in views if v.incident is not None])
    expired = tuple(i["metadata"]["name"] for i in incidents if is_expired(i, settings.incident_retention, now))
    return replace(
        base,
        targets=tuple(sorted(views, key=lambda v: v.name)),
        replicasets=tuple(replicasets),
        hpas=tuple(hpas),
        sources=dict(zip(wanted, found, strict=True)),
        owners=owners,
        expired=expired[:EXPIRED_PER_CYCLE],
        unsent=tuple(
            i for i in incidents if is_unsent(i, now, bool(spec.notify.webhooks), bool(spec.notify.pages.levels))
        ),
        queries=reader.asked,
    )


Vet = Callable[[str, str], Awaitable[str | None]]  # (namespace, Incident) -> why its approval was not checked


async def vetted(view: TargetView, vet: Vet | None) -> TargetView:
    """The view, with why a decision awaiting the operator was not checked, only when there is one."""
    found = view.incident
    if vet is None or found is None or found.spec.approval is None or found.status.approval is None:
        return view
    if found.status.approval.decision is not None or found.spec.approval.request != found.status.approval.request:
        return view
    meta = found.body["metadata"]
    return replace(view, approval_problem=await vet(meta["namespace"], meta["name"]))


def status_written(incident: Body) -> bool:
    """The operator wrote the Incident's status (RBAC: no role but the operator's writes status)."""
    return bool((incident.get("status") or {}).get("phase"))


async def nothing() -> list[Body]:
    return []


async def read_owners(kube: Kube, spec: MitigationPolicySpec, acting: list[Body]) -> dict[Any, Body | str | None]:
    """The reconciler objects a step may pause (HelmReleases, Argo CD Applications), only for targets with
    an open Incident: a steady round reads none."""
    if spec.mitigation.gitops != "pause":
        return {}
    wanted = {r for d in acting if (r := reconcilers.reconciler_of(d["metadata"])) and r.kind in reconcilers.API}

    async def one(r: reconcilers.Reconciler) -> Body | str | None:
        try:
            return await kube.get_custom(reconcilers.API[r.kind], r.namespace, r.name)
        except Exception as exc:  # forbidden, not installed: the step is skipped saying so
            return one_line(exc)

    found = await asyncio.gather(*(one(r) for r in wanted))
    return dict(zip(wanted, found, strict=True))


async def stalled_pods(kube: Kube, namespace: str, selector: dict[str, object]) -> tuple[Body, ...] | str:
    """The Pods of a Deployment whose rollout stalled: only then, so a steady round reads no Pods."""
    try:
        found = await kube.list_pods(namespace, selector_string(LabelSelector.model_validate(selector)))
    except Exception as exc:  # the clue says it could not tell; the breach itself stands
        return one_line(exc)
    return tuple(progress.trim_pod(p) for p in found)


async def source(kube: Kube, namespace: str, kind: str, name: str) -> Body | None:
    if kind == "FeatureFlag":
        return await kube.get_featureflag(namespace, name)
    return await kube.get_configmap(namespace, name)


def _view(
    deployment: Body,
    incidents: list[Body],
    previous: TargetStatus | None,
    readings: dict[str, tuple[str, Reading]],
    by_revision: dict[str, dict[str, Reading] | Reading],
    pods: tuple[Body, ...] | str | None = None,
) -> TargetView:
    dname = deployment["metadata"]["name"]
    signals = {k: v for k, v in readings.items() if k not in (GATE, TRAFFIC)}
    kind = deployment.get("kind", "Deployment")  # a policy that changed its target kind leaves the old ones be
    mine = [i for i in incidents if i["spec"]["target"]["name"] == dname and i["spec"]["target"].get("kind") == kind]
    newest = max(mine, key=lambda i: i["metadata"]["creationTimestamp"], default=None)
    open_ = sorted((i for i in mine if is_open(i)), key=lambda i: i["metadata"]["creationTimestamp"])
    incident, error = None, None
    if open_:
        try:
            incident = open_incident(open_[0])
        except (ValidationError, ValueError) as exc:
            error = f"incident {open_[0]['metadata']['name']}: {one_line(exc)}"
    return TargetView(
        name=dname,
        deployment=deployment,
        readings={k: r for k, (_, r) in signals.items()},
        queries={k: q for k, (q, _) in signals.items()},
        gate=readings[GATE][1] if GATE in readings else None,
        traffic=readings[TRAFFIC][1] if TRAFFIC in readings else None,
        by_revision=by_revision,
        pods=pods,
        previous=previous,
        incident=incident,
        last_incident=newest,
        error=error,
    )
