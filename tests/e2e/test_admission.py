"""Nobody acts through the operator beyond their own rights: the chart's admission policies on
the real API server, with tokens of real, restricted ServiceAccounts (never the admin certificate).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from chart import token_kubeconfig
from conftest import Cluster, wait_for
from scenarios import app, deployment_state, rollout, wait_ready

INCIDENTS = {"apiGroups": ["hemostat.dev"], "resources": ["incidents"], "verbs": ["get", "list", "create", "patch"]}
PATCH_DEPLOYMENTS = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}


def account(testenv: Cluster, ns: str, name: str, rules: list[dict], tmp_path: Path) -> Path:
    """A ServiceAccount with exactly these rules in `ns`, and a kubeconfig that acts as it."""
    testenv.kubectl("create", "serviceaccount", name, "-n", ns)
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }
    testenv.apply(role, ns)
    testenv.apply(binding, ns)
    return token_kubeconfig(testenv, name, ns, ns, tmp_path / f"{name}.kubeconfig")


def incident(name: str, target: str, mitigation: dict | None = None, **extra: object) -> dict:
    spec = {"severity": "SEV2", "summary": "support reports errors", "target": {"name": target}, "source": "manual"}
    if mitigation is not None:
        spec["mitigation"] = mitigation
    spec.update(extra.pop("spec", {}))  # type: ignore[arg-type]
    return {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "Incident",
        "metadata": {"name": name, **extra},
        "spec": spec,
    }


def create_as(testenv: Cluster, kubeconfig: Path, ns: str, obj: dict, *flags: str) -> subprocess.CompletedProcess:
    cmd = ["create", "-f", "-", "-n", ns, "--kubeconfig", str(kubeconfig), *flags]
    return testenv.kubectl(*cmd, input=json.dumps(obj), check=False)


def enforced(testenv: Cluster, kubeconfig: Path, ns: str) -> bool:
    """New admission policies take a moment to apply; ask with a dry run that one would refuse."""
    probe = incident("probe", "x", spec={"source": "policy"})
    return create_as(testenv, kubeconfig, ns, probe, "--dry-run=server").returncode != 0


def test_a_mitigation_request_needs_the_requesters_own_right_to_patch(
    testenv: Cluster, namespace: str, installed, operators, tmp_path: Path
) -> None:
    release, system = installed
    bystander = account(testenv, namespace, "bystander", [INCIDENTS], tmp_path)
    responder = account(testenv, namespace, "responder", [INCIDENTS, PATCH_DEPLOYMENTS], tmp_path)
    wait_for("the admission policies enforced", lambda: enforced(testenv, bystander, namespace), 30)
    # the operator as the chart runs it: its ServiceAccount's token and the chart's RBAC
    operator = token_kubeconfig(testenv, f"{release}-hemostat", system, namespace, tmp_path / "op.kubeconfig")
    operators.start(namespace, env={"KUBECONFIG": str(operator)})
    testenv.apply(app("shopfront", "registry.local/shopfront:v1"), namespace)
    wait_ready(testenv, namespace, "shopfront")
    rollout(testenv, namespace, "shopfront", "registry.local/shopfront:v2", error_rate=0.0)
    wait_ready(testenv, namespace, "shopfront")

    refused = create_as(testenv, bystander, namespace, incident("ask-1", "shopfront", {"rollback": {}}))
    assert refused.returncode != 0
    assert (
        "hemostat-incident-requests: spec.mitigation.rollback needs permission to patch deployments/shopfront "
        f"in namespace {namespace}, which system:serviceaccount:{namespace}:bystander does not have"
    ) in refused.stderr
    # nothing happened: no Incident, no rollback
    assert testenv.kubectl("get", "incident", "ask-1", "-n", namespace, check=False).returncode != 0
    # declaring an incident without asking for an action stays open to them
    assert create_as(testenv, bystander, namespace, incident("declared", "shopfront")).returncode == 0
    # nor can they add the request to it afterwards
    patch = ["patch", "incident", "declared", "-n", namespace, "--type=merge", "--kubeconfig", str(bystander)]
    added = testenv.kubectl(
        *patch, "-p", json.dumps({"spec": {"mitigation": {"scaleUp": {"maxReplicas": 50}}}}), check=False
    )
    assert added.returncode != 0 and "spec.mitigation.scaleUp needs permission to patch deployments/shopfront" in (
        added.stderr
    )
    flag = {"disableFlag": {"configMap": {"name": "flags", "flag": "new-pricing"}}}
    refused_flag = create_as(testenv, responder, namespace, incident("ask-2", "shopfront", flag))
    assert "spec.mitigation.disableFlag needs permission to patch configmaps/flags" in refused_flag.stderr
    assert deployment_state(testenv, namespace, "shopfront") == ("2", "registry.local/shopfront:v2")

    # the responder may patch the Deployment: the operator carries the request out
    assert create_as(testenv, responder, namespace, incident("ask-3", "shopfront", {"rollback": {}})).returncode == 0
    wait_for(
        "the rollback",
        lambda: deployment_state(testenv, namespace, "shopfront") == ("3", "registry.local/shopfront:v1"),
        60,
    )


def test_only_the_operator_writes_what_ties_an_incident_to_a_policy(
    testenv: Cluster, namespace: str, installed, tmp_path: Path
) -> None:
    release, system = installed
    # RBAC even lets this person write Incident status: the admission policy is what refuses it
    status_rights = {"apiGroups": ["hemostat.dev"], "resources": ["incidents/status"], "verbs": ["get", "patch"]}
    person = account(testenv, namespace, "person", [INCIDENTS, PATCH_DEPLOYMENTS, status_rights], tmp_path)
    wait_for("the admission policies enforced", lambda: enforced(testenv, person, namespace), 30)

    refusals = {
        "source: policy": (
            incident("forged-1", "shopfront", spec={"source": "policy"}),
            "only the Hemostat operator opens source: policy Incidents",
        ),
        "policy label": (
            incident("forged-2", "shopfront", labels={"hemostat.dev/policy": "checkout"}),
            "the labels hemostat.dev/policy and hemostat.dev/target are set by the Hemostat operator only",
        ),
        "detection annotation": (
            incident("forged-3", "shopfront", annotations={"hemostat.dev/detection": '{"phase":"Escalated"}'}),
            "the annotation hemostat.dev/detection is set by the Hemostat operator only",
        ),
    }
    for what, (obj, message) in refusals.items():
        proc = create_as(testenv, person, namespace, obj)
        assert proc.returncode != 0 and f"hemostat-incident-fields: {message}" in proc.stderr, (what, proc.stderr)

    # nor later, on an Incident they may otherwise edit (ack, notes, resolve)
    assert create_as(testenv, person, namespace, incident("mine", "shopfront")).returncode == 0
    patch = ["patch", "incident", "mine", "-n", namespace, "--type=merge", "--kubeconfig", str(person)]
    assert testenv.kubectl(*patch, "-p", '{"spec":{"acknowledgedBy":"dana"}}').returncode == 0
    label = testenv.kubectl(*patch, "-p", '{"metadata":{"labels":{"hemostat.dev/target":"shopfront"}}}', check=False)
    assert "hemostat-incident-fields: the labels hemostat.dev/policy and hemostat.dev/target" in label.stderr
    status = testenv.kubectl(*patch, "--subresource=status", "-p", '{"status":{"phase":"Resolved"}}', check=False)
    assert "hemostat-incident-fields: only the Hemostat operator writes Incident status" in status.stderr

    # the operator's own ServiceAccount may (dry run: nothing is left behind)
    operator = token_kubeconfig(testenv, f"{release}-hemostat", system, namespace, tmp_path / "op.kubeconfig")
    for obj, _ in refusals.values():
        proc = create_as(testenv, operator, namespace, obj, "--dry-run=server")
        assert proc.returncode == 0, proc.stderr
