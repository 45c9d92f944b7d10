"""Kubernetes I/O: a thin async facade over the official client.

The official client is synchronous; every call runs in a worker thread so that
a slow API server never stalls kopf's event loop. Nothing here decides
anything: callers pass plain dicts in and get plain dicts back.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .models.common import GROUP, VERSION, LabelSelector

Body = dict[str, Any]
COMPONENT = "hemostat"
OPENFEATURE = ("core.openfeature.dev", "v1beta1")  # the OpenFeature Operator's FeatureFlag


class Conflict(Exception):
    """The object changed since we read it (409, or a failed JSON-patch `test`)."""


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


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api = api_client or client.ApiClient()
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.autoscaling = client.AutoscalingV2Api(self.api)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 409 or (exc.status == 422 and "test operation" in str(exc.body)):
                raise Conflict(str(exc.reason)) from exc
            raise
        return self.api.sanitize_for_serialization(result)

    async def _find(self, fn: Any, *args: Any) -> Any:
        """Like _call, but a missing object (404) is None, not an error."""
        try:
            return await self._call(fn, *args)
        except ApiException as exc:
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

    async def list_replicasets(self, namespace: str, selector: str) -> list[Body]:
        out = await self._call(self.apps.list_namespaced_replica_set, namespace, label_selector=selector)
        return out["items"]

    async def json_patch_deployment(self, namespace: str, name: str, patch: list[Body]) -> Body:
        return await self._json_patch(self.apps.patch_namespaced_deployment, name, namespace, patch)

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

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded; a readable error when it is missing."""
        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            raise ValueError(f"cannot read Secret {namespace}/{name}: {exc.status} {exc.reason}") from None
        data = secret.get("data") or {}
        if key not in data:
            raise ValueError(f"Secret {namespace}/{name} has no key {key}")
        return base64.b64decode(data[key]).decode().strip()

    # Hemostat resources
    async def list_incidents(self, namespace: str, selector: str) -> list[Body]:
        out = await self._call(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "incidents", label_selector=selector
        )
        return out["items"]

    async def create_incident(self, namespace: str, body: Body) -> Body:
        return await self._call(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, "incidents", body
        )

    async def patch_status(self, plural: str, namespace: str, name: str, status: Body) -> Body:
        return await self._call(
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
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
