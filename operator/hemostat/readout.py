"""What people read at the keyboard: an Incident as a timeline, and a status update in the playbooks'
template. Pure: an Incident (as the API server returns it) and `now` in, text out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .clock import now_iso, parse_iso
from .models.common import format_duration, parse_duration
from .models.policy import Cadence

# the playbooks' status names for the operator's phases
STATUS = {
    "Detected": "Investigating",
    "AwaitingApproval": "Investigating (a mitigation waits for approval)",
    "Mitigating": "Mitigating",
    "Monitoring": "Monitoring",
    "Escalated": "Investigating (escalated to people)",
    "Resolved": "Resolved",
}


def _since(at: str, start: datetime | None) -> str:
    if start is None:
        return at
    delta = (parse_iso(at) - start).total_seconds()
    return f"+{format_duration(delta)}" if delta >= 0 else f"-{format_duration(-delta)}"


def _start(status: dict[str, Any]) -> datetime | None:
    detected = status.get("detectedAt")
    return parse_iso(detected) if detected else None


def timeline(incident: dict[str, Any]) -> str:
    """The Incident as a person reads it: what, where, and each entry with its time since detection."""
    meta, spec, status = incident["metadata"], incident["spec"], incident.get("status") or {}
    target = spec.get("target") or {}
    start = _start(status)
    lines = [
        f"Incident {meta['namespace']}/{meta['name']}: {spec.get('summary', '')}",
        f"  phase      {status.get('phase') or 'not yet seen by the operator'}",
        f"  severity   {spec.get('severity')}",
        f"  target     {target.get('kind', 'Deployment')} {target.get('name')}",
        f"  source     {spec.get('source', 'policy')}"
        + (f" (policy {spec['policyRef']['name']})" if spec.get("policyRef") else ""),
    ]
    if status.get("detectedAt"):
        lines.append(f"  detected   {status['detectedAt']}")
    for field, label in (("timeToMitigate", "mitigated in"), ("timeToResolve", "resolved in")):
        if status.get(field):
            lines.append(f"  {label:<10} {status[field]}")
    if spec.get("acknowledgedBy"):
        lines.append(f"  acked by   {spec['acknowledgedBy']}")
    entries = [(e["at"], e.get("type", "Normal"), e["reason"], e["message"]) for e in status.get("timeline") or []]
    entries += [(n["at"], "Note", f"note by {n.get('author', '?')}", n["text"]) for n in spec.get("notes") or []]
    lines += ["", "Timeline (time since detection):"]
    for at, kind, reason, message in sorted(entries, key=lambda e: e[0]):
        mark = "!" if kind == "Warning" else " "
        lines.append(f" {mark}{_since(at, start):>9}  {reason}: {message}")
    if not entries:
        lines.append("  (nothing yet)")
    return "\n".join(lines)


def cadence_of(severity: str, cadence: Cadence) -> timedelta | None:
    every = getattr(cadence, severity, None)
    return parse_duration(every) if every else None


def status_update(incident: dict[str, Any], cadence: Cadence, now: datetime) -> str:
    """A status update ready to post, in the playbooks' template: what is affected, what we know, what we
    are doing, and when the next update is due (the severity's cadence)."""
    meta, spec, status = incident["metadata"], incident["spec"], incident.get("status") or {}
    target = spec.get("target") or {}
    phase = status.get("phase") or "Detected"
    known = [f"{target.get('kind', 'Deployment')} {target.get('name')} in namespace {meta['namespace']} is affected"]
    if status.get("startedAt"):
        known.append(f"impact began at {status['startedAt']}")
    for e in status.get("evidence") or []:
        known.append(f"{e['signal']} is {e['value']} (threshold {e['threshold']})")
    if status.get("revision") is not None:
        known.append(f"revision {status['revision']} ({status.get('image', '?')}) was live at detection")
    if (status.get("attribution") or {}).get("verdict"):
        a = status["attribution"]
        known.append(f"likely cause: {a['verdict']} ({a.get('reason', '')})")
    doing = [f"{a['step']}: {a['result']} - {a.get('message', '')}".rstrip(" -") for a in status.get("actions") or []]
    if phase == "Resolved":
        doing.append(f"resolved at {status.get('resolvedAt')}; a postmortem follows")
    elif phase == "Monitoring":
        doing.append("watching the signals to confirm recovery")
    elif phase == "Escalated":
        doing.append("automatic steps are exhausted; people are investigating")
    elif phase == "AwaitingApproval" and status.get("approval"):
        asked = status["approval"]
        change = f"{asked['action']}: {asked.get('from', '')} -> {asked.get('to', '')}"
        step = next(iter(asked.get("step") or {"a step": None}))
        doing.append(f"{step} waits for approval until {asked['deadline']} ({change})")
    elif not doing:
        doing.append("investigating")
    every = cadence_of(spec.get("severity", "SEV3"), cadence)
    if phase == "Resolved":
        nxt = "none: this is the final update"
    elif every is None:
        nxt = f"when something changes (no cadence for {spec.get('severity')})"
    else:
        nxt = f"{now_iso(now + every)} ({format_duration(every.total_seconds())}, the {spec.get('severity')} cadence)"
    return "\n".join(
        [
            f"Incident: {spec.get('summary', meta['name'])} [{spec.get('severity')}] ({meta['name']})",
            f"Status: {STATUS.get(phase, phase)}",
            f"Time: {now_iso(now)}",
            "",
            "What we know:",
            *(f"- {k}" for k in known),
            "",
            "What we're doing:",
            *(f"- {d}" for d in doing),
            "",
            "Next update expected by:",
            f"- {nxt}",
        ]
    )


def table(incidents: list[dict[str, Any]], now: datetime, wide: bool = False, namespaces: bool = False) -> str:
    """Incidents as `kubectl get` prints them, newest first: -A adds NAMESPACE, -o wide what caused them."""
    head = [*(["NAMESPACE"] if namespaces else []), "NAME", "SEVERITY", "PHASE", "TARGET", "AGE"]
    head += ["POLICY", "SOURCE", "SUMMARY"] if wide else []
    rows = [head]
    for i in sorted(incidents, key=lambda i: i["metadata"]["creationTimestamp"], reverse=True):
        meta, spec, status = i["metadata"], i["spec"], i.get("status") or {}
        target = spec.get("target") or {}
        age = format_duration((now - parse_iso(meta["creationTimestamp"])).total_seconds())
        row = [*([meta["namespace"]] if namespaces else []), meta["name"], spec.get("severity", ""),
               status.get("phase") or "-", f"{target.get('kind', 'Deployment')}/{target.get('name')}", age]  # fmt: skip
        if wide:
            row += [
                (spec.get("policyRef") or {}).get("name", "-"),
                spec.get("source", "policy"),
                spec.get("summary", ""),
            ]
        rows.append(row)
    if len(rows) == 1:
        return "No incidents found."
    widths = [max(len(r[c]) for r in rows) for c in range(len(head) - 1)]
    return "\n".join("   ".join([*(x.ljust(w) for x, w in zip(r, widths, strict=False)), r[-1]]) for r in rows)
