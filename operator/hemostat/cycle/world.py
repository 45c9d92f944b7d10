"""Where the read phase gets the objects around a policy: watch caches, or plain LISTs.

`Cached` answers from the operator's watch caches (informer.py: Deployments, ReplicaSets, Incidents, HPAs),
so a steady-state round makes no LIST call: the scale path. `Listed` asks the API server,
for callers without a running operator (the cycle tests, the CLI).

A cache can lag a write by a moment. Every write the cycle makes is guarded (patches test
generation and annotations, status writes carry the resourceVersion they were based on), so
a stale copy can only cost one cycle, never a wrong write. The one gap a guard cannot close,
an Incident this operator just created that the cache does not show yet, is closed by
remembering it: without that, the next round would open a second Incident.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol

from ..kube import Kube, matches, selector_string
from ..models.common import LabelSelector
from ..workloads import DEPLOYMENT, KINDS, ROLLOUT, TargetKind, Workload
from .snapshot import POLICY_LABEL

Body = dict[str, Any]
REMEMBER_FOR = 120.0  # seconds an Incident we created is kept beside the cache
INDEX: dict[str, str] = {"Deployment": "deployment_index", "Rollout": "rollout_index"}  # the caches by kind


class World(Protocol):
    async def targets(self, namespace: str, selector: LabelSelector, kind: TargetKind) -> list[Body]:
        """The workloads of this kind the selector picks, each with its `kind` set."""
        ...

    async def target(self, namespace: str, name: str, kind: TargetKind) -> Body | None: ...

    def watches(self, kind: TargetKind) -> bool:
        """Whether targets of this kind can be read at all (Rollouts: only with --argo-rollouts)."""
        ...

    async def replicasets(self, namespace: str, owners: Collection[str]) -> list[Body]:
        """The ReplicaSets owned by the workloads with these uids."""
        ...

    async def incidents(self, namespace: str, policy: str) -> list[Body]: ...

    async def hpas(self, namespace: str) -> list[Body]: ...

    def created(self, incident: Body) -> None: ...


class Listed:
    """LIST calls, one per kind per round."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def watches(self, kind: TargetKind) -> bool:
        return True  # a LIST answers for any kind whose CRD is installed

    async def targets(self, namespace: str, selector: LabelSelector, kind: TargetKind) -> list[Body]:
        found = await self.kube.list_targets(KINDS[kind], namespace, selector_string(selector))
        return [with_kind(body, KINDS[kind]) for body in found]

    async def target(self, namespace: str, name: str, kind: TargetKind) -> Body | None:
        found = await self.kube.find_target(KINDS[kind], namespace, name)
        return with_kind(found, KINDS[kind]) if found is not None else None

    async def replicasets(self, namespace: str, owners: Collection[str]) -> list[Body]:
        wanted = set(owners)
        return [rs for rs in await self.kube.list_replicasets(namespace) if wanted & set(owner_uids(rs))]

    async def incidents(self, namespace: str, policy: str) -> list[Body]:
        return await self.kube.list_incidents(namespace, f"{POLICY_LABEL}={policy}")

    async def hpas(self, namespace: str) -> list[Body]:
        return await self.kube.list_hpas(namespace)

    def created(self, incident: Body) -> None:
        pass  # a LIST sees it


class Cached:
    """The watch caches' indices, looked up by key so a round costs what its own targets cost, not what the
    namespace holds (100 policies of 100 Deployments in one namespace of 10,000).

    deployment_index: (namespace, name) -> the Deployment; namespace -> its name; and
    (namespace, label, value) -> its name for each label (matchLabels are set intersections);
    rollout_index the same for Rollouts, when the operator watches them.
    replicaset_index: (namespace, owner uid) -> the ReplicaSet. hpa_index: namespace -> the HPA.
    incident_index: (namespace, policy) -> the Incident. Values are trimmed copies, never mutated.
    """

    def __init__(self, indices: Mapping[str, Any], remembered: dict[tuple[str, str], tuple[float, Body]]) -> None:
        self.indices = indices
        self.remembered = remembered  # shared by every policy loop of the operator

    def _values(self, index: str, key: Any) -> list[Body]:
        store = self.indices[index].get(key)
        return [dict(v) for v in store] if store is not None else []

    def watches(self, kind: TargetKind) -> bool:
        return INDEX[kind] in self.indices

    def _targets_index(self, kind: TargetKind) -> Any:
        index = self.indices.get(INDEX[kind])
        if index is None:  # callers ask watches() first (parse_spec, ManualRequests): a bug if reached
            raise ValueError(f"this operator does not watch {kind}s (run it with --argo-rollouts)")
        return index

    async def targets(self, namespace: str, selector: LabelSelector, kind: TargetKind) -> list[Body]:
        index = self._targets_index(kind)
        keys: list[object] = [(namespace, k, v) for k, v in selector.match_labels.items()] or [namespace]
        names: set[str] | None = None
        for key in keys:
            found = set(index.get(key) or ())
            names = found if names is None else names & found
        out = []
        for name in sorted(names or ()):
            for d in index.get((namespace, name)) or ():
                if matches(selector, d["metadata"].get("labels") or {}):
                    out.append(dict(d))
        return out

    async def target(self, namespace: str, name: str, kind: TargetKind) -> Body | None:
        found = self._targets_index(kind).get((namespace, name))
        return dict(next(iter(found))) if found else None

    async def replicasets(self, namespace: str, owners: Collection[str]) -> list[Body]:
        return [rs for uid in owners for rs in self._values("replicaset_index", (namespace, uid))]

    async def hpas(self, namespace: str) -> list[Body]:
        return self._values("hpa_index", namespace)

    async def incidents(self, namespace: str, policy: str) -> list[Body]:
        found = self._values("incident_index", (namespace, policy))
        seen = {i["metadata"]["name"] for i in found}
        now = time.monotonic()
        for key, (at, body) in list(self.remembered.items()):
            if now - at > REMEMBER_FOR:
                del self.remembered[key]
            elif key[0] == namespace and key[1] not in seen and body["metadata"]["labels"][POLICY_LABEL] == policy:
                found.append(body)
        return found

    def created(self, incident: Body) -> None:
        meta = incident["metadata"]
        self.remembered[(meta["namespace"], meta["name"])] = (time.monotonic(), incident)


# --- what the indices keep: only the fields the cycle reads --------------------------------------


def _pick(source: Mapping[str, Any], keys: Iterable[str]) -> Body:
    return {k: _plain(source[k]) for k in keys if k in source}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_META = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "annotations", "creationTimestamp")


def owner_uids(rs: Mapping[str, Any]) -> list[str]:
    return [ref["uid"] for ref in rs["metadata"].get("ownerReferences") or [] if ref.get("uid")]


def target_keys(body: Mapping[str, Any]) -> dict[Any, Any]:
    """What deployment_index (rollout_index) keeps of one Deployment (Rollout): see Cached."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    keys: dict[Any, Any] = {(ns, name): trim_target(body), ns: name}
    keys.update({(ns, k, v): name for k, v in (meta.get("labels") or {}).items()})
    return keys


def replicaset_keys(body: Mapping[str, Any]) -> dict[Any, Any]:
    """What replicaset_index keeps of one ReplicaSet: a copy under each owner it has."""
    trimmed = trim_replicaset(body)
    return {(body["metadata"]["namespace"], uid): trimmed for uid in owner_uids(body)}


def incident_keys(body: Mapping[str, Any]) -> dict[Any, Any]:
    """What incident_index keeps of one Incident: under (namespace, its policy label)."""
    meta = body["metadata"]
    policy = (meta.get("labels") or {}).get(POLICY_LABEL)
    return {(meta["namespace"], policy): trim_incident(body)} if policy else {}


def trim_target(body: Mapping[str, Any]) -> Body:
    workload = KINDS.get(str(body.get("kind") or "Deployment"), DEPLOYMENT)
    return {
        "apiVersion": workload.api_version,
        "kind": workload.kind,
        "metadata": _pick(body["metadata"], _META),
        "spec": _pick(
            body.get("spec") or {}, ("replicas", "selector", "template", "paused", "progressDeadlineSeconds")
        ),
        "status": _trim_status(body.get("status") or {}, workload),
    }


def _trim_status(status: Mapping[str, Any], workload: Workload) -> Body:
    """A Deployment: enough to tell a stalled rollout (decide/progress.py), the Progressing condition and
    for which generation. A Rollout: where its update stands (actions/rollout.py)."""
    if workload is ROLLOUT:
        return _pick(status, ("currentPodHash", "stableRS", "abort", "phase", "currentStepIndex"))
    out = _pick(status, ("observedGeneration", "unavailableReplicas"))
    out["conditions"] = [_plain(x) for x in status.get("conditions") or [] if x.get("type") == "Progressing"]
    return out


def with_kind(body: Body, workload: Workload) -> Body:
    """A LISTed item (which carries no apiVersion/kind) as the caches keep it."""
    return {**body, "apiVersion": workload.api_version, "kind": workload.kind}


def trim_replicaset(body: Mapping[str, Any]) -> Body:
    meta = _pick(body["metadata"], (*_META, "ownerReferences"))
    # Only when each manager last wrote the object: what rollback uses to date a revision.
    meta["managedFields"] = [
        _pick(m, ("time", "subresource")) for m in body["metadata"].get("managedFields") or [] if m.get("time")
    ]
    return {"metadata": meta, "spec": _pick(body.get("spec") or {}, ("template", "replicas"))}


def trim_hpa(body: Mapping[str, Any]) -> Body:
    return {
        "metadata": _pick(body["metadata"], _META),
        "spec": _pick(body.get("spec") or {}, ("scaleTargetRef", "minReplicas", "maxReplicas")),
    }


def trim_incident(body: Mapping[str, Any]) -> Body:
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": _pick(body["metadata"], _META),
        "spec": _plain(body.get("spec") or {}),
        "status": _plain(body.get("status") or {}),
    }
