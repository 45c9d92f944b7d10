"""One evaluation cycle of one policy: read -> decide -> act -> record.

The only place where readings, decisions and actions meet. State that must
survive a restart is read from Kubernetes at the start of every cycle (policy
status for breach clocks, Incidents for the lifecycle, marker annotations for
actions already applied) and written back only when it changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError

from . import flageval, notify
from .actions import flags, rollback, scale
from .actions.base import Done, Plan, Skip
from .decide import conditions as c
from .decide import health as h
from .decide import lifecycle as lc
from .kube import Conflict, Kube, selector_string
from .metrics import Metrics
from .models.common import API_VERSION, LabelSelector, parse_duration
from .models.incident import OPEN_PHASES, ActionRecord, IncidentSpec, IncidentStatus
from .models.policy import MitigationPolicySpec, MitigationPolicyStatus, MitigationStep, TargetStatus
from .signals.base import Reading, SignalProvider, TemplateError, render_query

log = logging.getLogger("hemostat.engine")

PAUSED = "hemostat.dev/paused"
POLICY_LABEL = "hemostat.dev/policy"
TARGET_LABEL = "hemostat.dev/target"
DETECTION = "hemostat.dev/detection"  # the Incident's first status, saved at creation
HEARTBEAT = timedelta(minutes=1)  # lastEvaluated is refreshed at most this often
# A person asking for a mitigation is the decision; these only stop repeats and accidents.
MANUAL_COOLDOWN = timedelta(minutes=1)
MANUAL_BUDGET = 6
MANUAL_WINDOW = timedelta(days=3650)  # a person may roll back a revision of any age


@dataclass
class Settings:
    default_prometheus_url: str | None
    global_dry_run: bool = False


class Engine:
    def __init__(
        self,
        kube: Kube,
        provider_for: Callable[[str], SignalProvider],
        settings: Settings,
        metrics: Metrics | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.kube = kube
        self.provider_for = provider_for
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.http = http
        # Webhook deliveries run beside the loop; their outcomes are folded into the
        # Incident's status on the next cycle (one status write per cycle).
        self._outcomes: dict[str, tuple[str, str | None, datetime]] = {}
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def evaluate(self, body: dict[str, Any], now: datetime) -> None:
        started = time.monotonic()
        acted = await self._evaluate(body, now)
        took = time.monotonic() - started
        self.metrics.cycle_duration.labels(acted=str(acted).lower()).observe(took)
        self.metrics.last_cycle.set_to_current_time()
        if acted:
            log.info(
                "policy %s/%s: cycle with an action took %.3fs",
                body["metadata"]["namespace"],
                body["metadata"]["name"],
                took,
            )

    async def _evaluate(self, body: dict[str, Any], now: datetime) -> bool:
        """One cycle; returns whether a mitigation was applied."""
        meta = body["metadata"]
        ns, name, generation = meta["namespace"], meta["name"], meta.get("generation")
        old = MitigationPolicyStatus.model_validate(_known_status(body))
        try:
            spec = MitigationPolicySpec.model_validate(body.get("spec") or {})
            _check_templates(spec)
            self._check_urls(spec)
        except (ValidationError, ValueError) as exc:
            new = old.model_copy(deep=True)
            new.conditions = c.set_condition(new.conditions, "Valid", False, c.INVALID, _one_line(exc), now, generation)
            await self._write_policy_status(ns, name, old, new)
            return False

        deployments = await self.kube.list_deployments(ns, selector_string(spec.target.selector))
        incidents = await self.kube.list_incidents(ns, f"{POLICY_LABEL}={name}")
        previous = {t.name: t for t in old.targets}
        policy_paused = (meta.get("annotations") or {}).get(PAUSED) == "true" or spec.guardrails.paused

        results = await asyncio.gather(
            *(
                self._evaluate_target(body, spec, d, previous.get(d["metadata"]["name"]), incidents, policy_paused, now)
                for d in deployments
            )
        )
        targets = [r[0] for r in results]
        errors = [e for r in results for e in r[1]]
        acted = any(r[2] for r in results)

        new = old.model_copy(deep=True)
        new.observed_generation = generation
        new.conditions = c.set_condition(new.conditions, "Valid", True, c.VALID, "policy accepted", now, generation)
        if errors:
            new.conditions = c.set_condition(
                new.conditions, "SignalsAvailable", False, c.SIGNALS_FAILED, "; ".join(errors[:3]), now, generation
            )
        else:
            new.conditions = c.set_condition(
                new.conditions, "SignalsAvailable", True, c.SIGNALS_OK, "all queries answered", now, generation
            )
        new.targets = sorted(targets, key=lambda t: t.name)[:1000]
        new.matched_targets = len(deployments)
        new.open_incidents = sum(1 for t in targets if t.incident)
        self.metrics.open_incidents.labels(namespace=ns, policy=name).set(new.open_incidents)
        stale = not old.last_evaluated or now - c.parse_iso(old.last_evaluated) >= HEARTBEAT
        if stale or _dump(new, last=False) != _dump(old, last=False):
            new.last_evaluated = c.now_iso(now)
        await self._write_policy_status(ns, name, old, new)
        return acted

    def _check_urls(self, spec: MitigationPolicySpec) -> None:
        if self.settings.default_prometheus_url:
            return
        missing = [s.name for s in spec.signals if not s.prometheus.url]
        if missing:
            raise ValueError(
                f"signals {', '.join(missing)} have no prometheus.url and the operator has no --prometheus-url"
            )

    async def _read(self, spec: MitigationPolicySpec, variables: dict[str, str]) -> tuple[dict, dict]:
        queries = {s.name: render_query(s.prometheus.query, {**variables, "signal": s.name}) for s in spec.signals}
        urls = {s.name: s.prometheus.url or self.settings.default_prometheus_url or "" for s in spec.signals}
        readings = await asyncio.gather(*(self._timed_read(urls[n], q) for n, q in queries.items()))
        return queries, dict(zip(queries, readings, strict=True))

    async def _timed_read(self, url: str, query: str) -> Reading:
        started = time.monotonic()
        reading = await self.provider_for(url).read(query)
        self.metrics.query_duration.labels(provider="prometheus").observe(time.monotonic() - started)
        if reading.error_type:
            self.metrics.query_errors.labels(provider="prometheus", error_type=reading.error_type).inc()
        return reading

    async def _evaluate_target(
        self,
        policy: dict[str, Any],
        spec: MitigationPolicySpec,
        deployment: dict[str, Any],
        previous: TargetStatus | None,
        incidents: list[dict[str, Any]],
        policy_paused: bool,
        now: datetime,
    ) -> tuple[TargetStatus, list[str], bool]:
        dname = deployment["metadata"]["name"]
        ns = deployment["metadata"]["namespace"]
        variables = {
            "namespace": ns,
            "deployment": dname,
            "policy": policy["metadata"]["name"],
            "pod_template_hash": "",
        }
        queries, readings = await self._read(spec, variables)
        since = {k: c.parse_iso(v) for k, v in (previous.breaching_since if previous else {}).items()}
        health = h.assess(spec.signals, readings, since, now)
        errors = [f"{dname}/{s.name}: {s.detail}" for s in health.errors]
        for s in health.errors:
            log.warning("signal %s for %s/%s unavailable: %s", s.name, ns, dname, s.detail)

        revision, revision_since = await self._revision(deployment, previous, now)
        mine = [i for i in incidents if (i["metadata"].get("labels") or {}).get(TARGET_LABEL) == dname]
        open_ = [i for i in mine if (i.get("status") or {}).get("phase") in (*OPEN_PHASES, None)]
        incident = min(open_, key=lambda i: i["metadata"]["creationTimestamp"]) if open_ else None
        fresh = False  # opened this cycle: its first status is not written yet
        if incident is None and health.state is h.State.BREACHING:
            incident = await self._open_incident(policy, spec, deployment, health, queries, mine, now)
            fresh = True
        acted = False
        if incident is not None:
            incident, acted = await self._advance(
                spec, deployment, incident, fresh, health, mine, policy_paused, revision_since, now
            )

        status = TargetStatus(
            name=dname,
            verdicts={s.name: s.verdict.value for s in health.signals},
            breaching_since={s.name: c.now_iso(s.breaching_since) for s in health.signals if s.breaching_since},
            revision=revision,
            revision_since=c.now_iso(revision_since) if revision_since else None,
            incident=incident["metadata"]["name"]
            if incident and incident.get("status", {}).get("phase") != "Resolved"
            else None,
        )
        return status, errors, acted

    async def _revision(
        self, deployment: dict[str, Any], previous: TargetStatus | None, now: datetime
    ) -> tuple[int | None, datetime | None]:
        """The current revision and when it became current, frozen at first sight.

        Frozen because the ReplicaSet's own timestamps move when it is merely scaled
        (e.g. by an HPA), which would make an old revision look freshly rolled out.
        """
        try:
            number = int((deployment["metadata"].get("annotations") or {})[rollback.REVISION])
        except (KeyError, ValueError):
            return None, None
        if previous and previous.revision == number and previous.revision_since:
            return number, c.parse_iso(previous.revision_since)
        facts = rollback.facts_from(deployment, await self._replicasets(deployment))
        since = min(now, facts.current.rolled_out_at) if facts.current else now
        return number, since

    async def _open_incident(
        self,
        policy: dict[str, Any],
        spec: MitigationPolicySpec,
        deployment: dict[str, Any],
        health: h.Health,
        queries: dict[str, str],
        history: list[dict[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        facts = rollback.facts_from(deployment, await self._replicasets(deployment))
        revision = facts.current.number if facts.current else None
        image = facts.current.image if facts.current else rollback.images(deployment["spec"]["template"])
        outcomes = health.by_name()
        severity = h.severity(spec.severity, outcomes, spec.default_severity)
        summary = lc.breach_summary(health)
        if revision is not None:
            summary += f" at revision {revision}"
        previous = max(history, key=lambda i: i["metadata"]["creationTimestamp"], default=None)
        dname = deployment["metadata"]["name"]
        body = {
            "apiVersion": API_VERSION,
            "kind": "Incident",
            "metadata": {
                "name": f"{dname}-{now:%Y%m%d-%H%M%S}"[:253],
                "namespace": deployment["metadata"]["namespace"],
                "labels": {POLICY_LABEL: policy["metadata"]["name"], TARGET_LABEL: dname},
            },
            "spec": IncidentSpec(
                severity=severity,
                summary=summary[:1024],
                target={"name": dname},
                policy_ref={"name": policy["metadata"]["name"]},
                source="policy",
                previous_incident=previous["metadata"]["name"] if previous else None,
            ).model_dump(by_alias=True, exclude_none=True),
        }
        # The first status is written together with the first step's outcome (one write per cycle).
        # Its facts also travel in an annotation, created atomically with the Incident, so that an
        # operator killed before that write rebuilds exactly what it detected (see _advance).
        first = _dump(lc.open_status(health, queries, revision, image, now))
        body["metadata"]["annotations"] = {DETECTION: json.dumps(first, sort_keys=True)}
        created = await self.kube.create_incident(body["metadata"]["namespace"], body)
        log.info("opened incident %s: %s", created["metadata"]["name"], summary)
        self.metrics.incidents_opened.labels(severity=severity).inc()
        created["status"] = first
        return created

    async def _replicasets(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        selector = selector_string(LabelSelector.model_validate(deployment["spec"]["selector"]))
        return await self.kube.list_replicasets(deployment["metadata"]["namespace"], selector)

    async def _advance(
        self,
        spec: MitigationPolicySpec,
        deployment: dict[str, Any],
        incident: dict[str, Any],
        fresh: bool,
        health: h.Health,
        history: list[dict[str, Any]],
        policy_paused: bool,
        revision_since: datetime | None,
        now: datetime,
    ) -> tuple[dict[str, Any], bool]:
        ispec = IncidentSpec.model_validate(incident["spec"])
        before = IncidentStatus.model_validate(_known_status(incident))
        if before.phase is None:  # created, but the operator stopped before writing status
            saved = (incident["metadata"].get("annotations") or {}).get(DETECTION)
            before = (
                IncidentStatus.model_validate(json.loads(saved)) if saved else lc.open_status(health, {}, None, "", now)
            )
            fresh = True
        status = lc.track_health(before, health, now)
        dep_paused = (deployment["metadata"].get("annotations") or {}).get(PAUSED) == "true"
        guard = lc.Guardrails(
            dry_run=spec.guardrails.dry_run or self.settings.global_dry_run,
            paused="policy is paused"
            if policy_paused
            else ("Deployment is annotated hemostat.dev/paused" if dep_paused else None),
            cooldown=parse_duration(spec.guardrails.cooldown),
            max_actions_per_hour=spec.guardrails.max_actions_per_hour,
            recent_actions=_action_times(history, incident, status),
        )
        for _ in range(len(spec.mitigation.steps) + 1):  # skipped steps fall through to the next
            move = lc.next_move(status, ispec.resolve, spec, health, guard, now)
            if isinstance(move, lc.Wait):
                if move.note:
                    status = lc.record_note(status, move.note, now)
                break
            if isinstance(move, lc.Resolve):
                status = lc.record_resolved(status, move.message, now, by_person=move.by_person)
                break
            if isinstance(move, lc.Escalate):
                status = lc.record_escalated(status, move.message, now)
                break
            window = parse_duration(spec.mitigation.rollout_window)
            record, reason = await self._act(move, incident, deployment, status, window, revision_since, now)
            if record is None:  # conflict: re-read next cycle
                break
            status = lc.record_action(status, record, reason, now)
            if record.result in ("Succeeded", "DryRun"):
                break
        status = self._notifications(spec, incident, ispec, status, now)
        self._observe(before, status, fresh)
        written = await self._write_incident(incident, deployment, None if fresh else before, status)
        return written, len(status.actions) > len(before.actions)

    def _notifications(
        self,
        spec: MitigationPolicySpec,
        incident: dict[str, Any],
        ispec: IncidentSpec,
        status: IncidentStatus,
        now: datetime,
    ) -> IncidentStatus:
        """Fold the last delivery's outcome into status; start the next delivery if one is due."""
        if not spec.notify.webhooks or self.http is None:
            return status
        uid = incident["metadata"]["uid"]
        out = status.model_copy(deep=True)
        if uid in self._outcomes:
            phase, error, at = self._outcomes.pop(uid)
            out.notifications = notify.after_attempt(out.notifications, phase, error, at)
            message = error or f"{phase} update delivered to {len(spec.notify.webhooks)} webhook(s)"
            out.conditions = c.set_condition(
                out.conditions,
                "Notified",
                error is None,
                "Delivered" if error is None else "DeliveryFailed",
                message,
                now,
            )
        if uid in self._inflight or out.phase is None:
            return out
        why = notify.due(out.notifications, out.phase, ispec.severity, spec.notify.cadence, now)
        if why:
            self._inflight.add(uid)
            task = asyncio.create_task(self._deliver(uid, incident, ispec, out, spec, why))
            self._tasks.add(task)  # the loop holds tasks weakly: keep each until it is done
            task.add_done_callback(self._tasks.discard)
        return out

    async def _deliver(
        self,
        uid: str,
        incident: dict[str, Any],
        ispec: IncidentSpec,
        status: IncidentStatus,
        spec: MitigationPolicySpec,
        why: str,
    ) -> None:
        meta = incident["metadata"]
        try:
            targets = []
            for hook in spec.notify.webhooks:
                url = await self.kube.secret_value(meta["namespace"], hook.secret_ref.name, hook.secret_ref.key)
                body = notify.payload(hook.format, meta["name"], meta["namespace"], ispec, status, why)
                targets.append((url, body))
            assert self.http is not None
            error = await notify.deliver(self.http, targets)
        except Exception as exc:  # a missing Secret or key is a delivery failure, not a crash
            error = str(exc)
        if error:
            log.warning("notification for incident %s/%s failed: %s", meta["namespace"], meta["name"], error)
        self._outcomes[uid] = (status.phase or "", error, datetime.now(UTC))
        self._inflight.discard(uid)

    async def handle_manual(self, incident: dict[str, Any], now: datetime) -> None:
        """An Incident a person declared: record it, carry out the mitigation asked for (once, with
        the guardrails a person cannot skip by accident), and close it when they say so."""
        meta = incident["metadata"]
        ns = meta["namespace"]
        ispec = IncidentSpec.model_validate(incident["spec"])
        before = IncidentStatus.model_validate(_known_status(incident))
        status = before
        deployment = await self.kube.find_deployment(ns, ispec.target.name)
        if status.phase is None:
            facts = rollback.facts_from(deployment, await self._replicasets(deployment)) if deployment else None
            current = facts.current if facts else None
            status = lc.declared_status(
                ispec.summary,
                current.number if current else None,
                current.image if current else None,
                c.parse_iso(meta["creationTimestamp"]),
                now,
            )
        same_target = [
            i for i in await self.kube.list_incidents(ns, "") if i["spec"]["target"]["name"] == ispec.target.name
        ]
        dep_paused = deployment is not None and (deployment["metadata"].get("annotations") or {}).get(PAUSED) == "true"
        guard = lc.Guardrails(
            dry_run=self.settings.global_dry_run,
            paused="Deployment is annotated hemostat.dev/paused" if dep_paused else None,
            cooldown=MANUAL_COOLDOWN,
            max_actions_per_hour=MANUAL_BUDGET,
            recent_actions=_action_times(same_target, incident, status),
        )
        move = lc.manual_move(status, ispec, guard, deployment is not None, now)
        if isinstance(move, lc.Resolve):
            status = lc.record_resolved(status, move.message, now, by_person=True)
        elif isinstance(move, lc.Wait) and move.note:
            status = lc.record_note(status, move.note, now)
        elif isinstance(move, lc.Act) and deployment is not None:
            record, reason = await self._act(move, incident, deployment, status, MANUAL_WINDOW, None, now)
            if record is not None:
                status = lc.record_action(status, record, reason, now)
        self._observe(before, status, before.phase is None)
        if before.phase is None or _dump(before) != _dump(status):
            await self._write_incident(incident, deployment, None if before.phase is None else before, status)

    def _observe(self, before: IncidentStatus, after: IncidentStatus, fresh: bool) -> None:
        m = self.metrics
        began = after.started_at or after.detected_at
        for record in after.actions[len(before.actions) :]:
            m.actions.labels(step=record.step, action=record.action or record.step, result=record.result).inc()
        if not began:
            return
        start = c.parse_iso(began)
        if fresh and after.detected_at:
            m.time_to_detect.observe((c.parse_iso(after.detected_at) - start).total_seconds())
        if after.mitigated_at and after.mitigated_at != before.mitigated_at:
            m.time_to_mitigate.observe((c.parse_iso(after.mitigated_at) - start).total_seconds())
        if after.phase == "Resolved" and before.phase != "Resolved" and after.resolved_at:
            m.time_to_resolve.observe((c.parse_iso(after.resolved_at) - start).total_seconds())

    async def _plan(
        self,
        move: lc.Act,
        incident: dict[str, Any],
        deployment: dict[str, Any],
        status: IncidentStatus,
        rollout_window: timedelta,
        revision_since: datetime | None,
        now: datetime,
    ) -> Plan | Skip | Done:
        """Re-read the world and plan the step against what it is now."""
        step: MitigationStep = move.step
        ns, dname = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        fresh = await self.kube.get_deployment(ns, dname)
        name = incident["metadata"]["name"]
        if step.rollback is not None:
            facts = rollback.facts_from(fresh, await self._replicasets(fresh))
            return rollback.plan(
                facts,
                step.rollback,
                incident=name,
                index=move.index,
                detected_revision=status.revision,
                rollout_window=rollout_window,
                now=now,
                current_since=revision_since if facts.current and facts.current.number == status.revision else None,
            )
        if step.scale_up is not None:
            facts = scale.facts_from(fresh, await self.kube.list_hpas(ns))
            return scale.plan(facts, step.scale_up, incident=name, index=move.index, now=now)
        flag = step.disable_flag
        assert flag is not None
        if flag.feature_flag is not None:
            featureflag = await self.kube.get_featureflag(ns, flag.feature_flag.name)
            if featureflag is None:
                return Skip(f"FeatureFlag {flag.feature_flag.name} does not exist (or its CRD is not installed)")
            return flags.plan_featureflag(featureflag, flag, incident=name, index=move.index, now=now)
        assert flag.config_map is not None
        configmap = await self.kube.get_configmap(ns, flag.config_map.name)
        if configmap is None:
            return Skip(f"ConfigMap {flag.config_map.name} does not exist")
        return flags.plan(flags.facts_from(configmap), flag, incident=name, index=move.index, now=now)

    async def _act(
        self,
        move: lc.Act,
        incident: dict[str, Any],
        deployment: dict[str, Any],
        status: IncidentStatus,
        rollout_window: timedelta,
        revision_since: datetime | None,
        now: datetime,
    ) -> tuple[ActionRecord | None, str]:
        kind = move.step.kind
        at = c.now_iso(now)
        plan = await self._plan(move, incident, deployment, status, rollout_window, revision_since, now)
        if isinstance(plan, Done):
            record = ActionRecord(
                step=kind,
                action=plan.action,
                index=move.index,
                result="Succeeded",
                from_=plan.from_,
                to=plan.to,
                message="applied before a restart; confirmed from the marker on the changed object",
                at=plan.at,
            )
            return record, lc.ACTION_REASONS[plan.action]
        if isinstance(plan, Skip):
            return ActionRecord(step=kind, index=move.index, result="Skipped", message=plan.reason, at=at), (
                c.MITIGATION_SKIPPED
            )
        if move.dry_run:
            record = ActionRecord(
                step=kind,
                action=plan.action,
                index=move.index,
                result="DryRun",
                from_=plan.from_,
                to=plan.to,
                message=f"dry run: would {plan.action}; nothing changed",
                at=at,
            )
            return record, c.DRY_RUN
        ns, dname = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        target = plan.name or dname
        try:
            if plan.kind == "HorizontalPodAutoscaler":
                patched = await self.kube.json_patch_hpa(ns, target, plan.patch)
            elif plan.kind == "ConfigMap":
                patched = await self.kube.json_patch_configmap(ns, target, plan.patch)
            elif plan.kind == "FeatureFlag":
                patched = await self.kube.json_patch_featureflag(ns, target, plan.patch)
            else:
                patched = await self.kube.json_patch_deployment(ns, target, plan.patch)
        except Conflict:
            log.info("%s %s/%s changed while planning %s; re-reading next cycle", plan.kind, ns, target, plan.action)
            return None, ""
        if os.environ.get("HEMOSTAT_FAULT") == "exit-after-patch":
            os._exit(137)  # restart-safety tests: die between the change and its record
        message = ""
        if kind == "rollback":
            ok = rollback.applied(patched, plan)
        elif kind == "scaleUp":
            ok = scale.applied(patched, plan)
        else:
            ok, message = await self._verify_flag(move.step, plan)
        log.info("%s %s/%s: %s -> %s (%s)", plan.action, ns, target, plan.from_, plan.to, "ok" if ok else "NOT applied")
        record = ActionRecord(
            step=kind,
            action=plan.action,
            index=move.index,
            result="Succeeded" if ok else "Failed",
            from_=plan.from_,
            to=plan.to,
            message=message or ("" if ok else f"the {plan.kind} does not hold the planned change after the patch"),
            at=at,
        )
        return record, lc.ACTION_REASONS[plan.action]

    async def _verify_flag(self, step: MitigationStep, plan: Plan) -> tuple[bool, str]:
        """Evaluate the flag before and after through OpenFeature (flagd provider), as an app would."""
        ref = step.disable_flag.config_map or step.disable_flag.feature_flag if step.disable_flag else None
        assert ref is not None
        new = plan.patch[1]["value"]
        if isinstance(new, str):  # a ConfigMap holds the whole flagd document as text
            new = json.loads(new)["flags"][ref.flag]
        old = json.loads(plan.patch[3]["value"])[ref.flag]
        before, after = [
            await asyncio.to_thread(flageval.evaluate, json.dumps({"flags": {ref.flag: spec}}), ref.flag)
            for spec in (old, new)
        ]
        ok = after.error is None and after.variant == new["defaultVariant"]
        return ok, f"OpenFeature evaluation of {ref.flag}: {before.describe()} -> {after.describe()}"

    async def _write_incident(
        self,
        incident: dict[str, Any],
        deployment: dict[str, Any] | None,
        before: IncidentStatus | None,
        after: IncidentStatus,
    ) -> dict[str, Any]:
        if before is not None and _dump(before) == _dump(after):
            return incident
        meta = incident["metadata"]
        updated = await self.kube.patch_status("incidents", meta["namespace"], meta["name"], _dump(after))
        posts = [
            self._post(obj, entry.type, entry.reason, entry.message, c.parse_iso(entry.at))
            for entry in lc.new_entries(before, after)
            for obj in (updated, deployment)
            if obj is not None
        ]
        await asyncio.gather(*posts)
        return updated

    async def _post(self, obj: dict[str, Any], type_: str, reason: str, message: str, at: datetime) -> None:
        try:
            await self.kube.post_event(obj, type_, reason, message, at)
        except Exception as exc:  # an Event is a copy of the timeline; losing one is not fatal
            log.warning("could not post event %s on %s: %s", reason, obj["metadata"]["name"], exc)

    async def _write_policy_status(
        self, ns: str, name: str, old: MitigationPolicyStatus, new: MitigationPolicyStatus
    ) -> None:
        if _dump(old) != _dump(new):
            await self.kube.patch_status("mitigationpolicies", ns, name, _dump(new))


def _dump(model: Any, last: bool = True) -> dict[str, Any]:
    data = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    if not last:
        data.pop("lastEvaluated", None)
    return data


def _known_status(body: dict[str, Any]) -> dict[str, Any]:
    """Status as our model knows it; foreign keys (e.g. kopf's) are left to their owners."""
    return {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}


def _check_templates(spec: MitigationPolicySpec) -> None:
    dummy = {k: "x" for k in ("namespace", "deployment", "policy", "signal", "pod_template_hash")}
    for s in spec.signals:
        try:
            render_query(s.prometheus.query, dummy)
        except TemplateError as exc:
            raise ValueError(f"spec.signals[{s.name}].prometheus.query: {exc}") from None


def _action_times(history: list[dict[str, Any]], current: dict[str, Any], status: IncidentStatus) -> list[datetime]:
    """Times of real (not dry-run) actions on this target, from every incident in `history`;
    the current incident's from the status being built."""
    times = []
    for inc in history:
        actions = status.actions if inc["metadata"]["name"] == current["metadata"]["name"] else None
        if actions is None:
            actions = IncidentStatus.model_validate(_known_status(inc)).actions
        times += [c.parse_iso(a.at) for a in actions if a.result == "Succeeded"]
    return times


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
        )[:1024]
    return str(exc)[:1024]
