"""apply: what the API server answered is what the record says (a fake server, plain values)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException
from test_cycle_plan import NOW, deployment, monitoring, only, open_incident, policy, snapshot, view

from hemostat.cycle import plan as p
from hemostat.cycle.apply import Applier
from hemostat.decide import ledger
from hemostat.kube import ApiError
from hemostat.metrics import Metrics
from hemostat.models.incident import IncidentStatus

FREEZE = "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'freeze' denied request: release freeze"


class FrozenServer:
    """Refuses every change to a pod template, as an admission policy would; takes anything else."""

    def __init__(self) -> None:
        self.deployment_patches: list[list[dict[str, Any]]] = []
        self.status: dict[str, Any] = {}

    async def json_patch_target(self, _w: Any, ns: str, name: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        self.deployment_patches.append(patch)
        if any(op["path"].startswith("/spec/template") for op in patch):
            exc = ApiException(status=403, reason="Forbidden")
            exc.body = json.dumps({"kind": "Status", "message": FREEZE, "reason": "Forbidden", "code": 403})
            raise ApiError(exc)
        return {"metadata": {"name": name, "namespace": ns}}

    async def patch_status(self, resource: str, ns: str, name: str, patch: Any, rv: str | None = None) -> Any:
        self.status = patch
        return {"metadata": {"name": name, "namespace": ns, "resourceVersion": "2"}}

    async def get_incident(self, ns: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}, "status": {}}

    async def post_event(self, *args: Any) -> None:
        return None


def test_a_change_the_server_refuses_is_a_failed_step_that_counts() -> None:
    server = FrozenServer()
    ladder = policy([{"rollback": {}}, {"scaleUp": {"factor": 2, "maxReplicas": 4}}])
    tp = only(p.decide(snapshot(view(0.5, incident=open_incident(monitoring())), spec=ladder), NOW))
    assert tp.change is not None and tp.change.plan.action == "rollback"
    tp = replace(tp, incident={"metadata": {**tp.incident["metadata"], "resourceVersion": "1"}})

    asyncio.run(Applier(server, Metrics()).target(tp, NOW, world=None))  # type: ignore[arg-type]

    written = IncidentStatus.model_validate(server.status)
    (action,) = written.actions
    assert (action.step, action.result) == ("rollback", "Failed")
    assert action.message == f"refused by the API server: 403 Forbidden: {FREEZE}"
    assert written.timeline[-1].reason == "MitigationFailed" and written.phase == "Mitigating"
    # the ledger entry was refused along with the change, so it is written on its own
    alone = server.deployment_patches[-1]
    assert [op["path"] for op in alone[:-1]] == ["/metadata/generation", "/metadata/annotations"]
    assert alone[-1]["op"] == "add" and alone[-1]["path"].endswith("hemostat.dev~1actions")

    # next cycle, still breaching: the refused step is not retried, and it holds the next one for the cooldown
    annotations = {ledger.LEDGER: alone[-1]["value"]}
    later = NOW + timedelta(seconds=10)
    again = open_incident(written)
    tp = only(
        p.decide(snapshot(view(0.5, dep=deployment(annotations=annotations), incident=again), spec=ladder), later)
    )
    assert tp.change is None and tp.status is not None
    assert tp.status.timeline[-1].message.startswith("next step scaleUp held: cooldown 5m after the action at")
