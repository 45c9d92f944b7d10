"""What the `hemostat` subcommands for people do: read and edit Incidents, draft postmortems, report.

Every edit goes to the Incident resource itself (nothing lives only in this process),
and every failure a user can cause ends as a UserError with one clear line.
"""

from __future__ import annotations

import getpass
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from . import postmortem
from .actions import rollback
from .clock import now_iso, parse_iso
from .errors import UserError
from .models.common import GROUP, VERSION, format_duration, parse_duration


def _api() -> client.CustomObjectsApi:
    return client.CustomObjectsApi()


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"{what}: not found") from None
        if exc.status == 403:
            raise UserError(f"{what}: forbidden (check your RBAC)") from None
        raise UserError(f"{what}: {exc.status} {exc.reason}") from None
    except HTTPError as exc:
        raise UserError(f"{what}: cannot reach the cluster ({exc.__class__.__name__})") from None


def get_incident(name: str, namespace: str) -> dict[str, Any]:
    return _call(
        f"incident {namespace}/{name}",
        _api().get_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        "incidents",
        name,
    )


def _patch(name: str, namespace: str, patch: Any, json_patch: bool = False) -> dict[str, Any]:
    kwargs = {"_content_type": "application/json-patch+json"} if json_patch else {}
    return _call(
        f"incident {namespace}/{name}",
        _api().patch_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        "incidents",
        name,
        patch,
        **kwargs,
    )


def author(explicit: str | None) -> str:
    return explicit or getpass.getuser()


def ack(name: str, namespace: str, by: str | None, commander: str | None) -> str:
    get_incident(name, namespace)
    spec: dict[str, Any] = {"acknowledgedBy": author(by)}
    if commander:
        spec["commander"] = commander
    _patch(name, namespace, {"spec": spec})
    return f"incident {namespace}/{name} acknowledged by {spec['acknowledgedBy']}"


def note(name: str, namespace: str, text: str, by: str | None) -> str:
    inc = get_incident(name, namespace)
    entry = {"at": now_iso(datetime.now(UTC)), "author": author(by), "text": text[:1024]}
    if inc["spec"].get("notes"):
        _patch(name, namespace, [{"op": "add", "path": "/spec/notes/-", "value": entry}], json_patch=True)
    else:
        _patch(name, namespace, {"spec": {"notes": [entry]}})
    return f"note added to incident {namespace}/{name}"


def resolve(name: str, namespace: str, by: str | None) -> str:
    inc = get_incident(name, namespace)
    if (inc.get("status") or {}).get("phase") == "Resolved":
        return f"incident {namespace}/{name} is already Resolved"
    entry = {"at": now_iso(datetime.now(UTC)), "author": author(by), "text": "marked resolved"}
    _patch(name, namespace, {"spec": {"resolve": True, "notes": [*inc["spec"].get("notes", []), entry]}})
    return f"incident {namespace}/{name} marked resolved; the operator records it on its next evaluation"


def _trigger_diff(incident: dict[str, Any]) -> str | None:
    """Diff of the incident revision's pod template against the Deployment's now; None if unknown."""
    revision = (incident.get("status") or {}).get("revision")
    target = incident["spec"]["target"]["name"]
    ns = incident["metadata"]["namespace"]
    if revision is None:
        return None
    apps = client.AppsV1Api()
    plain = apps.api_client.sanitize_for_serialization
    try:
        deployment = plain(apps.read_namespaced_deployment(target, ns))
        replicasets = plain(apps.list_namespaced_replica_set(ns))["items"]
    except (ApiException, HTTPError):
        return None
    for r in rollback.revisions(deployment, replicasets):
        if r.number == revision:
            return postmortem.template_diff(r.template, deployment["spec"]["template"])
    return None  # pruned by revisionHistoryLimit, or re-stamped by a later rollout


def write_postmortem(name: str, namespace: str, out: str | None) -> str:
    incident = get_incident(name, namespace)
    text = postmortem.render(incident, datetime.now(UTC), _trigger_diff(incident))
    if out:
        try:
            Path(out).write_text(text)
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc.strerror}") from None
        return f"wrote {out}"
    return text


def _seconds(status: dict[str, Any], field: str) -> float | None:
    start = status.get("startedAt") or status.get("detectedAt")
    end = status.get(field)
    return (parse_iso(end) - parse_iso(start)).total_seconds() if start and end else None


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{format_duration(statistics.median(ordered))} / {format_duration(p90)}"


def report(namespace: str | None, since: str) -> str:
    try:
        window = parse_duration(since) if not since.endswith("d") else timedelta(days=int(since[:-1]))
    except ValueError:
        raise UserError(f"--since {since!r}: use e.g. 30d, 12h or 90m") from None
    api = _api()
    if namespace:
        items = _call("list incidents", api.list_namespaced_custom_object, GROUP, VERSION, namespace, "incidents")
    else:
        items = _call("list incidents", api.list_cluster_custom_object, GROUP, VERSION, "incidents")
    cutoff = datetime.now(UTC) - window
    recent = [i for i in items["items"] if parse_iso(i["metadata"]["creationTimestamp"]) >= cutoff]
    scope = f"namespace {namespace}" if namespace else "all namespaces"
    lines = [f"Incidents in {scope}, last {since}: {len(recent)}", ""]
    lines.append(
        f"{'SEVERITY':9} {'COUNT':>5} {'OPEN':>5}  {'MTTD med/p90':>14}  {'MTTM med/p90':>14}  {'MTTR med/p90':>14}"
    )
    for sev in ("SEV1", "SEV2", "SEV3", "SEV4"):
        group = [i for i in recent if i["spec"].get("severity") == sev]
        statuses = [i.get("status") or {} for i in group]
        open_ = sum(1 for s in statuses if s.get("phase") != "Resolved")
        cols = [
            _stats([v for s in statuses if (v := _seconds(s, f)) is not None])
            for f in ("detectedAt", "mitigatedAt", "resolvedAt")
        ]
        lines.append(f"{sev:9} {len(group):>5} {open_:>5}  {cols[0]:>14}  {cols[1]:>14}  {cols[2]:>14}")
    lines += ["", "MTTD/MTTM/MTTR count from the first breaching reading to detection, mitigation and resolution."]
    return "\n".join(lines)
