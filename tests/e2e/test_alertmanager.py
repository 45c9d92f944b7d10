"""Alertmanager as a source, with the real Alertmanager (Debian's prometheus-alertmanager): an alert it
routes to the operator's webhook receiver opens the target's Incident; its resends change nothing, not
even across an operator restart; its resolution resolves the Incident. And the whole chain a team already
has: the local control plane's Prometheus evaluates an alert rule on a bad rollout and sends it to
Alertmanager, which routes it to the operator, where a policy's alert signal drives the rollback and the
rule's resolution verifies it."""

from __future__ import annotations

import json
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from conftest import Cluster, wait_for
from processes import Proc, free_port
from receivers import Receiver
from scenarios import app, deployment_state, incidents, rollout, target_verdict, wait_phase, wait_ready


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


def rule(namespace: str) -> dict:
    """The team's existing rule: more than 5% of a Deployment's requests fail, for 2s."""
    errors = f'sum by (namespace, deployment) (rate(http_requests_total{{namespace="{namespace}",code="500"}}[5s]))'
    every = f'sum by (namespace, deployment) (rate(http_requests_total{{namespace="{namespace}"}}[5s]))'
    return {
        "groups": [
            {
                "name": namespace,
                "interval": "1s",
                "rules": [
                    {
                        "alert": "HighErrorRate",
                        "expr": f"{errors} / {every} > 0.05",
                        "for": "2s",
                        "labels": {"severity": "critical"},
                        "annotations": {"summary": "5xx above 5% for 2s"},
                    }
                ],
            }
        ]
    }


@pytest.fixture
def prometheus_rules(testenv: Cluster, namespace: str, alertmanager: Alertmanager) -> Iterator[None]:
    """The testenv's Prometheus evaluates `rule(namespace)` and sends its alerts to this test's Alertmanager."""
    rules, managers = (testenv.env.get(k) for k in ("HEMOSTAT_PROMETHEUS_RULES", "HEMOSTAT_PROMETHEUS_ALERTMANAGERS"))
    if not rules or not managers or testenv.prometheus_url is None:
        pytest.fail("the testenv has no rule and Alertmanager directories: restart it (hack/testenv.sh down; up)")
    rule_file, manager_file = Path(rules) / f"{namespace}.yml", Path(managers) / f"{namespace}.json"
    host = alertmanager.url.removeprefix("http://")
    manager_file.write_text(json.dumps([{"targets": [host]}]))
    rule_file.write_text(yaml.safe_dump(rule(namespace)))

    def reload() -> None:
        request = urllib.request.Request(f"{testenv.prometheus_url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    def loaded() -> bool:
        with urllib.request.urlopen(f"{testenv.prometheus_url}/api/v1/rules", timeout=5) as answer:
            groups = json.loads(answer.read())["data"]["groups"]
        return any(g["name"] == namespace for g in groups)

    reload()
    wait_for("Prometheus loading the rule", loaded, 30)
    try:
        yield
    finally:
        rule_file.unlink()
        manager_file.unlink()
        reload()


def alert_policy(name: str) -> dict:
    return {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": name},
        "spec": {
            "target": {"selector": {"matchLabels": {"app": name}}},
            "interval": "1s",
            "signals": [{"name": "errors", "alert": {"name": "HighErrorRate", "matchers": {"severity": "critical"}}}],
            "mitigation": {"steps": [{"rollback": {}}], "verifyFor": "5s"},
            "guardrails": {"cooldown": "1s"},
        },
    }


def test_a_prometheus_rule_through_alertmanager_drives_a_policys_rollback_and_its_resolution_resolves(
    testenv: Cluster,
    namespace: str,
    simulator,
    operators,
    alertmanager: Alertmanager,
    prometheus_rules: None,
    receiver_port: int,
    token: Path,
) -> None:
    flags = ("--alertmanager-port", str(receiver_port), "--alertmanager-token-file", str(token))
    operators.start(namespace, *flags, "--alert-resend-interval", "5s")  # Alertmanager's repeat_interval is 3s
    testenv.apply(app("web", "registry.local/web:v1"), namespace)
    wait_ready(testenv, namespace, "web")
    testenv.apply(alert_policy("web"), namespace)
    # NoData until one resend interval has passed since the start (an alert may be firing unheard), then healthy
    wait_for("a healthy verdict", lambda: target_verdict(testenv, namespace, "web", "web", "errors") == "Healthy", 60)

    rollout(testenv, namespace, "web", "registry.local/web:v2", error_rate=0.5)
    inc = wait_phase(testenv, namespace, "Resolved", timeout=150)
    status = inc["status"]
    assert deployment_state(testenv, namespace, "web") == ("3", "registry.local/web:v1")
    (action,) = status["actions"]
    assert (action["step"], action["result"]) == ("rollback", "Succeeded")
    assert action["from"] == "revision 2 (registry.local/web:v2)"
    (evidence,) = status["evidence"]
    assert evidence == {
        "signal": "errors",
        "value": "1",
        "threshold": "> 0 (alert HighErrorRate firing)",
        "query": f'count(ALERTS{{alertname="HighErrorRate",alertstate="firing",deployment="web",'
        f'namespace="{namespace}",severity="critical"}}) or vector(0)',
    }
    assert inc["spec"]["source"] == "policy"  # the policy's ladder answered: no alert-only Incident beside it
    assert len(incidents(testenv, namespace)) == 1
    timeline = {e["reason"]: e for e in status["timeline"]}
    assert [e["reason"] for e in status["timeline"]][:3] == ["Detected", "Attributed", "RolledBack"]
    assert timeline["Detected"]["message"] == (
        "errors 1 > 0 (alert HighErrorRate firing) at revision 2 (registry.local/web:v2)"
    )
    # verified on the rule's resolution: Recovered comes verifyFor (5s) after Prometheus last saw it firing
    assert testenv.prometheus_url is not None
    firing = f'ALERTS{{alertname="HighErrorRate",alertstate="firing",namespace="{namespace}"}}'
    times = [t for series in prom_range(testenv.prometheus_url, firing) for t, _ in series["values"]]
    first, last = datetime.fromtimestamp(min(times), UTC), datetime.fromtimestamp(max(times), UTC)
    assert first.replace(microsecond=0) <= iso(timeline["Detected"]["at"])
    assert iso(timeline["Recovered"]["at"]) >= last + timedelta(seconds=4)  # 5s, less the times' rounding


def iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def prom_range(url: str, query: str) -> list[dict]:
    """The samples of the last 10 minutes at their own times (a range query would answer at its steps, up to a
    step after a sample)."""
    params = urllib.parse.urlencode({"query": f"{query}[10m]"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=10) as answer:
        return json.loads(answer.read())["data"]["result"]
