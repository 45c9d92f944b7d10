"""A person approves each step (guardrails.approval), on the real API server with the chart's admission
policies and tokens of real, restricted ServiceAccounts: the Incident waits with the planned change; an
approval from someone who may not make that change, or in someone else's name, is refused by the API
server; the responder's approval lets the rollback go; a rejection or no decision in time escalates with
nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart import token_kubeconfig
from conftest import Cluster, install_chart, wait_for
from receivers import Receiver
from scenarios import app, deployment_state, incident_of, policy, rollout, wait_ready
from test_admission import INCIDENTS, PATCH_DEPLOYMENTS, account, enforced


def approving(names: list[str], timeout: str = "10m", hook: bool = False) -> dict:
    """The stories' policy over these Deployments, every step waiting for a person."""
    body = policy(names[0], verify_for="4s")
    spec = body["spec"]
    spec["target"] = {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": names}]}}
    spec["guardrails"]["approval"] = {"mode": "required", "timeout": timeout}
    if hook:
        spec["notify"] = {"webhooks": [{"secretRef": {"name": "hooks", "key": "url"}}]}
    return body


def as_person(testenv: Cluster, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**testenv.env, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(
        [sys.executable, "-m", "hemostat", *args], capture_output=True, text=True, env=env, timeout=120
    )


def waiting(testenv: Cluster, ns: str, target: str) -> dict | None:
    found = incident_of(testenv, ns, target)
    return found if found and (found.get("status") or {}).get("phase") == "AwaitingApproval" else None


def start(testenv: Cluster, namespace: str, installed, operators, tmp_path: Path) -> tuple[Path, Path]:
    """The operator as the chart runs it (its token, its RBAC, failing closed); a bystander and a responder."""
    release, system = installed
    fullname = f"{release}-hemostat"
    bystander = account(testenv, namespace, "bystander", [INCIDENTS], tmp_path)
    responder = account(testenv, namespace, "responder", [INCIDENTS, PATCH_DEPLOYMENTS], tmp_path)
    wait_for("the admission policies enforced", lambda: enforced(testenv, bystander, namespace), 30)
    operator = token_kubeconfig(testenv, fullname, system, namespace, tmp_path / "op.kubeconfig")
    operators.start(namespace, f"--admission-policies={fullname}", env={"KUBECONFIG": str(operator)})
    return bystander, responder


@pytest.fixture
def reading_secrets(testenv: Cluster, crds: None, namespace: str) -> Iterator[tuple[str, str]]:
    """The chart, letting the operator read its policies' webhook Secrets (notifications.readSecrets)."""
    with install_chart(testenv, namespace, "notifications.readSecrets=true") as found:
        yield found


def test_a_step_waits_for_approval_from_someone_who_may_make_the_change(
    testenv: Cluster, namespace: str, simulator, reading_secrets, operators, tmp_path: Path, receiver: Receiver
) -> None:
    bystander, responder = start(testenv, namespace, reading_secrets, operators, tmp_path)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"}, "stringData": {"url": receiver.url}}
    testenv.apply(secret, namespace)
    testenv.apply(app("web", "registry.local/web:v1"), namespace)
    wait_ready(testenv, namespace, "web")
    testenv.apply(approving(["web"], hook=True), namespace)
    rollout(testenv, namespace, "web", "registry.local/web:v2", error_rate=0.5)

    inc = wait_for("the Incident waiting for approval", lambda: waiting(testenv, namespace, "web"), 90)
    name, asked = inc["metadata"]["name"], inc["status"]["approval"]
    assert (asked["request"], asked["index"], asked["action"]) == (1, 0, "rollback")
    assert asked["step"] == {"rollback": {"canaryAction": "scaleToZero"}}  # the step as the policy has it
    assert (asked["from"], asked["to"]) == ("revision 2 (registry.local/web:v2)", "revision 1 (registry.local/web:v1)")
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2")  # nothing done yet
    # the update says what will be done and how to approve it
    update = wait_for(
        "the AwaitingApproval update",
        lambda: next((b for _, b in receiver.got if b["phase"] == "AwaitingApproval"), None),
        30,
    )
    assert update["approval"]["change"] == (
        "rollback: revision 2 (registry.local/web:v2) -> revision 1 (registry.local/web:v1)"
    )
    assert update["approval"]["approve"] == f"hemostat incident approve {name} -n {namespace}"

    # someone who may not patch the Deployment cannot approve its rollback: the API server refuses
    refused = as_person(testenv, bystander, "incident", "approve", name, "-n", namespace, "--wait", "0")
    assert refused.returncode != 0
    assert (
        f"hemostat-incident-approvals: approving rollback needs permission to patch deployments/web in namespace "
        f"{namespace}, which system:serviceaccount:{namespace}:bystander does not have"
    ) in refused.stderr
    # nor may anyone decide in another's name
    forged = {"decision": "Approved", "request": 1, "by": "alice", "at": "2026-12-06T14:00:00Z"}
    patch = ["patch", "incident", name, "-n", namespace, "--type=merge", "--kubeconfig", str(responder)]
    named = testenv.kubectl(*patch, "-p", json.dumps({"spec": {"approval": forged}}), check=False)
    assert named.returncode != 0 and "spec.approval.by must name who decides" in named.stderr
    assert testenv.get("incident", name, namespace)["spec"].get("approval") is None

    approved = as_person(testenv, responder, "incident", "approve", name, "-n", namespace, "--reason", "v2 is bad")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    who = f"system:serviceaccount:{namespace}:responder"
    assert f"approved by {who}: rollback: revision 2" in approved.stdout
    assert deployment_state(testenv, namespace, "web") == ("3", "registry.local/web:v1")
    status = testenv.get("incident", name, namespace)["status"]
    assert (status["approval"]["decision"], status["approval"]["decidedBy"]) == ("Approved", who)
    reasons = [e["reason"] for e in status["timeline"]]
    assert reasons.index("ApprovalRequested") < reasons.index("Approved") < reasons.index("RolledBack")
    assert status["actions"][0]["result"] == "Succeeded"

    resolved = wait_for(
        "Resolved", lambda: (s := testenv.get("incident", name, namespace)["status"])["phase"] == "Resolved" and s, 60
    )
    assert resolved["actions"] == status["actions"]
    late = as_person(testenv, responder, "incident", "approve", name, "-n", namespace)
    assert late.returncode != 0
    assert f"incident {namespace}/{name} is not waiting for approval (phase Resolved): nothing to approve" in (
        late.stderr
    )


def bad_rollout_waiting(testenv: Cluster, ns: str, timeout: str = "10m") -> str:
    """web, rolled out bad under a policy whose steps wait for approval: its Incident, once it waits."""
    testenv.apply(app("web", "registry.local/web:v1"), ns)
    wait_ready(testenv, ns, "web")
    testenv.apply(approving(["web"], timeout=timeout), ns)
    rollout(testenv, ns, "web", "registry.local/web:v2", error_rate=0.5)
    found = wait_for("web waiting for approval", lambda: waiting(testenv, ns, "web"), 90)
    return str(found["metadata"]["name"])


def test_a_rejection_escalates_and_changes_nothing(
    testenv: Cluster, namespace: str, simulator, installed, operators, tmp_path: Path
) -> None:
    _, responder = start(testenv, namespace, installed, operators, tmp_path)
    name = bad_rollout_waiting(testenv, namespace)
    rejected = as_person(testenv, responder, "incident", "reject", name, "-n", namespace, "--reason", "a migration")
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    status = testenv.get("incident", name, namespace)["status"]
    assert status["phase"] == "Escalated" and status["approval"]["decision"] == "Rejected"
    who = f"system:serviceaccount:{namespace}:responder"
    assert status["timeline"][-1]["message"] == (
        f"{who} rejected rollback (rollback: revision 2 (registry.local/web:v2) -> revision 1 "
        "(registry.local/web:v1)): a migration: nothing changed; a person leads from here"
    )
    assert not status.get("actions")
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2")


def test_no_decision_in_time_escalates_and_changes_nothing(
    testenv: Cluster, namespace: str, simulator, installed, operators, tmp_path: Path
) -> None:
    start(testenv, namespace, installed, operators, tmp_path)
    name = bad_rollout_waiting(testenv, namespace, timeout="20s")

    def escalated() -> dict | None:
        status = testenv.get("incident", name, namespace)["status"]
        return status if status.get("phase") == "Escalated" else None

    status = wait_for("escalated when nobody decided", escalated, 90)
    said = "no decision on rollback within 20s: nothing changed; a person leads from here"
    assert status["timeline"][-1]["message"] == said
    requested = next(e["at"] for e in status["timeline"] if e["reason"] == "ApprovalRequested")
    assert status["escalatedAt"] >= status["approval"]["deadline"] > requested
    assert not status.get("actions")
    assert deployment_state(testenv, namespace, "web") == ("2", "registry.local/web:v2")
