"""People and the operator meet on the Incident: ack, note, resolve, postmortem, report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import Cluster, wait_for
from scenarios import app, hemostat, incidents, policy, wait_phase, wait_ready


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
    assert ack.returncode == 0 and "acknowledged by alice" in ack.stdout, ack.stderr
    note = hemostat(testenv, "incident", "note", name, "-n", namespace, "--by", "bob", "bad config in v1, fixing")
    assert note.returncode == 0, note.stderr
    done = hemostat(testenv, "incident", "resolve", name, "-n", namespace, "--by", "alice")
    assert done.returncode == 0, done.stderr

    inc = wait_phase(testenv, namespace, "Resolved", timeout=30)
    assert inc["spec"]["acknowledgedBy"] == "alice" and inc["spec"]["commander"] == "alice"
    assert [n["text"] for n in inc["spec"]["notes"]] == ["bad config in v1, fixing", "marked resolved"]
    assert inc["status"]["timeline"][-1]["reason"] == "ResolvedByPerson"
    # resolved means closed: the breach goes on, but this incident is never re-opened; a new one links it
    newer = wait_for(
        "a new incident", lambda: [i for i in incidents(testenv, namespace) if i["metadata"]["name"] != name], 60
    )
    assert newer[0]["spec"]["previousIncident"] == name
    assert testenv.get("incident", name, namespace)["status"]["phase"] == "Resolved"

    out = tmp_path / "postmortem.md"
    pm = hemostat(testenv, "postmortem", name, "-n", namespace, "-o", str(out))
    assert pm.returncode == 0, pm.stderr
    text = out.read_text()
    assert text.startswith(f"# Incident {name}: error-rate ")
    assert "**Incident commander:** alice" in text
    assert "Note by bob: bad config in v1, fixing" in text
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
    assert testenv.get("incident", "slow-1", namespace)["spec"]["acknowledgedBy"] == "dana"
    usage = subprocess.run(["kubectl", "hemostat", "--help"], capture_output=True, text=True, env=env)
    assert usage.stdout.startswith("usage: kubectl hemostat"), usage.stdout[:200]
