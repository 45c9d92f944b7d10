"""The local control plane behaves like a cluster where it matters to Hemostat.

Deployments get ReplicaSets and Ready Pods (kwok plays the kubelet), revision
history and `kubectl rollout undo` go through the real Deployment controller,
and namespace deletion and garbage collection really happen.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

from conftest import Cluster, deployment, wait_for


def _ready(testenv: Cluster, ns: str, name: str, replicas: int) -> dict:
    dep = testenv.get("deployment", name, ns)
    status = dep.get("status", {})
    done = (
        status.get("observedGeneration") == dep["metadata"]["generation"]
        and status.get("updatedReplicas") == replicas
        and status.get("readyReplicas") == replicas
        and status.get("replicas") == replicas
    )
    return dep if done else {}


def _replicasets(testenv: Cluster, ns: str, app: str) -> list[dict]:
    out = testenv.kubectl("get", "replicasets", "-n", ns, "-l", f"app={app}", "-o", "json").stdout
    return json.loads(out)["items"]


def test_kwok_node_is_ready(testenv: Cluster) -> None:
    nodes = json.loads(testenv.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
    ]
    assert ready, f"no Ready node among {[n['metadata']['name'] for n in nodes]}"


def test_deployment_gets_replicaset_and_ready_pods(testenv: Cluster, namespace: str) -> None:
    testenv.apply(deployment("web", replicas=3), namespace)
    wait_for("3 ready replicas", lambda: _ready(testenv, namespace, "web", 3))
    (rs,) = _replicasets(testenv, namespace, "web")
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    pods = json.loads(testenv.kubectl("get", "pods", "-n", namespace, "-l", "app=web", "-o", "json").stdout)["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
        assert pod["spec"]["nodeName"] == "kwok-node-0"


def test_rollout_undo_restores_previous_revision(testenv: Cluster, namespace: str) -> None:
    testenv.apply(deployment("api", image="registry.local/api:v1"), namespace)
    wait_for("v1 ready", lambda: _ready(testenv, namespace, "api", 2))
    testenv.kubectl("set", "image", "deployment/api", "app=registry.local/api:v2", "-n", namespace)
    wait_for("v2 ready", lambda: _ready(testenv, namespace, "api", 2))
    assert (
        testenv.get("deployment", "api", namespace)["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        == "2"
    )

    testenv.kubectl("rollout", "undo", "deployment/api", "-n", namespace)
    dep = wait_for(
        "undo to v1",
        lambda: (
            (d := _ready(testenv, namespace, "api", 2))
            and d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/api:v1"
            and d
        ),
    )
    # undo re-stamps the v1 ReplicaSet with a new revision number: 3
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    by_image = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs for rs in _replicasets(testenv, namespace, "api")
    }
    assert by_image["registry.local/api:v1"]["spec"]["replicas"] == 2
    assert by_image["registry.local/api:v2"]["spec"]["replicas"] == 0
    history = testenv.kubectl("rollout", "history", "deployment/api", "-n", namespace).stdout
    assert "2" in history and "3" in history


def test_garbage_collection_removes_replicasets_and_pods(testenv: Cluster, namespace: str) -> None:
    testenv.apply(deployment("gc"), namespace)
    wait_for("gc ready", lambda: _ready(testenv, namespace, "gc", 2))
    testenv.kubectl("delete", "deployment", "gc", "-n", namespace, "--cascade=background")
    wait_for(
        "ReplicaSets and Pods collected",
        lambda: testenv.kubectl("get", "rs,pods", "-n", namespace, "-l", "app=gc", "-o", "name").stdout.strip() == "",
    )


def test_namespace_deletion_completes(testenv: Cluster) -> None:
    testenv.kubectl("create", "namespace", "e2e-doomed")
    testenv.apply(deployment("doomed"), "e2e-doomed")
    wait_for("doomed ready", lambda: _ready(testenv, "e2e-doomed", "doomed", 2))
    testenv.kubectl("delete", "namespace", "e2e-doomed", "--wait=true", "--timeout=90s")
    gone = testenv.kubectl("get", "namespace", "e2e-doomed", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_prometheus_is_scraping(testenv: Cluster) -> None:
    assert testenv.prometheus_url, "PROMETHEUS_URL missing from the test environment"

    def up() -> bool:
        q = urllib.parse.urlencode({"query": 'up{job="prometheus"}'})
        with urllib.request.urlopen(f"{testenv.prometheus_url}/api/v1/query?{q}", timeout=5) as resp:
            result = json.load(resp)["data"]["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_for("prometheus scraping itself", up, timeout=30)
