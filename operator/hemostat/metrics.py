"""The operator's own Prometheus metrics, on a registry the app owns (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

DURATIONS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.incidents_opened = Counter(
            "hemostat_incidents_opened", "Incidents opened by the operator", ["severity"], registry=r
        )
        self.open_incidents = Gauge(
            "hemostat_open_incidents", "Open incidents per policy", ["namespace", "policy"], registry=r
        )
        self.incidents = Gauge(
            "hemostat_incidents",
            "Open incidents per policy and phase (Detected, Mitigating, Monitoring, Escalated)",
            ["namespace", "policy", "phase"],
            registry=r,
        )
        self.signals_available = Gauge(
            "hemostat_policy_signals_available",
            "1 when every query of the policy's last cycle was answered (condition SignalsAvailable)",
            ["namespace", "policy"],
            registry=r,
        )
        self.ignored_records = Gauge(
            "hemostat_ignored_records",
            "Targets of the policy whose markers or action-ledger entries were not trusted in its last cycle "
            "(unparsable, unknown action, dated in the future; condition RecordsReadable)",
            ["namespace", "policy"],
            registry=r,
        )
        self.admission_policies_missing = Gauge(
            "hemostat_admission_policies_missing",
            "The chart's admission policies the operator relies on that are not in force (--admission-policies): "
            "while >0 it refuses people's mitigation requests or adopts fewer Incidents",
            registry=r,
        )
        self.alerts_received = Counter(
            "hemostat_alerts_received_total",
            "Alerts taken from Alertmanager's webhook, by state",
            ["state"],
            registry=r,
        )
        self.alerts_refused = Counter(
            "hemostat_alerts_refused_total",
            "Alertmanager webhook requests refused: 401 (token), 400 (malformed), 429 (queue full)",
            ["code"],
            registry=r,
        )
        self.is_leader = Gauge(
            "hemostat_is_leader", "1 when this replica acts (holds the Lease, or runs without election)", registry=r
        )
        self.actions = Counter(
            "hemostat_mitigation_actions",
            "Mitigation steps by step, action and result",
            ["step", "action", "result"],
            registry=r,
        )
        self.time_to_detect = Histogram(
            "hemostat_time_to_detect_seconds", "First breaching reading to incident", buckets=DURATIONS, registry=r
        )
        self.time_to_mitigate = Histogram(
            "hemostat_time_to_mitigate_seconds",
            "First breaching reading to applied mitigation",
            buckets=DURATIONS,
            registry=r,
        )
        self.time_to_resolve = Histogram(
            "hemostat_time_to_resolve_seconds", "First breaching reading to resolution", buckets=DURATIONS, registry=r
        )
        self.query_duration = Histogram(
            "hemostat_signal_query_duration_seconds", "Signal query latency", ["provider"], registry=r
        )
        self.query_wait = Histogram(
            "hemostat_signal_query_wait_seconds",
            "Time a namespace's signal queries waited for one of the operator's query slots (its fair share)",
            ["namespace"],
            registry=r,
        )
        self.query_errors = Counter(
            "hemostat_signal_query_errors", "Signal queries that failed", ["provider", "error_type"], registry=r
        )
        self.cycle_duration = Histogram(
            "hemostat_evaluation_duration_seconds",
            "One policy evaluation cycle",
            ["acted"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.kube_requests = Counter(
            "hemostat_kube_requests",
            "Kubernetes API calls the cycle made, by client method (list_* are LISTs)",
            ["method"],
            registry=r,
        )
        self.last_cycle = Gauge(
            "hemostat_last_evaluation_timestamp_seconds", "When any policy evaluation last completed", registry=r
        )

    def serve(self, port: int, address: str) -> None:
        start_http_server(port, addr=address, registry=self.registry)
