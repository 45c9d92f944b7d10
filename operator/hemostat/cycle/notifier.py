"""Webhook notifications, delivered beside the loop.

A delivery never delays a cycle: it runs as its own task, started after the cycle wrote the
Incident, and records its own outcome on the Incident (a status patch guarded by the version it
read, re-read on a Conflict). What was last sent, when, and what failed live in the Incident
only, so a restart neither loses nor repeats an update; a failed one is retried with backoff by
whichever cycle sees it due, Resolved Incidents included (the read phase hands those over).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import httpx

from .. import notify, paging
from ..decide import conditions as c
from ..decide import lifecycle as lc
from ..kube import Conflict, Kube, merge_patch
from ..models.incident import IncidentSpec, IncidentStatus
from ..models.policy import Notify
from ..outbound import Webhooks
from .objects import dump
from .snapshot import known_status

log = logging.getLogger("hemostat.notify")
Body = dict[str, Any]
ATTEMPTS = 3  # status writes per outcome before giving up (the next cycle then sends it again)


class Notifier:
    def __init__(self, kube: Kube, http: Webhooks | httpx.AsyncClient) -> None:
        self.kube, self.http = kube, http
        self._inflight: set[str] = set()  # only stops two tasks for one Incident at once
        self._tasks: set[asyncio.Task[None]] = set()
        self.settings: dict[str, Notify] = {}  # policy namespace/name -> its notify settings

    def start_if_due(
        self, incident: Body, ispec: IncidentSpec, status: IncidentStatus, now: datetime, settings: Notify | None = None
    ) -> None:
        """Start the delivery (an update, a page) the Incident's recorded state says is due, if any; `settings`:
        whose notify to use (default: the policy that opened it)."""
        meta = incident["metadata"]
        if settings is None and ispec.policy_ref:
            settings = self.settings.get(f"{meta['namespace']}/{ispec.policy_ref.name}")
        if settings is None or status.phase is None:
            return
        why = notify.due(status.notifications, status.phase, ispec.severity, settings.cadence, now)
        if settings.webhooks and why and meta["uid"] not in self._inflight:
            self._inflight.add(meta["uid"])
            self._spawn(self._deliver(incident, ispec, status, settings, why, now))
        page = paging.due(status.paging, settings.pages, ispec, status, now)
        if page is not None and f"{meta['uid']}/page" not in self._inflight:
            self._inflight.add(f"{meta['uid']}/page")
            self._spawn(self._page(incident, ispec, status, settings, page, now))

    async def _page(
        self, incident: Body, ispec: IncidentSpec, status: IncidentStatus, settings: Notify, page: paging.Page,
        now: datetime,
    ) -> None:  # fmt: skip
        meta = incident["metadata"]
        ns, name = meta["namespace"], meta["name"]
        started = time.monotonic()
        try:
            server = await self._server_status(meta)
            if server is None or paging.due(server.paging, settings.pages, ispec, status, now) != page:
                self._inflight.discard(f"{meta['uid']}/page")
                return  # sent and recorded meanwhile (the caller read the Incident before that), or gone
            targets = []
            for level in page.levels:
                receiver = settings.pages.levels[level].receiver
                url = await self.kube.secret_value(ns, receiver.secret_ref.name, receiver.secret_ref.key)
                ref = receiver.routing_key_ref
                key = await self.kube.secret_value(ns, ref.name, ref.key) if ref else None
                targets.append(paging.message(receiver.format, url, key, page, level, ns, name, ispec, status))
            error = await notify.deliver(self.http, targets)
        except Exception as exc:  # a missing Secret or key is a failed page, retried with backoff
            error = str(exc)
        if error:
            log.warning("%s page for incident %s/%s failed: %s", page.action, ns, name, error)
        at = now + timedelta(seconds=time.monotonic() - started)
        try:
            await self._update(meta, lambda s: after_page(s, page, paging.dedup_key(ns, name), error, at))
        except Exception as exc:  # unrecorded: the next cycle finds the page still due and sends it again
            log.warning("could not record the page of %s/%s: %s", ns, name, exc)
        finally:
            self._inflight.discard(f"{meta['uid']}/page")

    async def _deliver(
        self, incident: Body, ispec: IncidentSpec, status: IncidentStatus, settings: Notify, why: str, now: datetime
    ) -> None:
        meta = incident["metadata"]
        started = time.monotonic()
        try:
            server = await self._server_status(meta)
            phase = status.phase or ""
            if server is None or not notify.due(server.notifications, phase, ispec.severity, settings.cadence, now):
                self._inflight.discard(meta["uid"])
                return  # delivered and recorded meanwhile (the caller read the Incident before that), or gone
            targets = []
            for hook in settings.webhooks:
                url = await self.kube.secret_value(meta["namespace"], hook.secret_ref.name, hook.secret_ref.key)
                body = notify.payload(hook.format, meta["name"], meta["namespace"], ispec, status, why)
                targets.append((url, body))
            error = await notify.deliver(self.http, targets)
        except Exception as exc:  # a missing Secret or key is a delivery failure, not a crash
            error = str(exc)
        if error:
            log.warning("notification for incident %s/%s failed: %s", meta["namespace"], meta["name"], error)
        at = now + timedelta(seconds=time.monotonic() - started)
        try:
            await self._record(meta, status.phase or "", error, len(settings.webhooks), at)
        except Exception as exc:  # unrecorded: the next cycle finds the update still due and sends it again
            log.warning("could not record the notification of %s/%s: %s", meta["namespace"], meta["name"], exc)
        finally:
            self._inflight.discard(meta["uid"])

    async def _server_status(self, meta: Body) -> IncidentStatus | None:
        """The Incident's status as the server holds it now: what a delivery decides on."""
        fresh = await self.kube.get_incident(meta["namespace"], meta["name"])
        return IncidentStatus.model_validate(known_status(fresh)) if fresh is not None else None

    def policy_alert(self, namespace: str, policy: str, settings: Notify, reason: str, message: str) -> None:
        """A message about the policy itself (not an Incident) to its webhooks, in the background."""
        if settings.webhooks:
            self._spawn(self._alert(namespace, policy, settings, reason, message))

    def _spawn(self, delivery: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(delivery)
        self._tasks.add(task)  # the loop holds tasks weakly: keep each until it is done
        task.add_done_callback(self._tasks.discard)

    async def _alert(self, namespace: str, policy: str, settings: Notify, reason: str, message: str) -> None:
        for attempt in range(ATTEMPTS):
            try:
                targets = []
                for hook in settings.webhooks:
                    url = await self.kube.secret_value(namespace, hook.secret_ref.name, hook.secret_ref.key)
                    targets.append((url, notify.policy_payload(hook.format, policy, namespace, reason, message)))
                error = await notify.deliver(self.http, targets)
            except Exception as exc:  # a missing Secret or key
                error = str(exc)
            if error is None:
                return
            log.warning(
                "%s message for policy %s/%s failed (attempt %d): %s", reason, namespace, policy, attempt + 1, error
            )
            await asyncio.sleep(notify.BACKOFF_BASE.total_seconds() * 2**attempt)

    async def _record(self, meta: Body, phase: str, error: str | None, hooks: int, at: datetime) -> None:
        """The outcome onto the Incident as the server holds it now."""
        await self._update(meta, lambda s: after_delivery(s, phase, error, hooks, at))

    async def _update(self, meta: Body, change: Callable[[IncidentStatus], IncidentStatus]) -> None:
        """`change` applied to the Incident's status as the server holds it now (re-read on a Conflict)."""
        ns, name = meta["namespace"], meta["name"]
        for _ in range(ATTEMPTS):
            fresh = await self.kube.get_incident(ns, name)
            if fresh is None:
                return
            written = known_status(fresh)
            status = change(IncidentStatus.model_validate(written))
            patch = merge_patch(written, dump(status))
            try:
                await self.kube.patch_status("incidents", ns, name, patch, fresh["metadata"]["resourceVersion"])
                return
            except Conflict:  # the cycle wrote meanwhile: read again
                continue
        raise RuntimeError(f"the Incident kept changing ({ATTEMPTS} attempts)")


def after_delivery(status: IncidentStatus, phase: str, error: str | None, hooks: int, at: datetime) -> IncidentStatus:
    """Pure: the status with one delivery's outcome: its state (backoff on failure) and `Notified`."""
    out = status.model_copy(deep=True)
    out.notifications = notify.after_attempt(out.notifications, phase, error, at)
    message = error or f"{phase} update delivered to {hooks} webhook(s)"
    reason = "Delivered" if error is None else "DeliveryFailed"
    out.conditions = c.set_condition(out.conditions, "Notified", error is None, reason, message, at)
    return out


def after_page(status: IncidentStatus, page: paging.Page, key: str, error: str | None, at: datetime) -> IncidentStatus:
    """Pure: the status with one page's outcome: its state, `Paged`, and a trigger in the timeline."""
    out = status.model_copy(deep=True)
    out.paging = paging.after_attempt(out.paging, page, key, error, at)
    levels = ", ".join(str(x) for x in page.levels)
    said = {"trigger": f"paged escalation level {levels}", "acknowledge": "acknowledge sent to level(s) " + levels}
    message = error or said.get(page.action, f"resolve sent to level(s) {levels}") + f" (dedup key {key})"
    out.conditions = c.set_condition(out.conditions, "Paged", error is None, "Paged" if error is None else "PageFailed",
                                     message, at)  # fmt: skip
    if error is None and page.action == "trigger":
        lc.append_entry(out, at, "Paged", message, warning=True)
    return out


def keep_deliveries(status: IncidentStatus, written: dict[str, Any] | None) -> IncidentStatus:
    """`status` with the delivery state of the copy the server holds (deliveries record their own)."""
    if not written:
        return status
    server = IncidentStatus.model_validate(written)
    notified = [x for x in server.conditions if x.type in ("Notified", "Paged")]
    conditions = [x for x in status.conditions if x.type not in ("Notified", "Paged")] + notified
    return status.model_copy(
        update={"notifications": server.notifications, "paging": server.paging, "conditions": conditions}
    )
