"""The Helm chart from the e2e tests: helm itself and a ServiceAccount's token."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from conftest import Cluster

CHART = Path(__file__).resolve().parents[2] / "charts" / "hemostat"


def helm(testenv: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["helm", *args], capture_output=True, text=True, env=testenv.env, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {proc.stderr}")
    return proc


def token_kubeconfig(testenv: Cluster, account: str, system: str, namespace: str, path: Path) -> Path:
    """A kubeconfig that acts as the ServiceAccount, with a real token (not the admin certificate)."""
    token = testenv.kubectl("create", "token", account, "-n", system, "--duration=1h").stdout.strip()
    server = testenv.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    ca = testenv.kubectl(
        "config", "view", "--minify", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority}"
    ).stdout
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": ca}}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": namespace}}],
            }
        )
    )
    return path
