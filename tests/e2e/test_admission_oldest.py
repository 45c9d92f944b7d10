"""The chart's admission policies on the oldest Kubernetes it claims (kubeVersion >= 1.30), and on the
current one: every policy refuses what it should, with its own message, for restricted ServiceAccounts.

The 1.30 kube-apiserver is built from its Go module (`hack/build-testenv.sh apiserver-oldest`, cached)
and served from the local control plane's etcd under a prefix of its own, with the same PKI: a
second API server, no controllers (admission needs none). The same probes run on both servers.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from chart import CHART, helm, token_kubeconfig
from conftest import E2E_FLOORS, ROOT, Cluster, wait_for
from kubernetes import client, config
from processes import Proc, free_port
from test_admission import INCIDENTS, PATCH_DEPLOYMENTS, POLICIES, account, create_as, incident

OLDEST = next(
    line.split("=", 1)[1].strip()
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines()
    if line.startswith("K8S_OLDEST_VERSION=")
)


def _ready(server: str, pki: Path) -> bool:
    import ssl

    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        with urllib.request.urlopen(f"{server}/readyz", context=context, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _version(cluster: Cluster) -> str:
    return json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]


@pytest.fixture(scope="module")
def oldest(testenv: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A kube-apiserver of the oldest claimed version beside the local control plane's."""
    home = testenv.env.get("HEMOSTAT_TESTENV")
    if not home:
        pytest.fail(
            f"the Kubernetes {OLDEST} admission tests run a second API server on the local control plane's "
            "etcd and PKI: run them on it (HEMOSTAT_TESTENV unset)",
            pytrace=False,
        )
    testenv_dir = Path(home)
    build = subprocess.run(
        [str(ROOT / "hack" / "build-testenv.sh"), "apiserver-oldest"], capture_output=True, text=True, timeout=3600
    )
    if build.returncode != 0:
        pytest.fail(f"building kube-apiserver {OLDEST} failed:\n{build.stderr[-4000:]}", pytrace=False)
    cache = Path(testenv.env.get("HEMOSTAT_CACHE") or Path.home() / ".cache" / "hemostat")
    binary = cache / "bin" / f"kube-apiserver-{OLDEST}" / "kube-apiserver"
    work = tmp_path_factory.mktemp("oldest")
    pki, port = testenv_dir / "pki", free_port()
    config = yaml.safe_load((testenv_dir / "kubeconfig").read_text())  # the same cluster CA and admin user
    proc = Proc(
        f"kube-apiserver-{OLDEST}",
        [
            str(binary),
            "--etcd-servers=http://127.0.0.1:23790",  # hack/testenv.sh's ETCD_PORT
            f"--etcd-prefix=/registry-{OLDEST}-{uuid.uuid4().hex[:8]}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={work / 'certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--profiling=false",
        ],
        env={"PATH": "/usr/bin:/bin"},
        log_dir=work,
    ).start()
    server = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _ready(server, pki):
            if not proc.alive() or time.monotonic() > deadline:
                pytest.fail(f"kube-apiserver {OLDEST} did not become ready:\n{proc.log()}", pytrace=False)
            time.sleep(0.5)
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = server
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        oldest = Cluster(str(kubeconfig), None, None, {**testenv.env, "KUBECONFIG": str(kubeconfig)})
        assert _version(oldest) == OLDEST
        yield oldest
    finally:
        proc.stop()


@pytest.fixture(params=["current", "oldest"])
def cluster(request: pytest.FixtureRequest, testenv: Cluster) -> Cluster:
    return testenv if request.param == "current" else request.getfixturevalue("oldest")


def test_every_admission_policy_refuses_what_it_should_on_each_supported_version(
    cluster: Cluster, tmp_path: Path
) -> None:
    version = _version(cluster)
    ns = f"adm-{uuid.uuid4().hex[:8]}"
    release, system = f"hs-{ns[-8:]}", f"hs-{ns[-8:]}-system"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in ("mitigationpolicies.hemostat.dev", "incidents.hemostat.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    sets = [f"watchNamespaces={{{ns}}}", "crds.install=false", *E2E_FLOORS]
    # no --wait: nothing schedules the operator's Pod on this bare API server, and admission needs none
    helm(cluster, "install", release, str(CHART), "-n", system, "--create-namespace",
         *(a for s in sets for a in ("--set", s)))  # fmt: skip
    try:
        _probe(cluster, ns, release, system, tmp_path)
    except AssertionError as exc:
        raise AssertionError(f"on Kubernetes {version}: {exc}") from exc
    finally:
        helm(cluster, "uninstall", release, "-n", system, check=False)
        cluster.kubectl("delete", "namespace", ns, system, "--wait=false", check=False)


def _probe(cluster: Cluster, ns: str, release: str, system: str, tmp_path: Path) -> None:
    who = f"system:serviceaccount:{ns}"
    bystander = account(cluster, ns, "bystander", [INCIDENTS], tmp_path)
    owner = account(cluster, ns, "owner", [INCIDENTS, POLICIES, PATCH_DEPLOYMENTS], tmp_path)
    author = account(cluster, ns, "author", [POLICIES], tmp_path)
    operator = token_kubeconfig(cluster, f"{release}-hemostat", system, ns, tmp_path / "op.kubeconfig")
    ask = incident("ask", "shopfront", {"rollback": {}})
    wait_for(
        "the admission policies enforced",
        lambda: create_as(cluster, bystander, ns, ask, "--dry-run=server").returncode != 0,
        60,
    )

    def refused(kubeconfig: Path, obj: dict) -> str:
        out = create_as(cluster, kubeconfig, ns, obj, "--dry-run=server")
        return out.stderr if out.returncode != 0 else ""

    # incident-requests: a mitigation needs the requester's own right to make the change
    assert (
        f"hemostat-incident-requests: spec.mitigation.rollback needs permission to patch deployments/shopfront "
        f"in namespace {ns}, which {who}:bystander does not have"
    ) in refused(bystander, ask)
    assert refused(owner, ask) == ""
    # incident-fields: only the operator opens a policy's Incidents
    forged = incident("forged", "shopfront", spec={"source": "policy"})
    assert "hemostat-incident-fields: only the Hemostat operator opens source: policy Incidents" in refused(
        owner, forged
    )
    assert refused(operator, forged) == ""
    # incident-approvals: a decision on the step an Incident waits for, by someone who may make it, as themselves
    assert create_as(cluster, owner, ns, incident("waits", "shopfront")).returncode == 0
    waits = {
        "phase": "AwaitingApproval",
        "approval": {
            "request": 1,
            "index": 0,
            "step": {"rollback": {}},
            "action": "rollback",
            "from": "revision 2",
            "to": "revision 1",
            "requestedAt": "2026-12-06T14:00:00Z",
            "deadline": "2026-12-06T14:15:00Z",
        },
    }
    # as the operator writes status: a patch, with no read of the status subresource (its RBAC has none)
    as_operator = client.CustomObjectsApi(config.new_client_from_config(str(operator)))
    group, version = "hemostat.dev", "v1alpha1"
    as_operator.patch_namespaced_custom_object_status(group, version, ns, "incidents", "waits", {"status": waits})

    def decide(kubeconfig: Path, request: int, by: str) -> str:
        approval = {"decision": "Approved", "request": request, "by": by, "at": "2026-12-06T14:01:00Z"}
        patch = ["patch", "incident", "waits", "-n", ns, "--type=merge", "--dry-run=server"]
        body = json.dumps({"spec": {"approval": approval}})
        out = cluster.kubectl(*patch, "-p", body, "--kubeconfig", str(kubeconfig), check=False)
        return out.stderr if out.returncode != 0 else ""

    assert (
        f"hemostat-incident-approvals: approving rollback needs permission to patch deployments/shopfront "
        f"in namespace {ns}, which {who}:bystander does not have"
    ) in decide(bystander, 1, f"{who}:bystander")
    assert "hemostat-incident-approvals: spec.approval.by must name who decides" in decide(owner, 1, "alice")
    assert "hemostat-incident-approvals: waits is not waiting for a decision on request 2" in decide(
        owner, 2, f"{who}:owner"
    )
    assert decide(owner, 1, f"{who}:owner") == ""
    # policy-requests: a policy's writer needs the rights its steps use, and stays above the floors
    policy = {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": "shop"},
        "spec": {
            "target": {"selector": {"matchLabels": {"app": "shopfront"}}},
            "signals": [{"name": "err", "prometheus": {"query": "up"}, "breachWhen": {"above": 0.05}}],
            "mitigation": {"steps": [{"rollback": {}}], "verifyFor": "5s"},
            "guardrails": {"cooldown": "1s"},
        },
    }
    assert (
        f"hemostat-policy-requests: spec.mitigation.steps[].rollback needs permission to patch deployments/* "
        f"in namespace {ns}, which {who}:author does not have"
    ) in refused(author, policy)
    assert refused(owner, policy) == ""
    policy["spec"]["mitigation"]["verifyFor"] = "1s"
    assert "hemostat-policy-requests: spec.mitigation.verifyFor must be at least 3s" in refused(owner, policy)

    # workload-state: only the operator writes its record on a Deployment
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "shopfront"},
            "spec": {
                "selector": {"matchLabels": {"app": "shopfront"}},
                "template": {
                    "metadata": {"labels": {"app": "shopfront"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.local/shopfront:v1"}]},
                },
            },
        },
        ns,
    )
    ledger = 'hemostat.dev/actions=[{"at":"2099-01-01T00:00:00Z","by":"me","action":"rollback"}]'
    annotate = ["annotate", "deployment", "shopfront", "-n", ns, "--dry-run=server", ledger]
    forged_ledger = cluster.kubectl(*annotate, "--kubeconfig", str(owner), check=False)
    assert (
        "hemostat-workload-state: the annotation hemostat.dev/actions is the Hemostat operator's record"
        in forged_ledger.stderr
    )
    # flag-sources: the operator changes only ConfigMaps that opted in
    cluster.kubectl("create", "configmap", "flags", "-n", ns, "--from-literal=new-pricing=on")
    flip = ["patch", "configmap", "flags", "-n", ns, "--type=merge", "-p", '{"data":{"new-pricing":"off"}}']
    flipped = cluster.kubectl(*flip, "--dry-run=server", "--kubeconfig", str(operator), check=False)
    assert (
        f"hemostat-flag-sources: the operator may change only configmaps labelled hemostat.dev/flag-source=true; "
        f"{ns}/flags is not"
    ) in flipped.stderr
