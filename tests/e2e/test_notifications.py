"""Webhook notifications: delivered on phase changes, and never in the way of a mitigation."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import Cluster, wait_for
from processes import free_port
from scenarios import app, condition, deployment_state, policy, rollout, target_verdict, wait_phase, wait_ready


@pytest.fixture
def receiver():
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def _setup(testenv: Cluster, ns: str, name: str, urls: dict[str, str]) -> None:
    testenv.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"}, "stringData": urls}, ns)
    testenv.apply(app(name, f"registry.local/{name}:v1"), ns)
    wait_ready(testenv, ns, name)
    doc = policy(name)
    doc["spec"]["notify"] = {
        "webhooks": [
            {"secretRef": {"name": "hooks", "key": k}, "format": "slack" if k == "slack" else "json"} for k in urls
        ]
    }
    testenv.apply(doc, ns)
    wait_for("healthy", lambda: target_verdict(testenv, ns, name, name) == "Healthy", 60)
    rollout(testenv, ns, name, f"registry.local/{name}:v2", error_rate=0.5)


def test_phase_changes_reach_json_and_slack_receivers(
    testenv: Cluster, namespace: str, simulator, operators, receiver
) -> None:
    url, received = receiver
    operators.start(namespace)
    _setup(testenv, namespace, "mail", {"json": f"{url}/json", "slack": f"{url}/slack"})
    inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
    # The receivers are posted to one after the other: the Slack update lands after the JSON one (a race seen in CI).
    wait_for(
        "the Resolved update at both receivers",
        lambda: (
            any(b.get("phase") == "Resolved" for p, b in received if p == "/json")
            and any("is *Resolved*" in b.get("text", "") for p, b in received if p == "/slack")
        ),
        30,
    )
    phases = [b["phase"] for p, b in received if p == "/json"]
    assert phases == ["Monitoring", "Resolved"]  # detection and rollback happened in one cycle
    first = next(b for p, b in received if p == "/json")
    assert (first["incident"], first["severity"], first["lastMitigation"]) == (
        inc["metadata"]["name"],
        inc["spec"]["severity"],
        "rollback",
    )
    assert [e["reason"] for e in first["timeline"]] == ["Detected", "Attributed", "RolledBack"]
    slack = [b["text"] for p, b in received if p == "/slack"]
    assert len(slack) == 2 and "is *Resolved*" in slack[-1]
    assert condition(inc, "Notified")["status"] == "True"


def test_a_dead_receiver_is_a_condition_not_a_delay(testenv: Cluster, namespace: str, simulator, operators) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    operators.start(namespace)
    _setup(testenv, namespace, "fax", {"json": dead})
    inc = wait_for(
        "Notified=False",
        lambda: (
            (items := json.loads(testenv.kubectl("get", "incidents", "-n", namespace, "-o", "json").stdout)["items"])
            and (c := condition(items[0], "Notified"))
            and c["status"] == "False"
            and items[0]
        ),
        timeout=90,
    )
    assert "ConnectError" in condition(inc, "Notified")["message"]
    assert "127.0.0.1" in condition(inc, "Notified")["message"] and "/hook" not in condition(inc, "Notified")["message"]
    assert inc["status"]["actions"][0]["result"] == "Succeeded"  # the rollback did not wait for the webhook
    assert deployment_state(testenv, namespace, "fax") == ("3", "registry.local/fax:v1")
    assert inc["status"]["notifications"]["failures"] >= 1 and inc["status"]["notifications"]["retryAt"]
