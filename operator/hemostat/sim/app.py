"""The simulator process: poll pods, turn them into traffic each tick, serve /metrics.

Threads: a poller refreshes the pod set every `resync` seconds (from the watch caches
of cluster.py: cheap, recomputed only after a change), a ticker adds
traffic every `tick` seconds using the measured elapsed time, and the metrics
HTTP server answers scrapes. The pod source is injected, so all of this runs
without a cluster in tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from . import faults as f
from .behaviour import Effect, ObservedPod, PodRef, PodTraffic, accrue, capacity, leak, resolve
from .metrics import (
    MetricsServer,
    TrafficMetrics,
    remove_targets_file,
    start_metrics_server,
    write_targets_file,
)

if TYPE_CHECKING:
    from .cluster import ClusterPodSource

log = logging.getLogger("hemostat.sim")

# The interface cluster.py provides: a call returning the current Ready pods,
# raising on failure. Tests pass a plain function instead.
PodSource = Callable[[], Sequence[ObservedPod]]

EXIT_STARTUP = 2


class Simulator:
    """Last known pod set + per-pod accumulators; refresh() and tick() may run on different threads."""

    def __init__(
        self,
        source: PodSource,
        metrics: TrafficMetrics,
        effects: Sequence[Effect] = (),
        initial: Sequence[ObservedPod] = (),
    ) -> None:
        self._source = source
        self._metrics = metrics
        self._effects = tuple(effects)
        self._lock = threading.Lock()
        self._pods: tuple[ObservedPod, ...] = tuple(initial)
        self._traffic: dict[tuple[str, str], PodTraffic] = {}
        self._warned: set[tuple[tuple[str, str], str]] = set()
        self._failing: str | None = None

    def refresh(self) -> bool:
        """Replace the pod set from the source; on error keep the last one and return False."""
        try:
            pods = tuple(self._source())
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            # Warn when the failure starts or changes, not every resync while the API is down.
            if message != self._failing:
                log.warning("%s; keeping the last known %d pod(s)", message, len(self._pods))
            self._failing = message
            return False
        if self._failing is not None:
            log.info("pod listing recovered: %d ready pod(s)", len(pods))
            self._failing = None
        with self._lock:
            self._pods = pods
        return True

    def tick(self, dt: float) -> None:
        """Add `dt` seconds of traffic for the current pod set to the metrics."""
        with self._lock:
            ready, warnings = resolve(self._pods, self._effects)
            self._warn_once(warnings, {p.ref.key for p in self._pods})
            self._traffic, increments = accrue(self._traffic, ready, dt)
            self._metrics.apply(increments)

    def _warn_once(self, warnings: Sequence[tuple[PodRef, str]], present: set[tuple[str, str]]) -> None:
        for ref, message in warnings:
            key = (ref.key, message)
            if key not in self._warned:
                self._warned.add(key)
                log.warning("pod %s/%s: %s", ref.namespace, ref.name, message)
        # Forget pods that are gone, so the set does not grow with pod churn.
        self._warned = {k for k in self._warned if k[0] in present}


@dataclass
class Options:
    """Runtime settings of one simulator instance (the CLI minus cluster access)."""

    host: str = "127.0.0.1"
    port: int = 0
    tick: float = 0.25
    resync: float = 0.25
    shards: int = 1
    targets_file: Path | None = None
    effects: Sequence[Effect] = field(default_factory=tuple)


class App:
    """A started simulator: metrics server, targets file, poller and ticker threads."""

    def __init__(self, source: PodSource, options: Options, initial: Sequence[ObservedPod] = ()) -> None:
        self.options = options
        self.faults = f.Faults()
        self.metrics = TrafficMetrics(options.shards, hidden=self.faults.hidden)
        # after the others: a surge multiplies the load the capacity model shared out
        self.simulator = Simulator(source, self.metrics, (*options.effects, self.faults), initial)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server: MetricsServer | None = None

    def start(self) -> MetricsServer:
        """Bind, publish the targets file, start the loops; returns the bound server."""
        o = self.options
        self.server = start_metrics_server(self.metrics.exposition, o.host, o.port, o.shards, self.faults_api)
        if o.targets_file is not None:
            write_targets_file(o.targets_file, self.server.target, o.shards)
        for name, loop in (("sim-poller", self._poll_loop), ("sim-ticker", self._tick_loop)):
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.server

    def stop(self) -> None:
        """Stop the loops, remove the targets file, free the port. Idempotent."""
        self._stop.set()
        for thread in self._threads:
            # Bounded: a poller stuck in an API call must not hold up shutdown (threads are daemons).
            thread.join(timeout=2)
        self._threads.clear()
        if self.options.targets_file is not None:
            remove_targets_file(self.options.targets_file)
        if self.server is not None:
            self.server.stop()
            self.server = None

    def faults_api(self, method: str, body: bytes) -> tuple[str, bytes]:
        """GET /faults: the faults in force; PUT /faults: replace them (a counterReset happens at once)."""
        if method == "PUT":
            try:
                declared = f.parse(json.loads(body or b"null"))
            except (ValueError, f.FaultError) as exc:  # JSONDecodeError is a ValueError
                return "400 Bad Request", json.dumps({"error": str(exc)}).encode()
            self.faults.replace(declared)
            resets = [x for x in declared if x.kind == "counterReset"]
            if resets:
                self.metrics.reset(lambda ns, dep: any(x.hits(ns, dep) for x in resets))
            log.info("faults now: %s", json.dumps([x.to_json() for x in declared]))
        elif method != "GET":
            return "405 Method Not Allowed", json.dumps({"error": "GET or PUT"}).encode()
        return "200 OK", json.dumps({"faults": self.faults.current()}).encode()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.options.resync):
            self.simulator.refresh()

    def _tick_loop(self) -> None:
        # dt is the measured time since the last tick, so late ticks still add the right total.
        last = time.monotonic()
        deadline = last
        while True:
            deadline += self.options.tick
            if self._stop.wait(max(0.0, deadline - time.monotonic())):
                return
            now = time.monotonic()
            deadline = max(deadline, now - self.options.tick)  # don't burst after a stall
            try:
                self.simulator.tick(now - last)
            except Exception:  # a bug in one tick must not silently end all traffic
                log.exception("tick failed")
            last = now


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), number


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return number


def _shards(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 64, got {value!r}")
    return number


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The CLI; argparse exits with code 2 on bad usage."""
    p = argparse.ArgumentParser(
        prog="python -m hemostat.sim",
        description="Synthetic HTTP traffic metrics for the Pods of Deployments and Argo Rollouts.",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument(
        "--namespace",
        action="extend",
        nargs="+",
        default=[],
        metavar="NS",
        help="namespace(s) to watch; may be repeated (default: all)",
    )
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 0), metavar="HOST:PORT")
    p.add_argument("--tick", type=_positive, default=0.25, help="seconds between traffic updates")
    p.add_argument("--resync", type=_positive, default=0.25, help="seconds between reads of the pod watch cache")
    p.add_argument(
        "--shards",
        type=_shards,
        default=1,
        help="split the series over N scrape targets (/metrics/0 .. /metrics/N-1; /metrics has all)",
    )
    p.add_argument("--targets-file", type=Path, help="write a Prometheus file_sd JSON entry here")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    return p.parse_args(argv)


def _fail(message: str, err: TextIO) -> int:
    print(f"hemostat-sim: error: {message}", file=err, flush=True)
    return EXIT_STARTUP


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run until SIGTERM/SIGINT; exit 0 on clean shutdown, 2 if startup fails."""
    # Looked up per call, not at import, so redirected streams are honoured.
    out = out or sys.stdout
    err = err or sys.stderr
    args = parse_args(argv)
    logging.basicConfig(
        stream=err,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="hemostat-sim %(levelname)s %(message)s",
    )
    # Imported here: the kubernetes client is only needed by the real process.
    from .cluster import ClusterError, ClusterPodSource, flag_source_reader, load_api_client
    from .flags import FlagEffect

    try:
        api_client = load_api_client(args.kubeconfig)
        source = ClusterPodSource(api_client, args.namespace)
    except ClusterError as exc:
        return _fail(str(exc), err)
    scratch = tempfile.TemporaryDirectory(prefix="hemostat-sim-flags-")  # removed on every way out
    try:
        return _serve(args, source, FlagEffect(flag_source_reader(api_client), Path(scratch.name)), out, err)
    finally:
        scratch.cleanup()


def _serve(args: argparse.Namespace, source: ClusterPodSource, flag_effect: Effect, out: TextIO, err: TextIO) -> int:
    from .cluster import ClusterError

    try:
        # The first LIST doubles as the reachability (and RBAC) check.
        source.start()
        initial = source()
    except ClusterError as exc:
        source.close()
        return _fail(str(exc), err)

    host, port = args.listen
    options = Options(
        host=host,
        port=port,
        tick=args.tick,
        resync=args.resync,
        shards=args.shards,
        targets_file=args.targets_file,
        effects=(lambda pods: leak(pods, time.time()), capacity, flag_effect),
    )
    app = App(source, options, initial)
    try:
        server = app.start()
    except OSError as exc:
        what = f"listen on {host}:{port}" if app.server is None else f"write targets file {args.targets_file}"
        app.stop()
        source.close()
        return _fail(f"cannot {what}: {exc}", err)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(f"hemostat-sim listening on {server.url}", file=out, flush=True)
        log.info("watching %s; %d ready pod(s)", ", ".join(args.namespace) or "all namespaces", len(initial))
        while not stop.wait(0.5):  # a timeout keeps the main thread responsive to signals
            pass
    finally:
        app.stop()
        source.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
