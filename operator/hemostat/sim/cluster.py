"""Read the Ready pods of Deployments from the Kubernetes API (sync client, polled).

Mapping: Pod -(ownerReference kind ReplicaSet)-> ReplicaSet -(ownerReference
kind Deployment)-> Deployment; the series label `pod_template_hash` is the
Pod's `pod-template-hash` label. Pods whose chain does not end in a Deployment
are ignored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from .behaviour import ObservedPod, PodRef

TEMPLATE_HASH_LABEL = "pod-template-hash"
# Deployment-managed Pods and ReplicaSets both carry this label, so the API
# server filters out everything else (Jobs, bare Pods, StatefulSets...).
_SELECTOR = TEMPLATE_HASH_LABEL
_PAGE_SIZE = 500
# (connect, read) seconds: a hung API server must not stall the poller forever.
_REQUEST_TIMEOUT = (3.0, 10.0)

Obj = Mapping[str, Any]


class ClusterError(Exception):
    """The API could not be configured or reached; the message is one readable line."""


def is_ready(pod: Obj) -> bool:
    """Ready: condition Ready is "True" and the pod is not being deleted."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _owner(obj: Obj, kind: str) -> Obj | None:
    refs = [r for r in obj.get("metadata", {}).get("ownerReferences") or [] if r.get("kind") == kind]
    # Prefer the managing controller; a plain owner reference of that kind is the fallback.
    refs.sort(key=lambda r: not r.get("controller", False))
    return refs[0] if refs else None


def observed_pods(pods: Iterable[Obj], replicasets: Iterable[Obj]) -> list[ObservedPod]:
    """Ready pods owned (via a ReplicaSet) by a Deployment, from raw API objects. Pure."""
    # Keyed by uid, not name: a ReplicaSet recreated under the same name is a different owner.
    deployment_of = {
        rs["metadata"]["uid"]: name
        for rs in replicasets
        if (owner := _owner(rs, "Deployment")) and (name := owner.get("name")) and rs["metadata"].get("uid")
    }
    result: list[ObservedPod] = []
    for pod in pods:
        meta = pod.get("metadata", {})
        owner = _owner(pod, "ReplicaSet")
        rs_uid = owner.get("uid") if owner else None
        template_hash = (meta.get("labels") or {}).get(TEMPLATE_HASH_LABEL)
        if not is_ready(pod) or rs_uid is None or rs_uid not in deployment_of or not template_hash:
            continue
        ref = PodRef(meta["namespace"], deployment_of[rs_uid], template_hash, meta["name"])
        result.append(ObservedPod(ref, dict(meta.get("annotations") or {})))
    return result


def load_api_client(kubeconfig: str | None) -> client.ApiClient:
    """An ApiClient from --kubeconfig, else KUBECONFIG/~/.kube/config, else in-cluster."""
    cfg = client.Configuration()
    # Connection refused fails at once (no retry noise); our poller retries each resync.
    cfg.retries = Retry(total=1, connect=0, redirect=0)
    try:
        if kubeconfig is not None:
            with open(kubeconfig, "rb"):  # surfaces a plain OSError (missing, unreadable)
                pass
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg, persist_config=False)
        else:
            try:
                config.load_kube_config(client_configuration=cfg, persist_config=False)
            except config.ConfigException:
                if not os.environ.get("KUBERNETES_SERVICE_HOST"):
                    raise
                config.load_incluster_config(client_configuration=cfg)
    except Exception as exc:  # OSError, ConfigException, YAML errors, bad base64...: all "bad kubeconfig"
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ClusterError(f"cannot load kubeconfig {where}: {_one_line(exc)}") from exc
    return client.ApiClient(configuration=cfg)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, client.ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class ClusterPodSource:
    """Callable returning the current Ready Deployment pods; raises ClusterError on any API failure."""

    def __init__(self, api: client.ApiClient, namespaces: Sequence[str] = ()) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._namespaces = tuple(dict.fromkeys(namespaces))  # dedupe, keep order; empty = all

    @property
    def host(self) -> str:
        """The API server URL, for messages."""
        return str(self._api.configuration.host)

    def _list(self, all_ns: Any, one_ns: Any) -> list[Obj]:
        items: list[Obj] = []
        for ns in self._namespaces or (None,):
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "label_selector": _SELECTOR,
                    "limit": _PAGE_SIZE,
                    # Raw JSON, not the generated models: we need five fields, and strict
                    # model validation of whole Pods would be one more way to fail.
                    "_preload_content": False,
                    "_request_timeout": _REQUEST_TIMEOUT,
                }
                if token:
                    kwargs["_continue"] = token
                resp = all_ns(**kwargs) if ns is None else one_ns(ns, **kwargs)
                try:
                    body = json.loads(resp.data)
                finally:
                    resp.release_conn()
                items.extend(body.get("items") or [])
                token = (body.get("metadata") or {}).get("continue")
                if not token:
                    break
        return items

    def __call__(self) -> list[ObservedPod]:
        try:
            # Pods first: a ReplicaSet always exists before its pods, so every pod
            # listed here finds its owner in the ReplicaSet list that follows.
            pods = self._list(self._core.list_pod_for_all_namespaces, self._core.list_namespaced_pod)
            replicasets = self._list(
                self._apps.list_replica_set_for_all_namespaces, self._apps.list_namespaced_replica_set
            )
        except Exception as exc:  # urllib3, HTTP status, JSON: all mean "no fresh pod set"
            raise ClusterError(f"listing pods from {self.host} failed: {_one_line(exc)}") from exc
        return observed_pods(pods, replicasets)

    def close(self) -> None:
        """Release the client's connection pool."""
        self._api.close()


def flag_source_reader(api: client.ApiClient) -> Callable[[str, str], str | None]:
    """(namespace, "<configmap>/<key>" or "featureflag:<name>") -> flagd JSON, None when absent."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)

    def read(namespace: str, source: str) -> str | None:
        try:
            if source.startswith("featureflag:"):
                ff = custom.get_namespaced_custom_object(
                    "core.openfeature.dev",
                    "v1beta1",
                    namespace,
                    "featureflags",
                    source.split(":", 1)[1],
                    _request_timeout=_REQUEST_TIMEOUT,
                )
                return json.dumps({"flags": ((ff.get("spec") or {}).get("flagSpec") or {}).get("flags", {})})
            name, _, key = source.partition("/")
            data = core.read_namespaced_config_map(name, namespace, _request_timeout=_REQUEST_TIMEOUT).data or {}
            return data.get(key)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    return read
