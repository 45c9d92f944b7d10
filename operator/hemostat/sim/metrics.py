"""Prometheus side of the simulator: the metric families, the HTTP endpoint, the file_sd entry.

Series are keyed by (namespace, deployment, pod_template_hash): pods of one
ReplicaSet add into the same series, so a rollout shows up as a new hash.
Labels never include `job` or `instance`, which belong to the scraper.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Metric, generate_latest
from prometheus_client.registry import Collector

from .behaviour import Increment

SERIES_LABELS = ("namespace", "deployment", "pod_template_hash")
# Covers 5ms .. 10s, the range the latency-ms annotation is meant for.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TARGETS_JOB = "hemostat-sim"


class _ConsistentView(Collector):
    """Collects the wrapped registry under the lock that apply() holds.

    So a scrape sees whole ticks only: the 200s, 500s and histogram of one
    scrape always come from the same ticks, and the error ratio is exact.
    """

    def __init__(self, inner: CollectorRegistry, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return list(self._inner.collect())

    def describe(self) -> Iterable[Metric]:
        return self.collect()


class TrafficMetrics:
    """The exported families, exposed through the given (never the global) registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self.generation = 0  # bumped by each tick: a scrape between two ticks can reuse the last rendering
        families = CollectorRegistry()
        self.requests = Counter(
            "http_requests",  # exposed as http_requests_total
            "Synthetic HTTP requests served, by response code.",
            [*SERIES_LABELS, "code"],
            registry=families,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Synthetic HTTP request latency.",
            list(SERIES_LABELS),
            buckets=LATENCY_BUCKETS,
            registry=families,
        )
        registry.register(_ConsistentView(families, self._lock))

    def apply(self, increments: Iterable[Increment]) -> None:
        """Add one tick's increments atomically w.r.t. scrapes.

        Both codes are always touched, so the 500 series exists (at 0) from the first tick.
        """
        with self._lock:
            for inc in increments:
                labels = (inc.ref.namespace, inc.ref.deployment, inc.ref.pod_template_hash)
                self.requests.labels(*labels, "200").inc(inc.ok)
                self.requests.labels(*labels, "500").inc(inc.error)
                histogram = self.duration.labels(*labels)
                for _ in range(inc.observations):
                    histogram.observe(inc.latency_seconds)
            self.generation += 1


@dataclass
class MetricsServer:
    """A running /metrics endpoint; `port` is the bound port (never 0)."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """The scrape URL."""
        return f"http://{_hostport(self.host, self.port)}/metrics"

    @property
    def target(self) -> str:
        """host:port to scrape; a wildcard bind is scraped over loopback."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else "::1" if self.host == "::" else self.host
        return _hostport(host, self.port)

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def exposition(registry: CollectorRegistry, generation: Callable[[], int] | None) -> Callable[[], bytes]:
    """The text exposition, rendered at most once per `generation` (once per tick, not per scrape):
    at thousands of Pods, rendering is what makes a scrape slow."""
    lock = threading.Lock()
    cache: dict[str, Any] = {"generation": None, "body": b""}

    def render() -> bytes:
        with lock:
            current = generation() if generation is not None else None
            if current is None or current != cache["generation"]:
                cache["body"], cache["generation"] = generate_latest(registry), current
            return cache["body"]

    return render


def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int, generation: Callable[[], int] | None = None
) -> MetricsServer:
    """Serve the registry on host:port (0 = any free port); raises OSError if it cannot bind."""
    render = exposition(registry, generation)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        body = render()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server(host, port, app, _ThreadingWSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return MetricsServer(host, int(server.server_port), server, thread)


def write_targets_file(path: Path, target: str) -> None:
    """Atomically write a Prometheus file_sd entry for `target` (temp file + rename)."""
    content = json.dumps([{"targets": [target], "labels": {"job": TARGETS_JOB}}], indent=2) + "\n"
    # The temp name must not match file_sd's *.json glob, or Prometheus could read it half-written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; Prometheus may run as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_targets_file(path: Path) -> None:
    """Remove the file_sd entry; already gone is fine."""
    path.unlink(missing_ok=True)
