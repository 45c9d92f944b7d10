"""Rollbacks that stick under GitOps, against the real Flux controllers (source- and kustomize-controller).

A Deployment applied by a Flux Kustomization from a git repository on loopback; a bad commit rolls
out; Hemostat rolls it back. Without the pause Flux puts the bad revision back at its next interval;
with it the rollback stays, the Incident records the pause, and a person resumes Flux (with their
own rights) once the bad change is reverted in Git, never before.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from conftest import Cluster, wait_for
from scenarios import app, deployment_state, flux_sync, hemostat, policy, rolled_back, wait_ready

if TYPE_CHECKING:
    from gitops import GitRepos

pytest_plugins = ["gitops"]  # flux, flux_namespace, git_repos
pytestmark = pytest.mark.timeout(3600)  # the first test of a session may build Flux (cold: minutes)

INTERVAL = 5  # seconds: the GitRepository's and the Kustomization's
GOOD, BAD = ("registry.local/web:v1", 0.0), ("registry.local/web:v2", 1.0)


def manifest(image: str, error_rate: float) -> dict[str, str]:
    return {"deploy/web.yaml": yaml.safe_dump(app("web", image, error_rate=error_rate))}


def managed_by_flux(testenv: Cluster, ns: str, git_repos: GitRepos) -> str:
    """web at v1 from git, applied by a Kustomization; the repository's name."""
    repo = f"shop-{ns}"
    url = git_repos.create(repo, manifest(*GOOD))
    flux_sync(testenv, ns, url, INTERVAL)
    wait_for("web applied by Flux", lambda: _exists(testenv, ns), timeout=120)
    wait_ready(testenv, ns, "web")
    return repo


def _exists(testenv: Cluster, ns: str) -> bool:
    return testenv.kubectl("get", "deployment", "web", "-n", ns, check=False).returncode == 0


def applied_revision(testenv: Cluster, ns: str) -> str | None:
    ks = testenv.get("kustomizations.kustomize.toolkit.fluxcd.io", "shop", ns)
    return ks.get("status", {}).get("lastAppliedRevision")


def bad_commit_rolled_back(
    testenv: Cluster, ns: str, git_repos: GitRepos, repo: str, gitops: str | None = None
) -> dict[str, Any]:
    """Hemostat's policy on web (mitigation.gitops as given, else the default), a bad commit in git, and
    the Incident once the rollback succeeded."""
    p = policy("web", verify_for="5s")
    if gitops:
        p["spec"]["mitigation"]["gitops"] = gitops
    testenv.apply(p, ns)
    sha = git_repos.commit(repo, manifest(*BAD), "web: v2")
    wait_for("Flux applies the bad commit", lambda: applied_revision(testenv, ns) == f"main@sha1:{sha}", timeout=60)
    return rolled_back(testenv, ns, "web")


def test_without_the_pause_flux_puts_the_bad_revision_back(
    testenv: Cluster, flux_namespace: str, simulator, operators, git_repos: GitRepos
) -> None:
    ns = flux_namespace
    operators.start(ns)
    repo = managed_by_flux(testenv, ns, git_repos)
    bad_commit_rolled_back(testenv, ns, git_repos, repo, gitops="ignore")
    wait_for("Flux re-applies v2", lambda: deployment_state(testenv, ns, "web")[1] == BAD[0], timeout=4 * INTERVAL)


def test_the_paused_rollback_sticks_and_flux_resumes_only_after_the_revert_in_git(
    testenv: Cluster, flux_namespace: str, simulator, operators, git_repos: GitRepos
) -> None:
    ns = flux_namespace
    operators.start(ns)
    repo = managed_by_flux(testenv, ns, git_repos)
    inc = bad_commit_rolled_back(testenv, ns, git_repos, repo)  # the default: pause
    name = inc["metadata"]["name"]

    until = time.monotonic() + 3 * INTERVAL + 2
    while time.monotonic() < until:  # three reconcile intervals: the rollback stays
        assert deployment_state(testenv, ns, "web") == ("3", GOOD[0]), "Flux undid the rollback"
        time.sleep(0.5)
    annotations = testenv.get("deployment", "web", ns)["metadata"]["annotations"]
    assert annotations["kustomize.toolkit.fluxcd.io/reconcile"] == "disabled"

    def resolved() -> dict[str, Any] | None:
        now = testenv.get("incident", name, ns)
        return now if now.get("status", {}).get("phase") == "Resolved" else None

    status = wait_for("the incident resolves", resolved, timeout=60)["status"]
    (paused,) = status["gitops"]
    assert paused["reconciler"] == f"Flux Kustomization {ns}/shop" and paused["object"] == "Deployment web"
    assert f"hemostat incident resolve {name} --resume-gitops" in paused["resume"]
    said = [e["message"] for e in status["timeline"] if e["reason"] == "ReconcilerPaused"]
    assert len(said) == 1 and "reconcile: disabled on Deployment web" in said[0], said

    # Git still holds v2: resuming now would put it back
    refused = hemostat(testenv, "incident", "resolve", name, "-n", ns, "--resume-gitops")
    assert refused.returncode != 0 and "refused" in refused.stderr and "revert the bad change in Git" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (
        testenv.get("deployment", "web", ns)["metadata"]["annotations"].get("kustomize.toolkit.fluxcd.io/reconcile")
        == "disabled"
    ), "a refusal changes nothing"

    # a new commit that does not revert it: the source moved, but Git still names the bad image
    source = ("gitrepositories.source.toolkit.fluxcd.io", "shop", ns)
    other = git_repos.commit(repo, {"README.md": "web: investigating v2\n"}, "docs")
    wait_for(
        "Flux fetches the docs commit", lambda: other in testenv.get(*source)["status"]["artifact"]["revision"], 60
    )
    still = hemostat(testenv, "incident", "resolve", name, "-n", ns, "--resume-gitops")
    assert still.returncode != 0 and f"still names {BAD[0]} (in deploy/web.yaml)" in still.stderr, still.stderr

    sha = git_repos.commit(repo, manifest(*GOOD), "revert web: v2")
    wait_for("Flux fetches the revert", lambda: sha in testenv.get(*source)["status"]["artifact"]["revision"], 60)
    done = hemostat(testenv, "incident", "resolve", name, "-n", ns, "--resume-gitops")
    assert done.returncode == 0 and f"resumed: Flux Kustomization {ns}/shop reconciles Deployment web" in done.stdout, (
        done.stderr
    )
    assert f"no longer names {BAD[0]}" in done.stdout, done.stdout  # the new revision's files were read
    annotations = testenv.get("deployment", "web", ns)["metadata"]["annotations"]
    assert (
        "kustomize.toolkit.fluxcd.io/reconcile" not in annotations and "hemostat.dev/gitops-paused" not in annotations
    )

    wait_for("Flux applies the revert", lambda: applied_revision(testenv, ns) == f"main@sha1:{sha}", timeout=60)
    until = time.monotonic() + 3 * INTERVAL
    while time.monotonic() < until:  # Flux reconciles web again, and the good version stays
        assert deployment_state(testenv, ns, "web")[1] == GOOD[0]
        time.sleep(0.5)
