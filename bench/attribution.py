"""The attribution corpus: labelled scenarios on the local control plane, with attribution on and off.

    python bench/attribution.py [--parallel 8] [--only bad|confounded|compound] [--observe 30] [--every N]
                                 [--name crash]

Each scenario runs in a namespace of its own: four Deployments (web and three peers) under one
policy, a rollout of web (bad or healthy) and faults outside the Deployments (the simulator's
/faults), each labelled with the ground truth. Every scenario runs twice in the same run, with
`attribution.mode: enforce` and `off` (what Hemostat did before), several at once. Printed: the
confusion matrix of verdicts, wrong rollbacks, missed bad deploys, and bad Pods Ready -> rollback
percentiles per kind; written to bench/results/attribution-*.json. The corpus stays as the
regression suite for every later change to detection.
"""

from __future__ import annotations

import argparse
import http.server
import itertools
import json
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Bench, _write  # the benchmarks' shared harness

PEERS = ("cart", "api", "auth")
FLEET = ("web", *PEERS)
REVISION = "deployment.kubernetes.io/revision"
BASE_LATENCY_MS = 40.0  # p99 of 40 ms reads just under the 50 ms bound; +50 % breaches
# web's offered load, shared by its Ready Pods as a load balancer shares it: 10 rps each of its 2, so a
# rollout's extra Pod takes a share rather than adding requests. One Pod carries it all (as the first one
# Ready does), a 3x surge overloads two.
LOAD_RPS = 20.0
CAPACITY_RPS = 25.0

BY = "namespace, deployment"
SEL = 'namespace="{{ namespace }}",deployment=~"{{ deployments }}"'


def ratio(by: str) -> str:
    errors = f'sum by ({by}) (rate(http_requests_total{{{SEL},code="500"}}[5s]))'
    total = f"sum by ({by}) (rate(http_requests_total{{{SEL}}}[5s]))"
    return f"({errors} or {total} * 0) / {total}"


def p99(by: str) -> str:
    return f"histogram_quantile(0.99, sum by ({by}, le) (rate(http_request_duration_seconds_bucket{{{SEL}}}[5s])))"


_NOW = f"sum by ({BY}) (rate(http_requests_total{{{SEL}}}[5s]))"
TRAFFIC = f"{_NOW} / sum by ({BY}) (rate(http_requests_total{{{SEL}}}[20s] offset 10s))"
# the baseline reaches 30 s back: with less history than that it reads low (a rate over a partly empty
# window): with [30s] offset 10s after a 30 s warm-up, a steady request rate read 1.2-1.4x its baseline
WARM_UP_S = 35
DEADLINE_S = 15  # web's progressDeadlineSeconds where its rollout stalls
LEAK_S = 40  # a slow leak's errors begin this long after its Pods are Ready


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # bad | confounded | compound
    truth: str  # the verdict a right answer gives
    new_error: float = 0.0  # web's new revision: error rate and latency
    new_latency_ms: float = BASE_LATENCY_MS
    fault: dict[str, Any] | None = None  # outside the Deployments, "namespace" filled in
    fault_first: bool = False  # the fault before the rollout (compound), else after it
    slow: bool = False  # both revisions serve for a minute (minReadySeconds)
    crash: bool = False  # the new Pods crash-loop (kwok's stage): never Ready, no traffic
    fails_after_s: float = 0.0  # a slow leak: the new Pods' errors begin this long after they are Ready
    unschedulable: bool = False  # the new Pods ask for more CPU than the node has: Pending

    @property
    def stalls(self) -> bool:
        """The new revision never becomes available: judged at the progress deadline."""
        return self.crash or self.unschedulable


def corpus() -> list[Scenario]:
    out = []
    for error, slow, n in itertools.product((1.0, 0.2, 0.05, 0.02), (False, True), range(4)):
        out.append(
            Scenario(f"bad-errors-{error:g}-{'rolling' if slow else 'done'}-{n}", "bad", "deploy", error, slow=slow)
        )
    for latency, slow, n in itertools.product((60.0, 120.0), (False, True), range(3)):
        out.append(
            Scenario(
                f"bad-p99+{latency / BASE_LATENCY_MS - 1:.0%}-{'rolling' if slow else 'done'}-{n}",
                "bad",
                "deploy",
                new_latency_ms=latency,
                slow=slow,
            )
        )
    for error, who, slow in itertools.product((0.1, 0.3, 1.0), ("two", "all"), (False, True)):
        names = list(FLEET) if who == "all" else ["web", "cart"]
        fault = {"kind": "dependency", "deployments": names, "errorRate": error}
        truth = "global" if who == "all" else "dependency"
        for n in range(3):
            out.append(
                Scenario(
                    f"dependency-{error:g}-{who}-{'rolling' if slow else 'done'}-{n}",
                    "confounded",
                    truth,
                    fault=fault,
                    slow=slow,
                )
            )
    for latency, n in itertools.product((100.0, 300.0), range(2)):
        fault = {"kind": "dependency", "deployments": list(FLEET), "latencyMs": latency}
        out.append(Scenario(f"dependency-latency+{latency:g}ms-{n}", "confounded", "global", fault=fault))
    for factor, n in itertools.product((3.5, 5.0, 10.0), range(3)):
        out.append(
            Scenario(
                f"surge-{factor:g}x-{n}",
                "confounded",
                "traffic",
                fault={"kind": "surge", "deployments": ["web"], "factor": factor},
            )
        )
    for kind, n in itertools.product(("noTraffic", "scrapeGap", "counterReset"), range(2)):
        out.append(
            Scenario(f"data-{kind}-{n}", "confounded", "dataQuality", fault={"kind": kind, "deployments": ["web"]})
        )
    for error, slow, n in itertools.product((1.0, 0.5), (False, True), range(2)):
        fault = {"kind": "dependency", "deployments": list(FLEET), "errorRate": 0.2}
        out.append(
            Scenario(
                f"compound-bad-{error:g}-in-outage-{'rolling' if slow else 'done'}-{n}",
                "compound",
                "deploy",
                error,
                fault=fault,
                fault_first=True,
                slow=slow,
            )
        )
    for n in range(4):
        out.append(Scenario(f"bad-crash-at-start-{n}", "bad", "deploy", crash=True))
    for error, n in itertools.product((1.0, 0.2), range(2)):
        out.append(Scenario(f"bad-leak-{error:g}-after-{LEAK_S}s-{n}", "bad", "deploy", error, fails_after_s=LEAK_S))
    for n in range(4):  # a healthy revision the scheduler cannot place: capacity, a person decides
        out.append(Scenario(f"capacity-unschedulable-{n}", "confounded", "unknown", unschedulable=True))
    for n in range(2):
        fault = {"kind": "surge", "deployments": ["web"], "factor": 3.0}
        out.append(
            Scenario(
                f"compound-bad-1-in-surge-{n}", "compound", "deploy", 1.0, fault=fault, fault_first=True, slow=True
            )
        )
    return out


def policy(mode: str, fast_burn: bool = False) -> dict[str, Any]:
    """With `fast_burn`, a third signal acts on the first reading of more than 10 % errors (`for: 0s`)."""

    def signal(name: str, query: Any, above: float, for_: str = "2s") -> dict[str, Any]:
        return {
            "name": name,
            "prometheus": {"query": query(BY), "batch": {}},
            "byRevision": {"query": query(f"{BY}, pod_template_hash")},
            "breachWhen": {"above": above},
            "for": for_,
        }

    signals = [signal("error-rate", ratio, 0.01), signal("latency-p99", p99, 0.05)]
    if fast_burn:
        signals.append(signal("error-rate-fast", ratio, 0.1, "0s"))

    return {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": "shop"},
        "spec": {
            "target": {"selector": {"matchLabels": {"tier": "shop"}}},
            "interval": "2s",
            "signals": signals,
            "minTraffic": {
                "prometheus": {"query": f"sum by ({BY}) (rate(http_requests_total{{{SEL}}}[5s]))", "batch": {}},
                "atLeast": 1,
            },
            "mitigation": {"steps": [{"rollback": {}}, {"scaleUp": {"maxReplicas": 6}}], "verifyFor": "10s"},
            "attribution": {"mode": mode, "traffic": {"prometheus": {"query": TRAFFIC, "batch": {}}, "jump": 3}},
            "guardrails": {"cooldown": "1s"},
            "notify": {"webhooks": [{"secretRef": {"name": "hooks", "key": "url"}}]},
        },
    }


@dataclass
class Outcome:
    scenario: str
    kind: str
    truth: str
    mode: str
    verdict: str = "(no incident)"
    rolled_back: bool = False
    ready_to_rollback_s: float | None = None  # crash: from the rollout; slow leak: from its errors' start
    detected_to_notified_s: float | None = None  # the first webhook message that carries the verdict
    actions: int = 0
    error: str | None = None
    timeline: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    replicasets: list[str] = field(default_factory=list)  # web's, at the end of a missed bad deploy


class Receiver:
    """The policies' webhook on loopback: when the first message with a verdict reached each namespace."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[float, str]] = {}  # namespace -> (when, verdict)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                verdict = (body.get("cause") or {}).get("verdict")
                if verdict and body.get("namespace"):
                    receiver.first.setdefault(body["namespace"], (time.time(), verdict))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Runner:
    def __init__(self, bench: Bench, faults_url: str, observe_s: float, receiver: Receiver, fast_burn: bool) -> None:
        self.b, self.faults_url, self.observe_s, self.receiver = bench, faults_url, observe_s, receiver
        self.fast_burn = fast_burn
        self._lock = threading.Lock()
        self._faults: dict[str, dict[str, Any]] = {}  # namespace -> its fault (PUT replaces them all)

    def declare(self, ns: str, fault: dict[str, Any] | None) -> None:
        with self._lock:
            if fault is None:
                self._faults.pop(ns, None)
            else:
                self._faults[ns] = {**fault, "namespace": ns}
            body = json.dumps({"faults": list(self._faults.values())}).encode()
            req = urllib.request.Request(
                self.faults_url, data=body, method="PUT", headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=5):
                pass

    def run(self, sc: Scenario, mode: str, ns: str) -> Outcome:
        out = Outcome(sc.name, sc.kind, sc.truth, mode)
        apps, custom = client.AppsV1Api(), client.CustomObjectsApi()
        try:
            self.b.namespace(ns)
            for name in PEERS:
                apps.create_namespaced_deployment(ns, deployment(name, False))
            time.sleep(2)  # the peers were there before web: its controls (peers unchanged since web's revision)
            apps.create_namespaced_deployment(ns, deployment("web", sc.slow, sc.stalls))
            secret = {"metadata": {"name": "hooks"}, "stringData": {"url": self.receiver.url}}
            client.CoreV1Api().create_namespaced_secret(ns, secret)
            wait(lambda: all(ready(apps, ns, n) for n in FLEET), 120)
            custom.create_namespaced_custom_object(
                "hemostat.dev", "v1alpha1", ns, "mitigationpolicies", policy(mode, self.fast_burn)
            )
            time.sleep(WARM_UP_S)
            if sc.fault and sc.fault_first:
                self.declare(ns, sc.fault)
                time.sleep(6)
            marks = annotations(sc.new_error, sc.new_latency_ms)
            if sc.crash:
                marks["sim.hemostat.dev/crash"] = "true"
            if sc.fails_after_s:
                marks["sim.hemostat.dev/fails-after-s"] = f"{sc.fails_after_s:g}"
            container: dict[str, Any] = {"name": "app", "image": "registry.local/web:v2"}
            if sc.unschedulable:
                container["resources"] = {"requests": {"cpu": "5000"}}  # more than the node has
            patch = {"metadata": {"annotations": marks}, "spec": {"containers": [container]}}
            apps.patch_namespaced_deployment("web", ns, {"spec": {"template": patch}})
            # from the rollout when the new Pods never serve; from the errors' start for a slow leak
            t_ready = time.time() if sc.stalls else wait(lambda: new_ready(apps, ns), 60) + sc.fails_after_s
            wait(lambda: revision(apps, ns) == "2", 30)  # what a rollback is told from below
            if sc.fault and not sc.fault_first:
                if not sc.slow:
                    wait(lambda: (apps.read_namespaced_deployment("web", ns).status.updated_replicas or 0) == 2, 60)
                self.declare(ns, sc.fault)
            waits = DEADLINE_S if sc.stalls else sc.fails_after_s
            deadline = time.monotonic() + waits + self.observe_s
            while time.monotonic() < deadline and not out.rolled_back:
                if revision(apps, ns) != "2":
                    out.rolled_back, out.ready_to_rollback_s = True, time.time() - t_ready
                time.sleep(0.1)
            web = web_incidents(custom, ns)
            recorded = time.monotonic() + 15  # a step lands before the status write that records it
            while out.rolled_back and mode == "enforce" and time.monotonic() < recorded:
                if web and any(a["step"] == "rollback" for a in web[0].get("status", {}).get("actions", [])):
                    break
                time.sleep(0.2)
                web = web_incidents(custom, ns)
            if web:
                status = web[0].get("status") or {}
                found = status.get("attribution") or {}
                out.verdict = found.get("verdict", "(none recorded)")
                out.actions = len(status.get("actions") or [])
                heard = self.receiver.first.get(ns)
                if heard and status.get("detectedAt"):
                    detected = datetime.fromisoformat(status["detectedAt"].replace("Z", "+00:00")).timestamp()
                    out.detected_to_notified_s = heard[0] - detected
                out.evidence = [f"{c['kind']}: {c['says']}: {c['detail']}"[:300] for c in found.get("evidence", [])]
                out.timeline = [f"{e['reason']}: {e['message']}"[:300] for e in status.get("timeline", [])]
            if sc.truth == "deploy" and not out.rolled_back:  # what the operator should have rolled back onto
                out.replicasets = [
                    f"{rs.metadata.name} revision {(rs.metadata.annotations or {}).get(REVISION)} "
                    f"replicas {rs.spec.replicas} ready {rs.status.ready_replicas or 0} "
                    f"created {rs.metadata.creation_timestamp:%H:%M:%S}"
                    for rs in apps.list_namespaced_replica_set(ns, label_selector="app=web").items
                ]
        except Exception as exc:  # one scenario's failure is its own row, not the run's end
            out.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            try:
                self.declare(ns, None)
                client.CoreV1Api().delete_namespace(ns)
            except Exception as exc:
                out.error = out.error or f"cleanup: {exc}"[:300]
        return out


def annotations(error: float, latency_ms: float) -> dict[str, str]:
    return {
        "sim.hemostat.dev/error-rate": str(error),
        "sim.hemostat.dev/latency-ms": str(latency_ms),
        "sim.hemostat.dev/load-rps": str(LOAD_RPS),
        "sim.hemostat.dev/capacity-rps": str(CAPACITY_RPS),
    }


def deployment(name: str, slow: bool, stalls: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 2,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": annotations(0.0, BASE_LATENCY_MS)},
            "spec": {"containers": [{"name": "app", "image": f"registry.local/{name}:v1"}]},
        },
    }
    if slow:  # both revisions serve for a minute: the old one is the control
        spec |= {"minReadySeconds": 60, "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
    if stalls:  # the Deployment controller gives up on a rollout that makes no progress this long
        spec["progressDeadlineSeconds"] = DEADLINE_S
    return {"metadata": {"name": name, "labels": {"app": name, "tier": "shop"}}, "spec": spec}


def web_incidents(custom: client.CustomObjectsApi, ns: str) -> list[dict[str, Any]]:
    incidents = custom.list_namespaced_custom_object("hemostat.dev", "v1alpha1", ns, "incidents")["items"]
    return [i for i in incidents if i["spec"]["target"]["name"] == "web"]


def revision(apps: client.AppsV1Api, ns: str) -> str | None:
    return (apps.read_namespaced_deployment("web", ns).metadata.annotations or {}).get(REVISION)


def ready(apps: client.AppsV1Api, ns: str, name: str) -> bool:
    return (apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0) >= 2


def new_ready(apps: client.AppsV1Api, ns: str) -> bool:
    return any(
        (rs.metadata.annotations or {}).get(REVISION) == "2" and (rs.status.ready_replicas or 0) >= 1
        for rs in apps.list_namespaced_replica_set(ns, label_selector="app=web").items
    )


def wait(probe: Any, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return time.time()
        time.sleep(0.1)
    raise TimeoutError(f"not within {timeout:g}s")


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return f"p50 {statistics.median(values):.1f} s, p90 {p90:.1f} s, max {values[-1]:.1f} s (n={len(values)})"


def report(rows: list[Outcome]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in ("enforce", "off"):
        mine = [r for r in rows if r.mode == mode and r.error is None]
        wrong = [r.scenario for r in mine if r.rolled_back and r.truth != "deploy"]
        missed = [r.scenario for r in mine if not r.rolled_back and r.truth == "deploy"]
        matrix = Counter((r.truth, r.verdict) for r in mine)
        by_kind = {}
        kinds = ("bad-errors-1", "bad-errors-0.2", "bad-errors-0.05", "bad-errors-0.02", "bad-p99", "compound")
        for label in (*kinds, "bad-crash", "bad-leak"):
            times = [
                r.ready_to_rollback_s
                for r in mine
                if r.scenario.startswith(label) and r.ready_to_rollback_s is not None
            ]
            by_kind[label] = percentiles(times)
        unknown = [r for r in mine if r.verdict == "unknown"]
        held = [r.scenario for r in unknown if r.actions == 0]
        notified = [r.detected_to_notified_s for r in unknown if r.detected_to_notified_s is not None]
        summary[mode] = {
            "scenarios": len(mine),
            "unknown_held": f"{len(held)} of {len(unknown)}",
            "unknown_detected_to_notified": percentiles(notified),
            "errors": [f"{r.scenario}: {r.error}" for r in rows if r.mode == mode and r.error],
            "wrong_rollbacks": wrong,
            "missed_bad_deploys": missed,
            "confusion": {f"{t} -> {v}": n for (t, v), n in sorted(matrix.items())},
            "bad_ready_to_rollback": by_kind,
        }
        print(f"\nattribution.mode: {mode} ({len(mine)} scenarios, {len(summary[mode]['errors'])} failed to run)")
        print(f"  wrong rollbacks (truth not deploy, rolled back): {len(wrong)} {wrong[:6]}")
        print(f"  missed bad deploys (truth deploy, not rolled back): {len(missed)} {missed[:6]}")
        if mode == "enforce":
            verdicts = sorted({v for _, v in matrix})
            head = "truth / verdict"
            print(f"  {head:16}" + "".join(f"{v:>16}" for v in verdicts))
            for truth in sorted({t for t, _ in matrix}):
                print(f"  {truth:16}" + "".join(f"{matrix.get((truth, v), 0):>16}" for v in verdicts))
        for label, text in by_kind.items():
            print(f"  bad Pods Ready -> rollback, {label:16} {text}")
        if mode == "enforce":
            held_text = summary[mode]["unknown_held"]
            print(f"  unknown: held (no action) {held_text}; detected -> notified {percentiles(notified)}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parallel", type=int, default=8, help="scenarios at once (each in its namespace)")
    parser.add_argument("--only", choices=("bad", "confounded", "compound"), help="one kind of scenario")
    parser.add_argument("--observe", type=float, default=30.0, help="seconds watched after the rollout or fault")
    parser.add_argument("--every", type=int, default=1, help="run every n-th scenario only (a quick sample)")
    parser.add_argument("--name", default="", help="only the scenarios whose name contains this")
    parser.add_argument("--fast-burn", action="store_true", help="add a signal acting on > 10 %% errors at once")
    args = parser.parse_args()
    scenarios = [s for s in corpus() if args.only in (None, s.kind) and args.name in s.name][:: args.every]
    kinds = Counter(s.kind for s in scenarios)
    counts = ", ".join(f"{n} {k}" for k, n in kinds.items())
    print(f"corpus: {len(scenarios)} scenarios ({counts}), each with attribution on and off")
    b = Bench()
    b.simulator("attribution-simulator", "bench-attribution-sim.json", "--tick", "0.25", "--shards", "2")
    targets = Path(b.env["HEMOSTAT_PROMETHEUS_TARGETS"]) / "bench-attribution-sim.json"
    wait(lambda: targets.exists(), 30)
    faults_url = f"http://{json.loads(targets.read_text())[0]['targets'][0]}/faults"
    stamp = datetime.now(UTC).strftime("%H%M%S")
    jobs = [(s, mode, f"attr-{stamp}-{i}-{mode}") for i, s in enumerate(scenarios) for mode in ("enforce", "off")]
    b.operator("attribution-operator", [ns for _, _, ns in jobs])
    runner = Runner(b, faults_url, args.observe, Receiver(), args.fast_burn)
    rows: list[Outcome] = []
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(args.parallel) as pool:
            for done, row in enumerate(pool.map(lambda job: runner.run(*job), jobs), 1):
                rows.append(row)
                shown = ("rolled back" if row.rolled_back else "kept") + (f" ERROR {row.error}" if row.error else "")
                seen = f"truth {row.truth:11} verdict {row.verdict:14} {shown}"
                print(
                    f"[{done}/{len(jobs)} {time.monotonic() - started:.0f}s] {row.mode:7} {row.scenario:40} {seen}",
                    flush=True,
                )
    finally:
        b.stop_all()
    summary = report(rows)
    _write(
        "attribution",
        {
            "at": datetime.now(UTC).isoformat(),
            "observe_s": args.observe,
            "fast_burn": args.fast_burn,
            "summary": summary,
            "rows": [asdict(r) for r in rows],
        },
    )


if __name__ == "__main__":
    main()
