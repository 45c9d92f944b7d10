"""The command follows kubectl's habits: the namespace defaults to the kubeconfig context's."""

from __future__ import annotations

from pathlib import Path

import yaml

from hemostat.cli import build_parser
from hemostat.config import context_namespace


def kubeconfig(tmp_path: Path) -> str:
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    contexts = [
        {"name": "shop", "context": {"cluster": "c", "user": "u", "namespace": "shop"}},
        {"name": "bare", "context": {"cluster": "c", "user": "u"}},
    ]
    doc = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [{"name": "u", "user": {}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({**doc, "contexts": contexts, "current-context": "shop"}))
    return str(path)


def test_the_namespace_is_the_contexts_as_kubectl_has_it(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path)
    assert context_namespace(path) == "shop"  # the current context's
    assert context_namespace(path, "bare") == "default"  # a context without one
    assert context_namespace(str(tmp_path / "missing")) == "default"
    args = build_parser().parse_args(["incident", "ack", "web-1"])
    assert args.namespace is None, "unset until the kubeconfig is read, so -n still wins"
    assert build_parser().parse_args(["incident", "ack", "web-1", "-n", "pay"]).namespace == "pay"
