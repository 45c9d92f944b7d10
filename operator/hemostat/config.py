"""Operator-wide settings and Kubernetes client configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from kubernetes import config as kube_config
from kubernetes.config.config_exception import ConfigException

from .errors import UserError
from .outbound import ClientAuth


@dataclass(frozen=True)
class OperatorConfig:
    prometheus_url: str | None = None
    namespaces: tuple[str, ...] = ()
    dry_run: bool = False
    metrics_port: int = 8080
    health_port: int = 8081
    bind_address: str = "127.0.0.1"
    leader_election: bool = False
    lease_namespace: str = "default"
    lease_name: str = "hemostat"
    lease_duration: float = 15.0
    standalone: bool = False
    priority: int = 0
    incident_retention: timedelta | None = timedelta(days=30)
    allowed_prometheus_urls: tuple[str, ...] = ()
    argo_rollouts: bool = False  # watch Argo Rollouts' Rollouts: policies may target them
    prometheus_auth: ClientAuth = field(default_factory=ClientAuth)
    webhook_auth: ClientAuth = field(default_factory=ClientAuth)
    webhook_auth_urls: tuple[str, ...] = ()  # the only destinations webhook_auth's credentials go to
    allowed_webhook_urls: tuple[str, ...] = ()  # empty: any http(s) URL
    webhook_destinations: tuple[tuple[str, ClientAuth], ...] = ()  # each receiver's own credentials
    admission_policies: str | None = None  # the chart's admission policies' name prefix (fail closed without)
    alertmanager_port: int = 0  # Alertmanager's webhook receiver (0: off)
    alertmanager_token_file: str | None = None  # the bearer token every request must carry
    alert_labels: tuple[str, str, str] = ("namespace", "deployment", "severity")  # target namespace, name, severity
    alert_notify_policy: str | None = None  # alert-only Incidents take `notify` from this policy in their namespace
    alert_resend_interval: timedelta = timedelta(minutes=5)  # Alertmanager's repeat_interval towards the operator


def context_namespace(path: str | None, context: str | None = None) -> str:
    """The namespace of the kubeconfig context (the current one, or `context`), as kubectl defaults to it;
    "default" when the context names none."""
    try:
        contexts, current = kube_config.list_kube_config_contexts(config_file=path)
    except (ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c["name"] == context), None) if context else current
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def load_kube_config(path: str | None, in_cluster_ok: bool = True, context: str | None = None) -> None:
    """Configure the kubernetes client: explicit file, in-cluster, then $KUBECONFIG / ~/.kube/config."""
    try:
        if path:
            if not Path(path).is_file():
                raise UserError(f"kubeconfig {path} does not exist")
            kube_config.load_kube_config(config_file=path, context=context)
        elif in_cluster_ok and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kube_config.load_incluster_config()
        else:
            default = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
            first = default.split(os.pathsep)[0]
            if not Path(first).is_file():
                raise UserError(
                    f"no kubeconfig found at {first}: pass --kubeconfig or set KUBECONFIG "
                    "(for the local test cluster: source .testenv/env)"
                )
            kube_config.load_kube_config(context=context)
    except ConfigException as exc:
        raise UserError(f"cannot load kubeconfig: {exc}") from None
