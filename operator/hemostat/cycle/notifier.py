"""Webhook notifications, delivered beside the loop.

A delivery never delays a cycle: it runs as its own task, and its outcome is folded into
the Incident's status on the next cycle (one status write per cycle). What was last sent
and when lives in the Incident, so a restart neither loses nor repeats much.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from .. import notify
from ..decide import conditions as c
from ..kube import Kube
from ..models.incident import IncidentSpec, IncidentStatus
from ..models.policy import Notify

log = logging.getLogger("hemostat.notify")
Body = dict[str, Any]


class Notifier:
    def __init__(self, kube: Kube, http: httpx.AsyncClient) -> None:
        self.kube, self.http = kube, http
        self._outcomes: dict[str, tuple[str, str | None, datetime]] = {}
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.settings: dict[str, Notify] = {}  # policy namespace/name -> its notify settings

    def fold(self, incident: Body, ispec: IncidentSpec, status: IncidentStatus, now: datetime) -> IncidentStatus:
        """Fold the last delivery's outcome into status; start the next delivery if one is due."""
        meta = incident["metadata"]
        settings = self.settings.get(f"{meta['namespace']}/{ispec.policy_ref.name}") if ispec.policy_ref else None
        if settings is None or not settings.webhooks:
            return status
        uid = meta["uid"]
        out = status.model_copy(deep=True)
        if uid in self._outcomes:
            phase, error, at = self._outcomes.pop(uid)
            out.notifications = notify.after_attempt(out.notifications, phase, error, at)
            message = error or f"{phase} update delivered to {len(settings.webhooks)} webhook(s)"
            reason = "Delivered" if error is None else "DeliveryFailed"
            out.conditions = c.set_condition(out.conditions, "Notified", error is None, reason, message, now)
        if uid in self._inflight or out.phase is None:
            return out
        why = notify.due(out.notifications, out.phase, ispec.severity, settings.cadence, now)
        if why:
            self._inflight.add(uid)
            task = asyncio.create_task(self._deliver(uid, incident, ispec, out, settings, why))
            self._tasks.add(task)  # the loop holds tasks weakly: keep each until it is done
            task.add_done_callback(self._tasks.discard)
        return out

    async def _deliver(
        self, uid: str, incident: Body, ispec: IncidentSpec, status: IncidentStatus, settings: Notify, why: str
    ) -> None:
        meta = incident["metadata"]
        try:
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
        self._outcomes[uid] = (status.phase or "", error, datetime.now(UTC))
        self._inflight.discard(uid)
