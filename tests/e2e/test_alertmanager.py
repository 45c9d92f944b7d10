"""Alertmanager as a source, with the real Alertmanager (Debian's prometheus-alertmanager): an alert it
routes to the operator's webhook receiver opens the target's Incident; its resends change nothing, not
even across an operator restart; its resolution resolves the Incident."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from conftest import Cluster, wait_for
from processes import Proc, free_port
from receivers import Receiver
from scenarios import app, incidents, wait_ready


class Alertmanager:
    def __init__(self, proc: Proc, url: str) -> None:
        self.proc, self.url = proc, url

    def post(self, labels: dict[str, str], ends: datetime | None = None) -> None:
        alert = {"labels": labels, "annotations": {"summary": "5xx above 5% for 1m"}}
        if ends is not None:
            alert["endsAt"] = ends.isoformat().replace("+00:00", "Z")
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts", json.dumps([alert]).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200

    def sent(self) -> float:
        """How many webhook notifications it has delivered (its own metrics: sent less failed)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as answer:
            text = answer.read().decode()

        def metric(name: str) -> float:
            found = re.search(rf'{name}\{{integration="webhook"[^}}]*\}} (\S+)', text)
            return float(found.group(1)) if found else 0.0

        return metric("alertmanager_notifications_total") - metric("alertmanager_notifications_failed_total")

    def resends(self, count: int) -> None:
        """Wait until it has sent `count` more notifications (its repeats of a firing alert)."""
        start = self.sent()
        wait_for(f"{count} resends", lambda: self.sent() >= start + count, 30)


@pytest.fixture
def receiver_port() -> int:
    return free_port()


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "alerts-token"
    path.write_text("am-s3cret\n")
    return path


@pytest.fixture
def alertmanager(tmp_path: Path, receiver_port: int, token: Path) -> Iterator[Alertmanager]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail(
            "Alertmanager is missing: make testenv-deps installs Debian's prometheus-alertmanager", pytrace=False
        )
    config = {
        "route": {
            "receiver": "hemostat",
            "group_by": ["alertname", "namespace", "deployment"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "3s",  # resends, as in production every few hours
        },
        "receivers": [
            {
                "name": "hemostat",
                "webhook_configs": [
                    {
                        "url": f"http://127.0.0.1:{receiver_port}/alerts",
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token)}},
                    }
                ],
            }
        ],
    }
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = Proc(
        "alertmanager",
        [
            binary,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # one instance, no gossip
        ],
        {"PATH": "/usr/bin:/bin"},
        tmp_path,
    ).start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_for("Alertmanager ready", lambda: ready() or not proc.alive(), 30)
        assert proc.alive(), proc.log()
        yield Alertmanager(proc, url)
    finally:
        proc.stop()


def notify_policy(receiver: Receiver) -> dict:
    """A policy that targets nothing and only says how alert-only Incidents are told and paged."""
    hook = {"secretRef": {"name": "hooks", "key": "url"}}
    return {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": "alerts"},
        "spec": {
            "target": {"selector": {"matchLabels": {"hemostat.dev/none": "none"}}},
            "signals": [{"name": "none", "prometheus": {"query": "vector(0)"}, "breachWhen": {"above": 1}}],
            "notify": {
                "webhooks": [hook],
                "pages": {"levels": [{"receiver": {**hook, "format": "json"}}]},
            },
        },
    }


def test_an_alert_opens_its_targets_incident_once_and_its_resolution_resolves_it(
    testenv: Cluster,
    namespace: str,
    simulator,
    operators,
    alertmanager: Alertmanager,
    receiver_port: int,
    token: Path,
    receiver: Receiver,
) -> None:
    flags = ("--alertmanager-port", str(receiver_port), "--alertmanager-token-file", str(token))
    flags += ("--alert-notify-policy", "alerts")
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"}, "stringData": {"url": receiver.url}}
    testenv.apply(secret, namespace)
    testenv.apply(notify_policy(receiver), namespace)
    operators.start(namespace, *flags)
    testenv.apply(app("web", "registry.local/web:v1"), namespace)
    wait_ready(testenv, namespace, "web")
    labels = {"alertname": "HighErrorRate", "namespace": namespace, "deployment": "web", "severity": "critical"}
    alertmanager.post(labels)
    alertmanager.post({**labels, "deployment": "no-such-app"})  # names no Deployment: nothing is opened

    (incident,) = wait_for("the alert's Incident", lambda: incidents(testenv, namespace), 30)
    assert incident["spec"]["source"] == "alert" and incident["spec"]["severity"] == "SEV1"
    assert incident["spec"]["summary"] == "alert HighErrorRate: 5xx above 5% for 1m"
    name = incident["metadata"]["name"]
    wait_for("its status", lambda: (testenv.get("incident", name, namespace).get("status") or {}).get("alerts"), 30)

    def firing_entries() -> int:
        status = testenv.get("incident", name, namespace)["status"]
        return sum(1 for e in status["timeline"] if e["reason"] == "AlertFiring")

    alertmanager.resends(2)  # repeat_interval 3s
    assert len(incidents(testenv, namespace)) == 1 and firing_entries() == 1
    operators.procs[-1].stop()  # a restart: the next resend opens nothing twice
    operators.start(namespace, *flags)
    alertmanager.resends(2)
    assert len(incidents(testenv, namespace)) == 1 and firing_entries() == 1

    alertmanager.post(labels, ends=datetime.now(UTC))  # resolved
    resolved = wait_for(
        "the Incident resolved",
        lambda: (s := testenv.get("incident", name, namespace)["status"])["phase"] == "Resolved" and s,
        30,
    )
    assert [(a["name"], a["state"]) for a in resolved["alerts"]] == [("HighErrorRate", "resolved")]
    assert resolved["timeline"][-1]["message"] == "every alert that opened it resolved"
    # told and paged as the notify policy says: an update per phase, a page at once and its resolve
    key = f"hemostat/{namespace}/{name}"

    def told() -> list[tuple]:
        return [(b.get("phase"), b.get("page"), b.get("dedupKey")) for _, b in receiver.got]

    wait_for("the resolve page", lambda: any(page == "resolve" for _, page, _ in told()), 60)
    updates = [phase for phase, page, _ in told() if page is None]
    assert updates[0] == "Detected" and updates[-1] == "Resolved", told()
    assert [(page, k) for _, page, k in told() if page] == [("trigger", key), ("resolve", key)]
