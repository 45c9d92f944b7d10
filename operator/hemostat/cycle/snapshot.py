"""The snapshot: one cycle's view of a policy's world, typed and immutable.

Built by read.py, consumed by the pure plan.py. The parsing helpers here are where raw
API objects become models; a problem confined to one target (an Incident whose status
cannot be parsed, say) is recorded on that target's view and decided as such, never
hiding the other targets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ..actions.base import SourceKey
from ..decide import conditions as c
from ..decide import reconcilers
from ..decide.attribution import Peer
from ..models.incident import IncidentSpec, IncidentStatus
from ..models.policy import MitigationPolicySpec, MitigationPolicyStatus, PrometheusQuery, Signal, TargetStatus
from ..reading import Reading
from ..signals.allowed import url_allowed
from ..signals.base import BATCH_VARIABLES, TEMPLATE_VARIABLES, TemplateError, render_query

Body = dict[str, Any]
POLICY_LABEL = "hemostat.dev/policy"
TARGET_LABEL = "hemostat.dev/target"
DETECTION = "hemostat.dev/detection"  # an Incident's first status, saved atomically with it
PAUSED = "hemostat.dev/paused"
EXPIRED_PER_CYCLE = 20  # deletions of expired Incidents per cycle: cleanup never crowds out detection


@dataclass(frozen=True)
class Settings:
    default_prometheus_url: str | None
    global_dry_run: bool = False
    incident_retention: timedelta | None = timedelta(days=30)
    # signals[].prometheus.url must be under one of these or the default URL (signals.allowed)
    allowed_prometheus_urls: tuple[str, ...] = ()
    argo_rollouts: bool = False  # the operator watches Rollouts (--argo-rollouts)
    alerts: bool = False  # the operator takes Alertmanager's alerts (--alertmanager-port): alert signals work

    @property
    def prometheus_allow_list(self) -> tuple[str, ...]:
        own = (self.default_prometheus_url,) if self.default_prometheus_url else ()
        return tuple(dict.fromkeys(own + self.allowed_prometheus_urls))


@dataclass(frozen=True)
class OpenIncident:
    body: Body  # metadata for events and writes; never read for decisions
    spec: IncidentSpec
    status: IncidentStatus  # parsed; rebuilt from the detection annotation when never written
    written: dict[str, Any]  # the status as the server holds it (for the merge patch)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass(frozen=True)
class TargetView:
    name: str
    deployment: Body
    readings: Mapping[str, Reading]
    queries: Mapping[str, str]
    gate: Reading | None  # the minTraffic reading, when the policy has one
    previous: TargetStatus | None
    incident: OpenIncident | None
    last_incident: Body | None  # the newest Incident of this target, any phase
    error: str | None = None
    traffic: Reading | None = None  # attribution's surge query: request rate over its baseline
    # signal -> pod-template-hash -> reading (attribution's contrast); one ERROR reading when unsplittable
    by_revision: Mapping[str, Mapping[str, Reading] | Reading] = field(default_factory=dict)
    # the Pods of a Deployment whose rollout has stalled (decide/progress.py); a str: why not read
    pods: tuple[Body, ...] | str | None = None
    # why a person's approval decision on its Incident was not checked by the admission policy (None: it was)
    approval_problem: str | None = None


Owners = Mapping[reconcilers.Reconciler, "Body | str | None"]  # read for targets with an open Incident


@dataclass(frozen=True)
class Snapshot:
    namespace: str
    name: str
    generation: int | None
    resource_version: str
    spec: MitigationPolicySpec | None
    invalid: str | None  # why the spec cannot be used; then there are no targets
    status: MitigationPolicyStatus
    written: dict[str, Any]  # the policy status as the server holds it
    paused: bool
    settings: Settings
    uid: str = ""
    targets: tuple[TargetView, ...] = ()
    replicasets: tuple[Body, ...] = ()
    hpas: tuple[Body, ...] = ()
    sources: Mapping[SourceKey, Body | None] = field(default_factory=dict)
    owners: Owners = field(default_factory=dict)  # the GitOps reconcilers' objects (decide/reconcilers.py)
    expired: tuple[str, ...] = ()  # Resolved Incidents past retention
    unsent: tuple[Body, ...] = ()  # Resolved Incidents whose Resolved update is not delivered yet
    queries: int = 0  # signal queries the read phase sent
    neighbours: tuple[Peer, ...] = ()  # the namespace's other policies' targets (cycle/neighbours.py)


def known_status(body: Body) -> dict[str, Any]:
    """Status as our models know it; foreign keys (e.g. kopf's) are left to their owners."""
    return {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}


def one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
        )[:1024]
    return str(exc)[:1024]


def check_templates(spec: MitigationPolicySpec) -> None:
    queries = [(f"spec.signals[{s.name}].prometheus.query", pq, pq.query) for s, pq in promql(spec)]
    queries += [
        (f"spec.signals[{s.name}].byRevision.query", pq, s.by_revision.query)
        for s, pq in promql(spec)
        if s.by_revision is not None
    ]
    if spec.min_traffic is not None:
        gate = spec.min_traffic.prometheus
        queries.append(("spec.minTraffic.prometheus.query", gate, gate.query))
    if spec.attribution.traffic is not None:
        traffic = spec.attribution.traffic.prometheus
        queries.append(("spec.attribution.traffic.prometheus.query", traffic, traffic.query))
    for where, pq, text in queries:
        known = BATCH_VARIABLES if pq.batch is not None else TEMPLATE_VARIABLES
        try:
            render_query(text, dict.fromkeys(known, "x"))
        except TemplateError as exc:
            form = " (a batch query runs once for all targets)" if pq.batch is not None else ""
            raise ValueError(f"{where}: {exc}{form}") from None


def promql(spec: MitigationPolicySpec) -> list[tuple[Signal, PrometheusQuery]]:
    """The signals Prometheus answers, with their query (the others are alerts)."""
    return [(s, s.prometheus) for s in spec.signals if s.prometheus is not None]


def parse_spec(body: Body, settings: Settings) -> tuple[MitigationPolicySpec | None, str | None]:
    try:
        spec = MitigationPolicySpec.model_validate(body.get("spec") or {})
        check_templates(spec)
    except ValidationError as exc:
        return None, "; ".join(f"spec.{part}" for part in one_line(exc).split("; "))
    except ValueError as exc:
        return None, str(exc)
    urls = {f"signals[{i}]": s.prometheus.url for i, s in enumerate(spec.signals) if s.prometheus is not None}
    if spec.min_traffic is not None:
        urls["minTraffic"] = spec.min_traffic.prometheus.url
    if spec.attribution.traffic is not None:
        urls["attribution.traffic"] = spec.attribution.traffic.prometheus.url
    if spec.target.kind == "Rollout" and not settings.argo_rollouts:
        return None, (
            "spec.target.kind Rollout: this operator does not watch Argo Rollouts "
            "(run it with --argo-rollouts, chart value argoRollouts.enabled=true)"
        )
    if not settings.alerts and any(s.alert is not None for s in spec.signals):
        return None, (
            "an alert signal needs the operator's Alertmanager receiver "
            "(--alertmanager-port and --alertmanager-token-file, chart value alertmanager.enabled=true)"
        )
    if not settings.default_prometheus_url and None in urls.values():
        return None, "a query has no prometheus.url and the operator has no --prometheus-url"
    allowed = settings.prometheus_allow_list
    for where, url in urls.items():
        if url is not None and not url_allowed(url, allowed):
            return None, (
                f"spec.{where}.prometheus.url {url} is not allowed: this operator queries only "
                f"{', '.join(allowed) or 'no URL'} (an admin adds URLs with --allowed-prometheus-url, "
                "chart value prometheusAllowedUrls)"
            )
    return spec, None


def open_incident(raw: Body) -> OpenIncident:
    """Parse one open Incident; raises ValueError/ValidationError naming what is wrong."""
    written = known_status(raw)
    status = IncidentStatus.model_validate(written)
    if status.phase is None:  # created, but the operator stopped before writing its status
        saved = (raw["metadata"].get("annotations") or {}).get(DETECTION)
        if saved:
            status = IncidentStatus.model_validate(json.loads(saved))
    return OpenIncident(body=raw, spec=IncidentSpec.model_validate(raw["spec"]), status=status, written=written)


def adoptable(raw: Body, policy: str) -> bool:
    """An Incident this policy opened: its label, source: policy and policyRef all say so. Only the
    operator may write those (the chart's admission policy), so a person's Incident never drives,
    silences or spends the guardrails of a policy's cycle."""
    spec = raw.get("spec") or {}
    return (
        (raw["metadata"].get("labels") or {}).get(POLICY_LABEL) == policy
        and spec.get("source") == "policy"
        and (spec.get("policyRef") or {}).get("name") == policy
    )


def is_open(raw: Body) -> bool:
    return (raw.get("status") or {}).get("phase") != "Resolved"


UNSENT_FOR = timedelta(days=1)  # how long a Resolved update that keeps failing is retried


def is_unsent(raw: Body, now: datetime, updates: bool = True, pages: bool = False) -> bool:
    """A Resolved Incident whose Resolved update (`updates`) or page resolve (`pages`) was not delivered
    (yet), resolved within UNSENT_FOR."""
    status = raw.get("status") or {}
    paged = status.get("paging") or {}
    update_open = updates and (status.get("notifications") or {}).get("lastPhase") != "Resolved"
    page_open = pages and bool(paged.get("pagedAt")) and not paged.get("resolved")
    if status.get("phase") != "Resolved" or not (update_open or page_open):
        return False
    try:
        return now - c.parse_iso(status.get("resolvedAt") or "") < UNSENT_FOR
    except ValueError:
        return False


def is_expired(raw: Body, retention: timedelta | None, now: datetime) -> bool:
    if retention is None or is_open(raw):
        return False
    try:
        resolved = c.parse_iso((raw.get("status") or {}).get("resolvedAt") or "")
    except ValueError:
        return False
    return now - resolved > retention
