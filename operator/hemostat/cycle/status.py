"""The policy's status after a cycle: conditions, the per-target lines that fit, the heartbeat. Pure."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from ..decide import conditions as c
from ..models.incident import OPEN_PHASES
from ..models.policy import MAX_TARGETS_IN_STATUS, MitigationPolicyStatus, TargetStatus
from ..reading import Reading
from .objects import dump
from .plan import CyclePlan
from .snapshot import Snapshot

HEARTBEAT = timedelta(minutes=1)  # lastEvaluated is refreshed at most this often
STATUS_BUDGET = 768 * 1024  # bytes of status.targets: the object stays well under etcd's 1.5 MiB


def phase_counts(plan: CyclePlan) -> dict[str, int]:
    """Open Incidents per phase after this cycle's decisions (every open phase, zeros included)."""
    counts: dict[str, int] = dict.fromkeys(OPEN_PHASES, 0)
    for tp in plan.targets:
        if tp.status is not None and tp.status.phase in counts:
            counts[tp.status.phase] += 1
    return counts


def policy_status(snap: Snapshot, targets: list[TargetStatus], now: datetime) -> MitigationPolicyStatus:
    """The policy's new status from this cycle's per-target outcomes (errors included)."""
    gen = snap.generation
    new = snap.status.model_copy(deep=True)
    new.observed_generation = gen
    if snap.invalid is not None:
        new.conditions = c.set_condition(new.conditions, "Valid", False, c.INVALID, snap.invalid, now, gen)
        return new
    new.conditions = c.set_condition(new.conditions, "Valid", True, c.VALID, "policy accepted", now, gen)
    new.queries_per_round = snap.queries
    errors = [
        f"{v.name}/{n}: {r.detail}" for v in snap.targets for n, r in v.readings.items() if r.kind.value == "Error"
    ]
    new.consecutive_errors = snap.status.consecutive_errors + 1 if errors else 0
    if errors:
        message = "; ".join(errors[:3]) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")
        message += f"; {new.consecutive_errors} rounds in a row, nothing is done without data"
        new.conditions = c.set_condition(new.conditions, "SignalsAvailable", False, c.SIGNALS_FAILED, message, now, gen)
    else:
        new.conditions = c.set_condition(
            new.conditions, "SignalsAvailable", True, c.SIGNALS_OK, "all queries answered", now, gen
        )
    ignored = [t for t in targets if t.ignored]
    if ignored:
        shown = "; ".join(f"{t.name}: {t.ignored}" for t in ignored[:3])
        more = f" (and {len(ignored) - 3} more)" if len(ignored) > 3 else ""
        new.conditions = c.set_condition(
            new.conditions, "RecordsReadable", False, c.RECORDS_IGNORED, f"{shown}{more}", now, gen
        )
    else:
        message = "every marker and ledger entry is readable"
        new.conditions = c.set_condition(new.conditions, "RecordsReadable", True, c.RECORDS_OK, message, now, gen)
    contrast = contrast_problem(snap)
    if snap.spec is not None and snap.spec.attribution.mode != "off":
        ok = "every signal can be split by revision"
        new.conditions = c.set_condition(
            new.conditions,
            "RevisionContrast",
            contrast is None,
            c.CONTRAST_UNAVAILABLE if contrast else c.CONTRAST_OK,
            contrast or ok,
            now,
            gen,
        )
    failing = [t for t in targets if t.error]
    kept = _fit(targets)
    failures = ""
    if failing:
        shown = "; ".join(f"{t.name}: {t.error}" for t in failing[:3])
        more = f" (and {len(failing) - 3} more)" if len(failing) > 3 else ""
        failures = f"{len(failing)} target(s) failing: {shown}{more}"
    if len(kept) < len(targets):  # the cut is said only here; failing targets keep their own lines
        message = (
            f"{len(targets)} targets match; status lists {len(kept)} (those with a breach, an incident or an "
            "error first) and the others start their breach clocks afresh after a restart: split the policy"
        ) + (f"; {failures}" if failures else "")
        new.conditions = c.set_condition(new.conditions, "Degraded", True, c.TOO_MANY_TARGETS, message, now, gen)
    elif failing:
        new.conditions = c.set_condition(new.conditions, "Degraded", True, c.TARGETS_FAILING, failures, now, gen)
    else:
        message = "every target evaluated"
        new.conditions = c.set_condition(new.conditions, "Degraded", False, c.ALL_TARGETS_OK, message, now, gen)
    new.targets = sorted(kept, key=lambda t: t.name)
    new.matched_targets = len(targets)
    new.open_incidents = sum(1 for t in targets if t.incident)
    stale = not snap.status.last_evaluated or now - c.parse_iso(snap.status.last_evaluated) >= HEARTBEAT
    if stale or _without_heartbeat(new) != _without_heartbeat(snap.status):
        new.last_evaluated = c.now_iso(now)
    return new


def contrast_problem(snap: Snapshot) -> str | None:
    """Why attribution cannot compare a new revision with the old one, in one line (or None)."""
    if snap.spec is None:
        return None
    said = []
    lacking = [s.name for s in snap.spec.signals if s.by_revision is None]
    if lacking:
        said.append(f"no byRevision query for {', '.join(lacking)}")
    for name in (s.name for s in snap.spec.signals if s.by_revision is not None):
        failed = next((r for v in snap.targets if isinstance(r := v.by_revision.get(name), Reading)), None)
        if failed is not None:
            said.append(f"{name}'s byRevision query: {failed.detail}")
    if not said:
        return None
    return ("; ".join(said) + ": per-revision contrast unavailable for those signals")[:1024]


def error_limit_reached(snap: Snapshot, new: MitigationPolicyStatus) -> bool:
    """This round's failed queries are the `consecutiveErrorLimit`-th in a row: tell people, once per outage
    (the count lives in the status, so a restart neither repeats nor forgets it)."""
    if snap.spec is None:
        return False
    limit = snap.spec.consecutive_error_limit
    return snap.status.consecutive_errors < limit <= new.consecutive_errors


def _fit(targets: list[TargetStatus]) -> list[TargetStatus]:
    """The targets the status can hold: at most MAX_TARGETS_IN_STATUS and STATUS_BUDGET bytes,
    those with state to keep (a breach clock, an incident, an error) first."""
    ordered = sorted(targets, key=lambda t: (not (t.breaching_since or t.incident or t.error or t.ignored), t.name))
    kept, size = [], 0
    for t in ordered[:MAX_TARGETS_IN_STATUS]:
        size += len(json.dumps(dump(t))) + 1
        if size > STATUS_BUDGET:
            break
        kept.append(t)
    return kept


def _without_heartbeat(status: MitigationPolicyStatus) -> dict[str, Any]:
    data = dump(status)
    data.pop("lastEvaluated", None)
    return data


# A person asking for a mitigation is the decision; these only stop repeats and accidents.
