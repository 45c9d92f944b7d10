"""The operator as users install it: the image, run with the pod settings `helm template` renders.

Nothing about the pod is retyped here. The chart's Deployment is rendered, and its container's
args, env, volumes, resources and both securityContexts are translated into `podman run`
flags. A setting this translation does not know fails the test instead of being dropped, so
the chart cannot grow a pod setting that the e2e suite silently ignores.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from processes import Proc

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("HEMOSTAT_E2E_IMAGE_NAME", "localhost/hemostat:e2e")
# hack/image.sh's choice: docker when its daemon answers, else podman
ENGINE = (
    "docker"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    else "podman"
)


class Unsupported(AssertionError):
    """The chart renders a pod setting the e2e translation does not carry over."""


@dataclass(frozen=True)
class ChartPod:
    args: list[str]
    env: dict[str, str]
    flags: list[str]  # podman flags for securityContext, volumes and resources


def render_pod(helm_env: dict[str, str], *sets: str) -> ChartPod:
    """The operator container of the chart's Deployment, as `helm template` renders it."""
    chart = str(ROOT / "charts" / "hemostat")
    cmd = ["helm", "template", "hemostat", chart, "--namespace", "hemostat", "--kube-version", kube_version()]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=helm_env, capture_output=True, text=True)
    assert proc.returncode == 0, f"helm template failed: {proc.stderr}"
    out = proc.stdout
    (deploy,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    spec = deploy["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "operator"]
    return ChartPod(container["args"], _env(container.get("env", [])), _flags(spec, container))


def kube_version() -> str:
    """The pinned control plane's version (hack/versions.env)."""
    text = (ROOT / "hack" / "versions.env").read_text()
    return next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("K8S_VERSION="))


def _env(items: list[dict[str, Any]]) -> dict[str, str]:
    env = {}
    for item in items:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") in ("metadata.name", "metadata.namespace"):
            env[item["name"]] = "{" + item["valueFrom"]["fieldRef"]["fieldPath"] + "}"  # filled per start
        else:
            raise Unsupported(f"env {item['name']}: {item}")
    return env


def _flags(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    psc, csc = dict(pod.get("securityContext") or {}), dict(container.get("securityContext") or {})
    flags: list[str] = []
    uid = csc.pop("runAsUser", psc.pop("runAsUser", None))
    gid = csc.pop("runAsGroup", psc.pop("runAsGroup", None))
    psc.pop("runAsUser", None), psc.pop("runAsGroup", None)
    if uid is None:
        raise Unsupported("the chart must set runAsUser: the image is tested as that user")
    flags.append(f"--user={uid}:{gid if gid is not None else uid}")
    if csc.pop("runAsNonRoot", psc.pop("runAsNonRoot", False)) and uid == 0:
        raise Unsupported("runAsNonRoot with uid 0")
    psc.pop("runAsNonRoot", None)
    if (fs_group := psc.pop("fsGroup", None)) is not None:
        flags.append(f"--group-add={fs_group}")
    for sc in (psc, csc):
        profile = sc.pop("seccompProfile", None)
        if profile not in (None, {"type": "RuntimeDefault"}):
            raise Unsupported(f"seccompProfile {profile}")  # RuntimeDefault is podman's default profile
    if csc.pop("readOnlyRootFilesystem", False):
        # podman's --read-only adds a writable /tmp by default; a pod has none unless mounted
        flags += ["--read-only", *(["--read-only-tmpfs=false"] if ENGINE == "podman" else [])]
    if csc.pop("allowPrivilegeEscalation", True) is False:
        flags.append("--security-opt=no-new-privileges")
    caps = csc.pop("capabilities", {}) or {}
    flags += [f"--cap-drop={c}" for c in caps.pop("drop", [])] + [f"--cap-add={c}" for c in caps.pop("add", [])]
    if caps or psc or csc:
        raise Unsupported(f"securityContext settings not carried over: {caps or psc or csc}")
    flags += _volumes(pod.get("volumes", []), container.get("volumeMounts", []))
    memory = (container.get("resources") or {}).get("limits", {}).get("memory")
    if memory:
        flags.append(f"--memory={_bytes(memory)}")
    return flags


def _volumes(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> list[str]:
    by_name = {v["name"]: v for v in volumes}
    flags = []
    for mount in mounts:
        volume = by_name[mount["name"]]
        if "emptyDir" not in volume:
            raise Unsupported(f"volume {volume}")
        size = (volume["emptyDir"] or {}).get("sizeLimit")
        options = "rw,mode=1777" + (f",size={_bytes(size)}" if size else "")
        flags.append(f"--tmpfs={mount['mountPath']}:{options}")
    return flags


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


MOUNT = "/var/run/e2e/kube"


def readable_kubeconfig(kubeconfig: str, out: Path) -> Path:
    """A directory with the kubeconfig and the files it names, readable by the pod's non-root user.

    Files stay files (not inlined data): the kubernetes client writes inlined data to temporary
    files, and the pod has no writable /tmp.
    """
    out.mkdir(mode=0o755)
    config = yaml.safe_load(Path(kubeconfig).read_text())
    keys = [("clusters", "cluster", "certificate-authority")] + [
        ("users", "user", k) for k in ("client-certificate", "client-key", "tokenFile")
    ]
    for section, kind, key in keys:
        for i, entry in enumerate(config.get(section, [])):
            if key in entry[kind]:
                copy = out / f"{section}-{i}-{key}"
                copy.write_bytes(Path(entry[kind][key]).read_bytes())
                copy.chmod(0o644)
                entry[kind][key] = f"{MOUNT}/{copy.name}"
    (out / "config").write_text(yaml.safe_dump(config))
    (out / "config").chmod(0o644)
    return out


class ContainerProc(Proc):
    """`podman run` (or `docker run`) in the foreground; signals go to the container, not to the client."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path, container: str) -> None:
        super().__init__(name, args, env, log_dir)
        self.container = container

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.alive():
            subprocess.run([ENGINE, "kill", f"--signal={sig}", self.container], env=self.env, capture_output=True)
            assert self.popen is not None
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                subprocess.run([ENGINE, "rm", "-f", self.container], env=self.env, capture_output=True)
                self.popen.wait(10)
        subprocess.run([ENGINE, "rm", "-f", self.container], env=self.env, capture_output=True)  # gone: fine


def container_command(
    pod: ChartPod, namespace: str, extra: list[str], env: dict[str, str], kubeconfig: Path
) -> tuple[str, list[str]]:
    """The `run` command for one operator watching `namespace`."""
    name = f"hemostat-e2e-{uuid.uuid4().hex[:8]}"
    fields = {"{metadata.name}": name, "{metadata.namespace}": namespace}
    env = {**{k: fields.get(v, v) for k, v in pod.env.items()}, **env, "KUBECONFIG": f"{MOUNT}/config"}
    cmd = [
        ENGINE,
        "run",
        "--rm",
        f"--name={name}",
        "--network=host",  # the control plane and Prometheus listen on 127.0.0.1
        *pod.flags,
        f"--volume={kubeconfig}:{MOUNT}:ro",
        *(f"--env={k}={v}" for k, v in env.items()),
        IMAGE,
        # the admission policies of the release rendered here are not installed: a test that installs
        # the chart names its own (--admission-policies in `extra`)
        *(a for a in pod.args if not a.startswith("--admission-policies=")),
        "-n",
        namespace,
        *extra,
    ]
    return name, cmd
