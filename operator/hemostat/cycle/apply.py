"""Apply: carry a CyclePlan out, target by target, and record what really happened.

- Isolation: a target that fails gets its error on its own line of the policy status (and
  in the Degraded condition); the others proceed.
- Write semantics: status is a merge patch with explicit nulls (a cleared field is cleared on
  the server); changes are JSON patches whose first operation tests the resourceVersion they
  were planned on (a Conflict is re-planned next cycle, never forced).
- Truth: every record is made after the write it describes, from the object the server
  returned, through the pure lifecycle.record_* functions. A change the server refuses
  (admission, RBAC, validation: a 4xx that is not a race) is a Failed step with the server's
  one-line reason, and it counts like any step; a 5xx or a timeout leaves the outcome unknown,
  so it is a target error and the next cycle re-plans (the marker tells if it landed).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from .. import flageval, workloads
from ..actions.base import Evaluate
from ..actions.steps import ACTION_REASONS, kind_of
from ..decide import conditions as c
from ..decide import lifecycle as lc
from ..decide import reconcilers
from ..kube import ApiError, Conflict, Kube, merge_patch, transient
from ..metrics import Metrics
from ..models.common import API_VERSION
from ..models.incident import ActionRecord, IncidentStatus
from ..models.policy import MitigationPolicyStatus, TargetStatus
from .notifier import keep_deliveries
from .objects import Change, dump
from .plan import CyclePlan, TargetPlan
from .snapshot import Snapshot, known_status, one_line, open_incident
from .status import error_limit_reached, phase_counts, policy_status
from .world import World

log = logging.getLogger("hemostat.apply")
RECORD_ATTEMPTS = 3  # writes of a change's record, each against the Incident as re-read
RECORD_BACKOFF = 0.5  # seconds before the next write after a busy API server's answer (times the attempt)
Body = dict[str, Any]


class Applier:
    def __init__(self, kube: Kube, metrics: Metrics, notifier: Any = None) -> None:
        self.kube, self.metrics, self.notifier = kube, metrics, notifier
        self._reported: dict[str, str] = {}  # last error logged per target: log on change, not every cycle

    async def apply(self, plan: CyclePlan, world: World) -> tuple[bool, str | None, bool]:
        """Carry out the plan; returns (acted, resourceVersion of the policy status written, whether
        that write lost a race with another writer and should be redone at once)."""
        snap = plan.snapshot
        results = await asyncio.gather(*(self._isolated(tp, plan.now, world) for tp in plan.targets))
        targets = [r[0] for r in results]
        for name in snap.expired:
            await self._quietly(self.kube.delete_incident(snap.namespace, name), f"delete expired incident {name}")
        if self.notifier is not None:
            for raw in snap.unsent:  # Resolved: no target plan carries them any more
                try:
                    incident = open_incident(raw)
                except ValueError:  # pydantic's ValidationError too: a status someone spoiled sends nothing
                    continue
                self.notifier.start_if_due(raw, incident.spec, incident.status, plan.now)
        new = policy_status(snap, targets, plan.now)
        patch = merge_patch(snap.written, dump(new))
        written, raced = None, False
        if patch:
            try:
                out = await self.kube.patch_status(
                    "mitigationpolicies", snap.namespace, snap.name, patch, snap.resource_version
                )
                written = out["metadata"]["resourceVersion"]
            except Conflict:  # the policy changed since this cycle read it: the next cycle re-reads
                log.info("policy %s/%s changed during the cycle; status written next cycle", snap.namespace, snap.name)
                raced = True
        if written is not None and error_limit_reached(snap, new):
            await self._signals_unavailable(snap, new, plan.now)
        self.metrics.open_incidents.labels(namespace=snap.namespace, policy=snap.name).set(new.open_incidents)
        for phase, count in phase_counts(plan).items():
            self.metrics.incidents.labels(namespace=snap.namespace, policy=snap.name, phase=phase).set(count)
        available = next((x.status == "True" for x in new.conditions if x.type == "SignalsAvailable"), False)
        self.metrics.signals_available.labels(namespace=snap.namespace, policy=snap.name).set(int(available))
        ignored = sum(1 for t in targets if t.ignored)
        self.metrics.ignored_records.labels(namespace=snap.namespace, policy=snap.name).set(ignored)
        return any(r[1] for r in results), written, raced

    async def record_failure(self, ns: str, name: str, message: str, now: datetime) -> None:
        """A cycle that could not run at all: `Degraded` (EvaluationFailed) on the policy, written like any status."""
        try:
            body = await self.kube.get_policy(ns, name)
            if body is None:
                return
            written = known_status(body)
            status = MitigationPolicyStatus.model_validate(written)
            generation = body["metadata"].get("generation")
            status.conditions = c.set_condition(
                status.conditions, "Degraded", True, c.EVALUATION_FAILED, message, now, generation
            )
            patch = merge_patch(written, dump(status))
            if patch:
                await self.kube.patch_status("mitigationpolicies", ns, name, patch)
        except Exception as again:  # the API server itself is unreachable: the caller logged why
            log.debug("could not record the failure on policy %s/%s: %s", ns, name, again)

    async def _signals_unavailable(self, snap: Snapshot, new: MitigationPolicyStatus, now: datetime) -> None:
        """Tell people once per outage that the policy is blind: an Event on it, a message to its webhooks."""
        available = next(x for x in new.conditions if x.type == "SignalsAvailable")
        message = f"queries failed {new.consecutive_errors} rounds in a row: {available.message}"[:1024]
        log.warning("policy %s/%s: %s", snap.namespace, snap.name, message)
        policy = {
            "apiVersion": API_VERSION,
            "kind": "MitigationPolicy",
            "metadata": {"name": snap.name, "namespace": snap.namespace, "uid": snap.uid},
        }
        await self._quietly(self.kube.post_event(policy, "Warning", c.SIGNALS_UNAVAILABLE, message, now), "post event")
        if self.notifier is not None and snap.spec is not None:
            self.notifier.policy_alert(snap.namespace, snap.name, snap.spec.notify, c.SIGNALS_UNAVAILABLE, message)

    async def _isolated(self, tp: TargetPlan, now: datetime, world: World) -> tuple[TargetStatus, bool]:
        key = f"{tp.deployment['metadata']['namespace']}/{tp.name}" if tp.deployment else tp.name
        try:
            status, acted = await self.target(tp, now, world)
        except Conflict as exc:  # someone changed the object meanwhile: re-read and re-plan next cycle
            log.info("%s changed while acting (%s); re-planning next cycle", key, exc)
            return tp.target, False
        except Exception as exc:  # one target's failure is its own, never the policy's
            error = one_line(exc)[:512]
            if self._reported.get(key) != error:
                log.warning("target %s failed: %s", key, error)
            self._reported[key] = error
            return tp.target.model_copy(update={"error": error}), False
        if tp.target.error and self._reported.get(key) != tp.target.error:
            log.warning("target %s cannot be evaluated: %s", key, tp.target.error)
            self._reported[key] = tp.target.error
        elif not tp.target.error:
            self._reported.pop(key, None)
        return status, acted

    async def target(self, tp: TargetPlan, now: datetime, world: World) -> tuple[TargetStatus, bool]:
        if tp.status is None:
            return tp.target, False
        incident, written = tp.incident, tp.written
        if tp.create is not None:
            incident, written = await self._create(tp)
            world.created(incident)
        assert incident is not None
        status = tp.status
        acted = False
        if tp.rollout is not None and tp.deployment is not None:  # before the status that says so
            meta = tp.deployment["metadata"]
            await self.kube.json_patch_target(workloads.of(tp.deployment), meta["namespace"], meta["name"], tp.rollout)
        if tp.change is not None:
            record = await self.carry_out(tp.change, now)
            said = c.MITIGATION_SKIPPED if record.result == "Skipped" else ACTION_REASONS[tp.change.plan.action]
            status = lc.record_action(status, record, said, now)
            acted = True
        # Once a change is made its record must land: the copy decided on may be stale by now (a lagging
        # cache, kopf's or a person's write to the Incident, a delivery's record), or the API server too busy
        # to answer (a 5xx, a timeout), and either would leave the next cycle to rebuild the record from the
        # marker, without the step's own words. So after a change such a failure re-reads the Incident (the
        # write may have landed) and writes the record against it (the first try costs no extra round trip).
        for attempt in range(RECORD_ATTEMPTS if acted else 1):
            before = _parsed(written)
            try:
                await self.write_incident(incident, tp.deployment, written, before, status)
                break
            except Exception as exc:
                if not acted or attempt == RECORD_ATTEMPTS - 1 or not transient(exc):
                    raise
                if not isinstance(exc, Conflict):
                    log.warning("writing the record of %s failed, trying again: %s", tp.name, one_line(exc))
                    await asyncio.sleep(RECORD_BACKOFF * (attempt + 1))
                incident, written = await self._fresh(incident)
                status = keep_deliveries(status, written)
        if self.notifier is not None and tp.spec is not None:
            self.notifier.start_if_due(incident, tp.spec, status, now)
        self.observe(before, status, fresh=written is None or before is None or before.phase is None)
        return tp.target, acted

    async def _fresh(self, incident: Body) -> tuple[Body, dict[str, Any] | None]:
        """The Incident and its status as the server holds them now (only the operator writes status)."""
        meta = incident["metadata"]
        fresh = await self.kube.get_incident(meta["namespace"], meta["name"])
        if fresh is None:
            raise RuntimeError(f"incident {meta['namespace']}/{meta['name']} was deleted while acting")
        return fresh, known_status(fresh)

    async def _create(self, tp: TargetPlan) -> tuple[Body, dict[str, Any] | None]:
        assert tp.create is not None
        meta = tp.create["metadata"]
        try:
            created = await self.kube.create_incident(meta["namespace"], tp.create)
        except Conflict:  # created by us before a crash (same name, same second)
            found = await self.kube.get_incident(meta["namespace"], meta["name"])
            if found is None or found["spec"]["target"]["name"] != tp.name:
                raise
            created = found
        log.info("opened incident %s/%s: %s", meta["namespace"], meta["name"], tp.create["spec"]["summary"])
        self.metrics.incidents_opened.labels(severity=tp.create["spec"]["severity"]).inc()
        return created, None

    async def carry_out(self, change: Change, now: datetime) -> ActionRecord:
        """Write the ledger entry and the change, then verify on what the server returned."""
        plan, act = change.plan, change.act
        ns = change.objects.deployment["metadata"]["namespace"]
        dname = change.objects.deployment["metadata"]["name"]
        workload = workloads.of(change.objects.deployment)
        target = plan.name or dname
        if change.before is not None:  # the reconciler first: its record is on it, so a crash here loses nothing
            owner = change.before.reconciler
            try:
                await self.kube.json_patch_custom(
                    reconcilers.API[owner.kind], owner.namespace, owner.name, change.before.ops
                )
            except ApiError as exc:
                reason = " ".join(str(exc).split())[:800]
                log.warning("pause %s for %s %s/%s refused: %s", owner.describe(), plan.action, ns, target, reason)
                return ActionRecord(
                    step=act.step.kind,
                    index=act.index,
                    result="Skipped",
                    message=f"not taken: {owner.describe()} could not be paused ({reason}); acting would be undone",
                    at=c.now_iso(now),
                )
        try:
            if change.ledger_patch is not None:
                await self.kube.json_patch_target(workload, ns, dname, change.ledger_patch)
            if plan.status_patch is not None:  # the change itself; the marker follows in the patch
                await self.kube.json_patch_custom_status(workload.api, ns, target, plan.status_patch)
            patched = await self._patch(plan.kind, ns, target, change.patch)
        except ApiError as exc:
            if not refused(exc):
                raise
            return await self._refused(change, f"{ns}/{target}", exc, now)
        verified = kind_of(act.step).verify(change.objects, plan, patched)
        ok, message = verified.ok, verified.message
        if ok and verified.evaluate is not None:
            ok, message = await evaluate(verified.evaluate)
        log.info("%s %s/%s: %s -> %s (%s)", plan.action, ns, target, plan.from_, plan.to, "ok" if ok else "NOT applied")
        return ActionRecord(
            step=act.step.kind,
            action=plan.action,
            index=act.index,
            result="Succeeded" if ok else "Failed",
            from_=plan.from_,
            to=plan.to,
            message=message,
            at=c.now_iso(now),
        )

    async def _refused(self, change: Change, where: str, exc: ApiError, now: datetime) -> ActionRecord:
        """Nothing changed, and retrying would be refused again: the step Failed, and it counts (its
        ledger entry, refused along with the change, is written alone) so the ladder moves on."""
        plan, act = change.plan, change.act
        if change.ledger_if_refused is not None:
            deployment = change.objects.deployment["metadata"]
            workload = workloads.of(change.objects.deployment)
            await self._quietly(
                self.kube.json_patch_target(
                    workload, deployment["namespace"], deployment["name"], change.ledger_if_refused
                ),
                f"count the refused {plan.action} in the ledger",
            )
        reason = " ".join(str(exc).split())[:900]
        log.warning("%s %s refused by the API server: %s", plan.action, where, reason)
        return ActionRecord(
            step=act.step.kind,
            action=plan.action,
            index=act.index,
            result="Failed",
            from_=plan.from_,
            to=plan.to,
            message=f"refused by the API server: {reason}",
            at=c.now_iso(now),
        )

    async def _patch(self, kind: str, ns: str, name: str, patch: list[Body]) -> Body:
        if kind == "HorizontalPodAutoscaler":
            return await self.kube.json_patch_hpa(ns, name, patch)
        if kind == "ConfigMap":
            return await self.kube.json_patch_configmap(ns, name, patch)
        if kind == "FeatureFlag":
            return await self.kube.json_patch_featureflag(ns, name, patch)
        return await self.kube.json_patch_target(workloads.KINDS[kind], ns, name, patch)

    async def write_incident(
        self,
        incident: Body,
        deployment: Body | None,
        written: dict[str, Any] | None,
        before: IncidentStatus | None,
        after: IncidentStatus,
    ) -> None:
        patch = merge_patch(written or {}, dump(after))
        if not patch:
            return
        meta = incident["metadata"]
        # Guarded by the version the decision was based on: a stale copy (a lagging cache) is a
        # Conflict, re-read next cycle, never a status written over a newer one.
        updated = await self.kube.patch_status(
            "incidents", meta["namespace"], meta["name"], patch, meta["resourceVersion"]
        )
        await asyncio.gather(
            *(
                self._quietly(
                    self.kube.post_event(obj, e.type, e.reason, e.message, c.parse_iso(e.at)), f"post event {e.reason}"
                )
                for e in lc.new_entries(before if before and before.phase else None, after)
                for obj in (updated, deployment)
                if obj is not None
            )
        )

    async def _quietly(self, call: Any, what: str) -> None:
        try:
            await call
        except Exception as exc:  # an Event is a copy of the timeline; cleanup is retried next cycle
            log.warning("could not %s: %s", what, one_line(exc))

    def observe(self, before: IncidentStatus | None, after: IncidentStatus, fresh: bool) -> None:
        m = self.metrics
        for record in after.actions[len(before.actions) if before else 0 :]:
            m.actions.labels(step=record.step, action=record.action or record.step, result=record.result).inc()
        began = after.started_at or after.detected_at
        if not began:
            return
        start = c.parse_iso(began)
        if fresh and after.detected_at:
            m.time_to_detect.observe((c.parse_iso(after.detected_at) - start).total_seconds())
        if after.mitigated_at and after.mitigated_at != (before.mitigated_at if before else None):
            m.time_to_mitigate.observe((c.parse_iso(after.mitigated_at) - start).total_seconds())
        if after.phase == "Resolved" and (before.phase if before else None) != "Resolved" and after.resolved_at:
            m.time_to_resolve.observe((c.parse_iso(after.resolved_at) - start).total_seconds())


async def evaluate(check: Evaluate) -> tuple[bool, str]:
    """Evaluate the flag as applications do (OpenFeature + flagd provider), before and after the patch."""
    before, after = [await asyncio.to_thread(flageval.evaluate, doc, check.flag) for doc in (check.before, check.after)]
    ok = after.error is None and after.variant == check.variant
    return ok, f"OpenFeature evaluation of {check.flag}: {before.describe()} -> {after.describe()}"


def refused(exc: ApiError) -> bool:
    """The server said no to the request itself (not a race, not a moment of overload)."""
    return 400 <= exc.status < 500 and exc.status not in (408, 429)


def _parsed(written: dict[str, Any] | None) -> IncidentStatus | None:
    if not written:
        return None
    try:
        return IncidentStatus.model_validate(written)
    except ValueError:
        return None
