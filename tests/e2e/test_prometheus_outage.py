"""A Prometheus outage is never a reason to act: no data, no rollback, a condition says why.

The policy reads from a private Prometheus started by this test (scraping the
same simulator), so the test can stop and restart it without disturbing others.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import Cluster, wait_for
from processes import Proc, free_port, wait_http
from scenarios import (
    app,
    condition,
    deployment_state,
    incidents,
    policy,
    rollout,
    target_verdict,
    wait_phase,
    wait_ready,
)


@pytest.fixture
def private_prometheus(testenv: Cluster, tmp_path: Path):
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "- job_name: hemostat-sim\n"
        f"  file_sd_configs: [{{files: ['{testenv.prometheus_targets}/*.json'], refresh_interval: 1s}}]\n"
    )
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]

    def start() -> Proc:
        proc = Proc("private-prometheus", args, testenv.env, tmp_path).start()
        wait_http(f"http://127.0.0.1:{port}/-/ready")
        return proc

    handle = {"url": f"http://127.0.0.1:{port}", "start": start, "proc": start()}
    yield handle
    handle["proc"].stop()


def test_outage_blocks_action_and_recovery_resumes(
    testenv: Cluster, namespace: str, simulator, operators, private_prometheus
) -> None:
    url = private_prometheus["url"]
    operators.start(namespace, "--allowed-prometheus-url", url)  # the policy names its own Prometheus
    testenv.apply(app("ledger", "registry.local/ledger:v1"), namespace)
    wait_ready(testenv, namespace, "ledger")
    testenv.apply(policy("ledger", prometheus_url=url), namespace)
    wait_for("a healthy verdict", lambda: target_verdict(testenv, namespace, "ledger", "ledger") == "Healthy", 60)

    private_prometheus["proc"].stop()
    mp = wait_for(
        "SignalsAvailable=False",
        lambda: (
            (p := testenv.get("mitigationpolicy", "ledger", namespace))
            and (c := condition(p, "SignalsAvailable"))
            and c["status"] == "False"
            and p
        ),
        timeout=30,
    )
    message = condition(mp, "SignalsAvailable")["message"]
    assert "ledger/error-rate" in message and f"cannot reach {url}" in message, message
    assert target_verdict(testenv, namespace, "ledger", "ledger") == "Error"

    rollout(testenv, namespace, "ledger", "registry.local/ledger:v2", error_rate=0.5)
    wait_ready(testenv, namespace, "ledger")
    time.sleep(8)  # blind for longer than `for` (2s): an outage must not turn into an action
    assert incidents(testenv, namespace) == []
    assert deployment_state(testenv, namespace, "ledger") == ("2", "registry.local/ledger:v2")

    private_prometheus["proc"] = private_prometheus["start"]()
    inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
    assert inc["status"]["actions"][0]["result"] == "Succeeded"
    assert deployment_state(testenv, namespace, "ledger") == ("3", "registry.local/ledger:v1")
    mp = testenv.get("mitigationpolicy", "ledger", namespace)
    assert condition(mp, "SignalsAvailable")["status"] == "True"


def test_a_prometheus_url_outside_the_allow_list_makes_the_policy_invalid(
    testenv: Cluster, namespace: str, operators
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    operators.start(namespace)  # allows only its own --prometheus-url
    testenv.apply(app("ledger", "registry.local/ledger:v1"), namespace)
    testenv.apply(policy("ledger", prometheus_url=url), namespace)

    def invalid() -> dict | None:
        c = condition(testenv.get("mitigationpolicy", "ledger", namespace), "Valid")
        return c if c and c["status"] == "False" else None

    valid = wait_for("Valid=False", invalid, 60)
    assert f"spec.signals[0].prometheus.url {url} is not allowed" in valid["message"]
    assert "--allowed-prometheus-url" in valid["message"]
