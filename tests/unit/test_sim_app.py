"""The simulator app without a cluster: injected pod sources, a fake API server, real scrapes."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hemostat.sim.app import App, Options, Simulator
from hemostat.sim.behaviour import ERROR_RATE, LATENCY_MS, RPS, Increment, ObservedPod, PodRef
from hemostat.sim.cluster import (
    ROLLOUTS_TEMPLATE_HASH_LABEL,
    TEMPLATE_HASH_LABEL,
    ClusterError,
    ClusterPodSource,
    load_api_client,
    observed_pods,
)
from hemostat.sim.metrics import LATENCY_BUCKETS, MetricsServer, TrafficMetrics, start_metrics_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

STABLE_A1 = PodRef("shop", "web", "aaa111", "web-aaa111-1")
STABLE_A2 = PodRef("shop", "web", "aaa111", "web-aaa111-2")
CANARY_B1 = PodRef("shop", "web", "bbb222", "web-bbb222-1")


# --- helpers -----------------------------------------------------------------


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(pod: PodRef) -> dict[str, str]:
    return {"namespace": pod.namespace, "deployment": pod.deployment, "pod_template_hash": pod.pod_template_hash}


def requests_total(samples: Samples, pod: PodRef, code: str) -> float:
    return value(samples, "http_requests_total", **series(pod), code=code)


def errors_so_far(url: str, pod: PodRef) -> float:
    """For polling: 0 until the first tick has created the series."""
    return scrape(url).get(("http_requests_total", frozenset({**series(pod), "code": "500"}.items())), 0.0)


class Pods:
    """A pod source for injection: returns `pods`, or raises when `error` is set."""

    def __init__(self, pods: Sequence[ObservedPod]) -> None:
        self.pods = list(pods)
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> list[ObservedPod]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.pods)


@pytest.fixture
def metrics() -> TrafficMetrics:
    return TrafficMetrics()


@pytest.fixture
def server(metrics: TrafficMetrics) -> Iterator[MetricsServer]:
    srv = start_metrics_server(metrics.exposition, "127.0.0.1", 0)
    yield srv
    srv.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- deterministic ticks through the real exporter ---------------------------------


def test_scrape_shows_exact_counters_per_hash(metrics: TrafficMetrics, server: MetricsServer) -> None:
    pods = Pods(
        [
            ObservedPod(STABLE_A1, {RPS: "10", LATENCY_MS: "20"}),
            ObservedPod(STABLE_A2, {RPS: "10", LATENCY_MS: "20"}),
            ObservedPod(CANARY_B1, {RPS: "4", ERROR_RATE: "0.25", LATENCY_MS: "300"}),
        ]
    )
    sim = Simulator(pods, metrics)
    assert sim.refresh()
    for _ in range(3):
        sim.tick(0.5)

    assert server.port != 0
    samples = scrape(server.url)
    # Two stable pods share one series: 2 * 10 rps * 1.5 s, no errors.
    assert requests_total(samples, STABLE_A1, "200") == pytest.approx(30.0)
    assert requests_total(samples, STABLE_A1, "500") == 0.0
    # Canary: 4 rps * 1.5 s = 6 requests, a quarter failing.
    assert requests_total(samples, CANARY_B1, "200") == pytest.approx(4.5)
    assert requests_total(samples, CANARY_B1, "500") == pytest.approx(1.5)

    stable, canary = series(STABLE_A1), series(CANARY_B1)
    assert value(samples, "http_request_duration_seconds_count", **stable) == 30
    assert value(samples, "http_request_duration_seconds_sum", **stable) == pytest.approx(0.6)
    assert value(samples, "http_request_duration_seconds_bucket", **stable, le="0.01") == 0
    assert value(samples, "http_request_duration_seconds_bucket", **stable, le="0.025") == 30
    assert value(samples, "http_request_duration_seconds_count", **canary) == 6
    assert value(samples, "http_request_duration_seconds_bucket", **canary, le="0.25") == 0
    assert value(samples, "http_request_duration_seconds_bucket", **canary, le="0.5") == 6
    assert value(samples, "http_request_duration_seconds_bucket", **canary, le="10.0") == 6

    for name, labels in samples:
        keys = {k for k, _ in labels}
        assert not keys & {"job", "instance", "pod"}, name


def test_pods_that_leave_stop_growing_but_stay_exported(metrics: TrafficMetrics, server: MetricsServer) -> None:
    pods = Pods([ObservedPod(STABLE_A1), ObservedPod(CANARY_B1, {ERROR_RATE: "1"})])
    sim = Simulator(pods, metrics)
    sim.refresh()
    sim.tick(1.0)
    before = scrape(server.url)
    assert requests_total(before, CANARY_B1, "500") == pytest.approx(10.0)

    # The bad canary is rolled back: its pod is gone, the stable one keeps serving.
    pods.pods = [ObservedPod(STABLE_A1)]
    sim.refresh()
    sim.tick(1.0)
    after = scrape(server.url)
    assert requests_total(after, CANARY_B1, "500") == pytest.approx(10.0)
    assert requests_total(after, CANARY_B1, "200") == 0.0
    assert requests_total(after, STABLE_A1, "200") == pytest.approx(20.0)


def test_source_errors_keep_the_last_pod_set(
    metrics: TrafficMetrics, server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    pods = Pods([ObservedPod(STABLE_A1, {RPS: "2"})])
    sim = Simulator(pods, metrics)
    assert sim.refresh()
    pods.error = ClusterError("listing pods failed: connection refused")
    with caplog.at_level(logging.WARNING, logger="hemostat.sim"):
        assert not sim.refresh()
        assert not sim.refresh()  # same failure: no second warning
    sim.tick(1.0)
    assert requests_total(scrape(server.url), STABLE_A1, "200") == pytest.approx(2.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "connection refused" in warnings[0].getMessage()

    pods.error = None
    pods.pods = []
    assert sim.refresh()
    sim.tick(1.0)
    assert requests_total(scrape(server.url), STABLE_A1, "200") == pytest.approx(2.0)


def test_bad_annotation_warns_once_per_pod_per_value(metrics: TrafficMetrics, caplog: pytest.LogCaptureFixture) -> None:
    pods = Pods([ObservedPod(STABLE_A1, {ERROR_RATE: "high"}), ObservedPod(STABLE_A2, {ERROR_RATE: "high"})])
    sim = Simulator(pods, metrics)
    sim.refresh()
    with caplog.at_level(logging.WARNING, logger="hemostat.sim"):
        for _ in range(5):
            sim.tick(0.1)
        pods.pods = [ObservedPod(STABLE_A1, {ERROR_RATE: "2"}), ObservedPod(STABLE_A2, {ERROR_RATE: "high"})]
        sim.refresh()
        for _ in range(5):
            sim.tick(0.1)
    messages = sorted(r.getMessage() for r in caplog.records)
    assert len(messages) == 3, messages
    assert sum(STABLE_A1.name in m for m in messages) == 2
    assert sum(STABLE_A2.name in m for m in messages) == 1


# --- the running app: loops, HTTP server, targets file -----------------------------


def test_app_serves_growing_counters_and_manages_targets_file(tmp_path: Path) -> None:
    targets = tmp_path / "sim.json"
    pods = Pods([ObservedPod(STABLE_A1, {RPS: "100"}), ObservedPod(CANARY_B1, {RPS: "50", ERROR_RATE: "0.3"})])
    app = App(pods, Options(tick=0.02, resync=0.05, targets_file=targets))
    try:
        server = app.start()
        assert json.loads(targets.read_text()) == [
            {"targets": [f"127.0.0.1:{server.port}"], "labels": {"job": "hemostat-sim"}}
        ]
        assert not [p for p in tmp_path.iterdir() if p != targets]  # no temp file left behind
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"

        wait_for(lambda: errors_so_far(server.url, CANARY_B1) > 3)
        wait_for(lambda: pods.calls >= 2)  # the poller runs
        samples = scrape(server.url)
        ok, error = requests_total(samples, CANARY_B1, "200"), requests_total(samples, CANARY_B1, "500")
        # Scrapes see whole ticks only, so the ratio is exact even mid-run.
        assert error / (ok + error) == pytest.approx(0.3, rel=1e-9)
        assert requests_total(samples, STABLE_A1, "500") == 0.0
        count = value(samples, "http_request_duration_seconds_count", **series(CANARY_B1))
        assert ok + error - 1 < count <= ok + error + 1e-6
    finally:
        app.stop()
    assert not targets.exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2)
    app.stop()  # idempotent


# --- cluster.py: mapping and listing against a fake API server ------------------------


def pod_obj(
    name: str,
    rs_uid: str,
    template_hash: str,
    *,
    namespace: str = "shop",
    ready: bool = True,
    deleting: bool = False,
    annotations: dict[str, str] | None = None,
    hash_label: str = TEMPLATE_HASH_LABEL,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {"app": "web", hash_label: template_hash},
        "annotations": annotations or {},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"rs-{rs_uid}", "uid": rs_uid, "controller": True}
        ],
    }
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    conditions = [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True" if ready else "False"},
    ]
    return {"metadata": meta, "status": {"phase": "Running", "conditions": conditions}}


def rs_obj(
    uid: str,
    owner: str | None,
    *,
    namespace: str = "shop",
    kind: str = "Deployment",
    hash_label: str = TEMPLATE_HASH_LABEL,
) -> dict[str, Any]:
    api_version = "apps/v1" if kind == "Deployment" else "argoproj.io/v1alpha1"
    owners = [{"apiVersion": api_version, "kind": kind, "name": owner, "uid": "o", "controller": True}] if owner else []
    meta = {"name": f"rs-{uid}", "namespace": namespace, "uid": uid, "labels": {hash_label: uid}}
    return {"metadata": {**meta, "ownerReferences": owners}}


def rollout_pod_obj(name: str, rs_uid: str, template_hash: str, **kwargs: Any) -> dict[str, Any]:
    """A pod of an Argo Rollout: only the `rollouts-pod-template-hash` label, no `pod-template-hash`."""
    return pod_obj(name, rs_uid, template_hash, hash_label=ROLLOUTS_TEMPLATE_HASH_LABEL, **kwargs)


def rollout_rs_obj(uid: str, owner: str | None, *, kind: str = "Rollout", namespace: str = "shop") -> dict[str, Any]:
    return rs_obj(uid, owner, namespace=namespace, kind=kind, hash_label=ROLLOUTS_TEMPLATE_HASH_LABEL)


def test_observed_pods_follows_pod_replicaset_deployment() -> None:
    pods = [
        pod_obj("web-aaa-1", "uid-a", "aaa", annotations={ERROR_RATE: "0.1"}),
        pod_obj("web-bbb-1", "uid-b", "bbb"),
        pod_obj("web-aaa-notready", "uid-a", "aaa", ready=False),
        pod_obj("web-aaa-deleting", "uid-a", "aaa", deleting=True),
        pod_obj("orphan-rs-pod", "uid-orphan", "ccc"),  # ReplicaSet without a Deployment
        pod_obj("unknown-rs-pod", "uid-missing", "ddd"),  # ReplicaSet not listed
        {"metadata": {"name": "bare", "namespace": "shop"}, "status": {"conditions": []}},
    ]
    replicasets = [rs_obj("uid-a", "web"), rs_obj("uid-b", "web"), rs_obj("uid-orphan", None)]
    assert observed_pods(pods, replicasets) == [
        ObservedPod(PodRef("shop", "web", "aaa", "web-aaa-1")),
        ObservedPod(PodRef("shop", "web", "bbb", "web-bbb-1")),
    ]
    assert observed_pods(pods, replicasets)[0].annotations == {ERROR_RATE: "0.1"}


def test_observed_pods_follows_pod_replicaset_rollout_with_the_rollouts_hash() -> None:
    pods = [
        rollout_pod_obj("shop-r1-1", "uid-r1", "r1hash", annotations={ERROR_RATE: "0.2"}),
        rollout_pod_obj("shop-r1-notready", "uid-r1", "r1hash", ready=False),
        rollout_pod_obj("exp-1", "uid-exp", "exphash"),  # ReplicaSet of an Argo Experiment, not a Rollout
        pod_obj("shop-r1-wrong-label", "uid-r1", "plain"),  # a Rollout's pod without the rollouts label
        pod_obj("web-aaa-1", "uid-a", "aaa"),  # a Deployment's pod is still served beside them
    ]
    replicasets = [
        rollout_rs_obj("uid-r1", "shop"),
        rollout_rs_obj("uid-exp", "shop-exp", kind="Experiment"),
        rs_obj("uid-a", "web"),
    ]
    assert observed_pods(pods, replicasets) == [
        ObservedPod(PodRef("shop", "shop", "r1hash", "shop-r1-1"), {ERROR_RATE: "0.2"}),
        ObservedPod(PodRef("shop", "web", "aaa", "web-aaa-1")),
    ]


def test_observed_pods_carry_when_they_became_ready() -> None:
    pod = pod_obj("web-aaa-1", "uid-a", "aaa")
    pod["status"]["conditions"][1]["lastTransitionTime"] = "2026-12-06T12:00:05Z"
    (seen,) = observed_pods([pod], [rs_obj("uid-a", "web")])
    assert seen.ready_at == 1796558405.0
    assert observed_pods([pod_obj("web-aaa-2", "uid-a", "aaa")], [rs_obj("uid-a", "web")])[0].ready_at is None


class FakeApi:
    """Serves pod and ReplicaSet LISTs (two items per page) and WATCHes like the API server,
    of the objects that carry the label selected.

    Every change is an event with a resourceVersion; a watch streams the events after its
    version and ends after `watch_seconds` (the server may end a watch early), a watch from a
    version older than `compacted` gets 410 Gone, and `fail` answers 500 and ends watches.
    """

    KINDS = ("pods", "replicasets")
    SELECTORS = (TEMPLATE_HASH_LABEL, ROLLOUTS_TEMPLATE_HASH_LABEL)  # "has this label", as the simulator asks

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in self.KINDS}
        self._events: list[tuple[int, str, str, dict[str, Any]]] = []  # (version, kind, type, object)
        self.version = 1
        self.compacted = 0
        self.watch_seconds = 0.5
        self.fail = False
        self.paths: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.paths.append(self.path)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                parts = url.path.strip("/").split("/")
                kind, namespace = parts[-1], parts[-2] if "namespaces" in parts else None
                selector = (query.get("labelSelector") or [""])[0]
                if api.fail or kind not in api.KINDS or selector not in api.SELECTORS:
                    self._send(500 if api.fail else 404, {"kind": "Status", "status": "Failure"})
                elif query.get("watch") == ["true"]:
                    self._watch(kind, namespace, selector, int(query["resourceVersion"][0]))
                else:
                    self._list(kind, namespace, selector, int(query.get("continue", ["0"])[0]))

            def _list(self, kind: str, namespace: str | None, selector: str, start: int) -> None:
                with api._lock:
                    items = [i for i in api._objects[kind].values() if api.matches(i, namespace, selector)]
                    meta: dict[str, Any] = {"resourceVersion": str(api.version)}
                if start + 2 < len(items):
                    meta["continue"] = str(start + 2)
                self._send(
                    200, {"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items[start : start + 2]}
                )

            def _watch(self, kind: str, namespace: str | None, selector: str, since: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()  # HTTP/1.0 without a length: the stream ends when the connection closes
                if since < api.compacted:
                    gone = {"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}
                    self.wfile.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
                    return
                deadline = time.monotonic() + api.watch_seconds
                while time.monotonic() < deadline and not api.fail:
                    with api._lock:
                        events = [e for e in api._events if e[0] > since and e[1] == kind]
                    for version, _, type_, obj in events:
                        if api.matches(obj, namespace, selector):
                            self.wfile.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")
                        since = version
                    self.wfile.flush()
                    time.sleep(0.01)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        """Create or update an object (keyed by uid; one is made up from the name when missing)."""
        meta = obj["metadata"]
        meta.setdefault("uid", f"uid-{meta['namespace']}-{meta['name']}")
        with self._lock:
            self.version += 1
            meta["resourceVersion"] = str(self.version)
            type_ = "MODIFIED" if meta["uid"] in self._objects[kind] else "ADDED"
            self._objects[kind][meta["uid"]] = obj
            self._events.append((self.version, kind, type_, json.loads(json.dumps(obj))))

    def delete(self, kind: str, name: str) -> None:
        with self._lock:
            uid, obj = next((u, o) for u, o in self._objects[kind].items() if o["metadata"]["name"] == name)
            del self._objects[kind][uid]
            self.version += 1
            self._events.append((self.version, kind, "DELETED", obj))

    @staticmethod
    def matches(obj: dict[str, Any], namespace: str | None, selector: str) -> bool:
        meta = obj["metadata"]
        return namespace in (None, meta["namespace"]) and selector in (meta.get("labels") or {})

    def lists(self, kind: str) -> int:
        """LIST requests of `kind` so far (pages after the first not counted)."""
        return sum(f"/{kind}?" in p and "watch=true" not in p and "continue" not in p for p in self.paths)

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        server = f"http://127.0.0.1:{self.httpd.server_port}"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": server}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
                    "current-context": "fake",
                }
            )
        )
        return path


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    for rs in (rs_obj("uid-a", "web"), rs_obj("uid-b", "web"), rs_obj("uid-o", "other", namespace="ops")):
        api.put("replicasets", rs)
    for pod in (
        pod_obj("web-aaa-1", "uid-a", "aaa", annotations={RPS: "40"}),
        pod_obj("web-aaa-2", "uid-a", "aaa", annotations={RPS: "40"}),
        pod_obj("web-aaa-3", "uid-a", "aaa", ready=False),
        pod_obj("web-bbb-1", "uid-b", "bbb", annotations={RPS: "40", ERROR_RATE: "0.5"}),
        pod_obj("other-1", "uid-o", "ooo", namespace="ops"),
    ):
        api.put("pods", pod)
    yield api
    api.fail = True  # ends open watches
    api.httpd.shutdown()
    api.httpd.server_close()


@pytest.fixture
def source(fake_api: FakeApi, tmp_path: Path) -> Iterator[ClusterPodSource]:
    src = ClusterPodSource(load_api_client(str(fake_api.kubeconfig(tmp_path))))
    src.start()
    yield src
    src.close()


def names(source: ClusterPodSource) -> list[str]:
    return sorted(p.ref.name for p in source())


def test_cluster_source_lists_pages_and_namespaces(fake_api: FakeApi, source: ClusterPodSource, tmp_path: Path) -> None:
    shop = ClusterPodSource(load_api_client(str(fake_api.kubeconfig(tmp_path))), ["shop", "shop"])
    shop.start()
    try:
        assert names(source) == ["other-1", "web-aaa-1", "web-aaa-2", "web-bbb-1"]
        assert names(shop) == ["web-aaa-1", "web-aaa-2", "web-bbb-1"]
        assert any("/namespaces/shop/pods" in p for p in fake_api.paths)
        assert any("continue=" in p for p in fake_api.paths), "five pods in pages of two"
    finally:
        shop.close()


def test_a_source_that_cannot_list_at_start_says_why(fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.fail = True
    broken = ClusterPodSource(load_api_client(str(fake_api.kubeconfig(tmp_path))))
    with pytest.raises(ClusterError, match=r"listing pods from http://127\.0\.0\.1:\d+ failed: HTTP 500"):
        broken.start()
    broken.close()


def test_changes_arrive_by_watch_without_listing_again(fake_api: FakeApi, source: ClusterPodSource) -> None:
    lists = fake_api.lists("pods"), fake_api.lists("replicasets")
    fake_api.put("replicasets", rs_obj("uid-c", "web"))
    fake_api.put("pods", pod_obj("web-ccc-1", "uid-c", "ccc"))  # a new revision's pod
    wait_for(lambda: "web-ccc-1" in names(source))
    fake_api.put("pods", pod_obj("web-aaa-3", "uid-a", "aaa"))  # turns Ready
    wait_for(lambda: "web-aaa-3" in names(source))
    fake_api.delete("pods", "web-bbb-1")
    wait_for(lambda: "web-bbb-1" not in names(source))
    time.sleep(3 * fake_api.watch_seconds)  # the server ended watches meanwhile: they resume
    fake_api.put("pods", pod_obj("web-ccc-2", "uid-c", "ccc"))
    wait_for(lambda: "web-ccc-2" in names(source))
    assert names(source) == ["other-1", "web-aaa-1", "web-aaa-2", "web-aaa-3", "web-ccc-1", "web-ccc-2"]
    assert (fake_api.lists("pods"), fake_api.lists("replicasets")) == lists, "a steady state makes no LIST"


def test_an_expired_watch_lists_again_and_misses_nothing(fake_api: FakeApi, source: ClusterPodSource) -> None:
    before = fake_api.lists("pods")
    fake_api.compacted = fake_api.version + 100  # every version the watches hold is now too old
    fake_api.put("pods", pod_obj("web-aaa-3", "uid-a", "aaa"))  # turns Ready
    wait_for(lambda: fake_api.lists("pods") > before)
    fake_api.compacted = 0
    wait_for(lambda: "web-aaa-3" in names(source))
    assert names(source) == ["other-1", "web-aaa-1", "web-aaa-2", "web-aaa-3", "web-bbb-1"]


def test_a_failing_api_is_reported_until_the_watch_recovers(fake_api: FakeApi, source: ClusterPodSource) -> None:
    fake_api.fail = True

    def failing() -> bool:
        try:
            source()
        except ClusterError as exc:
            assert re.search(r"watching (rollout )?(pods|replicasets) failed: HTTP 500", str(exc))
            return True
        return False

    wait_for(failing)
    fake_api.delete("pods", "web-bbb-1")  # while the watches are down
    fake_api.fail = False
    wait_for(lambda: not failing())
    assert names(source) == ["other-1", "web-aaa-1", "web-aaa-2"]


def test_rollout_pods_arrive_by_list_and_watch(fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.put("replicasets", rollout_rs_obj("uid-r1", "shop"))
    fake_api.put("pods", rollout_pod_obj("shop-r1-1", "uid-r1", "r1hash"))
    shop = ClusterPodSource(load_api_client(str(fake_api.kubeconfig(tmp_path))), ["shop"])
    shop.start()
    try:
        assert {p.ref for p in shop()} >= {PodRef("shop", "shop", "r1hash", "shop-r1-1")}
        fake_api.put("replicasets", rollout_rs_obj("uid-r2", "shop"))  # the canary's ReplicaSet
        fake_api.put("pods", rollout_pod_obj("shop-r2-1", "uid-r2", "r2hash"))
        wait_for(lambda: PodRef("shop", "shop", "r2hash", "shop-r2-1") in {p.ref for p in shop()})
        assert names(shop) == ["shop-r1-1", "shop-r2-1", "web-aaa-1", "web-aaa-2", "web-bbb-1"]
        for kind in ("pods", "replicasets"):  # a LIST and a WATCH of each kind per label
            for label in FakeApi.SELECTORS:
                asked = [p for p in fake_api.paths if f"/{kind}?" in p and f"labelSelector={label}&" in p + "&"]
                assert any("watch=true" in p for p in asked) and any("watch=true" not in p for p in asked)
    finally:
        shop.close()


# --- the CLI as the end-to-end test will run it -----------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hemostat.sim", *args], capture_output=True, text=True, timeout=60)


def test_cli_missing_kubeconfig_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("--kubeconfig", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "kubeconfig" in lines[0]
    assert str(tmp_path / "nope") in lines[0]


def test_cli_unreachable_api_exits_2_with_one_line(tmp_path: Path) -> None:
    api = FakeApi()
    kubeconfig = api.kubeconfig(tmp_path)
    api.httpd.shutdown()
    api.httpd.server_close()  # nothing listens on that port any more
    result = run_cli("--kubeconfig", str(kubeconfig))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_cli_serves_metrics_and_cleans_up_on_sigterm(fake_api: FakeApi, tmp_path: Path) -> None:
    targets = tmp_path / "targets" / "sim.json"
    targets.parent.mkdir()
    cmd = [sys.executable, "-m", "hemostat.sim", "--kubeconfig", str(fake_api.kubeconfig(tmp_path))]
    cmd += ["--namespace", "shop", "--listen", "127.0.0.1:0", "--tick", "0.05", "--resync", "0.2"]
    cmd += ["--targets-file", str(targets)]
    scratch = tmp_path / "tmp"  # the simulator's own temporary files go here
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "hemostat-sim listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line.endswith("/metrics"), line
        port = int(line[len(prefix) : -len("/metrics")])
        assert json.loads(targets.read_text())[0]["targets"] == [f"127.0.0.1:{port}"]

        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: errors_so_far(url, PodRef("shop", "web", "bbb", "-")) > 5)
        samples = scrape(url)
        ok = requests_total(samples, PodRef("shop", "web", "bbb", "-"), "200")
        error = requests_total(samples, PodRef("shop", "web", "bbb", "-"), "500")
        assert error / (ok + error) == pytest.approx(0.5)
        assert requests_total(samples, PodRef("shop", "web", "aaa", "-"), "200") > 0
        assert not any(dict(labels).get("namespace") == "ops" for _, labels in samples)

        # The rollback: the bad ReplicaSet's pod goes away (a watch event), its counters freeze.
        fake_api.delete("pods", "web-bbb-1")

        def bad_errors() -> float:
            return requests_total(scrape(url), PodRef("shop", "web", "bbb", "-"), "500")

        def frozen() -> bool:  # 0.05 s ticks: a pod still served would add errors within 0.2 s
            before = bad_errors()
            time.sleep(0.2)
            return bad_errors() == before

        wait_for(frozen)
        still = bad_errors()
        time.sleep(0.3)
        assert bad_errors() == still
        # One LIST per label (Deployment's, Rollout's), then only watches.
        assert fake_api.lists("pods") == len(FakeApi.SELECTORS), "the simulator watches pods after its first LIST"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert not targets.exists()
    assert list(targets.parent.iterdir()) == []
    assert list(scratch.iterdir()) == [], "the simulator left temporary files behind"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_the_exposition_is_rendered_once_per_tick_not_per_scrape(metrics: TrafficMetrics) -> None:
    sim = Simulator(Pods([ObservedPod(STABLE_A1, {RPS: "10"})]), metrics)
    assert sim.refresh()
    sim.tick(1.0)
    first, again = metrics.exposition(), metrics.exposition()
    assert first == again and metrics.renders == 1
    sim.tick(1.0)
    assert metrics.exposition() != first and metrics.renders == 2


def test_the_hand_written_exposition_says_what_prometheus_client_says(metrics: TrafficMetrics) -> None:
    """Same increments into prometheus_client's own Counter and Histogram: the same samples."""
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests", "r", ["namespace", "deployment", "pod_template_hash", "code"], registry=registry
    )
    duration = Histogram(
        "http_request_duration_seconds",
        "d",
        ["namespace", "deployment", "pod_template_hash"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    odd = PodRef("shop", 'we"ird\\name', "h\nash", "p1")  # escaping, which Kubernetes names never need
    increments = [
        Increment(STABLE_A1, 9.5, 0.5, 10, 0.02),
        Increment(CANARY_B1, 3.0, 1.0, 4, 0.3),
        Increment(odd, 1.0, 0.0, 0, 0.0),
        Increment(CANARY_B1, 3.0, 1.0, 4, 10.0),
    ]
    for inc in increments:
        key = (inc.ref.namespace, inc.ref.deployment, inc.ref.pod_template_hash)
        requests.labels(*key, "200").inc(inc.ok)
        requests.labels(*key, "500").inc(inc.error)
        histogram = duration.labels(*key)  # exposed from the first tick, as the simulator does
        for _ in range(inc.observations):
            histogram.observe(inc.latency_seconds)
    metrics.apply(increments)

    def samples(text: str) -> dict:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    ours = samples(metrics.exposition().decode())
    theirs = samples(generate_latest(registry).decode())
    assert ours == pytest.approx(theirs) and len(ours) == 3 * (2 + len(LATENCY_BUCKETS) + 3)


def test_shards_split_the_series_by_deployment_and_each_is_served_on_its_path() -> None:
    metrics = TrafficMetrics(shards=4)
    metrics.apply(
        Increment(PodRef("shop", f"svc-{i}", h, f"svc-{i}-{h}"), 8.0, 2.0, 10, 0.02) for i in range(40) for h in "ab"
    )
    server = start_metrics_server(metrics.exposition, "127.0.0.1", 0, shards=4)
    try:
        base = f"http://127.0.0.1:{server.port}"
        shards = [scrape(f"{base}/metrics/{i}") for i in range(4)]
        whole = scrape(f"{base}/metrics")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/metrics/4", timeout=2)
    finally:
        server.stop()
    assert len(whole) == 40 * 2 * (2 + len(LATENCY_BUCKETS) + 3)
    deployments = [{dict(labels)["deployment"] for _, labels in shard} for shard in shards]
    assert all(deployments), "40 Deployments over 4 shards: none empty"
    assert sum(len(d) for d in deployments) == 40, "each Deployment (both its hashes) in exactly one shard"
    merged = {k: v for shard in shards for k, v in shard.items()}
    assert sum(len(shard) for shard in shards) == len(merged) and merged == whole


def test_a_sharded_app_registers_one_scrape_target_per_shard(tmp_path: Path) -> None:
    targets = tmp_path / "sim.json"
    app = App(Pods([ObservedPod(STABLE_A1, {RPS: "10"})]), Options(tick=0.02, shards=3, targets_file=targets))
    try:
        server = app.start()
        address = f"127.0.0.1:{server.port}"
        assert json.loads(targets.read_text()) == [
            {
                "targets": [address],
                # its own instance, else the shards' `up` series would collide
                "labels": {
                    "job": "hemostat-sim",
                    "instance": f"{address}/metrics/{i}",
                    "__metrics_path__": f"/metrics/{i}",
                },
            }
            for i in range(3)
        ]
        shard = app.metrics.shard_of(STABLE_A1.namespace, STABLE_A1.deployment)
        wait_for(lambda: bool(scrape(f"http://{address}/metrics/{shard}")))  # after the first tick
        assert requests_total(scrape(f"http://{address}/metrics/{shard}"), STABLE_A1, "200") > 0
        assert all(not scrape(f"http://{address}/metrics/{i}") for i in range(3) if i != shard)
    finally:
        app.stop()


def test_the_shard_of_a_deployment_does_not_depend_on_the_process() -> None:
    script = "from hemostat.sim.metrics import TrafficMetrics; print(TrafficMetrics(7).shard_of('shop', 'checkout'))"
    runs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert runs == {f"{TrafficMetrics(7).shard_of('shop', 'checkout')}\n"}
