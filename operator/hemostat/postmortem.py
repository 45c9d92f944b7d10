"""Draft a blameless postmortem (Markdown) from an Incident, following the team's template.

Pure: an Incident as a dict in, Markdown out. Facts come only from what the Incident
recorded; sections that need human judgement are left for people to fill.
"""

from __future__ import annotations

import copy
import difflib
from datetime import datetime
from typing import Any

import yaml

from .clock import parse_iso
from .models.common import format_duration
from .models.incident import IncidentSpec, IncidentStatus

FILL = "_To be written by the responders._"


def _hhmm(at: str | None) -> str:
    return parse_iso(at).strftime("%H:%M:%S") if at else "?"


def _duration(status: IncidentStatus, now: datetime) -> tuple[str, str]:
    start = status.started_at or status.detected_at
    if not start:
        return "unknown", "unknown"
    end = status.resolved_at
    span = ((parse_iso(end) if end else now) - parse_iso(start)).total_seconds()
    text = f"{start} → {end or 'still open'} ({format_duration(span)}{'' if end else ' so far'})"
    return text, format_duration(span)


def suggested_actions(spec: IncidentSpec, status: IncidentStatus) -> list[tuple[str, str]]:
    """(item, type) suggestions derived from what happened; people own and refine them."""
    items: list[tuple[str, str]] = []
    rolled = next((a for a in status.actions if a.action == "rollback" and a.result == "Succeeded"), None)
    for g in status.gitops:  # first: until Git is reverted, resuming the reconciler brings the bad change back
        bad = rolled.from_ if rolled and rolled.from_ else f"revision {status.revision} ({status.image})"
        items.append((f"Revert the bad change in Git ({bad}), then resume {g.reconciler}: {g.resume}", "mitigate"))
    breached = ", ".join(e.signal for e in status.evidence) or "the breached signals"
    cause = status.attribution.verdict if status.attribution else None
    if cause not in (None, "deploy"):
        items.append(
            (f"Confirm the cause Hemostat attributed ({cause}) and find what failed outside the deploy", "prevent")
        )
    elif status.revision is not None:
        items.append(
            (
                f"Find why revision {status.revision} ({status.image}) raised {breached}, and add a check "
                "before production that would have caught it",
                "prevent",
            )
        )
    for a in status.actions:
        if a.result == "Skipped":
            items.append((f"Make the {a.step} step usable for this service next time: {a.message}", "mitigate"))
        if a.result == "Failed":
            items.append((f"Fix the failed {a.step} step: {a.message}", "mitigate"))
        if a.result == "DryRun":
            items.append((f"Decide whether {a.step} may run automatically (the policy is in dry run)", "mitigate"))
    if status.phase == "Escalated" or status.escalated_at:
        items.append(("Add a mitigation step that would have stopped this without a person", "mitigate"))
    if status.time_to_detect and status.started_at and status.detected_at:
        took = (parse_iso(status.detected_at) - parse_iso(status.started_at)).total_seconds()
        if took > 300:
            items.append((f"Detection took {status.time_to_detect}: review the signals' `for` and interval", "detect"))
    return items


def template_diff(incident_template: dict[str, Any], current_template: dict[str, Any]) -> str:
    """Pure: unified diff of two pod templates (pod-template-hash ignored), as YAML."""

    def clean(t: dict[str, Any]) -> list[str]:
        t = copy.deepcopy(t)
        (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
        return yaml.safe_dump(t, sort_keys=True).splitlines()

    lines = difflib.unified_diff(
        clean(incident_template), clean(current_template), "incident revision", "running now", lineterm=""
    )
    return "\n".join(lines)


def render(
    incident: dict[str, Any], now: datetime, trigger_diff: str | None = None, charts: list[str] | None = None
) -> str:
    """The Markdown draft; `charts`: the lines showing each signal's chart (or saying why there is none)."""
    meta = incident["metadata"]
    spec = IncidentSpec.model_validate(incident["spec"])
    status = IncidentStatus.model_validate({k: v for k, v in (incident.get("status") or {}).items() if k != "kopf"})
    duration, _ = _duration(status, now)
    date = (status.started_at or status.detected_at or meta.get("creationTimestamp", ""))[:10]
    impact = "; ".join(f"{e.signal} {e.value} (threshold {e.threshold})" for e in status.evidence)
    mitigations = [a for a in status.actions if a.result == "Succeeded"]
    detector = f"Hemostat policy {spec.policy_ref.name}" if spec.policy_ref else "a person (manual incident)"
    lines = [
        f"# Incident {meta['name']}: {spec.summary}",
        "",
        f"**Date:** {date}  ",
        f"**Duration:** {duration}  ",
        f"**Severity:** {spec.severity}  ",
        f"**Status:** {status.phase or 'unknown'}  ",
        f"**Affected:** {spec.target.kind} {meta['namespace']}/{spec.target.name}  ",
        f"**Impact:** {impact + ' at detection' if impact else FILL}  ",
        f"**Detected by:** {detector}" + (f" after {status.time_to_detect}" if status.time_to_detect else "") + "  ",
    ]
    if spec.commander:
        lines.append(f"**Incident commander:** {spec.commander}  ")
    lines += ["", "## Summary", ""]
    summary = f"{spec.summary}."
    if mitigations:
        last = mitigations[-1]
        summary += f" Mitigated by {last.action or last.step} ({last.from_} -> {last.to})"
        summary += f" {status.time_to_mitigate} after impact began." if status.time_to_mitigate else "."
    if status.resolved_at:
        summary += f" Resolved after {status.time_to_resolve}."
    elif status.phase == "Escalated":
        summary += " The automatic mitigations did not recover the service; it was escalated to people."
    lines += [summary, "", "## Timeline (UTC)", ""]
    if status.started_at:
        lines.append(f"- {_hhmm(status.started_at)} — first breaching reading")
    for e in status.timeline:
        lines.append(f"- {_hhmm(e.at)} — {e.reason}: {e.message}")
    for n in spec.notes:
        lines.append(f"- {_hhmm(n.at)} — Note by {n.author or 'someone'}: {n.text}")
    if charts is not None:
        lines += ["", "## Signals", ""]
        lines += [x for line in charts for x in (line, "")] or ["No signal to chart (no query in the evidence).", ""]
        lines.pop()
    lines += ["", "## Trigger", ""]
    if status.revision is not None:
        lines.append(f"The incident began at revision {status.revision} of {spec.target.name} ({status.image}).")
    for a in status.actions:
        if a.step == "rollback" and a.result in ("Succeeded", "DryRun"):
            lines.append(f"Rollback {'(dry run) ' if a.result == 'DryRun' else ''}moved {a.from_} to {a.to}.")
    if status.revision is None:
        lines.append(FILL)
    if trigger_diff:
        lines += [
            "",
            "Pod template of the incident's revision against the one running now:",
            "",
            "```diff",
            trigger_diff,
            "```",
        ]
    elif trigger_diff is not None:
        lines += ["", "The pod template running now is the incident's revision: nothing was rolled back."]
    lines += ["", "## Cause (attribution)", ""]
    a = status.attribution
    if a is None:
        lines.append("Not attributed (attribution off, or a person declared the incident).")
    else:
        observed = " (observe mode: it did not steer the mitigation)" if a.mode == "observe" else ""
        lines.append(f"Verdict **{a.verdict}**, confidence {a.confidence:.2f}, at {a.at}{observed}: {a.reason}")
        lines += ["", "| Evidence | Says | Detail |", "|---|---|---|"]
        lines += [f"| {x.kind} | {x.says} | {x.detail} |" for x in a.evidence]
    lines += ["", "## Mitigation", ""]
    if status.actions:
        lines += ["| Step | Result | From | To | At | Note |", "|---|---|---|---|---|---|"]
        for a in status.actions:
            lines.append(f"| {a.action or a.step} | {a.result} | {a.from_} | {a.to} | {_hhmm(a.at)} | {a.message} |")
        if status.time_to_mitigate:
            lines.append(f"\nTime to mitigate: {status.time_to_mitigate}.")
    else:
        lines.append("No mitigation was applied automatically.")
    for title in ("Root cause", "What went well", "What went poorly", "Where we got lucky"):
        lines += ["", f"## {title}", "", FILL]
    lines += ["", "## Action items", "", "| Item | Owner | Due | Type |", "|---|---|---|---|"]
    for item, kind in suggested_actions(spec, status):
        lines.append(f"| {item} | @owner | YYYY-MM-DD | {kind} |")
    lines.append("| _Add your own: assignable, schedulable, verifiable._ | @owner | YYYY-MM-DD | |")
    return "\n".join(lines) + "\n"
