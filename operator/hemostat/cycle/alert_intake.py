"""Alertmanager's webhook receiver: alerts in over HTTP (its own port), Incidents out.

Anyone who reaches the port could otherwise open Incidents, so every request needs the bearer token
from a file (a mounted Secret, read for every request): 401 without it. A malformed payload is a 400
with the reason, and creates nothing. Alerts wait in a bounded queue, taken by one worker, so a flood
never stalls the policy cycles: when it is full the request is a 429 (Alertmanager retries) and counted.
What an alert changed lives in the Incident (status.alerts), so Alertmanager's resends change nothing
and a restart opens nothing twice; an alert that fired while the operator was down comes with the
next resend (Alertmanager repeats firing alerts).

An alert a policy's alert signal uses goes on the board that signal reads, and wakes the policies of its
namespace at once; it opens no Incident of its own (the policy's ladder answers it), but is recorded on
the target's open Incident like any other.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from .. import alerts
from ..decide import lifecycle as lc
from ..kube import Conflict, Kube, matches, merge_patch
from ..metrics import Metrics
from ..models.incident import IncidentSpec, IncidentStatus
from ..models.policy import MitigationPolicySpec, Notify
from .notifier import Notifier
from .objects import Body, dump, incident_name, label_value
from .snapshot import TARGET_LABEL, is_expired, is_open, is_unsent, known_status

log = logging.getLogger("hemostat.alerts")
ATTEMPTS = 3


class AlertIntake:
    def __init__(
        self,
        kube: Kube,
        metrics: Metrics,
        token_file: Path,
        namespaces: tuple[str, ...] = (),
        labels: tuple[str, str, str] = ("namespace", "deployment", "severity"),
        queue: int = 1000,
        acting: Callable[[], bool] = lambda: True,
        notifier: Notifier | None = None,
        notify_policy: str | None = None,
        retention: timedelta | None = None,
        board: alerts.Board | None = None,
        wake: Callable[[str], None] = lambda namespace: None,
    ) -> None:
        self.kube, self.metrics, self.token_file, self.namespaces = kube, metrics, token_file, namespaces
        self.acting = acting  # a standby replica answers 503: Alertmanager retries, and reaches the leader
        # alert-only Incidents are notified and paged with the `notify` of this policy in their namespace
        self.notifier, self.notify_policy = notifier, notify_policy
        self.retention = retention  # Resolved alert-only Incidents are deleted this long after (--incident-retention)
        self.namespace_label, self.target_label, self.severity_label = labels
        self.queue: asyncio.Queue[alerts.Alert] = asyncio.Queue(maxsize=queue)
        self.board = board or alerts.Board(timedelta(minutes=5), lambda: None)
        self.wake = wake  # the policy loops of a namespace evaluate at once

    async def receive(self, request: web.Request) -> web.Response:
        wanted = f"Bearer {self.token_file.read_text().strip()}".encode()
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), wanted):
            self.metrics.alerts_refused.labels(code="401").inc()
            return web.Response(status=401, text="missing or wrong bearer token\n")
        if not self.acting():
            return web.Response(status=503, text="a standby replica: the leader takes alerts\n")
        payload, error = alerts.parse(await request.read())
        if payload is None:
            self.metrics.alerts_refused.labels(code="400").inc()
            return web.Response(status=400, text=f"{error}\n")
        if self.queue.maxsize - self.queue.qsize() < len(payload.alerts):  # all or none: retried whole
            self.metrics.alerts_refused.labels(code="429").inc()
            return web.Response(status=429, text=f"{self.queue.qsize()} alerts are waiting; send again later\n")
        now = datetime.now(UTC)
        if not all([self.board.take(alert, now) for alert in payload.alerts]):
            self.metrics.alerts_refused.labels(code="429").inc()
            return web.Response(status=429, text=f"{len(self.board.held)} firing alerts are held; send again later\n")
        for alert in payload.alerts:
            self.queue.put_nowait(alert)
            self.metrics.alerts_received.labels(state=alert.status).inc()
        for namespace in {t.namespace for a in payload.alerts if (t := self._target(a))}:
            self.wake(namespace)
        return web.Response(status=200, text="ok\n")

    def _target(self, alert: alerts.Alert) -> alerts.Target | None:
        target = alerts.target_of(alert, self.namespace_label, self.target_label)
        return None if target is None or (self.namespaces and target.namespace not in self.namespaces) else target

    async def work(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                await self.apply(alert, datetime.now(UTC))
            except Exception as exc:  # one alert that cannot be recorded never stops the others
                log.warning("alert %s (%s): %s", alert.name, alert.fingerprint, exc)

    async def apply(self, alert: alerts.Alert, now: datetime) -> None:
        """Record the alert on the target's open Incident, or open one when it fires on a Deployment that exists
        (guarded writes, re-read on a Conflict)."""
        target = self._target(alert)
        if target is None:
            return
        for _ in range(ATTEMPTS):
            found = await self.kube.list_incidents(target.namespace, f"{TARGET_LABEL}={label_value(target.name)}")
            mine = sorted((i for i in found if is_open(i)), key=lambda i: i["metadata"]["creationTimestamp"])
            if not mine:
                if alert.status != "firing":
                    return
                deployment = await self.kube.find_deployment(target.namespace, target.name)
                if deployment is None:
                    return
                policies = await self.kube.list_policies(target.namespace)
                if claimed_by(alert, target, deployment, policies):
                    return  # the policy's alert signal reads it from the board: its ladder answers
                await self._create(alert, target, now)
                continue  # its first status is written below, as after a crash between the two
            incident = mine[0]
            written = known_status(incident)
            current = IncidentStatus.model_validate(written)
            if current.phase is None and incident["spec"].get("source") == "alert":
                status: IncidentStatus | None = alerts.opened(alert, now)
            else:
                status = alerts.record(current, alert, now)
            if status is None:
                return
            if incident["spec"].get("source") == "alert" and alerts.all_resolved(status):
                status = lc.record_resolved(status, "every alert that opened it resolved", now)
            meta = incident["metadata"]
            try:
                patch = merge_patch(written, dump(status))
                version = meta["resourceVersion"]
                after = await self.kube.patch_status("incidents", meta["namespace"], meta["name"], patch, version)
            except Conflict:  # the policy cycle wrote it meanwhile
                continue
            if incident["spec"].get("source") == "alert":
                await self.notify(after, now)
            return

    async def notify(self, incident: Body, now: datetime, settings: Notify | None = None) -> None:
        """Start the update or page an alert-only Incident is due, with the notify policy's settings."""
        if self.notifier is None:
            return
        settings = settings or await self.settings(incident["metadata"]["namespace"])
        if settings is None:
            return
        try:
            spec = IncidentSpec.model_validate(incident["spec"])
            status = IncidentStatus.model_validate(known_status(incident))
        except ValueError:  # pydantic's too: an Incident someone spoiled notifies nobody
            return
        self.notifier.start_if_due(incident, spec, status, now, settings)

    async def settings(self, namespace: str) -> Notify | None:
        """The `notify` of the notify policy in `namespace` (None: no such policy, or spoiled)."""
        if self.notify_policy is None:
            return None
        policy = await self.kube.get_policy(namespace, self.notify_policy)
        try:
            return Notify.model_validate((policy.get("spec") or {}).get("notify") or {}) if policy else None
        except ValueError:
            return None

    async def tend(self, every: float = 30.0) -> None:
        """Escalation and reminders move with time, not with alerts: look at the open alert-only Incidents
        (and those whose last update or resolve is unsent) every `every` seconds; delete those past retention.
        The notify policy is read once per namespace per round."""
        while True:
            await asyncio.sleep(every)
            if not self.acting():
                continue
            now = datetime.now(UTC)
            try:
                found = await self._alert_incidents()
                told: dict[str, Notify | None] = {}
                for incident in found:
                    meta = incident["metadata"]
                    if is_expired(incident, self.retention, now):
                        await self.kube.delete_incident(meta["namespace"], meta["name"])
                        continue
                    if self.notifier is None:
                        continue
                    if meta["namespace"] not in told:
                        told[meta["namespace"]] = await self.settings(meta["namespace"])
                    settings = told[meta["namespace"]]
                    if settings is None:
                        continue
                    unsent = is_unsent(incident, now, bool(settings.webhooks), bool(settings.pages.levels))
                    if is_open(incident) or unsent:
                        await self.notify(incident, now, settings)
            except Exception as exc:  # the next round tries again
                log.warning("tending alert incidents: %s", exc)

    async def _alert_incidents(self) -> list[Body]:
        if self.namespaces:
            found = [i for ns in self.namespaces for i in await self.kube.list_incidents(ns, TARGET_LABEL)]
        else:
            found = await self.kube.list_all_incidents(TARGET_LABEL)
        return [i for i in found if i["spec"].get("source") == "alert"]

    async def _create(self, alert: alerts.Alert, target: alerts.Target, now: datetime) -> None:
        name = incident_name(target.name, f"alert/{alert.name}", now)
        body = {
            "apiVersion": "hemostat.dev/v1alpha1",
            "kind": "Incident",
            "metadata": {"name": name, "labels": {TARGET_LABEL: label_value(target.name)}},
            "spec": alerts.spec_of(alert, target, alerts.severity_of(alert, self.severity_label)),
        }
        try:
            await self.kube.create_incident(target.namespace, body)
            log.info("alert %s opened incident %s/%s", alert.name, target.namespace, name)
        except Conflict:  # opened a moment ago (the same second)
            pass

    async def serve(self, address: str, port: int) -> web.AppRunner:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/alerts", self.receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address, port).start()
        return runner


def claimed_by(alert: alerts.Alert, target: alerts.Target, deployment: Body, policies: list[Body]) -> str | None:
    """Pure: the policy whose alert signal uses this alert for this Deployment, if one does."""
    labels = deployment["metadata"].get("labels") or {}
    for policy in policies:
        try:
            spec = MitigationPolicySpec.model_validate(policy.get("spec") or {})
        except ValueError:  # an invalid policy reads no alerts
            continue
        if spec.target.kind != "Deployment" or not matches(spec.target.selector, labels):
            continue
        if any(s.alert and alerts.matches(s.alert, alert.labels, target.namespace, target.name) for s in spec.signals):
            return str(policy["metadata"]["name"])
    return None
