"""People and the operator meet on the Incident: ack, note, resolve, postmortem, report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
from chart import token_kubeconfig
from conftest import Cluster, wait_for
from scenarios import app, deployment_state, hemostat, incidents, policy, rollout, wait_phase, wait_ready
from test_admission import account


def test_a_person_resolves_an_escalated_incident_and_gets_a_postmortem(
    testenv: Cluster, namespace: str, simulator, operators, tmp_path: Path
) -> None:
    operators.start(namespace)
    testenv.apply(app("ledger", "registry.local/ledger:v1", error_rate=0.5), namespace)  # nothing to roll back to
    wait_ready(testenv, namespace, "ledger")
    testenv.apply(policy("ledger", verify_for="4s"), namespace)
    inc = wait_phase(testenv, namespace, "Escalated", timeout=90)
    name = inc["metadata"]["name"]

    ack = hemostat(testenv, "incident", "ack", name, "-n", namespace, "--by", "alice", "--commander", "alice")
    # who acked is who the API server says (SelfSubjectReview), beside the name given
    assert ack.returncode == 0 and "acknowledged by alice (testenv-admin)" in ack.stdout, ack.stderr
    note = hemostat(testenv, "incident", "note", name, "-n", namespace, "--by", "bob", "bad config in v1, fixing")
    assert note.returncode == 0, note.stderr
    done = hemostat(testenv, "incident", "resolve", name, "-n", namespace, "--by", "alice")
    assert done.returncode == 0, done.stderr

    inc = wait_phase(testenv, namespace, "Resolved", timeout=30)
    assert inc["spec"]["acknowledgedBy"] == "alice (testenv-admin)" and inc["spec"]["commander"] == "alice"
    assert [n["text"] for n in inc["spec"]["notes"]] == ["bad config in v1, fixing", "marked resolved"]
    assert inc["status"]["timeline"][-1]["reason"] == "ResolvedByPerson"
    # resolved means closed: the breach goes on, but this incident is never re-opened; a new one links it
    newer = wait_for(
        "a new incident", lambda: [i for i in incidents(testenv, namespace) if i["metadata"]["name"] != name], 60
    )
    assert newer[0]["spec"]["previousIncident"] == name
    assert testenv.get("incident", name, namespace)["status"]["phase"] == "Resolved"

    out = tmp_path / "postmortem.md"
    pm = hemostat(
        testenv, "postmortem", name, "-n", namespace, "-f", str(out), "--prometheus-url", testenv.prometheus_url
    )
    assert pm.returncode == 0, pm.stderr
    text = out.read_text()
    # a chart per signal beside it, as a person would check it: the PNG decodes at its size, and its markers
    # (read back from the SVG) are at the timeline's times
    assert "![error-rate around the incident](postmortem-error-rate.png)" in text
    png = mpimg.imread(tmp_path / "postmortem-error-rate.png")
    assert png.shape[:2] == (400, 1000)
    svg = (tmp_path / "postmortem-error-rate.svg").read_text()
    status = testenv.get("incident", name, namespace)["status"]
    wanted = {status["detectedAt"], status["resolvedAt"], *(a["at"] for a in status["actions"])}
    assert set(re.findall(r'id="marker-([0-9TZ:-]+)"', svg)) == wanted
    assert text.startswith(f"# Incident {name}: error-rate ")
    assert "**Incident commander:** alice" in text
    assert "Note by bob (testenv-admin): bad config in v1, fixing" in text
    assert "| rollback | Skipped |" in text and "Make the rollback step usable" in text
    assert "## Root cause" in text and "| Item | Owner | Due | Type |" in text

    report = hemostat(testenv, "report", "-n", namespace, "--since", "1h")
    assert report.returncode == 0 and f"Incidents in namespace {namespace}, last 1h: 2" in report.stdout


def test_cli_errors_are_one_line(testenv: Cluster, namespace: str) -> None:
    missing = hemostat(testenv, "postmortem", "no-such-incident", "-n", namespace)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"hemostat: error: incident {namespace}/no-such-incident: not found"
    bad_flag = hemostat(testenv, "report", "--bogus")
    assert bad_flag.returncode == 2 and "Traceback" not in bad_flag.stderr


def test_kubectl_hemostat_in_the_contexts_namespace(
    testenv: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    """As a kubectl plugin (`kubectl-hemostat` on PATH, installed with the package), and with the namespace
    from the kubeconfig's context when -n is not given, as kubectl does."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(Path(testenv.kubeconfig).read_text())
    testenv.kubectl("config", "set-context", "--current", f"--namespace={namespace}", "--kubeconfig", str(kubeconfig))
    spec = {"severity": "SEV3", "summary": "slow checkout", "target": {"name": "web"}, "source": "manual"}
    body = {"apiVersion": "hemostat.dev/v1alpha1", "kind": "Incident", "metadata": {"name": "slow-1"}, "spec": spec}
    testenv.apply(body, namespace)
    plugin_dir = str(Path(sys.executable).parent)  # where the package put its scripts
    env = {**testenv.env, "KUBECONFIG": str(kubeconfig), "PATH": f"{plugin_dir}:{testenv.env['PATH']}"}
    run = subprocess.run(
        ["kubectl", "hemostat", "incident", "ack", "slow-1", "--by", "dana"], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0 and f"{namespace}/slow-1" in run.stdout, run.stderr
    assert testenv.get("incident", "slow-1", namespace)["spec"]["acknowledgedBy"] == "dana (testenv-admin)"
    usage = subprocess.run(["kubectl", "hemostat", "--help"], capture_output=True, text=True, env=env)
    assert usage.stdout.startswith("usage: kubectl hemostat"), usage.stdout[:200]


def test_one_command_asks_for_a_rollback_with_the_persons_own_rights(
    testenv: Cluster, namespace: str, simulator, installed, operators, tmp_path: Path
) -> None:
    """`hemostat rollback NAME`: a manual Incident asked with the person's own identity and rights, followed
    until the step is recorded; the exit status says how it went; a refusal is the API server's own words."""
    release, system = installed
    rights = [
        {"apiGroups": ["hemostat.dev"], "resources": ["incidents"], "verbs": ["get", "list", "create", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
    ]
    responder = account(testenv, namespace, "responder", rights, tmp_path)
    bystander = account(testenv, namespace, "bystander", rights[:1], tmp_path)
    operator = token_kubeconfig(testenv, f"{release}-hemostat", system, namespace, tmp_path / "op.kubeconfig")
    operators.start(namespace, f"--admission-policies={release}-hemostat", env={"KUBECONFIG": str(operator)})
    testenv.apply(app("shopfront", "registry.local/shopfront:v1"), namespace)
    wait_ready(testenv, namespace, "shopfront")
    rollout(testenv, namespace, "shopfront", "registry.local/shopfront:v2", error_rate=0.0)
    wait_ready(testenv, namespace, "shopfront")

    def as_(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
        env = {**testenv.env, "KUBECONFIG": str(kubeconfig)}
        return subprocess.run([sys.executable, "-m", "hemostat", *args], capture_output=True, text=True, env=env)

    wait_for(
        "the admission policies enforced",
        lambda: "does not have" in as_(bystander, "rollback", "shopfront", "-n", namespace, "--wait", "0").stderr,
        30,
    )
    refused = as_(bystander, "rollback", "shopfront", "-n", namespace)
    assert refused.returncode == 2 and refused.stderr.startswith("hemostat: error: asking for rollback"), refused
    assert (
        "hemostat-incident-requests: spec.mitigation.rollback needs permission to patch deployments/shopfront "
        f"in namespace {namespace}, which system:serviceaccount:{namespace}:bystander does not have"
    ) in refused.stderr
    missing = as_(responder, "rollback", "no-such-app", "-n", namespace)
    assert missing.returncode == 2
    said = f"hemostat: error: deployment {namespace}/no-such-app: not found; nothing was asked"
    assert missing.stderr.strip() == said
    assert incidents(testenv, namespace) == []  # nothing half-done

    done = as_(responder, "rollback", "shopfront", "-n", namespace, "--reason", "checkout 500s since v2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rollback Succeeded: revision 2 (registry.local/shopfront:v2) -> revision 1" in done.stdout
    assert deployment_state(testenv, namespace, "shopfront") == ("3", "registry.local/shopfront:v1")
    (asked,) = incidents(testenv, namespace)
    name = asked["metadata"]["name"]
    assert asked["spec"]["summary"] == "checkout 500s since v2"
    assert asked["spec"]["notes"][0]["author"] == f"system:serviceaccount:{namespace}:responder"  # the API's word

    shown = as_(responder, "incident", "show", name, "-n", namespace)
    assert shown.returncode == 0 and f"Incident {namespace}/{name}: checkout 500s since v2" in shown.stdout
    assert "RolledBack: " in shown.stdout and "note by system:serviceaccount" in shown.stdout
    as_json = as_(responder, "incident", "show", name, "-n", namespace, "-o", "json")
    assert json.loads(as_json.stdout)["metadata"]["name"] == name
    listed = as_(responder, "incident", "list", "-n", namespace, "-o", "wide")
    assert listed.returncode == 0 and name in listed.stdout and "checkout 500s since v2" in listed.stdout
    everywhere = as_(responder, "incident", "list", "-A")  # their Role is one namespace: the API server's words
    assert everywhere.returncode == 2 and "list incidents: forbidden: " in everywhere.stderr
    assert "cannot list resource" in everywhere.stderr and "Traceback" not in everywhere.stderr
    update = as_(responder, "status-update", name, "-n", namespace)
    assert update.returncode == 0 and "What we're doing:\n- rollback: Succeeded" in update.stdout
    # nothing older than revision 1's predecessor: a second ask is recorded as skipped, exit 1
    again = as_(responder, "rollback", "shopfront", "-n", namespace, "--wait", "60s")
    assert again.returncode == 1 and "rollback Skipped" in again.stdout, again.stdout + again.stderr
