"""Read: the only I/O before the decision; builds the Snapshot.

Everything the decision needs is read here, once, at the start of the cycle: the policy
as the API server has it now (never kopf's cached copy, which a dead watch would freeze),
its targets and their ReplicaSets, the objects its steps change, its open Incidents and
every signal reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from pydantic import ValidationError

from ..actions import steps
from ..kube import Kube, selector_string
from ..models.policy import MitigationPolicySpec, MitigationPolicyStatus, TargetStatus
from ..signals.base import Reading, render_query
from .snapshot import (
    EXPIRED_PER_CYCLE,
    PAUSED,
    POLICY_LABEL,
    Body,
    Settings,
    Snapshot,
    TargetView,
    is_expired,
    is_open,
    known_status,
    one_line,
    open_incident,
    parse_spec,
)

Reader = Callable[[str | None, str], Awaitable[Reading]]  # (url, query) -> reading


async def read(
    kube: Kube, namespace: str, name: str, settings: Settings, reader: Reader, now: datetime
) -> Snapshot | None:
    """The snapshot of policy namespace/name, or None when the policy no longer exists."""
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
        uid=meta["uid"],
        generation=meta.get("generation"),
        resource_version=meta["resourceVersion"],
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
    needs_hpas = any(s.scale_up is not None for s in spec.mitigation.steps)
    deployments, replicasets, incidents, hpas, *found = await asyncio.gather(
        kube.list_deployments(namespace, selector_string(spec.target.selector)),
        kube.list_replicasets(namespace),
        kube.list_incidents(namespace, f"{POLICY_LABEL}={name}"),
        kube.list_hpas(namespace) if needs_hpas else _nothing(),
        *(source(kube, namespace, kind, obj) for kind, obj in wanted),
    )
    previous = {t.name: t for t in status.targets}
    views = await asyncio.gather(
        *(_view(d, spec, name, incidents, previous.get(d["metadata"]["name"]), settings, reader) for d in deployments)
    )
    expired = tuple(i["metadata"]["name"] for i in incidents if is_expired(i, settings.incident_retention, now))
    return replace(
        base,
        targets=tuple(sorted(views, key=lambda v: v.name)),
        replicasets=tuple(replicasets),
        hpas=tuple(hpas),
        sources=dict(zip(wanted, found, strict=True)),
        expired=expired[:EXPIRED_PER_CYCLE],
    )


async def _nothing() -> list[Body]:
    return []


async def source(kube: Kube, namespace: str, kind: str, name: str) -> Body | None:
    if kind == "FeatureFlag":
        return await kube.get_featureflag(namespace, name)
    return await kube.get_configmap(namespace, name)


async def _view(
    deployment: Body,
    spec: MitigationPolicySpec,
    policy: str,
    incidents: list[Body],
    previous: TargetStatus | None,
    settings: Settings,
    reader: Reader,
) -> TargetView:
    dname, ns = deployment["metadata"]["name"], deployment["metadata"]["namespace"]
    variables = {"namespace": ns, "deployment": dname, "policy": policy}
    queries = {s.name: render_query(s.prometheus.query, {**variables, "signal": s.name}) for s in spec.signals}
    urls = {s.name: s.prometheus.url or settings.default_prometheus_url for s in spec.signals}
    gate_query = None
    if spec.min_traffic is not None:
        gate_query = render_query(spec.min_traffic.prometheus.query, {**variables, "signal": "minTraffic"})
    readings = await asyncio.gather(
        *(reader(urls[n], q) for n, q in queries.items()),
        *(
            [reader(spec.min_traffic.prometheus.url or settings.default_prometheus_url, gate_query)]
            if gate_query
            else []
        ),
    )
    gate = readings[-1] if gate_query else None
    mine = [i for i in incidents if i["spec"]["target"]["name"] == dname]
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
        deployment={"apiVersion": "apps/v1", "kind": "Deployment", **deployment},
        readings=dict(zip(queries, readings[: len(queries)], strict=True)),
        queries=queries,
        gate=gate,
        previous=previous,
        incident=incident,
        last_incident=newest["metadata"]["name"] if newest else None,
        error=error,
    )
