"""A delivery decides on the Incident as the server holds it: a cycle that read the Incident just before
the last delivery recorded itself must not send the same update (or page) again (seen in a clean-clone
CI run: three 'Monitoring' updates for one incident)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from hemostat.cycle.notifier import Notifier
from hemostat.models.incident import IncidentSpec, IncidentStatus
from hemostat.models.policy import Notify

NOW = datetime(2026, 12, 6, 14, 0, 10, tzinfo=UTC)
STALE = {"phase": "Monitoring", "detectedAt": "2026-12-06T14:00:00Z"}
DELIVERED = {
    **STALE,
    "notifications": {"lastPhase": "Monitoring", "lastSentAt": "2026-12-06T14:00:05Z"},
    "paging": {"dedupKey": "hemostat/shop/web-1", "pagedAt": ["2026-12-06T14:00:05Z"]},
}


class Kube:
    def __init__(self) -> None:
        self.reads = 0

    async def get_incident(self, namespace: str, name: str) -> dict[str, Any]:
        self.reads += 1
        return {
            "metadata": {"name": name, "namespace": namespace, "uid": "u", "resourceVersion": "9"},
            "status": DELIVERED,
        }

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        return "http://127.0.0.1:9/hook"


class Http:
    def __init__(self) -> None:
        self.posts: list[str] = []

    async def post(self, url: str, **_: Any) -> Any:
        self.posts.append(url)
        raise AssertionError("an update or page the Incident already records was sent again")


def test_an_update_or_page_already_recorded_on_the_server_is_not_sent_again() -> None:
    http, kube = Http(), Kube()
    notifier = Notifier(kube, http)  # type: ignore[arg-type]
    hook = {"secretRef": {"name": "h", "key": "url"}}
    settings = Notify.model_validate(
        {"webhooks": [hook], "pages": {"levels": [{"receiver": {**hook, "format": "json"}}]}}
    )
    spec = IncidentSpec.model_validate({"severity": "SEV1", "summary": "x", "target": {"name": "web"}})
    incident = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u", "resourceVersion": "8"}}

    async def go() -> None:
        notifier.start_if_due(incident, spec, IncidentStatus.model_validate(STALE), NOW, settings)
        await asyncio.gather(*notifier._tasks)

    asyncio.run(go())
    assert http.posts == [] and kube.reads >= 1
