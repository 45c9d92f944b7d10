"""Two replicas, one actor: leader election on a Lease; the standby takes over when the leader dies."""

from __future__ import annotations

import json

from conftest import Cluster, wait_for
from processes import free_port, healthz
from scenarios import app, deployment_state, incidents, policy, rollout, target_verdict, wait_ready


def _holder(testenv: Cluster, ns: str) -> str:
    proc = testenv.kubectl("get", "lease", "hemostat", "-n", ns, "-o", "json", check=False)
    return json.loads(proc.stdout)["spec"].get("holderIdentity", "") if proc.returncode == 0 else ""


def _resolved(testenv: Cluster, ns: str) -> list[dict]:
    return [i for i in incidents(testenv, ns) if i.get("status", {}).get("phase") == "Resolved"]


def test_only_the_leader_acts_and_a_standby_takes_over(testenv: Cluster, namespace: str, simulator, operators) -> None:
    ha = ("--leader-election", "--lease-namespace", namespace, "--lease-duration", "6")
    replicas = [operators.start(namespace, *ha, name="replica-a"), operators.start(namespace, *ha, name="replica-b")]
    holder = wait_for("a leader", lambda: _holder(testenv, namespace), timeout=30)
    (leader,) = [r for r in replicas if holder.endswith(f"-{r.popen.pid}")]
    (standby,) = [r for r in replicas if r is not leader]

    testenv.apply(app("pay", "registry.local/pay:v1"), namespace)
    wait_ready(testenv, namespace, "pay")
    testenv.apply(policy("pay", verify_for="4s"), namespace)
    wait_for("healthy", lambda: target_verdict(testenv, namespace, "pay", "pay") == "Healthy", 60)
    rollout(testenv, namespace, "pay", "registry.local/pay:v2", error_rate=0.5)
    (first,) = wait_for("the first incident resolved", lambda: _resolved(testenv, namespace), 120)
    assert deployment_state(testenv, namespace, "pay") == ("3", "registry.local/pay:v1")  # one rollback, not two
    assert "rollback " in leader.log(500) and "rollback " not in standby.log(500)

    leader.kill()  # no clean release: the standby must wait out the lease
    wait_for("the standby to take the lease", lambda: _holder(testenv, namespace).endswith(f"-{standby.popen.pid}"), 30)

    rollout(testenv, namespace, "pay", "registry.local/pay:v3", error_rate=0.5)
    wait_for("the second incident resolved", lambda: len(_resolved(testenv, namespace)) == 2, 120)
    assert deployment_state(testenv, namespace, "pay") == ("5", "registry.local/pay:v1")
    assert "rollback " in standby.log(500)
    second = max(_resolved(testenv, namespace), key=lambda i: i["metadata"]["creationTimestamp"])
    assert second["spec"]["previousIncident"] == first["metadata"]["name"]
    assert second["status"]["actions"][0]["from"] == "revision 4 (registry.local/pay:v3)"


def test_a_rolling_update_hands_the_lease_over_on_sigterm(testenv: Cluster, namespace: str, operators) -> None:
    # the chart's RollingUpdate (maxUnavailable 0): the new pod starts as a standby and must be
    # Ready as one; the old leader, stopped with SIGTERM, releases the Lease instead of letting
    # it run out (60 s here, twice the time this test waits)
    ports = [free_port(), free_port()]
    ha = ("--leader-election", "--lease-namespace", namespace, "--lease-duration", "60")
    old = operators.start(namespace, *ha, "--health-port", str(ports[0]), name="old")
    wait_for("the old pod leads", lambda: _holder(testenv, namespace).endswith(f"-{old.popen.pid}"), 30)
    new = operators.start(namespace, *ha, "--health-port", str(ports[1]), name="new")
    wait_for("the new pod Ready as a standby", lambda: healthz(ports[1]) == 200, 30)
    assert _holder(testenv, namespace).endswith(f"-{old.popen.pid}")

    old.stop()  # SIGTERM, as the kubelet sends it
    wait_for("the new pod leads", lambda: _holder(testenv, namespace).endswith(f"-{new.popen.pid}"), 30)
