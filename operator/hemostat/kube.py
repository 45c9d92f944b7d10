"""Kubernetes I/O: a thin async facade over the official client.

The official client is synchronous; every call runs in a worker thread of this facade's
own pool (never the loop's default pool, which leader election uses) and carries a
timeout, so a slow or silent API server can neither stall kopf's event loop nor hang a
cycle. Nothing here decides anything: callers pass plain dicts in and get plain dicts back.

Status writes are JSON merge patches computed by `merge_patch`: a field the new status
no longer has is sent as null, because under merge-patch rules an absent key is kept.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .models.common import GROUP, VERSION, LabelSelector
from .workloads import DEPLOYMENT, Workload

Body = dict[str, Any]
COMPONENT = "hemostat"
OPENFEATURE = ("core.openfeature.dev", "v1beta1")  # the OpenFeature Operator's FeatureFlag


class Conflict(Exception):
    """The object changed since we read it (409, or a failed JSON-patch `test`)."""


def _failed_test(exc: ApiException) -> bool:
    """A JSON patch whose `test` failed: the API server answers 422 Invalid with this generic
    message and no field causes (a patch that is invalid for another reason names its fields)."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return False
    message = body.get("message", "")
    generic = "the server rejected our request due to an error in our request"
    return "test operation" in message or (message == generic and not (body.get("details") or {}).get("causes"))


class ApiError(Exception):
    """Any other API error, as one line: status, reason and the server's own message."""

    def __init__(self, exc: ApiException) -> None:
        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = ""
        super().__init__(f"{exc.status} {exc.reason}: {message}" if message else f"{exc.status} {exc.reason}")
        self.status = exc.status


def transient(exc: BaseException) -> bool:
    """A failure the same write may not meet again: a Conflict (re-read first), the server too busy (429, 5xx),
    or no answer at all (a timeout, a dropped connection). A refusal (RBAC, validation, admission) stays one."""
    if isinstance(exc, Conflict):
        return True
    if isinstance(exc, ApiError):
        return exc.status == 429 or (exc.status or 0) >= 500
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError))


def selector_string(selector: LabelSelector) -> str:
    parts = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for e in selector.match_expressions:
        if e.operator == "In":
            parts.append(f"{e.key} in ({','.join(e.values)})")
        elif e.operator == "NotIn":
            parts.append(f"{e.key} notin ({','.join(e.values)})")
        elif e.operator == "Exists":
            parts.append(e.key)
        else:
            parts.append(f"!{e.key}")
    return ",".join(parts)


def merge_patch(before: Any, after: Any) -> Any:
    """RFC 7386: the merge patch that turns `before` into `after` (None when they are equal).

    Keys only `before` has become explicit nulls, so the server clears them; lists are
    replaced whole, as merge patches always replace them.
    """
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None if before == after else after
    patch: dict[str, Any] = {k: None for k in before if k not in after}
    for key, value in after.items():
        if key not in before:
            patch[key] = value
        elif before[key] != value:
            patch[key] = merge_patch(before[key], value) if isinstance(value, dict) else value
    return patch or None


def matches(selector: LabelSelector, labels: dict[str, str]) -> bool:
    """Pure: whether `labels` satisfy the selector, as the API server evaluates it."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for e in selector.match_expressions:
        present = e.key in labels
        if e.operator == "In" and not (present and labels[e.key] in e.values):
            return False
        if e.operator == "NotIn" and present and labels[e.key] in e.values:
            return False
        if e.operator == "Exists" and not present:
            return False
        if e.operator == "DoesNotExist" and present:
            return False
    return True


def pooled_client(connections: int) -> client.ApiClient:
    """A client on the loaded kubeconfig that keeps `connections` connections alive.

    The official client keeps 5 per CPU; threads beyond that open connections and then
    discard them, with a urllib3 warning each time."""
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = connections
    return client.ApiClient(configuration=cfg)


class Kube:
    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        *,
        timeout: float = 30.0,
        workers: int = 16,
        on_call: Callable[[str], None] | None = None,
    ) -> None:
        self.api = api_client or pooled_client(workers)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.autoscaling = client.AutoscalingV2Api(self.api)
        self.admission = client.AdmissionregistrationV1Api(self.api)
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self.on_call = on_call  # counts each call by client method (the operator's metrics)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", (min(5.0, self.timeout), self.timeout))
        if self.on_call is not None:
            self.on_call(fn.__name__)
        call = functools.partial(fn, *args, **kwargs)
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.pool, call)
        except ApiException as exc:
            if exc.status == 409 or (exc.status == 422 and _failed_test(exc)):
                raise Conflict(str(exc.reason)) from exc
            raise ApiError(exc) from None
        return self.api.sanitize_for_serialization(result)

    async def _find(self, fn: Any, *args: Any) -> Any:
        """Like _call, but a missing object (404) is None, not an error."""
        try:
            return await self._call(fn, *args)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _json_patch(self, fn: Any, *args: Any) -> Any:
        """A JSON patch (RFC 6902): its `test` operations make it a guarded write."""
        return await self._call(fn, *args, _content_type="application/json-patch+json")

    # Deployments and ReplicaSets
    async def list_deployments(self, namespace: str, selector: str) -> list[Body]:
        out = await self._call(self.apps.list_namespaced_deployment, namespace, label_selector=selector)
        return [{"apiVersion": "apps/v1", "kind": "Deployment", **d} for d in out["items"]]

    async def get_deployment(self, namespace: str, name: str) -> Body:
        out = await self._call(self.apps.read_namespaced_deployment, name, namespace)
        return {"apiVersion": "apps/v1", "kind": "Deployment", **out}

    async def find_deployment(self, namespace: str, name: str) -> Body | None:
        out = await self._find(self.apps.read_namespaced_deployment, name, namespace)
        return {"apiVersion": "apps/v1", "kind": "Deployment", **out} if out is not None else None

    async def list_replicasets(self, namespace: str, selector: str = "") -> list[Body]:
        out = await self._call(self.apps.list_namespaced_replica_set, namespace, label_selector=selector)
        return out["items"]

    async def list_pods(self, namespace: str, selector: str) -> list[Body]:
        out = await self._call(self.core.list_namespaced_pod, namespace, label_selector=selector)
        return out["items"]

    async def json_patch_deployment(self, namespace: str, name: str, patch: list[Body]) -> Body:
        return await self._json_patch(self.apps.patch_namespaced_deployment, name, namespace, patch)

    # What a policy targets (workloads.py): a Deployment, or a Rollout through the custom-objects API
    async def list_targets(self, workload: Workload, namespace: str, selector: str) -> list[Body]:
        if workload is DEPLOYMENT:
            return await self.list_deployments(namespace, selector)
        g, v, plural = workload.api
        out = await self._call(
            self.custom.list_namespaced_custom_object, g, v, namespace, plural, label_selector=selector
        )
        return list(out["items"])

    async def find_target(self, workload: Workload, namespace: str, name: str) -> Body | None:
        if workload is DEPLOYMENT:
            return await self.find_deployment(namespace, name)
        return await self.get_custom(workload.api, namespace, name)

    async def json_patch_target(self, workload: Workload, namespace: str, name: str, patch: list[Body]) -> Body:
        if workload is DEPLOYMENT:
            return await self.json_patch_deployment(namespace, name, patch)
        return await self.json_patch_custom(workload.api, namespace, name, patch)

    async def list_hpas(self, namespace: str) -> list[Body]:
        out = await self._call(self.autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace)
        return out["items"]

    async def json_patch_hpa(self, namespace: str, name: str, patch: list[Body]) -> Body:
        return await self._json_patch(
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler, name, namespace, patch
        )

    async def get_configmap(self, namespace: str, name: str) -> Body | None:
        return await self._find(self.core.read_namespaced_config_map, name, namespace)

    async def json_patch_configmap(self, namespace: str, name: str, patch: list[Body]) -> Body:
        return await self._json_patch(self.core.patch_namespaced_config_map, name, namespace, patch)

    async def get_featureflag(self, namespace: str, name: str) -> Body | None:
        return await self._find(self.custom.get_namespaced_custom_object, *OPENFEATURE, namespace, "featureflags", name)

    async def json_patch_featureflag(self, namespace: str, name: str, patch: list[Body]) -> Body:
        return await self._json_patch(
            self.custom.patch_namespaced_custom_object, *OPENFEATURE, namespace, "featureflags", name, patch
        )

    async def get_custom(self, api: tuple[str, str, str], namespace: str, name: str) -> Body | None:
        """A custom object (group, version, plural), None when it does not exist."""
        return await self._find(self.custom.get_namespaced_custom_object, *api[:2], namespace, api[2], name)

    async def json_patch_custom(self, api: tuple[str, str, str], namespace: str, name: str, patch: list[Body]) -> Body:
        return await self._json_patch(
            self.custom.patch_namespaced_custom_object, *api[:2], namespace, api[2], name, patch
        )

    async def json_patch_custom_status(
        self, api: tuple[str, str, str], namespace: str, name: str, patch: list[Body]
    ) -> Body:
        """A JSON patch of the status subresource (what `kubectl argo rollouts abort` writes)."""
        return await self._json_patch(
            self.custom.patch_namespaced_custom_object_status, *api[:2], namespace, api[2], name, patch
        )

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded; a readable error when it is missing."""
        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiError as exc:
            raise ValueError(f"cannot read Secret {namespace}/{name}: {exc}") from None
        data = secret.get("data") or {}
        if key not in data:
            raise ValueError(f"Secret {namespace}/{name} has no key {key}")
        return base64.b64decode(data[key]).decode().strip()

    # Hemostat resources
    async def get_policy(self, namespace: str, name: str) -> Body | None:
        return await self._find(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "mitigationpolicies", name
        )

    async def list_policies(self, namespace: str) -> list[Body]:
        out = await self._call(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "mitigationpolicies"
        )
        return out["items"]

    async def get_admission_policy(self, name: str) -> tuple[Body | None, Body | None]:
        """The ValidatingAdmissionPolicy `name` and its binding of the same name (None: missing)."""
        return (
            await self._find(self.admission.read_validating_admission_policy, name),
            await self._find(self.admission.read_validating_admission_policy_binding, name),
        )

    async def get_incident(self, namespace: str, name: str) -> Body | None:
        return await self._find(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "incidents", name)

    async def delete_incident(self, namespace: str, name: str) -> None:
        await self._find(self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, "incidents", name)

    async def list_all_incidents(self, selector: str) -> list[Body]:
        """Incidents in every namespace (an operator watching all of them)."""
        out = await self._call(
            self.custom.list_cluster_custom_object, GROUP, VERSION, "incidents", label_selector=selector
        )
        return out["items"]

    async def list_incidents(self, namespace: str, selector: str) -> list[Body]:
        out = await self._call(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "incidents", label_selector=selector
        )
        return out["items"]

    async def create_incident(self, namespace: str, body: Body) -> Body:
        return await self._call(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, "incidents", body
        )

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Body, resource_version: str | None = None
    ) -> Body:
        """Merge-patch status; `status` must be a merge_patch (explicit nulls clear fields).
        With `resource_version`, the write applies only to that version of the object (else Conflict)."""
        body: Body = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._call(
            self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name, body
        )

    # Events: the timeline, posted on the Incident and on the Deployment
    async def post_event(self, obj: Body, type_: str, reason: str, message: str, at: datetime | None = None) -> None:
        meta = obj["metadata"]
        when = (at or datetime.now(UTC)).astimezone(UTC)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        await self._call(self.core.create_namespaced_event, meta["namespace"], event)
