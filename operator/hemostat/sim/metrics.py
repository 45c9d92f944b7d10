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
import zlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .behaviour import Increment

SERIES_LABELS = ("namespace", "deployment", "pod_template_hash")
# Covers 5ms .. 10s, the range the latency-ms annotation is meant for.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TARGETS_JOB = "hemostat-sim"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Series:
    """Totals of one (namespace, deployment, pod_template_hash) since the simulator started."""

    __slots__ = ("buckets", "count", "error", "key", "labels", "ok", "sum")

    def __init__(self, key: tuple[str, str, str]) -> None:
        self.key = key
        self.labels = _label_text(key)  # rendered once: the label set is fixed for the series' life
        self.reset()

    def reset(self) -> None:
        self.ok = self.error = self.sum = 0.0
        self.count = 0
        self.buckets = [0] * len(LATENCY_BUCKETS)  # cumulative, as exposed

    def observe(self, seconds: float, n: int) -> None:
        self.sum += seconds * n
        self.count += n
        for i, upper in enumerate(LATENCY_BUCKETS):
            if seconds <= upper:
                self.buckets[i] += n


class TrafficMetrics:
    """http_requests_total and http_request_duration_seconds, with a hand-written exposition.

    prometheus_client's generic rendering takes about 2 s for 10,000 Pods' series, longer
    than Prometheus' default 1 s scrape timeout in the benchmarks; this one renders only
    what changed in shape (nothing) and formats plain numbers.

    With `shards` > 1 the series are split over that many expositions, one scrape target
    each, so Prometheus scrapes them in parallel and no one scrape nears its timeout. A
    Deployment's series all live in one shard, so one scrape sees its errors and its total.
    """

    def __init__(self, shards: int = 1, hidden: Callable[[str, str], bool] | None = None) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self.shards = shards
        self.hidden = hidden  # (namespace, deployment) -> leave its series out (a scrape gap)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._by_shard: list[list[_Series]] = [[] for _ in range(shards)]  # each series, filed once at birth
        self._bodies: dict[int | None, bytes] = {}
        self.generation = 0  # bumped by each tick
        self.renders = 0  # how many times an exposition was rendered (once per tick and shard at most)

    def shard_of(self, namespace: str, deployment: str) -> int:
        """Stable across restarts and processes (not Python's salted hash)."""
        return zlib.crc32(f"{namespace}/{deployment}".encode()) % self.shards

    def apply(self, increments: Iterable[Increment]) -> None:
        """Add one tick's increments atomically w.r.t. scrapes.

        Both codes are always exposed, so the 500 series exists (at 0) from the first tick.
        """
        with self._lock:
            for inc in increments:
                key = (inc.ref.namespace, inc.ref.deployment, inc.ref.pod_template_hash)
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series(key)
                    self._by_shard[self.shard_of(key[0], key[1])].append(series)
                series.ok += inc.ok
                series.error += inc.error
                if inc.observations:
                    series.observe(inc.latency_seconds, inc.observations)
            self.generation += 1
            self._bodies = {}

    def reset(self, which: Callable[[str, str], bool]) -> int:
        """Counters of these (namespace, deployment) back to zero, as after a restart; how many series."""
        with self._lock:
            hit = [s for s in self._series.values() if which(s.key[0], s.key[1])]
            for s in hit:
                s.reset()
            self._bodies = {}
            return len(hit)

    def exposition(self, shard: int | None = None) -> bytes:
        """The text exposition of one shard (None: all), of whole ticks only, rendered at most once per tick."""
        with self._lock:
            body = self._bodies.get(shard)
            if body is None:
                series = self._series.values() if shard is None else self._by_shard[shard]
                if self.hidden is not None:
                    hidden = self.hidden
                    series = [s for s in series if not hidden(s.key[0], s.key[1])]
                body = self._bodies[shard] = _render(series)
                self.renders += 1
            return body


def _render(series: Collection[_Series]) -> bytes:
    out = [
        "# HELP http_requests_total Synthetic HTTP requests served, by response code.",
        "# TYPE http_requests_total counter",
    ]
    for s in series:
        out.append(f'http_requests_total{{{s.labels},code="200"}} {float(s.ok)!r}')
        out.append(f'http_requests_total{{{s.labels},code="500"}} {float(s.error)!r}')
    out += [
        "# HELP http_request_duration_seconds Synthetic HTTP request latency.",
        "# TYPE http_request_duration_seconds histogram",
    ]
    for s in series:
        for le, n in zip(_LE, s.buckets, strict=True):
            out.append(f'http_request_duration_seconds_bucket{{{s.labels},le="{le}"}} {n}')
        out.append(f'http_request_duration_seconds_bucket{{{s.labels},le="+Inf"}} {s.count}')
        out.append(f"http_request_duration_seconds_sum{{{s.labels}}} {float(s.sum)!r}")
        out.append(f"http_request_duration_seconds_count{{{s.labels}}} {s.count}")
    out.append("")
    return "\n".join(out).encode()


_LE = [repr(float(b)) for b in LATENCY_BUCKETS]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(key: tuple[str, str, str]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in zip(SERIES_LABELS, key, strict=True))


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


# (method, request body) -> (HTTP status line, JSON body): the simulator's /faults
FaultsApi = Callable[[str, bytes], tuple[str, bytes]]
MAX_BODY = 1 << 20


def start_metrics_server(
    render: Callable[[int | None], bytes], host: str, port: int, shards: int = 1, faults: FaultsApi | None = None
) -> MetricsServer:
    """Serve `render(None)` on /metrics and `render(i)` on /metrics/<i> for each shard i, and `faults`
    on /faults, on host:port (0 = any free port); raises OSError if it cannot bind."""
    paths: dict[str, int | None] = {"/": None, "/metrics": None, **{shard_path(i): i for i in range(shards)}}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/faults" and faults is not None:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
            status, answer = faults(environ["REQUEST_METHOD"], environ["wsgi.input"].read(length) if length else b"")
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
            return [answer]
        if path not in paths:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        body = render(paths[path])
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server(host, port, app, _ThreadingWSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return MetricsServer(host, int(server.server_port), server, thread)


def shard_path(shard: int) -> str:
    return f"/metrics/{shard}"


def targets(target: str, shards: int = 1) -> list[dict[str, Any]]:
    """Prometheus file_sd entries: the whole exposition, or one target per shard.

    Shards share host:port, so each gets its own `instance` (else their `up` series collide)
    and its path in `__metrics_path__`, which Prometheus takes from discovered labels.
    """
    if shards == 1:
        return [{"targets": [target], "labels": {"job": TARGETS_JOB}}]
    return [
        {
            "targets": [target],
            "labels": {"job": TARGETS_JOB, "instance": f"{target}{shard_path(i)}", "__metrics_path__": shard_path(i)},
        }
        for i in range(shards)
    ]


def write_targets_file(path: Path, target: str, shards: int = 1) -> None:
    """Atomically write the Prometheus file_sd entries for `target` (temp file + rename)."""
    content = json.dumps(targets(target, shards), indent=2) + "\n"
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
