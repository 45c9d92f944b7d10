"""Benchmarks (not tests): detection/rollback/resolution latency, and a soak for memory.

    python bench/run.py latency [--runs N]     repeat the bad-rollout scenario N times
    python bench/run.py fastlane [--runs N]    bad pods Ready -> rollback (interval 10s, for 0s), rollout watch on/off
    python bench/run.py soak [--minutes M]     hundreds of Deployments under policies; operator RSS over time
    python bench/run.py scale [--deployments N] [--policies P ...]
                                               one fleet under each layout in turn: rounds, queries, API calls, RSS,
                                               bad rollouts timed (--bad-rollouts 3)
    python bench/round_cpu.py                  CPU of one round of the operator code alone (no control plane)

Needs the local control plane (`make testenv-up`); starts its own simulator and
operator. Writes JSON to bench/results/ and prints a table. Latencies are
measured from this process by polling the API and Prometheus every 50 ms, so
they carry up to ~50 ms of measurement error each.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from hemostat.sim.metrics import TARGETS_JOB

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
POLL = 0.05
THRESHOLD = 0.05
FOR_S, INTERVAL_S, VERIFY_S, WINDOW = 2.0, 1.0, 5.0, "5s"
SELECT = 'namespace="{{ namespace }}",deployment="{{ deployment }}"'
RATIO = (
    f'sum(rate(http_requests_total{{{SELECT},code="500"}}[{WINDOW}]))'
    f" / sum(rate(http_requests_total{{{SELECT}}}[{WINDOW}]))"
)


def env() -> dict[str, str]:
    path = ROOT / ".testenv" / "env"
    if not path.exists():
        sys.exit("bench: the local control plane is not up: run `make testenv-up` first")
    out = subprocess.run(["bash", "-c", f"set -a; source {path}; env -0"], capture_output=True, text=True, check=True)
    return dict(kv.split("=", 1) for kv in out.stdout.split("\0") if "=" in kv)


class Bench:
    def __init__(self) -> None:
        self.env = env()
        config.load_kube_config(self.env["KUBECONFIG"])
        self.apps, self.core = client.AppsV1Api(), client.CoreV1Api()
        self.custom = client.CustomObjectsApi()
        self.prom = self.env["PROMETHEUS_URL"]
        self.procs: list[subprocess.Popen] = []
        RESULTS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["kubectl", "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")],
            env=self.env,
            check=True,
            capture_output=True,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (RESULTS / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def simulator(self, name: str, targets_file: str, *args: str) -> subprocess.Popen:
        """The traffic simulator, registered with Prometheus through its own file_sd entry."""
        targets = f"{self.env['HEMOSTAT_PROMETHEUS_TARGETS']}/{targets_file}"
        return self.start(name, "-m", "hemostat.sim", "--targets-file", targets, *args)

    def operator(
        self, name: str, namespaces: list[str], metrics_port: int = 0, extra: list[str] | None = None
    ) -> subprocess.Popen:
        """A standalone operator watching `namespaces`, its health endpoint off; logs to bench/results/<name>.log."""
        args = ["run", "--standalone", "--health-port", "0", "--metrics-port", str(metrics_port), "-n", *namespaces]
        return self.start(name, "-m", "hemostat", *args, *(extra or []))

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)

    def query(self, promql: str, timeout: float = 5) -> float | None:
        """The first sample of an instant query, or None when it returns no series."""
        url = f"{self.prom}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            result = json.load(r)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def ratio(self, ns: str, name: str) -> float | None:
        return self.query(RATIO.replace("{{ namespace }}", ns).replace("{{ deployment }}", name))

    def namespace(self, ns: str) -> None:
        self.core.create_namespace({"metadata": {"name": ns}})

    def deployment(
        self,
        ns: str,
        name: str,
        replicas: int = 2,
        error_rate: float = 0.0,
        image: str = "v1",
        labels: dict[str, str] | None = None,
    ) -> None:
        self.apps.create_namespaced_deployment(
            ns,
            {
                "metadata": {"name": name, "labels": {"app": name, **(labels or {})}},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {
                            "labels": {"app": name},
                            "annotations": {"sim.hemostat.dev/error-rate": str(error_rate)},
                        },
                        "spec": {"containers": [{"name": "app", "image": f"registry.local/{name}:{image}"}]},
                    },
                },
            },
        )

    def policy(
        self,
        ns: str,
        name: str,
        selector: dict[str, Any],
        *,
        interval: str,
        for_: str,
        verify_for: str | None = None,
        cooldown: str | None = None,
        rollout_watch: dict[str, str] | None = None,
        url: str | None = None,
        query: str = RATIO,
    ) -> None:
        """A rollback policy on the error ratio (or `query`, at `url`); unset options keep the API's defaults."""
        mitigation: dict[str, Any] = {"steps": [{"rollback": {}}]}
        if verify_for:
            mitigation["verifyFor"] = verify_for
        if rollout_watch is not None:
            mitigation["rolloutWatch"] = rollout_watch
        spec: dict[str, Any] = {
            "target": {"selector": selector},
            "interval": interval,
            "signals": [
                {
                    "name": "error-rate",
                    "prometheus": {"query": query, **({"url": url} if url else {})},
                    "breachWhen": {"above": THRESHOLD},
                    "for": for_,
                }
            ],
            "mitigation": mitigation,
        }
        if cooldown:
            spec["guardrails"] = {"cooldown": cooldown}
        body = {"apiVersion": "hemostat.dev/v1alpha1", "kind": "MitigationPolicy", "metadata": {"name": name}}
        self.custom.create_namespaced_custom_object(
            "hemostat.dev", "v1alpha1", ns, "mitigationpolicies", {**body, "spec": spec}
        )

    def incidents(self, ns: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object("hemostat.dev", "v1alpha1", ns, "incidents")["items"]


def wait(what: str, probe, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return time.time()
        time.sleep(POLL)
    raise SystemExit(f"bench: timed out waiting for {what}")


def latency(
    runs: int,
    interval_s: float = INTERVAL_S,
    for_s: float = FOR_S,
    rollout_watch: dict[str, str] | None = None,
    kind: str = "latency",
) -> dict[str, Any]:
    b = Bench()
    b.simulator("simulator", "bench-sim.json", "--tick", "0.1")
    stamp = datetime.now(UTC).strftime("%H%M%S")
    b.operator("operator", [f"bench-{stamp}-{i}" for i in range(runs)])
    rows = []
    try:
        for i in range(runs):
            ns, name = f"bench-{stamp}-{i}", "svc"
            b.namespace(ns)
            b.deployment(ns, name)
            wait("v1 ready", lambda: (b.apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0) == 2)
            b.policy(
                ns,
                name,
                {"matchLabels": {"app": name}},
                interval=f"{interval_s:g}s",
                for_=f"{for_s:g}s",
                verify_for=f"{VERIFY_S:g}s",
                cooldown="1s",
                rollout_watch=rollout_watch,
            )
            wait("traffic visible", lambda: b.ratio(ns, name) == 0.0)
            time.sleep(2)  # let the operator judge it healthy at least once
            b.apps.patch_namespaced_deployment(
                name,
                ns,
                {
                    "spec": {
                        "template": {
                            "metadata": {"annotations": {"sim.hemostat.dev/error-rate": "0.5"}},
                            "spec": {"containers": [{"name": "app", "image": f"registry.local/{name}:v2"}]},
                        }
                    }
                },
            )
            t_ready = wait(
                "bad pods ready",
                lambda: any(
                    (rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision") == "2"
                    and (rs.status.ready_replicas or 0) >= 1
                    for rs in b.apps.list_namespaced_replica_set(ns).items
                ),
            )
            t_visible = wait("breach visible in Prometheus", lambda: (b.ratio(ns, name) or 0) > THRESHOLD)
            t_incident = wait("incident", lambda: bool(b.incidents(ns)))
            t_patch = wait(
                "rollback patch",
                lambda: (
                    (b.apps.read_namespaced_deployment(name, ns).metadata.annotations or {}).get(
                        "deployment.kubernetes.io/revision"
                    )
                    == "3"
                ),
            )
            t_healthy = wait("recovery visible in Prometheus", lambda: (b.ratio(ns, name) or 0) <= THRESHOLD)
            t_resolved = wait("resolved", lambda: b.incidents(ns)[0].get("status", {}).get("phase") == "Resolved")
            row = {
                "run": i,
                "ready_to_incident_s": t_incident - t_ready,
                "ready_to_patch_s": t_patch - t_ready,
                "ready_to_resolved_s": t_resolved - t_ready,
                "prometheus_sees_breach_s": t_visible - t_ready,
                "detect_overhead_s": t_incident - t_visible - for_s,
                "incident_to_patch_s": t_patch - t_incident,
                "prometheus_sees_recovery_s": t_healthy - t_patch,
                "resolve_overhead_s": t_resolved - t_healthy - VERIFY_S,
            }
            row["operator_overhead_s"] = row["detect_overhead_s"] + row["incident_to_patch_s"]
            rows.append(row)
            print(f"run {i}: " + "  ".join(f"{k}={v:.2f}" for k, v in row.items() if k != "run"), flush=True)
            b.core.delete_namespace(ns)  # while the operator runs, so it releases its finalizers
        for i in range(runs):  # ...and wait for that before stopping it
            gone = f"bench-{stamp}-{i}"
            wait(
                f"namespace {gone} deleted",
                lambda gone=gone: all(n.metadata.name != gone for n in b.core.list_namespace().items),
                timeout=60,
            )
    finally:
        b.stop_all()
    # The operator's own processing time for the cycle that acted (readings -> decision -> patch -> record),
    # from its log; everything else above is the policy's for/interval and Prometheus' scrape/rate windows.
    acted = [
        float(line.rsplit(" took ", 1)[1].rstrip("s\n"))
        for line in (RESULTS / "operator.log").read_text().splitlines()
        if "cycle with an action took" in line
    ]
    for row, took in zip(rows, acted, strict=False):
        row["operator_cycle_with_action_s"] = took
    keys = [k for k in rows[0] if k != "run"]
    summary = {
        k: {
            "p50": statistics.median([r[k] for r in rows]),
            "p95": _p95([r[k] for r in rows]),
            "max": max(r[k] for r in rows),
        }
        for k in keys
    }
    result = {
        "kind": "latency",
        "at": datetime.now(UTC).isoformat(),
        "runs": rows,
        "summary": summary,
        "settings": {
            "for_s": for_s,
            "interval_s": interval_s,
            "rollout_watch": rollout_watch,
            "verify_for_s": VERIFY_S,
            "rate_window": WINDOW,
            "scrape_interval_s": 1.0,
            "poll_s": POLL,
        },
    }
    _write(kind, result)
    print(
        f"\n{'measure':32} {'p50':>7} {'p95':>7} {'max':>7}   (seconds; for={for_s:g}s interval={interval_s:g}s "
        f"verifyFor={VERIFY_S:g}s scrape=1s rate[{WINDOW}] rolloutWatch={rollout_watch})"
    )
    for k, v in summary.items():
        print(f"{k:32} {v['p50']:7.2f} {v['p95']:7.2f} {v['max']:7.2f}")
    return result


def fastlane(runs: int) -> dict[str, Any]:
    """The same bad rollout at interval 10s and for 0s, with the rollout watch on and off, in one run."""
    on = latency(runs, 10.0, 0.0, {"window": "2m", "interval": "1s"}, kind="fastlane-on")
    off = latency(runs, 10.0, 0.0, {"window": "0s"}, kind="fastlane-off")
    key = "ready_to_patch_s"
    result = {
        "kind": "fastlane",
        "at": datetime.now(UTC).isoformat(),
        "runs": runs,
        "watch_on": on["summary"][key],
        "watch_off": off["summary"][key],
        "ratio_p50": off["summary"][key]["p50"] / on["summary"][key]["p50"],
    }
    _write("fastlane", result)
    print(f"\nbad pods Ready -> rollback patch, interval 10s, for 0s, {runs} runs each (seconds)")
    print(f"{'rollout watch':16} {'p50':>7} {'p95':>7} {'max':>7}")
    for label, row in (("on (1s for 2m)", result["watch_on"]), ("off", result["watch_off"])):
        print(f"{label:16} {row['p50']:7.2f} {row['p95']:7.2f} {row['max']:7.2f}")
    print(f"p50 ratio off/on: {result['ratio_p50']:.1f}x")
    return result


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def soak(minutes: float, namespaces: int, per_namespace: int, policies_per_namespace: int) -> dict[str, Any]:
    b = Bench()
    stamp = datetime.now(UTC).strftime("%H%M%S")
    names = [f"soak-{stamp}-{i}" for i in range(namespaces)]
    b.simulator("soak-simulator", "soak-sim.json")
    for ns in names:
        b.namespace(ns)
        for j in range(per_namespace):
            b.deployment(ns, f"svc-{j}", replicas=1)
        for p in range(policies_per_namespace):
            # each policy selects its share of the Deployments by name
            members = [f"svc-{j}" for j in range(per_namespace) if j % policies_per_namespace == p]
            selector = {"matchExpressions": [{"key": "app", "operator": "In", "values": members}]}
            b.policy(ns, f"group-{p}", selector, interval="10s", for_="30s")
    total = namespaces * per_namespace
    print(f"soak: {total} Deployments, {namespaces * policies_per_namespace} policies; operator starting", flush=True)
    op = b.operator("soak-operator", names)
    samples = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < minutes * 60:
            if op.poll() is not None:
                raise SystemExit("bench: the operator exited during the soak; see bench/results/soak-operator.log")
            samples.append({"t_s": round(time.monotonic() - start, 1), "rss_mib": round(_rss_kib(op.pid) / 1024, 1)})
            print(f"  t={samples[-1]['t_s']:7.0f}s  rss={samples[-1]['rss_mib']:6.1f} MiB", flush=True)
            time.sleep(30)
        writes = sum(1 for line in (RESULTS / "soak-operator.log").read_text().splitlines() if "ERROR" in line)
    finally:
        for ns in names:  # while the operator still runs, so it releases its finalizers
            b.core.delete_namespace(ns)
        time.sleep(10)
        b.stop_all()
    after_warmup = [s for s in samples if s["t_s"] >= 120] or samples
    result = {
        "kind": "soak",
        "at": datetime.now(UTC).isoformat(),
        "deployments": total,
        "policies": namespaces * policies_per_namespace,
        "minutes": minutes,
        "samples": samples,
        "error_log_lines": writes,
        "rss_mib": {
            "first": samples[0]["rss_mib"],
            "after_warmup": after_warmup[0]["rss_mib"],
            "last": samples[-1]["rss_mib"],
            "max": max(s["rss_mib"] for s in samples),
        },
    }
    _write("soak", result)
    print(
        f"\nsoak: {total} Deployments / {result['policies']} policies for {minutes:g} min: RSS "
        f"{result['rss_mib']['after_warmup']} MiB after warm-up -> {result['rss_mib']['last']} MiB at the end "
        f"(max {result['rss_mib']['max']}); {writes} ERROR log lines"
    )
    return result


BATCH_SELECT = 'namespace="{{ namespace }}",deployment=~"{{ deployments }}"'
BATCH_BY = "sum by (namespace, deployment)"
BATCHED_SIGNALS = [
    {
        "name": "error-rate",
        "prometheus": {
            "batch": {},
            "query": f'({BATCH_BY} (rate(http_requests_total{{{BATCH_SELECT},code="500"}}[{WINDOW}])) '
            f"or {BATCH_BY} (rate(http_requests_total{{{BATCH_SELECT}}}[{WINDOW}])) * 0) "
            f"/ {BATCH_BY} (rate(http_requests_total{{{BATCH_SELECT}}}[{WINDOW}]))",
        },
        "breachWhen": {"above": THRESHOLD},
        "for": "30s",
    },
    {
        "name": "traffic",
        "prometheus": {"batch": {}, "query": f"{BATCH_BY} (rate(http_requests_total{{{BATCH_SELECT}}}[{WINDOW}]))"},
        "breachWhen": {"below": 0.1},
        "for": "30s",
    },
]


# The same two signals, one query per target (what a query that cannot be batched costs).
PER_TARGET_SIGNALS = [
    {
        "name": "error-rate",
        "prometheus": {"query": RATIO},
        "breachWhen": {"above": THRESHOLD},
        "for": "30s",
    },
    {
        "name": "traffic",
        "prometheus": {"query": f"sum(rate(http_requests_total{{{SELECT}}}[{WINDOW}]))"},
        "breachWhen": {"below": 0.1},
        "for": "30s",
    },
]


def _scrape(url: str) -> dict[str, float]:
    """A Prometheus text exposition as {series: value} (enough for counters and histograms)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _apiserver_requests(b: Bench) -> dict[str, float]:
    raw = subprocess.run(
        ["kubectl", "get", "--raw", "/metrics"], env=b.env, capture_output=True, text=True, check=True
    ).stdout
    by_verb: dict[str, float] = {}
    for line in raw.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="' in line:
            labels, _, value = line.rpartition(" ")
            verb = labels.split('verb="', 1)[1].split('"', 1)[0]
            by_verb[verb] = by_verb.get(verb, 0.0) + float(value)
    return by_verb


def scale(
    deployments: int,
    layouts: list[int],
    minutes: float,
    soak_minutes: float = 0.0,
    per_target: bool = False,
    bad_rollouts: int = 3,
) -> list[dict[str, Any]]:
    """N Deployments (one replica each), created once, then each layout in turn: P policies with two batched
    (or per-target) signals, interval 10s, a fresh operator, `minutes` measured, then `bad_rollouts` bad
    rollouts timed one after the other, each on its own Deployment (where in the interval the breach shows
    moves one figure by up to an interval: their median compares). The last layout keeps running to
    `soak_minutes` (if longer) with its RSS sampled, before its bad rollouts."""
    if deployments < bad_rollouts * len(layouts):
        raise SystemExit(
            f"bench: {bad_rollouts} bad rollouts in each of {len(layouts)} layouts need as many Deployments"
        )
    b = Bench()
    ns = f"scale-{datetime.now(UTC):%H%M%S}"
    b.namespace(ns)
    t0 = time.monotonic()
    for i in range(deployments):
        labels = {"fleet": ns, **{f"group-of-{p}": f"g{i % p}" for p in layouts}}
        b.deployment(ns, f"svc-{i:05d}", replicas=1, labels=labels)
        if i and i % 1000 == 0:
            print(f"  created {i} Deployments ({time.monotonic() - t0:.0f} s)", flush=True)

    def settled() -> bool:  # every Deployment has its first revision: nothing left to wake the loops
        items = b.apps.list_namespaced_deployment(ns).items
        return (
            sum(1 for d in items if (d.metadata.annotations or {}).get("deployment.kubernetes.io/revision"))
            == deployments
        )

    wait("every Deployment at revision 1", settled, timeout=1200)
    print(f"  {deployments} Deployments created and settled in {time.monotonic() - t0:.0f} s", flush=True)
    # Pods from watch caches; 8 scrape targets, so no scrape of 10,000 Pods' series nears its 1 s timeout.
    b.simulator("scale-simulator", "scale-sim.json", "--tick", "1", "--shards", "8")
    results = []
    try:
        for n, policies in enumerate(layouts):
            last = n == len(layouts) - 1
            window = max(minutes, soak_minutes) if last else minutes
            signals = PER_TARGET_SIGNALS if per_target else BATCHED_SIGNALS
            bad = [f"svc-{n * bad_rollouts + k:05d}" for k in range(bad_rollouts)]
            results.append(_layout(b, ns, deployments, policies, window, bad, signals))
    finally:
        b.core.delete_namespace(ns)
        b.stop_all()
    _scale_table(results)
    return results


def _scale_table(results: list[dict[str, Any]]) -> None:
    print(
        f"\n{'layout':>22} {'rounds/10s':>10} {'mean s':>7} {'p95<= s':>7} {'max<= s':>7} {'queries':>7} "
        f"{'errors':>6} {'LISTs':>5} {'RSS first/last/max MiB':>23} {'CPU s':>6}  bad rollouts s (median)"
    )
    for r in results:
        calls = r["operator_kube_calls_per_round"]
        lists = sum(v for k, v in calls.items() if k.startswith("list_"))
        rss = r["operator_rss_mib"]
        layout = f"{r['policies']} x {r['deployments'] // r['policies']}, {r['signals'].split(' ', 1)[1]}"
        print(
            f"{layout:>22} {r['rounds_per_policy_per_10s']:>10} {r['round_mean_s']:>7} {r['round_p95_le_s']:>7} "
            f"{r['round_max_le_s']:>7} {r['queries_per_round']:>7} {r['query_errors']:>6g} {lists:>5} "
            f"{rss['first']:>7}/{rss['last']}/{rss['max']:<7} {r['operator_cpu_s']:>6} "
            f"{' '.join(map(str, r['bad_rollouts_s']))} ({r['bad_rollout_to_rollback_s']})"
        )
    print("\nbad rollouts, seconds from bad Pods Ready (median of each stage; Incident times are whole seconds)")
    stages = list(results[0]["bad_rollout_stages_s"][0])
    print(f"{'layout':>22} " + " ".join(f"{k:>24}" for k in stages) + f" {'failed scrapes':>15} {'slowest':>8}")
    for r in results:
        layout = f"{r['policies']} x {r['deployments'] // r['policies']}"
        medians = [statistics.median([s[k] for s in r["bad_rollout_stages_s"]]) for k in stages]
        scrapes = r["simulator_scrapes"]
        print(
            f"{layout:>22} "
            + " ".join(f"{m:>24.2f}" for m in medians)
            + f" {scrapes['failed']:>7g} of {scrapes['total']:<5g} {scrapes['slowest_s']:>7g}s"
        )


def _layout(
    b: Bench, ns: str, deployments: int, policies: int, minutes: float, bad: list[str], signals: list[dict[str, Any]]
) -> dict[str, Any]:
    def selector(p: int) -> dict[str, Any]:
        if policies == 1:
            return {"matchLabels": {"fleet": ns}}
        return {"matchLabels": {f"group-of-{policies}": f"g{p}"}}

    names = [f"layout-{policies}-{p}" for p in range(policies)]
    for p, name in enumerate(names):
        body = {
            "apiVersion": "hemostat.dev/v1alpha1",
            "kind": "MitigationPolicy",
            "metadata": {"name": name},
            "spec": {
                "target": {"selector": selector(p)},
                "interval": "10s",
                "signals": signals,
                "mitigation": {"steps": [{"rollback": {}}], "rolloutWatch": {"window": "0s"}},
            },
        }
        b.custom.create_namespaced_custom_object("hemostat.dev", "v1alpha1", ns, "mitigationpolicies", body)
    batched = "batch" in signals[0]["prometheus"]
    port = 18000 + os.getpid() % 1000
    t_start = time.monotonic()
    op = b.operator(f"scale-operator-{policies}", [ns], metrics_port=port)
    metrics = f"http://127.0.0.1:{port}/metrics"
    samples: list[dict[str, float]] = []
    try:

        def evaluated() -> bool:
            items = b.custom.list_namespaced_custom_object("hemostat.dev", "v1alpha1", ns, "mitigationpolicies")
            mine = [i for i in items["items"] if i["metadata"]["name"] in names]
            return all((i.get("status") or {}).get("matchedTargets") for i in mine)

        wait("every policy evaluated once", evaluated, timeout=900)
        first_round_s = time.monotonic() - t_start
        print(f"  {policies} policies: every policy evaluated {first_round_s:.0f} s after the operator started")
        time.sleep(15)  # past the first rounds (woken by the revisions the operator saw first)
        first, api_first = _scrape(metrics), _apiserver_requests(b)
        start = time.monotonic()
        while time.monotonic() - start < minutes * 60:
            if op.poll() is not None:
                raise SystemExit(f"bench: the operator exited; see bench/results/scale-operator-{policies}.log")
            samples.append({"t_s": round(time.monotonic() - start, 1), "rss_mib": round(_rss_kib(op.pid) / 1024, 1)})
            print(f"    t={samples[-1]['t_s']:6.0f}s  rss={samples[-1]['rss_mib']:6.1f} MiB", flush=True)
            time.sleep(min(30.0, max(0.0, minutes * 60 - (time.monotonic() - start))))
        last, api_last = _scrape(metrics), _apiserver_requests(b)
        samples.append({"t_s": round(time.monotonic() - start, 1), "rss_mib": round(_rss_kib(op.pid) / 1024, 1)})
        cpu = _cpu_seconds(op.pid)
        stages = [_bad_rollout_to_rollback(b, ns, name) for name in bad]
        patches = [s["rollback_patch"] for s in stages]
        scrapes = _scrape_health(b, time.monotonic() - start)
    finally:
        for name in names:  # while the operator runs, so it releases its finalizers
            b.custom.delete_namespaced_custom_object("hemostat.dev", "v1alpha1", ns, "mitigationpolicies", name)
        wait(
            "the policies deleted",
            lambda: (
                not any(
                    i["metadata"]["name"] in names
                    for i in b.custom.list_namespaced_custom_object(
                        "hemostat.dev", "v1alpha1", ns, "mitigationpolicies"
                    )["items"]
                )
            ),
            timeout=300,
        )
        os.killpg(op.pid, signal.SIGTERM)
        op.wait(30)

    def delta(prefix: str) -> float:
        return sum(v for k, v in last.items() if k.startswith(prefix)) - sum(
            v for k, v in first.items() if k.startswith(prefix)
        )

    rounds = delta("hemostat_evaluation_duration_seconds_count")
    merged: dict[float, float] = {}
    for k in last:
        if k.startswith("hemostat_evaluation_duration_seconds_bucket"):
            le = float(k.split('le="')[1].split('"')[0])
            merged[le] = merged.get(le, 0.0) + last[k] - first.get(k, 0.0)

    def quantile(q: float) -> float:
        for le, count in sorted(merged.items()):
            if count >= q * rounds:
                return le
        return float("inf")

    seconds = minutes * 60
    result = {
        "kind": "scale",
        "at": datetime.now(UTC).isoformat(),
        "deployments": deployments,
        "policies": policies,
        "signals": "2 batched" if batched else "2 per target",
        "interval_s": 10,
        "minutes": minutes,
        "first_round_after_start_s": round(first_round_s, 1),
        "rounds": rounds,
        # each policy runs its own loop: at 10 s per policy, this is 1.0 when every round fits the interval
        "rounds_per_policy_per_10s": round(rounds / policies / (seconds / 10), 2),
        "round_mean_s": round(delta("hemostat_evaluation_duration_seconds_sum") / rounds, 3) if rounds else None,
        "round_p50_le_s": quantile(0.5),
        "round_p95_le_s": quantile(0.95),
        "round_max_le_s": quantile(1.0),
        "queries_per_round": round(delta("hemostat_signal_query_duration_seconds_count") / rounds, 2)
        if rounds
        else None,
        "query_errors": delta("hemostat_signal_query_errors_total"),  # timeouts, refusals, bad answers
        # the operator's own calls, by client method: list_* are LISTs
        "operator_kube_calls_per_round": {
            k.split('method="')[1].split('"')[0]: round((v - first.get(k, 0.0)) / rounds, 2)
            for k, v in sorted(last.items())
            if k.startswith("hemostat_kube_requests_total") and rounds and v > first.get(k, 0.0)
        },
        # everything the API server served meanwhile (controllers, kwok, the simulator included)
        "api_server_requests_per_round": {
            v: round((api_last[v] - api_first.get(v, 0)) / rounds, 2)
            for v in sorted(api_last)
            if rounds and api_last[v] > api_first.get(v, 0)
        },
        "operator_rss_mib": {
            "first": samples[0]["rss_mib"],
            "last": samples[-1]["rss_mib"],
            "max": max(s["rss_mib"] for s in samples),
        },
        "rss_samples": samples,
        "operator_cpu_s": cpu,
        # the simulator's exposition as Prometheus scraped it over the layout (bad rollouts included)
        "simulator_scrapes": scrapes,
        # one bad rollout among them, bad Pods Ready -> rollback patch (interval 10s, no rollout watch)
        "bad_rollout_to_rollback_s": statistics.median(patches),
        "bad_rollouts_s": patches,
        "bad_rollout_stages_s": stages,
    }
    _write("scale", result)
    print(
        f"\nscale: {deployments} Deployments under {policies} policies, {result['signals']} signals, interval 10s, "
        f"{minutes:g} min"
    )
    for key, value in result.items():
        if key not in ("kind", "at", "rss_samples"):
            print(f"  {key:30} {value}")
    return result


def _bad_rollout_to_rollback(b: Bench, ns: str, name: str) -> dict[str, Any]:
    """One bad rollout, bad Pods Ready -> the operator's rollback patch, split into stages (seconds from Ready):
    Prometheus shows the breach (the simulator and the scrape), the policy's first round that read it (the
    Incident's startedAt, the breach clock), the Incident's detection (`for` and rounds) and the patch.
    The Incident's times are whole seconds (the API's timestamp precision)."""
    bad = {"sim.hemostat.dev/error-rate": "0.5"}
    template = {"metadata": {"annotations": bad}, "spec": {"containers": [{"name": "app", "image": "bad:v2"}]}}
    b.apps.patch_namespaced_deployment(name, ns, {"spec": {"template": template}})

    def revision(obj: Any) -> str | None:
        return (obj.metadata.annotations or {}).get("deployment.kubernetes.io/revision")

    probes = {
        "ready": lambda: any(
            revision(rs) == "2" and (rs.status.ready_replicas or 0) >= 1
            for rs in b.apps.list_namespaced_replica_set(ns, label_selector=f"app={name}").items
        ),
        "visible": lambda: (b.ratio(ns, name) or 0) > THRESHOLD,
        "patch": lambda: revision(b.apps.read_namespaced_deployment(name, ns)) == "3",
    }
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while "patch" not in seen:  # one loop for all stages, so a slow one cannot delay another's timestamp
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: no rollback of {ns}/{name} within 300 s (stages seen: {sorted(seen)})")
        for stage, probe in probes.items():
            if stage not in seen and probe():
                seen[stage] = time.time()
        time.sleep(POLL)
    ready = seen.get("ready", seen["patch"])  # a Ready missed between polls counts from the patch (0 s)

    def recorded() -> dict[str, Any] | None:  # the record follows the patch (written after it, from what it did)
        mine = [i for i in b.incidents(ns) if i["spec"]["target"]["name"] == name]
        return next((i for i in mine if i.get("status", {}).get("revision") == 2), None)

    record_deadline = time.monotonic() + 30
    while (incident := recorded()) is None:
        if time.monotonic() > record_deadline:
            raise SystemExit(f"bench: {ns}/{name} was rolled back, but no Incident records revision 2 within 30 s")
        time.sleep(POLL)
    status = incident["status"]

    def at(text: str) -> float:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() - ready

    return {
        "prometheus_shows_breach": round(seen.get("visible", seen["patch"]) - ready, 2),
        "breach_clock_started": round(at(status["startedAt"]), 2),
        "detected": round(at(status["detectedAt"]), 2),
        "rollback_patch": round(seen["patch"] - ready, 2),
    }


def _scrape_health(b: Bench, seconds: float) -> dict[str, float]:
    """Failed scrapes and the slowest scrape of the simulator (its job label) over the last `seconds`."""
    window, job = f"{int(seconds) + 1}s", f'job="{TARGETS_JOB}"'
    queries = {
        "failed": f"max(count_over_time(up{{{job}}}[{window}]) - sum_over_time(up{{{job}}}[{window}]))",
        "total": f"max(count_over_time(up{{{job}}}[{window}]))",
        "slowest_s": f"max(max_over_time(scrape_duration_seconds{{{job}}}[{window}]))",
    }
    values = {key: b.query(query, timeout=30) for key, query in queries.items()}
    return {key: float("nan") if v is None else round(v, 3) for key, v in values.items()}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def _write(kind: str, result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--runs", type=int, default=10)
    fast = sub.add_parser("fastlane")
    fast.add_argument("--runs", type=int, default=5)
    sc = sub.add_parser("scale")
    sc.add_argument("--deployments", type=int, default=1000)
    sc.add_argument("--policies", type=int, nargs="+", default=[1], help="layouts, run in turn on one fleet")
    sc.add_argument("--minutes", type=float, default=2, help="measured per layout")
    sc.add_argument("--per-target", action="store_true", help="signals queried once per target, not batched")
    sc.add_argument("--soak-minutes", type=float, default=0, help="the last layout runs this long, RSS sampled")
    sc.add_argument("--bad-rollouts", type=int, default=3, help="timed one after the other per layout")
    sk = sub.add_parser("soak")
    sk.add_argument("--minutes", type=float, default=30)
    sk.add_argument("--namespaces", type=int, default=10)
    sk.add_argument("--per-namespace", type=int, default=30)
    sk.add_argument("--policies-per-namespace", type=int, default=3)
    args = parser.parse_args()
    if args.cmd == "latency":
        latency(args.runs)
    elif args.cmd == "fastlane":
        fastlane(args.runs)
    elif args.cmd == "scale":
        scale(args.deployments, args.policies, args.minutes, args.soak_minutes, args.per_target, args.bad_rollouts)
    else:
        soak(args.minutes, args.namespaces, args.per_namespace, args.policies_per_namespace)


if __name__ == "__main__":
    main()
