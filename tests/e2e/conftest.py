"""Session fixtures for end-to-end tests against a REAL control plane.

Which cluster:
- HEMOSTAT_E2E_KUBECONFIG=path  -> that cluster (e.g. kind from `make kind-up`); an explicit
  opt-in, so a KUBECONFIG that happens to point at production is never used by accident;
- otherwise the local control plane: reused when `.testenv/env` says it is up,
  started with `hack/testenv.sh up` when not.
These tests never skip: if no control plane can be had, the session fails with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart import CHART, helm
from container import IMAGE, ChartPod, ContainerProc, container_command, readable_kubeconfig, render_pod
from processes import Proc, free_port, healthz, prom_value, python_module
from receivers import Receiver

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    prometheus_url: str | None
    prometheus_targets: Path | None
    env: dict[str, str]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["kubectl", *args], input=input, capture_output=True, text=True, env=self.env, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def apply(self, manifest: str | dict[str, Any], namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=text)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        return yaml.safe_load(self.kubectl(*args).stdout)


def _env_from_file(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", f"set -a; source {path}; env -0"], capture_output=True, text=True, check=True
    ).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def _start_local() -> dict[str, str]:
    proc = subprocess.run([str(ROOT / "hack" / "testenv.sh"), "up"], capture_output=True, text=True, timeout=5400)
    if proc.returncode != 0:
        pytest.fail(f"the local control plane did not start:\n{proc.stderr[-4000:]}", pytrace=False)
    return _env_from_file(ROOT / ".testenv" / "env")


@pytest.fixture(scope="session")
def testenv() -> Cluster:
    explicit = os.environ.get("HEMOSTAT_E2E_KUBECONFIG")
    env = {**os.environ, "KUBECONFIG": explicit} if explicit else _start_local()
    targets = env.get("HEMOSTAT_PROMETHEUS_TARGETS")
    te = Cluster(
        kubeconfig=env["KUBECONFIG"],
        prometheus_url=env.get("PROMETHEUS_URL"),
        prometheus_targets=Path(targets) if targets else None,
        env=env,
    )
    version = te.kubectl("version", "-o", "json", check=False)
    if version.returncode != 0:
        pytest.fail(f"cluster at {te.kubeconfig} is not reachable: {version.stderr.strip()}", pytrace=False)
    return te


@pytest.fixture
def namespace(testenv: Cluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    testenv.kubectl("create", "namespace", name)
    yield name
    # The operators of a test are stopped before this runs; without them nobody would remove
    # kopf's finalizer from the policies and the namespace would stay Terminating forever.
    policies = testenv.kubectl("get", "mp", "-n", name, "-o", "name", check=False).stdout.split()
    for policy in policies:
        testenv.kubectl(
            "patch", policy, "-n", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False
        )
    testenv.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crds(testenv: Cluster) -> None:
    testenv.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for name in ("mitigationpolicies.hemostat.dev", "incidents.hemostat.dev"):
        testenv.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="session")
def simulator(testenv: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """The traffic simulator, registered with Prometheus through a file_sd target file.

    Two shards, as the scale benchmark runs it: every e2e test then proves that Prometheus
    scrapes each shard on its own path and instance and that queries see the series of both.
    """
    if testenv.prometheus_targets is None or testenv.prometheus_url is None:
        pytest.fail("the simulator needs PROMETHEUS_URL and HEMOSTAT_PROMETHEUS_TARGETS", pytrace=False)
    logs = tmp_path_factory.mktemp("sim")
    target = testenv.prometheus_targets / "e2e-sim.json"
    sim = Proc(
        "simulator",
        python_module("hemostat.sim", "--targets-file", str(target), "--tick", "0.25", "--shards", "2"),
        testenv.env,
        logs,
    ).start()
    url = testenv.prometheus_url
    wait_for(
        "Prometheus scraping the simulator",
        # its own targets file first: Prometheus may still hold `up` of a simulator that just stopped
        lambda: (target.exists() and prom_value(url, 'count(up{job="hemostat-sim"} == 1)') == 2) or not sim.alive(),
        timeout=60,
    )
    assert sim.alive(), f"simulator exited:\n{sim.log()}"
    yield sim
    sim.stop()


@pytest.fixture
def faults(testenv: Cluster, simulator: Proc) -> Iterator[Callable[..., None]]:
    """Declare faults outside the Deployments (the simulator's PUT /faults); none are left after the test."""
    assert testenv.prometheus_targets is not None
    (entry,) = json.loads((testenv.prometheus_targets / "e2e-sim.json").read_text())[:1]
    url = f"http://{entry['targets'][0]}/faults"

    def declare(*declared: dict[str, Any]) -> None:
        body = json.dumps({"faults": list(declared)}).encode()
        request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200, resp.read()

    yield declare
    declare()


class Operators:
    """Starts operators for one test, as host processes or as the image; stops them and shows logs at the end."""

    def __init__(self, testenv: Cluster, log_dir: Path, image_env: dict[str, str] | None = None) -> None:
        self.testenv, self.log_dir, self.procs = testenv, log_dir, []
        self.image_env = image_env  # set: run the image with the chart's pod settings
        self._pod: ChartPod | None = None

    def start(self, namespace: str, *extra: str, env: dict[str, str] | None = None, name: str = "operator") -> Proc:
        if self.image_env is not None:
            return self._start_image(namespace, list(extra), env or {}, name)
        args = [*python_module("hemostat"), "run", "-n", namespace, "--health-port", "0", "--metrics-port", "0", *extra]
        if "--priority" not in extra:
            args.append("--standalone")
        proc = Proc(f"{name}-{len(self.procs)}", args, {**self.testenv.env, **(env or {})}, self.log_dir).start()
        self.procs.append(proc)
        return proc

    def _start_image(self, namespace: str, extra: list[str], env: dict[str, str], name: str) -> Proc:
        assert self.image_env is not None
        if self._pod is None:
            self._pod = render_pod(self.testenv.env, f"prometheusUrl={self.testenv.prometheus_url}")
        health = free_port()
        # host network here, so: loopback only, and ports of its own (the chart's would collide)
        ports = ["--bind-address=127.0.0.1", f"--health-port={health}", f"--metrics-port={free_port()}"]
        source = env.pop("KUBECONFIG", self.testenv.kubeconfig)
        kubeconfig = readable_kubeconfig(source, self.log_dir / f"kube-{len(self.procs)}")
        container, cmd = container_command(self._pod, namespace, [*ports, *extra], env, kubeconfig)
        proc = ContainerProc(f"{name}-{len(self.procs)}", cmd, self.image_env, self.log_dir, container).start()
        self.procs.append(proc)
        # what the kubelet's probes ask
        wait_for("/healthz of the operator's container", lambda: healthz(health) == 200 or not proc.alive(), 60)
        assert proc.alive(), f"the operator's container exited:\n{proc.log()}"
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()}" for p in self.procs)


def _image_wanted() -> bool:
    if os.environ.get("HEMOSTAT_E2E_IMAGE") == "0":
        if os.environ.get("CI"):
            raise pytest.UsageError("HEMOSTAT_E2E_IMAGE=0 is for fast local runs; CI always tests the image")
        return False
    return True


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # tests marked `image` run twice: with the operator as a host process and as the image
    if metafunc.definition.get_closest_marker("image") and "operators" in metafunc.fixturenames:
        metafunc.parametrize("operator_mode", ["process", "image"] if _image_wanted() else ["process"])


@pytest.fixture
def operator_mode() -> str:
    return "process"


@pytest.fixture(scope="session")
def operator_image() -> dict[str, str]:
    """Build the image once per session (hack/image.sh); the environment podman needs to run it."""
    env = {**os.environ, "IMAGE": IMAGE}
    proc = subprocess.run([str(ROOT / "hack" / "image.sh")], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"building the image failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False)
    print(proc.stderr.strip().splitlines()[-1])
    cache = Path(os.environ.get("HEMOSTAT_CACHE", Path.home() / ".cache" / "hemostat"))
    conf = cache / "image" / "containers.conf"  # what hack/image.sh set podman up with
    return {**os.environ, **({"CONTAINERS_CONF": str(conf)} if conf.exists() else {})}


@pytest.fixture
def operators(
    testenv: Cluster, crds: None, tmp_path: Path, request: pytest.FixtureRequest, operator_mode: str
) -> Iterator[Operators]:
    image_env = request.getfixturevalue("operator_image") if operator_mode == "image" else None
    ops = Operators(testenv, tmp_path, image_env)
    yield ops
    for p in ops.procs:
        p.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(ops.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Poll `probe` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except AssertionError as exc:  # kubectl failures while objects settle
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def deployment(name: str, image: str = "registry.local/app:v1", replicas: int = 2, **extra: Any) -> dict:
    labels = {"app": name, **extra.pop("labels", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels, "annotations": extra.pop("annotations", {})},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **extra,
        },
    }


@pytest.fixture
def installed(testenv: Cluster, crds: None, namespace: str) -> Iterator[tuple[str, str]]:
    """The chart installed in a namespace of its own, watching the test's: (release, its namespace)."""
    with install_chart(testenv, namespace) as found:
        yield found


# The stories run on a compressed clock (verifyFor 4s): floors below the chart's defaults (30s, 1m, 10m)
E2E_FLOORS = ("policyLimits.minVerifyFor=3s", "policyLimits.minCooldown=1s", "policyLimits.minReopenWithin=1m")


@contextlib.contextmanager
def install_chart(testenv: Cluster, namespace: str, *sets: str) -> Iterator[tuple[str, str]]:
    """The chart (with these --set values) in a namespace of its own, watching `namespace`."""
    release = f"hs-{namespace[-8:]}"
    system = f"{release}-system"
    helm(
        testenv,
        "install",
        release,
        str(CHART),
        "-n",
        system,
        "--create-namespace",
        "--wait",
        "--timeout",
        "90s",
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        "crds.install=false",  # the session's CRDs are not this release's; the upgrade test hands them over
        *(arg for value in (*E2E_FLOORS, *sets) for arg in ("--set", value)),
    )
    try:
        yield release, system
    finally:
        helm(testenv, "uninstall", release, "-n", system, check=False)
        testenv.kubectl("delete", "namespace", system, "--wait=false", check=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback (receivers.py)."""
    r = Receiver()
    yield r
    r.server.shutdown()
