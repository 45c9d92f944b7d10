"""Pausing a reconciler on its own object: an Argo CD Application (self-heal off) and a Flux HelmRelease
(suspended), against their real CRDs on the real API server.

Neither controller runs here (Argo CD's does not build here; helm-controller is not built): these tests
prove what the writes do to the objects as the API server stores them (what the pause changes and
keeps, that resuming restores the spec exactly), that the step waits for and follows the pause, and
that a person's resume is refused until the source moved. The status a controller would write (the
synced revision) is written here by the test, standing in for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Cluster, wait_for
from scenarios import app, deployment_state, hemostat, policy, rolled_back, rollout, wait_ready

CRDS = ROOT / "tests" / "e2e" / "fixtures" / "crds"
PAUSED = "hemostat.dev/gitops-paused"


def install(testenv: Cluster, path: Path, name: str) -> None:
    testenv.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    wait_for(  # just after apply the API server may not have written the conditions yet
        f"crd/{name} Established",
        lambda: (
            testenv.kubectl(
                "wait", "--for=condition=Established", f"crd/{name}", "--timeout=5s", check=False
            ).returncode
            == 0
        ),
        timeout=60,
    )


@pytest.fixture(scope="module")
def reconciler_crds(testenv: Cluster) -> None:
    # unmodified copies: Argo CD's Application CRD and Flux helm-controller's HelmRelease CRD
    install(testenv, CRDS / "argo-cd" / "application-crd.yaml", "applications.argoproj.io")
    install(
        testenv,
        CRDS / "flux-helm-controller" / "helm.toolkit.fluxcd.io_helmreleases.yaml",
        "helmreleases.helm.toolkit.fluxcd.io",
    )


def bad_rollout_of(testenv: Cluster, ns: str, web: dict[str, Any]) -> dict[str, Any]:
    """web (as given) healthy under its policy, then a bad rollout; the Incident once rolled back."""
    testenv.apply(web, ns)
    wait_ready(testenv, ns, "web")
    testenv.apply(policy("web", verify_for="5s"), ns)
    rollout(testenv, ns, "web", "registry.local/web:v2", error_rate=1.0)
    return rolled_back(testenv, ns, "web")


SYNC_POLICY = {"automated": {"prune": True, "selfHeal": True}, "syncOptions": ["ServerSideApply=true"]}


def application(ns: str, revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.invalid/shop.git", "path": "deploy", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
            "syncPolicy": SYNC_POLICY,
        },
        "status": {"sync": {"status": "Synced", "revision": revision}},  # what Argo CD would have written
    }


def test_an_argo_cd_application_stops_self_healing_before_the_rollback_and_is_restored_exactly(
    testenv: Cluster, namespace: str, reconciler_crds: None, simulator, operators
) -> None:
    ns = namespace
    operators.start(ns)
    testenv.apply(application(ns, "aaa111"), ns)
    tracked = f"{ns}_shop:apps/Deployment:{ns}/web"  # Argo CD 3's tracking id (apps in any namespace)
    web = app("web", "registry.local/web:v1")
    web["metadata"]["annotations"] = {"argocd.argoproj.io/tracking-id": tracked}

    status = bad_rollout_of(testenv, ns, web)["status"]
    name = rolled_back(testenv, ns, "web")["metadata"]["name"]
    assert deployment_state(testenv, ns, "web") == ("3", "registry.local/web:v1")
    held = [e["message"] for e in status["timeline"] if e["reason"] == "MitigationHeld"]
    assert any(f"reading Argo CD Application {ns}/shop" in m for m in held), held

    stored = testenv.get("applications.argoproj.io", "shop", ns)
    assert stored["spec"]["syncPolicy"] == {**SYNC_POLICY, "automated": {"prune": True, "selfHeal": False}}
    record = json.loads(stored["metadata"]["annotations"][PAUSED])
    assert record["incident"] == name and record["revision"] == "aaa111" and record["was"]["syncPolicy"] == SYNC_POLICY
    assert stored["spec"]["source"]["targetRevision"] == "main", "the rest of the Application is kept"

    def paused_recorded() -> list[dict[str, Any]] | None:
        return testenv.get("incident", name, ns).get("status", {}).get("gitops") or None

    (paused,) = wait_for("the pause in the Incident", paused_recorded, timeout=30)
    assert paused["reconciler"] == f"Argo CD Application {ns}/shop" and "selfHeal: false" in paused["how"]

    refused = hemostat(testenv, "incident", "resolve", name, "-n", ns, "--resume-gitops")
    assert refused.returncode != 0 and "still at revision aaa111" in refused.stderr, refused.stderr

    testenv.apply(application(ns, "bbb222"), ns)  # Argo CD synced the revert (automated sync stays on)
    done = hemostat(testenv, "incident", "resolve", name, "-n", ns, "--resume-gitops")
    assert done.returncode == 0 and f"resumed: Argo CD Application {ns}/shop" in done.stdout, done.stderr
    restored = testenv.get("applications.argoproj.io", "shop", ns)
    assert restored["spec"]["syncPolicy"] == SYNC_POLICY and PAUSED not in restored["metadata"].get("annotations", {})


def test_a_flux_helmrelease_is_suspended_before_the_rollback_and_resumed_as_it_was(
    testenv: Cluster, namespace: str, reconciler_crds: None, simulator, operators
) -> None:
    ns = namespace
    operators.start(ns)
    release = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "web"},
        "spec": {
            "interval": "5m",
            "chart": {"spec": {"chart": "web", "sourceRef": {"kind": "HelmRepository", "name": "shop"}}},
        },
    }
    testenv.apply(release, ns)
    status_patch = {"status": {"lastAttemptedRevision": "1.4.0", "lastAttemptedConfigDigest": "sha256:aa"}}
    testenv.kubectl(
        "patch",
        "helmreleases.helm.toolkit.fluxcd.io",
        "web",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status_patch),
    )  # what helm-controller would have written
    web = app("web", "registry.local/web:v1")
    web["metadata"]["labels"] |= {"helm.toolkit.fluxcd.io/name": "web", "helm.toolkit.fluxcd.io/namespace": ns}

    inc = bad_rollout_of(testenv, ns, web)
    name = inc["metadata"]["name"]
    stored = testenv.get("helmreleases.helm.toolkit.fluxcd.io", "web", ns)
    assert stored["spec"]["suspend"] is True and stored["spec"]["interval"] == "5m"
    assert json.loads(stored["metadata"]["annotations"][PAUSED])["revision"] == "1.4.0 (sha256:aa)"

    refused = hemostat(testenv, "incident", "resolve", name, "-n", ns, "--resume-gitops")
    assert refused.returncode != 0 and "refused" in refused.stderr and "Traceback" not in refused.stderr
    forced = hemostat(testenv, "incident", "resolve", name, "-n", ns, "--resume-gitops", "--force")
    assert forced.returncode == 0, forced.stderr
    resumed = testenv.get("helmreleases.helm.toolkit.fluxcd.io", "web", ns)
    assert resumed["spec"]["suspend"] is False and PAUSED not in resumed["metadata"].get("annotations", {})
