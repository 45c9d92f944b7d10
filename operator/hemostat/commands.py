"""What the `hemostat` subcommands for people do: read and edit Incidents, draft postmortems, report.

Every edit goes to the Incident resource itself (nothing lives only in this process),
and every failure a user can cause ends as a UserError with one clear line.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from . import charts, flux_artifact, postmortem, readout, workloads
from .actions import rollback
from .clock import now_iso, parse_iso
from .decide import reconcilers
from .errors import UserError
from .models.common import GROUP, VERSION, format_duration, parse_duration
from .models.policy import Cadence


def _api() -> client.CustomObjectsApi:
    return client.CustomObjectsApi()


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"{what}: not found") from None
        said = _message(exc)  # the API server's own words: RBAC's or an admission policy's refusal
        if exc.status == 403:
            raise UserError(f"{what}: forbidden: {said}" if said else f"{what}: forbidden (check your RBAC)") from None
        raise UserError(f"{what}: {exc.status} {exc.reason}" + (f": {said}" if said else "")) from None
    except HTTPError as exc:
        raise UserError(f"{what}: cannot reach the cluster ({exc.__class__.__name__})") from None


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        return ""


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


def whoami() -> str:
    """Who the API server says you are (SelfSubjectReview), never the local login."""
    review = _call(
        "who you are (SelfSubjectReview)",
        client.AuthenticationV1Api().create_self_subject_review,
        client.V1SelfSubjectReview(),
    )
    return str(review.status.user_info.username)


def author(name: str | None) -> str:
    """The identity the API server knows, with the name a person gave (`--by`) beside it."""
    identity = whoami()
    return f"{name} ({identity})" if name and name != identity else identity


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


def resolve(name: str, namespace: str, by: str | None, resume_gitops: bool = False, force: bool = False) -> str:
    inc = get_incident(name, namespace)
    said = [resume(inc, name, namespace, force)] if resume_gitops else []
    notes = list(inc["spec"].get("notes", []))
    if said:
        notes.append({"at": now_iso(datetime.now(UTC)), "author": author(by), "text": said[0][:1024]})
    if (inc.get("status") or {}).get("phase") == "Resolved":
        if said:
            _patch(name, namespace, {"spec": {"notes": notes}})
        return "\n".join([*said, f"incident {namespace}/{name} is already Resolved"])
    notes.append({"at": now_iso(datetime.now(UTC)), "author": author(by), "text": "marked resolved"})
    _patch(name, namespace, {"spec": {"resolve": True, "notes": notes}})
    return "\n".join(
        [*said, f"incident {namespace}/{name} marked resolved; the operator records it on its next evaluation"]
    )


def decide(name: str, namespace: str, approve: bool, reason: str | None, wait: float, say: Any = print) -> int:
    """Approve or reject the step an Incident waits for (guardrails.approval), as yourself (the admission
    policy checks you may make that change); then (wait > 0) follow it until the operator took the decision:
    exit 0 when the approved step succeeded or the rejection was recorded, 1 otherwise."""
    verb = "approve" if approve else "reject"
    inc = get_incident(name, namespace)
    status = inc.get("status") or {}
    asked = status.get("approval") or {}
    if status.get("phase") != "AwaitingApproval" or not asked or asked.get("decision"):
        phase = status.get("phase") or "not evaluated yet"
        raise UserError(f"incident {namespace}/{name} is not waiting for approval (phase {phase}): nothing to {verb}")
    who, number = whoami(), asked["request"]
    decision = {
        "decision": "Approved" if approve else "Rejected",
        "request": number,
        "by": who,
        "at": now_iso(datetime.now(UTC)),
        "reason": (reason or "")[:1024],
    }
    _patch(name, namespace, {"spec": {"approval": decision}})
    change = f"{asked['action']}: {asked.get('from', '')} -> {asked.get('to', '')}"
    say(f"incident {namespace}/{name}: {decision['decision'].lower()} by {who}: {change}")
    if wait <= 0:
        return 0

    def outcome(status: dict[str, Any]) -> int | None:
        taken = (status.get("approval") or {}).get("decision")
        done = [a for a in status.get("actions") or [] if a.get("index") == asked["index"]]
        if taken == "Rejected" or (done and done[-1]["result"] in ("Succeeded", "Failed", "Skipped")):
            return 0 if taken == "Rejected" or done[-1]["result"] == "Succeeded" else 1
        if (status.get("approval") or {}).get("request") != number:  # not taken (e.g. unchecked): asked again
            return 1
        return None

    return follow(name, namespace, wait, len(status.get("timeline") or []), outcome, say)


def follow(
    name: str, namespace: str, wait: float, seen: int, outcome: Callable[[dict[str, Any]], int | None], say: Any
) -> int:
    """Print the Incident's timeline as it grows (from entry `seen`) until `outcome` of its status says an
    exit code, or `wait` seconds pass (1)."""
    deadline = time.monotonic() + wait
    while True:
        status = get_incident(name, namespace).get("status") or {}
        entries = status.get("timeline") or []
        for e in entries[seen:]:
            say(f"  {e['at']}  {e['reason']}: {e['message']}")
        seen = len(entries)
        code = outcome(status)
        if code is not None:
            return code
        if time.monotonic() > deadline:
            show = f"hemostat incident show {name} -n {namespace}"
            say(f"still waiting after {format_duration(wait)}: follow it with `{show}`")
            return 1
        time.sleep(1.0)


SOURCES = {"GitRepository": "gitrepositories", "OCIRepository": "ocirepositories", "Bucket": "buckets"}


def resume(inc: dict[str, Any], name: str, namespace: str, force: bool) -> str:
    """Let the reconciler this incident paused reconcile the target again, with the person's own rights;
    refused while its source has not changed since the pause (the bad change is still in Git)."""
    target, workload = inc["spec"]["target"]["name"], workloads.KINDS[inc["spec"]["target"].get("kind", "Deployment")]
    where = f"{workload.ref(target)} in namespace {namespace}"
    group, version, plural = workload.api
    found = _call(where, _api().get_namespaced_custom_object, group, version, namespace, plural, target)
    owner = reconcilers.reconciler_of(found["metadata"])
    if owner is not None and owner.kind in reconcilers.API:
        return _resume_object(owner, name, force)
    pause = reconcilers.paused(found["metadata"])
    if pause is None or pause.incident != name:
        raise UserError(f"nothing to resume: {workload.kind} {target} carries no GitOps pause of incident {name}")
    said = ""
    if owner is not None and not force:
        said = _refuse_while_in_git(owner, pause, (inc.get("status") or {}).get("image"))
    ops = reconcilers.resume_ops(found, name)
    _call(
        where,
        _api().patch_namespaced_custom_object,
        group,
        version,
        namespace,
        plural,
        target,
        ops,
        _content_type="application/json-patch+json",
    )
    resumed = f"resumed: {pause.reconciler} reconciles {workload.kind} {target} again (paused at {now_iso(pause.at)})"
    return "\n".join(filter(None, [said, resumed]))


def _resume_object(owner: reconcilers.Reconciler, name: str, force: bool) -> str:
    """A HelmRelease or an Argo CD Application this incident paused: its spec as it was, once its source moved."""
    group, version, plural = reconcilers.API[owner.kind]
    where = owner.describe()
    obj = _call(where, _api().get_namespaced_custom_object, group, version, owner.namespace, plural, owner.name)
    pause = reconcilers.paused(obj["metadata"])
    if pause is None or pause.incident != name:
        raise UserError(f"nothing to resume: {where} carries no pause of incident {name}")
    now_at, then = reconcilers.source_revision(owner.kind, obj), reconcilers.recorded_revision(obj["metadata"])
    if not force and (now_at is None or now_at == then):
        raise UserError(
            f"refused: {where} is still at revision {now_at or 'unknown'}, as when Hemostat paused it at "
            f"{now_iso(pause.at)}: revert the bad change in Git first, or pass --force"
        )
    ops = reconcilers.resume_ops(obj, name)
    _call(
        where,
        _api().patch_namespaced_custom_object,
        group,
        version,
        owner.namespace,
        plural,
        owner.name,
        ops,
        _content_type="application/json-patch+json",
    )
    return f"resumed: {where} as it was before the pause at {now_iso(pause.at)}"


def _refuse_while_in_git(owner: reconcilers.Reconciler, pause: reconcilers.Pause, image: str | None) -> str:
    """Refused while the source still holds what was rolled back: it must have fetched a new revision since
    the pause, and that revision's files (the artifact Flux serves, under the Kustomization's path) must no
    longer name the rolled-back image. An artifact this machine cannot download is said, not refused: then
    only the first holds (returned as a line to print)."""
    api = _api()
    where = f"Kustomization {owner.namespace}/{owner.name}"
    ks = _call(
        where,
        api.get_namespaced_custom_object,
        "kustomize.toolkit.fluxcd.io",
        "v1",
        owner.namespace,
        "kustomizations",
        owner.name,
    )
    ref = ks["spec"]["sourceRef"]
    kind, ns = ref.get("kind", "GitRepository"), ref.get("namespace") or owner.namespace
    if kind not in SOURCES:
        raise UserError(f"refused: {where} reads a {kind}, whose revision Hemostat cannot check; pass --force")
    source = _call(
        f"{kind} {ns}/{ref['name']}",
        api.get_namespaced_custom_object,
        "source.toolkit.fluxcd.io",
        "v1",
        ns,
        SOURCES[kind],
        ref["name"],
    )
    artifact = (source.get("status") or {}).get("artifact") or {}
    fetched = artifact.get("lastUpdateTime")
    if not fetched or parse_iso(fetched) <= pause.at:
        raise UserError(
            f"refused: {kind} {ns}/{ref['name']} still holds {artifact.get('revision', 'an unknown revision')} "
            f"(fetched {fetched or 'never'}), as when Hemostat paused {pause.reconciler} at {now_iso(pause.at)}: "
            "revert the bad change in Git first (Flux fetches it within the source's interval), or pass --force"
        )
    if not image:
        return "note: the incident records no image, so the new revision's files were not checked"
    try:
        files = flux_artifact.read(artifact["url"], ks["spec"].get("path") or "./")
    except flux_artifact.Unreadable as exc:
        return f"note: the source moved, but its files could not be checked for {image}: {exc}"
    still = flux_artifact.naming(files, image)
    if still:
        raise UserError(
            f"refused: {kind} {ns}/{ref['name']} at {artifact.get('revision', '?')} still names {image} "
            f"(in {', '.join(still)}), the image Hemostat rolled back: revert it in Git first, or pass --force"
        )
    return f"checked: {artifact.get('revision', 'the new revision')} no longer names {image}"


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


def series(prometheus_url: str, query: str, start: datetime, end: datetime) -> list[list[tuple[datetime, float]]]:
    """A range query's series (at most 5), about 500 points each; a UserError when Prometheus cannot answer."""
    step = max(1, int((end - start).total_seconds() / 500))
    params = {"query": query, "start": start.timestamp(), "end": end.timestamp(), "step": step}
    try:
        answer = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/query_range", params=params, timeout=10.0)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise UserError(f"Prometheus at {prometheus_url}: {exc.__class__.__name__}") from None
    if body.get("status") != "success":
        raise UserError(f"Prometheus at {prometheus_url}: {body.get('error', answer.status_code)}")
    out = []
    for found in body["data"]["result"][:5]:
        points = [(datetime.fromtimestamp(float(t), UTC), float(v)) for t, v in found["values"]]
        out.append([(t, v) for t, v in points if v == v])  # NaN is no data
    return [s for s in out if s]


def signal_charts(incident: dict[str, Any], prometheus_url: str, out: Path) -> list[tuple[str, Path | None]]:
    """One chart per signal beside `out` (its stem, then the signal): a Markdown line that shows each, and
    the PNG written (or the line says why there is none)."""
    status, now = incident.get("status") or {}, datetime.now(UTC)
    start, end = charts.window(status, now)
    marks, lines = charts.markers(status), []
    for e in status.get("evidence") or []:
        if not e.get("query"):
            continue
        found = series(prometheus_url, e["query"], start, end)
        if not found:
            said = (
                f"No chart for {e['signal']}: Prometheus holds no data for it between {now_iso(start)} and "
                f"{now_iso(end)} (past its retention, or the series is gone)."
            )
            lines.append((said, None))
            continue
        png, _ = charts.draw(e["signal"], found, e["threshold"], marks, out.with_name(f"{out.stem}-{e['signal']}"))
        lines.append((f"![{e['signal']} around the incident]({png.name})", png))
    return lines


def write_postmortem(name: str, namespace: str, out: str | None, prometheus_url: str | None = None) -> str:
    incident = get_incident(name, namespace)
    drawn = [line for line, _ in signal_charts(incident, prometheus_url, Path(out))] if out and prometheus_url else None
    text = postmortem.render(incident, datetime.now(UTC), _trigger_diff(incident), drawn)
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


def show(name: str, namespace: str, output: str, chart: str | None = None, prometheus_url: str | None = None) -> str:
    """`incident show`: the timeline a person reads, or the object as kubectl prints it (-o json|yaml);
    `chart`: also its signals' charts, written there."""
    incident = get_incident(name, namespace)
    drawn = []
    if chart:
        if not prometheus_url:
            raise UserError("--chart needs --prometheus-url (or $HEMOSTAT_PROMETHEUS_URL)")
        drawn = signal_charts(incident, prometheus_url, Path(chart))
    if output == "json":
        return json.dumps(incident, indent=2)
    if output == "yaml":
        return yaml.safe_dump(incident, sort_keys=False).rstrip()
    written = [f"chart: {png} (and .svg)" if png else line for line, png in drawn]
    return "\n".join([readout.timeline(incident), *([""] if written else []), *written])


def list_incidents(namespace: str | None, output: str) -> str:
    """`incident list`: the Incidents of a namespace (None: all) as kubectl prints them."""
    api = _api()
    if namespace:
        found = _call("list incidents", api.list_namespaced_custom_object, GROUP, VERSION, namespace, "incidents")
    else:
        found = _call("list incidents", api.list_cluster_custom_object, GROUP, VERSION, "incidents")
    if output == "json":
        return json.dumps(found, indent=2)
    if output == "yaml":
        return yaml.safe_dump(found, sort_keys=False).rstrip()
    return readout.table(found["items"], datetime.now(UTC), wide=output == "wide", namespaces=namespace is None)


def status_update(name: str, namespace: str) -> str:
    """A ready-to-post update; the next one is due by the policy's cadence (the playbooks' by default)."""
    incident = get_incident(name, namespace)
    cadence = Cadence()
    policy = (incident["spec"].get("policyRef") or {}).get("name")
    if policy:
        try:
            found = _api().get_namespaced_custom_object(GROUP, VERSION, namespace, "mitigationpolicies", policy)
            cadence = Cadence.model_validate(((found.get("spec") or {}).get("notify") or {}).get("cadence") or {})
        except (ApiException, ValueError):
            pass  # the policy is gone or unreadable: the playbooks' cadence
    return readout.status_update(incident, cadence, datetime.now(UTC))


def request(
    target: str,
    kind: str,
    namespace: str,
    mitigation: dict[str, Any],
    reason: str | None,
    severity: str,
    wait: float,
    say: Any = print,
) -> int:
    """Declare a manual Incident asking for one step, then (wait > 0) follow it until the step is
    recorded: exit 0 when it succeeded, 1 when it was skipped, failed or refused, or still pending."""
    step = next(iter(mitigation))
    workload = workloads.KINDS[kind]
    group, version, plural = workload.api
    try:  # a name that does not exist is said now, with nothing created
        _api().get_namespaced_custom_object(group, version, namespace, plural, target)
    except ApiException as exc:
        if exc.status == 404:
            raise UserError(f"{kind.lower()} {namespace}/{target}: not found; nothing was asked") from None
        if exc.status != 403:  # not allowed to read it: the admission policy decides on the request itself
            raise UserError(f"{kind.lower()} {namespace}/{target}: {exc.status} {exc.reason}") from None
    who = whoami()
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Incident",
        "metadata": {"generateName": f"{target[:40].rstrip('-.')}-{step.lower()}-"},
        "spec": {
            "severity": severity,
            "summary": (reason or f"{step} of {kind} {target} asked by {who}")[:1024],
            "target": {"kind": kind, "name": target},
            "source": "manual",
            "mitigation": mitigation,
            "notes": [{"at": now_iso(datetime.now(UTC)), "author": who, "text": f"asked for {step}"}],
        },
    }
    created = _call(
        f"asking for {step} of {kind.lower()} {namespace}/{target}",
        _api().create_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        "incidents",
        body,
    )
    name = created["metadata"]["name"]
    say(f"incident {namespace}/{name} declared, asking for {step} of {kind} {target}")
    if wait <= 0:
        return 0

    def outcome(status: dict[str, Any]) -> int | None:
        done = [a for a in status.get("actions") or [] if a.get("index") == -1]
        if done:
            result, record = done[0]["result"], done[0]
            change = f"{record['from']} -> {record['to']}" if record.get("from") and record.get("to") else ""
            say(f"{step} {result}: {record.get('message') or change}".rstrip(": "))
            return 0 if result in ("Succeeded", "DryRun") else 1
        return 1 if any(e["reason"] == "MitigationRefused" for e in status.get("timeline") or []) else None

    return follow(name, namespace, wait, 0, outcome, say)
