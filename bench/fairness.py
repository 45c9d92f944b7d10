"""A fair share of the query slots: a quiet namespace's bad rollout, alone and beside a noisy namespace.

    python bench/fairness.py [--runs N] [--noisy-targets T] [--noisy-policies P] [--slow-s S]

The operator has 20 query slots for all policies. The noisy namespace has P policies over T Deployments
each, querying per target every second against a slow Prometheus (a loopback endpoint that answers after
a random 0.5..S s, as a loaded or remote Prometheus does): P*T queries a round, 20x and more the quiet
namespace's one, holding every slot. The quiet namespace's policy reads the real Prometheus. Measured:
bad Pods Ready -> rollback patch of the quiet Deployment, N runs alone, then N runs beside the noisy
namespace, in one operator; and what each namespace waited for a slot (the operator's own histogram).
Needs the local control plane (`make testenv-up`). Writes bench/results/fairness-*.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RESULTS, Bench, _bad_rollout_to_rollback, _scrape, _write, wait  # the shared harness

STAMP = datetime.now(UTC).strftime("%H%M%S")
QUIET, NOISY = f"fair-quiet-{STAMP}", f"fair-noisy-{STAMP}"


class SlowPrometheus:
    """Answers every instant query with one sample of 0 after a random 0.5..slow_s seconds."""

    def __init__(self, slow_s: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(random.uniform(0.5, slow_s))
                body = {
                    "status": "success",
                    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [time.time(), "0"]}]},
                }
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fresh_deployment(b: Bench, ns: str, name: str) -> None:
    b.deployment(ns, name, labels={"tier": "quiet"})
    wait(f"{ns}/{name} ready", lambda: (b.apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0) == 2)


def _quiet_runs(b: Bench, runs: int, label: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(runs):
        name = f"{label}-{i}"
        _fresh_deployment(b, QUIET, name)
        wait("traffic visible", lambda: b.ratio(QUIET, name) == 0.0)
        time.sleep(2)  # judged healthy at least once
        row = _bad_rollout_to_rollback(b, QUIET, name)
        rows.append(row)
        b.apps.delete_namespaced_deployment(name, QUIET)  # one quiet target at a time: the same load each run
        print(f"{label} run {i}: " + "  ".join(f"{k}={v:.2f}" for k, v in row.items()), flush=True)
    return rows


def _waits(metrics_url: str) -> dict[str, dict[str, float]]:
    """Per namespace: queries that waited for a slot, and their mean wait (seconds)."""
    scraped = _scrape(metrics_url)
    out: dict[str, dict[str, float]] = {}
    for ns in (QUIET, NOISY):
        count = scraped.get(f'hemostat_signal_query_wait_seconds_count{{namespace="{ns}"}}', 0.0)
        total = scraped.get(f'hemostat_signal_query_wait_seconds_sum{{namespace="{ns}"}}', 0.0)
        out[ns] = {"queries": count, "mean_wait_s": round(total / count, 3) if count else float("nan")}
    return out


def fairness(runs: int, noisy_targets: int, noisy_policies: int, slow_s: float) -> dict[str, Any]:
    b = Bench()
    slow = SlowPrometheus(slow_s)
    port = _free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:  # whatever fails, the simulator and operator it started are stopped
        b.simulator("simulator", "bench-sim.json", "--tick", "0.1")
        for ns in (QUIET, NOISY):
            b.namespace(ns)
        b.operator("operator", [QUIET, NOISY], metrics_port=port, extra=["--allowed-prometheus-url", slow.url])
        b.policy(QUIET, "quiet", {"matchLabels": {"tier": "quiet"}}, interval="1s", for_="0s", cooldown="1s")
        alone = _quiet_runs(b, runs, "alone")
        for i in range(noisy_targets):
            b.deployment(NOISY, f"svc-{i:03d}", replicas=1)
        for p in range(noisy_policies):
            b.policy(
                NOISY,
                f"noisy-{p}",
                {},
                interval="1s",
                for_="0s",
                url=slow.url,
                query=f'0 * count(up{{deployment="{{{{ deployment }}}}"}}) * {p + 2}',  # one slow query per target
            )
        began = time.monotonic()  # an operator without the wait histogram (before the fair share): 30 s
        wait(
            "noisy rounds saturate the slots",
            lambda: _waits(metrics_url)[NOISY]["queries"] > 4 * 20 or time.monotonic() - began > 30,
            timeout=120,
        )
        before = _waits(metrics_url)
        noisy = _quiet_runs(b, runs, "noisy")
        after = _waits(metrics_url)
        for ns in (QUIET, NOISY):  # while the operator runs, so it releases its finalizers
            b.core.delete_namespace(ns)
        for ns in (QUIET, NOISY):
            wait(
                f"namespace {ns} deleted",
                lambda ns=ns: all(n.metadata.name != ns for n in b.core.list_namespace().items),
            )
    finally:
        b.stop_all()
        slow.server.shutdown()
    p50_alone = statistics.median(r["rollback_patch"] for r in alone)
    p50_noisy = statistics.median(r["rollback_patch"] for r in noisy)
    waited = {
        ns: {
            "queries": after[ns]["queries"] - before[ns]["queries"],
            "mean_wait_s": after[ns]["mean_wait_s"],
        }
        for ns in (QUIET, NOISY)
    }
    result = {
        "kind": "fairness",
        "at": datetime.now(UTC).isoformat(),
        "settings": {"runs": runs, "noisy_targets": noisy_targets, "noisy_policies": noisy_policies, "slow_s": slow_s},
        "alone": alone,
        "beside_noisy": noisy,
        "p50_alone_s": p50_alone,
        "p50_beside_noisy_s": p50_noisy,
        "ratio": p50_noisy / p50_alone,
        "slot_waits": waited,
    }
    _write("fairness", result)
    print(f"\nbad Pods Ready -> rollback patch of the quiet namespace, {runs} runs each (seconds)")
    print(f"{'':28} {'p50':>6} {'max':>6}")
    for label, rows in (("alone", alone), (f"beside {noisy_policies}x{noisy_targets} slow queries", noisy)):
        values = [r["rollback_patch"] for r in rows]
        print(f"{label:28} {statistics.median(values):6.2f} {max(values):6.2f}")
    print(f"p50 ratio beside/alone: {result['ratio']:.2f}x")
    for ns, w in waited.items():
        print(f"{ns}: {w['queries']:.0f} queries during the noisy runs, mean wait for a slot {w['mean_wait_s']:.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--noisy-targets", type=int, default=50)
    parser.add_argument("--noisy-policies", type=int, default=2)
    parser.add_argument("--slow-s", type=float, default=3.0)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fairness(args.runs, args.noisy_targets, args.noisy_policies, args.slow_s)


if __name__ == "__main__":
    main()
