"""The systems Hemostat works beside, for the e2e tests that need them: real controllers and a git server.

Fixtures (a test module loads them with `pytest_plugins = ["gitops"]`):
- `flux`: Flux's source-controller and kustomize-controller running on the test cluster;
- `flux_namespace`: the test's namespace, its Flux objects deleted (while Flux runs) at the end;
- `argo_rollouts`: Argo Rollouts' controller running on the test cluster;
- `git_repos`: bare repositories served read-only over smart HTTP on 127.0.0.1 (hack/gitserver.py).

The controllers are built from their pinned Go modules on first use (`hack/build-testenv.sh flux
rollouts`, cached in ~/.cache/hemostat; cold, both at once: 11 minutes on 2 cores), their CRDs
installed at the same versions, and started by `hack/controllers.sh up`; a session stops the
controllers it started. Nothing is skipped: a build or a start that fails fails the test, with why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, Cluster, wait_for
from processes import Proc

CONTROLLERS = {
    "flux": ("flux-source-controller", "flux-kustomize-controller"),
    "rollouts": ("argo-rollouts-controller",),
}


def _script_env(testenv: Cluster) -> dict[str, str]:
    # hack/controllers.sh takes the cluster from HEMOSTAT_E2E_KUBECONFIG, never an ambient KUBECONFIG
    return {**testenv.env, "HEMOSTAT_E2E_KUBECONFIG": testenv.kubeconfig}


def _state_dir(env: dict[str, str]) -> Path:
    return Path(env.get("TESTENV") or env.get("HEMOSTAT_TESTENV") or ROOT / ".testenv")


@dataclass(frozen=True)
class Controllers:
    component: str
    log_dir: Path

    def logs(self, tail: int = 40) -> str:
        out = []
        for name in CONTROLLERS[self.component]:
            path = self.log_dir / f"{name}.log"
            lines = path.read_text(errors="replace").splitlines()[-tail:] if path.exists() else ["(no log)"]
            out.append(f"--- {name} ({path}) ---\n" + "\n".join(lines))
        return "\n".join(out)


@pytest.fixture(scope="session")
def gitops_binaries() -> None:
    """Both components in one call, so a cold cache builds them side by side."""
    proc = subprocess.run(
        [str(ROOT / "hack" / "build-testenv.sh"), "flux", "rollouts"], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        pytest.fail(f"building Flux and Argo Rollouts failed:\n{proc.stderr[-4000:]}", pytrace=False)


def _controllers(testenv: Cluster, component: str) -> Iterator[Controllers]:
    script, env = str(ROOT / "hack" / "controllers.sh"), _script_env(testenv)
    already = subprocess.run([script, "status", component], env=env, capture_output=True).returncode == 0
    up = subprocess.run([script, "up", component], env=env, capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        pytest.fail(f"hack/controllers.sh up {component} failed:\n{up.stderr[-4000:]}", pytrace=False)
    yield Controllers(component, _state_dir(env) / "logs")
    if not already:
        subprocess.run([script, "down", component], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def flux(testenv: Cluster, gitops_binaries: None) -> Iterator[Controllers]:
    yield from _controllers(testenv, "flux")


@pytest.fixture(scope="session")
def argo_rollouts(testenv: Cluster, gitops_binaries: None) -> Iterator[Controllers]:
    yield from _controllers(testenv, "rollouts")


@pytest.fixture
def flux_namespace(testenv: Cluster, namespace: str, flux: Controllers) -> Iterator[str]:
    """The test's namespace, left without Flux objects while Flux still runs.

    Kustomizations and GitRepositories carry Flux's finalizer: deleted with the namespace after
    the session's controllers stopped, they would hold the namespace in Terminating for ever.
    """
    yield namespace
    kinds = "kustomizations.kustomize.toolkit.fluxcd.io,gitrepositories.source.toolkit.fluxcd.io"
    testenv.kubectl("delete", kinds, "--all", "-n", namespace, "--timeout=60s")


class GitRepos:
    """Bare repositories under `root`, each changed through a work tree of its own, served at `url`."""

    def __init__(self, root: Path, work: Path, url: str) -> None:
        self.root, self.work, self.url = root, work, url

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        config = ["user.name=hemostat-e2e", "user.email=e2e@hemostat.invalid", "commit.gpgsign=false"]
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        options = [o for c in config for o in ("-c", c)]
        proc = subprocess.run(["git", *options, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create(self, name: str, files: dict[str, str]) -> str:
        """A repository `name` whose branch main holds `files` (path -> text); its clone URL."""
        self._git("init", "-q", "--bare", "-b", "main", str(self.root / f"{name}.git"))
        self._git("init", "-q", "-b", "main", str(self.work / name))
        self._git("remote", "add", "origin", str(self.root / f"{name}.git"), cwd=self.work / name)
        self.commit(name, files, f"{name}: first commit")
        return f"{self.url}/{name}.git"

    def commit(self, name: str, files: dict[str, str], message: str = "change") -> str:
        """Write `files` into main of `name` and push; the new commit's SHA."""
        tree = self.work / name
        for path, text in files.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text)
        self._git("add", "-A", cwd=tree)
        self._git("commit", "-q", "-m", message, cwd=tree)
        self._git("push", "-q", "origin", "main", cwd=tree)
        return self._git("rev-parse", "HEAD", cwd=tree)


@pytest.fixture(scope="session")
def git_repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitRepos]:
    base = tmp_path_factory.mktemp("git")
    (base / "repos").mkdir()
    (base / "work").mkdir()
    args = [sys.executable, str(ROOT / "hack" / "gitserver.py"), str(base / "repos")]
    server = Proc("gitserver", args, {**os.environ}, base).start()

    def url() -> str | None:
        assert server.alive(), f"hack/gitserver.py exited:\n{server.log()}"
        match = re.search(r" at (http://127\.0\.0\.1:\d+)$", server.log(), re.MULTILINE)
        return match[1] if match else None

    repos = GitRepos(base / "repos", base / "work", wait_for("hack/gitserver.py listening", url, timeout=30))
    yield repos
    server.stop()
