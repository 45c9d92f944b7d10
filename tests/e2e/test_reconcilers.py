"""The real reconcilers Hemostat will work beside do their real work on the test cluster.

Flux puts a Deployment changed by hand back to what git says, unless the Deployment carries
`kustomize.toolkit.fluxcd.io/reconcile: disabled`; Argo Rollouts scales an aborted canary down
while its stable ReplicaSet keeps serving. These are the behaviours GitOps-aware mitigation
relies on, proven here on the pinned controller versions before Hemostat depends on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from conftest import Cluster, deployment, wait_for
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException
from scenarios import flux_sync

if TYPE_CHECKING:  # imported as a plugin below, so that pytest rewrites its asserts
    from gitops import Controllers, GitRepos

pytest_plugins = ["gitops"]  # its fixtures: flux, flux_namespace, argo_rollouts, git_repos
# The first test of a session may build the controllers (cold: minutes) during its setup.
pytestmark = pytest.mark.timeout(3600)

INTERVAL = 5  # seconds: Flux's GitRepository and Kustomization intervals here
DISABLED = {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}
ROLLOUTS = ("argoproj.io", "v1alpha1")


@pytest.fixture
def kube(testenv: Cluster) -> client.ApiClient:
    return kube_config.new_client_from_config(config_file=testenv.kubeconfig)


def _logs_on_failure(request: pytest.FixtureRequest, controllers: Controllers) -> Iterator[Controllers]:
    yield controllers
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(controllers.logs())


@pytest.fixture
def flux_logs(request: pytest.FixtureRequest, flux: Controllers) -> Iterator[Controllers]:
    yield from _logs_on_failure(request, flux)


@pytest.fixture
def rollouts_logs(request: pytest.FixtureRequest, argo_rollouts: Controllers) -> Iterator[Controllers]:
    yield from _logs_on_failure(request, argo_rollouts)


def _or_none(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def test_flux_restores_a_hand_change_unless_the_object_opts_out(
    testenv: Cluster,
    flux_namespace: str,
    kube: client.ApiClient,
    git_repos: GitRepos,
    flux_logs: Controllers,
) -> None:
    namespace = flux_namespace
    apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)
    manifests = {
        f"deploy/{name}.yaml": yaml.safe_dump(deployment(name, f"registry.local/{name}:v2")) for name in ("web", "api")
    }
    url = git_repos.create(f"shop-{namespace}", manifests)
    flux_sync(testenv, namespace, url, INTERVAL)

    def image(name: str) -> str | None:
        d = _or_none(lambda: apps.read_namespaced_deployment(name, namespace))
        return d.spec.template.spec.containers[0].image if d else None

    def set_image(name: str, tag: str) -> None:
        container = {"name": "app", "image": f"registry.local/{name}:{tag}"}
        patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
        apps.patch_namespaced_deployment(name, namespace, patch, _content_type="application/strategic-merge-patch+json")

    def kustomization() -> dict[str, Any]:
        return custom.get_namespaced_custom_object(
            "kustomize.toolkit.fluxcd.io", "v1", namespace, "kustomizations", "shop"
        )

    # git -> cluster: the Deployments appear, applied by the kustomize-controller
    ready = wait_for(
        "the Kustomization to be Ready",
        lambda: _condition(kustomization(), "Ready").get("status") == "True" and kustomization(),
        timeout=120,
    )
    for name in ("web", "api"):
        wait_for(f"{name} at v2 from git", lambda n=name: image(n) == f"registry.local/{n}:v2", timeout=30)
        labels = apps.read_namespaced_deployment(name, namespace).metadata.labels
        assert labels.get("kustomize.toolkit.fluxcd.io/name") == "shop", labels
    first = ready["status"]["lastAppliedRevision"]
    assert first.startswith("main@sha1:"), first

    # a hand change is drift: Flux applies git's version again
    set_image("web", "v1")
    assert image("web") == "registry.local/web:v1"
    start = time.monotonic()
    wait_for("Flux to put web back to v2", lambda: image("web") == "registry.local/web:v2", timeout=30)
    print(f"Flux reverted a hand change in {time.monotonic() - start:.1f}s (interval {INTERVAL}s)")

    # opted out per object: the same hand change stays, while its unmarked neighbour is reverted
    apps.patch_namespaced_deployment("web", namespace, {"metadata": {"annotations": DISABLED}})
    set_image("web", "v1")
    set_image("api", "v1")
    wait_for("Flux to put api back to v2", lambda: image("api") == "registry.local/api:v2", timeout=30)
    until = time.monotonic() + 3 * INTERVAL
    while time.monotonic() < until:
        assert image("web") == "registry.local/web:v1", "Flux reverted a Deployment marked reconcile: disabled"
        time.sleep(0.5)

    # a new commit is fetched from the git server and applied; the opted-out object still is not touched
    sha = git_repos.commit(
        f"shop-{namespace}",
        {
            "deploy/api.yaml": yaml.safe_dump(deployment("api", "registry.local/api:v3")),
            "deploy/web.yaml": yaml.safe_dump(deployment("web", "registry.local/web:v3")),
        },
        "api and web: v3",
    )
    wait_for("api at v3 from the new commit", lambda: image("api") == "registry.local/api:v3", timeout=60)
    wait_for(
        "the Kustomization to report the new commit",
        lambda: kustomization()["status"].get("lastAppliedRevision") == f"main@sha1:{sha}",
        timeout=30,
    )
    assert image("web") == "registry.local/web:v1"


def _rollout(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "/".join(ROLLOUTS),
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


def test_argo_rollouts_abort_scales_the_canary_down_and_keeps_stable(
    testenv: Cluster, namespace: str, kube: client.ApiClient, rollouts_logs: Controllers
) -> None:
    apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)
    testenv.apply(_rollout("shop", "registry.local/shop:v1"), namespace)

    def rollout() -> dict[str, Any]:
        return custom.get_namespaced_custom_object(*ROLLOUTS, namespace, "rollouts", "shop")

    def replicasets() -> dict[str, client.V1ReplicaSet]:
        items = apps.list_namespaced_replica_set(namespace, label_selector="app=shop").items
        return {rs.metadata.labels["rollouts-pod-template-hash"]: rs for rs in items}

    def phase() -> str | None:
        ro = rollout()
        s = ro.get("status", {})
        return s.get("phase") if s.get("observedGeneration") == str(ro["metadata"]["generation"]) else None

    healthy = wait_for("the Rollout to be Healthy", lambda: phase() == "Healthy" and rollout(), timeout=90)
    stable = healthy["status"]["stableRS"]
    assert replicasets()[stable].status.ready_replicas == 2

    # a new image starts a canary: one Pod of v2 at weight 50, then an indefinite pause
    custom.patch_namespaced_custom_object(
        *ROLLOUTS,
        namespace,
        "rollouts",
        "shop",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.local/shop:v2"}]}}}},
    )

    def canary_paused() -> dict[str, Any] | None:
        ro = rollout()
        s, sets = ro.get("status", {}), replicasets()
        canary = sets.get(s.get("currentPodHash", ""))
        if s.get("phase") != "Paused" or canary is None or s["currentPodHash"] == stable:
            return None
        return ro if (canary.status.ready_replicas or 0) == 1 and s.get("currentStepIndex") == 1 else None

    paused = wait_for("the canary to reach its pause", canary_paused, timeout=90)
    canary = paused["status"]["currentPodHash"]
    assert paused["status"]["stableRS"] == stable
    assert replicasets()[canary].spec.template.spec.containers[0].image == "registry.local/shop:v2"
    at_pause = {h: (rs.spec.replicas, rs.status.ready_replicas) for h, rs in replicasets().items()}
    print(f"at the pause (replicas, ready): stable {at_pause[stable]}, canary {at_pause[canary]}")
    assert (at_pause[stable][1] or 0) >= 1

    # abort as `kubectl argo rollouts abort` does: a merge patch of the status subresource
    abort, merge = {"status": {"abort": True}}, "application/merge-patch+json"
    custom.patch_namespaced_custom_object_status(*ROLLOUTS, namespace, "rollouts", "shop", abort, _content_type=merge)
    start = time.monotonic()
    least_stable = [2]

    def aborted() -> dict[str, Any] | None:
        ro, sets = rollout(), replicasets()
        least_stable[0] = min(least_stable[0], sets[stable].status.ready_replicas or 0)
        s = ro.get("status", {})
        done = (
            s.get("abort") is True
            and s.get("phase") == "Degraded"
            and (sets[canary].spec.replicas, sets[canary].status.replicas or 0) == (0, 0)
            and (sets[stable].spec.replicas, sets[stable].status.ready_replicas) == (2, 2)
        )
        return ro if done else None

    ro = wait_for("the aborted canary to be scaled down", aborted, timeout=60)
    print(f"Argo Rollouts scaled the aborted canary down in {time.monotonic() - start:.1f}s")
    status = ro["status"]
    assert status["message"].startswith("RolloutAborted: Rollout aborted update to revision 2"), status["message"]
    assert status["stableRS"] == stable and status["currentPodHash"] == canary
    assert least_stable[0] >= 1, "the stable ReplicaSet stopped serving during the abort"
    # the spec still asks for v2: the abort is a state of the Rollout, not a change of its template
    assert ro["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/shop:v2"
