"""Fail closed without the chart's admission policies: read them by name, at start, every minute, and
before carrying out a person's request (decide/admission.py says whether each is in force).

`--admission-policies PREFIX` names them (`PREFIX-incident-requests`, `PREFIX-incident-fields`,
`PREFIX-incident-approvals`, as the chart installs them); without it the operator trusts every write it
reads, as a development run does.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from ..decide.admission import APPROVALS, CHECKED, FIELDS, REQUESTS, last_request_write, not_in_force
from ..kube import Kube
from ..metrics import Metrics
from .snapshot import one_line

log = logging.getLogger("hemostat.admission")
EVERY = 60.0  # seconds between two checks


class AdmissionGuard:
    def __init__(self, kube: Kube, prefix: str | None, metrics: Metrics) -> None:
        self.kube, self.prefix, self.metrics = kube, prefix, metrics
        self.problems: dict[str, str] = {}  # policy -> why it is not in force, at the last check

    async def problem(self, which: str, since: datetime | None = None) -> str | None:
        """Why the policy `which` (REQUESTS, FIELDS, APPROVALS) did not check a write made at `since` (or now)."""
        if self.prefix is None:
            return None
        name = f"{self.prefix}-{which}"
        try:
            policy, binding = await self.kube.get_admission_policy(name)
        except Exception as exc:  # no RBAC to read them, no answer: nothing proves they are in force
            return f"ValidatingAdmissionPolicy {name} cannot be read ({one_line(exc)})"
        return not_in_force(name, policy, binding, since)

    async def approval_problem(self, namespace: str, name: str) -> str | None:
        """Why a person's approval decision on the Incident namespace/name was not checked (read fresh)."""
        if self.prefix is None:
            return None
        raw = await self.kube.get_incident(namespace, name)
        if raw is None:
            return f"Incident {namespace}/{name} is gone"
        return await self.problem(APPROVALS, last_request_write(raw))

    async def refresh(self) -> None:
        """Check each; say a change once (log, metric)."""
        found = {which: await self.problem(which) for which in CHECKED}
        problems = {w: p for w, p in found.items() if p is not None}
        for which, problem in problems.items():
            if self.problems.get(which) != problem:
                log.warning("admission policy not in force: %s; %s", problem, _CONSEQUENCE[which])
        for which in self.problems.keys() - problems.keys():
            log.info("admission policy %s-%s in force again", self.prefix, which)
        self.problems = problems
        self.metrics.admission_policies_missing.set(len(problems))

    @property
    def trusts_unwritten(self) -> bool:
        """Whether an Incident the operator never wrote status on may be adopted (its first status taken
        from the detection annotation): only while nobody but the operator can write that annotation."""
        return FIELDS not in self.problems

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), EVERY)
            except TimeoutError:
                await self.refresh()


_CONSEQUENCE = {
    REQUESTS: "people's mitigation requests are refused until it is restored (helm upgrade with "
    "admissionPolicies.enabled=true)",
    FIELDS: "Incidents the operator never wrote a status on are not adopted (their detection annotation "
    "may be anyone's) until it is restored",
    APPROVALS: "people's approvals are not taken (the operator asks again) until it is restored",
}
