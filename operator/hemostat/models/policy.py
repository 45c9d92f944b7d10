"""The MitigationPolicy resource: what to watch, when it is bad, what to do.

Cross-field rules are written twice on purpose: as CEL on the schema (so the
API server rejects a bad policy at `kubectl apply`) and as pydantic validators
(so a policy that slipped past, e.g. stored before a CRD upgrade, becomes a
precise `Valid=False` condition instead of a crash).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from ..workloads import TargetKind
from .common import (
    Condition,
    DnsLabel,
    Duration,
    LabelSelector,
    Model,
    ObjectName,
    SecretKeyRef,
    Severity,
    Timestamp,
    bounded_duration,
)

KIND = "MitigationPolicy"
PLURAL = "mitigationpolicies"

Threshold = Annotated[float, Field(ge=0)]
Interval = bounded_duration("1s", "1h")
UpToADay = bounded_duration(None, "24h")
UpToAWeek = bounded_duration(None, "168h")
# Targets listed in a policy's status (also bounded in bytes by the cycle, see plan.STATUS_BUDGET).
# Past either limit the policy says so (condition Degraded, reason TooManyTargets).
MAX_TARGETS_IN_STATUS = 1000


def _cel(rule: str, message: str) -> dict[str, str]:
    return {"rule": rule, "message": message}


def _exactly_one(model: Model, fields: tuple[str, ...]) -> None:
    present = [f for f in fields if getattr(model, f) is not None]
    if len(present) != 1:
        wire = ", ".join(type(model).model_fields[f].alias or f for f in fields)
        raise ValueError(f"exactly one of {wire} must be set")


_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
_MATCHER_KEYS = "matchers keys must be Prometheus label names"
LabelName = Annotated[str, Field(pattern=_LABEL_NAME, max_length=128)]


class Batch(Model):
    """One query answers for every target: one series per Deployment, told apart by these labels."""

    deployment_label: LabelName = Field("deployment", description="Label holding the Deployment's name.")
    namespace_label: LabelName | None = Field(
        "namespace", description="Label holding its namespace; series of other namespaces are ignored."
    )


class PrometheusQuery(Model):
    """An instant query; {{ namespace }}, {{ deployment }}, {{ policy }}, {{ signal }} are substituted.

    With `batch`, the query runs once per round for all targets and `{{ deployment }}` is not
    available; `{{ deployments }}` is a regex matching exactly the round's targets.
    """

    query: Annotated[str, Field(min_length=1, max_length=4096)]
    url: Annotated[str, Field(pattern=r"^https?://", max_length=2048)] | None = Field(
        None, description="Prometheus base URL for this signal; defaults to the operator's --prometheus-url."
    )
    batch: Batch | None = Field(
        None, description="Run once for all targets and split the answer by label (the scalable form)."
    )


class BreachWhen(Model):
    """The signal breaches when its value is above and/or below these bounds."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [_cel("has(self.above) || has(self.below)", "set above, below, or both")]
        }
    )
    above: Threshold | None = None
    below: Threshold | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> BreachWhen:
        if self.above is None and self.below is None:
            raise ValueError("set above, below, or both")
        return self


class ByRevision(Model):
    """The same signal split by revision, for attribution's per-revision contrast.

    Same URL and batch settings as the signal's query (and the same placeholders); the answer
    holds one series per revision (per Deployment and revision when batched), told apart by
    `revisionLabel`, whose value is the ReplicaSet's pod-template-hash.
    """

    query: Annotated[str, Field(min_length=1, max_length=4096)]
    revision_label: LabelName = Field("pod_template_hash", description="Label holding the pod-template-hash.")


class AlertSignal(Model):
    """An alert Alertmanager sends to the operator's receiver (chart alertmanager.enabled), as a signal.

    Its value for a target is how many matching alerts fire now: one named `name` whose labels hold every
    `matchers` pair and name the target (its namespace and Deployment in the two labels below). A firing
    alert is a breach; resolved, or past its endsAt, it no longer counts.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(f"!has(self.matchers) || self.matchers.all(k, k.matches(r'{_LABEL_NAME}'))", _MATCHER_KEYS)
            ]
        }
    )
    name: Annotated[str, Field(min_length=1, max_length=253, description="The alert's alertname.")]
    matchers: dict[Annotated[str, Field(max_length=128)], Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=16, description="Labels the alert must have, with these values."
    )
    deployment_label: LabelName = Field("deployment", description="Label holding the target's name.")
    namespace_label: LabelName = Field("namespace", description="Label holding its namespace.")

    @model_validator(mode="after")
    def _keys(self) -> AlertSignal:
        bad = sorted(k for k in self.matchers if not re.fullmatch(_LABEL_NAME, k))
        if bad:
            raise ValueError(f"{_MATCHER_KEYS}: {', '.join(bad)}")
        return self


FIRING = BreachWhen(above=0)  # an alert signal's bounds: one alert firing or more
_ALERT_ONLY = "an alert signal breaches while the alert fires: breachWhen and byRevision are for prometheus"


class Signal(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.prometheus) != has(self.alert)", "exactly one of prometheus, alert must be set"),
                _cel("has(self.alert) || has(self.breachWhen)", "a prometheus signal needs breachWhen"),
                _cel("!has(self.alert) || (!has(self.breachWhen) && !has(self.byRevision))", _ALERT_ONLY),
            ]
        }
    )
    name: DnsLabel
    prometheus: PrometheusQuery | None = None
    alert: AlertSignal | None = None
    by_revision: ByRevision | None = Field(
        None, description="The signal split by revision: lets attribution compare the new revision with the old."
    )
    breach_when: BreachWhen | None = None
    for_: UpToADay = Field(
        "0s", alias="for", description="How long the signal must breach continuously before it counts."
    )
    on_no_data: Literal["ignore", "breach"] = Field(
        "ignore", description="What an empty or NaN result means: ignore (inconclusive) or breach."
    )

    @model_validator(mode="after")
    def _one_source(self) -> Signal:
        _exactly_one(self, ("prometheus", "alert"))
        if self.alert is None and self.breach_when is None:
            raise ValueError("a prometheus signal needs breachWhen")
        if self.alert is not None and (self.breach_when is not None or self.by_revision is not None):
            raise ValueError(_ALERT_ONLY)
        return self

    @property
    def bounds(self) -> BreachWhen:
        return self.breach_when or FIRING


class SeverityRule(Model):
    """First matching rule wins; no match gives spec.defaultSeverity."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [_cel("has(self.above) || has(self.below)", "set above, below, or both")]
        }
    )
    signal: DnsLabel
    above: Threshold | None = None
    below: Threshold | None = None
    level: Severity

    @model_validator(mode="after")
    def _one_bound(self) -> SeverityRule:
        if self.above is None and self.below is None:
            raise ValueError("set above, below, or both")
        return self


class RollbackStep(Model):
    canary_action: Literal["scaleToZero", "rollback"] = Field(
        "scaleToZero",
        description="For a canary Deployment (label hemostat.dev/canary-of): scale it to zero or roll it back.",
    )


class FeatureFlagRef(Model):
    """An OpenFeature Operator FeatureFlag (core.openfeature.dev) and a flag key in it."""

    name: ObjectName
    flag: Annotated[str, Field(min_length=1, max_length=253)]


class ConfigMapFlagRef(Model):
    """A flag in flagd JSON under a ConfigMap key; the ConfigMap must be labelled hemostat.dev/flag-source=true."""

    name: ObjectName
    key: Annotated[str, Field(min_length=1, max_length=253)] = "flags.flagd.json"
    flag: Annotated[str, Field(min_length=1, max_length=253)]


class DisableFlagStep(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "[has(self.featureFlag), has(self.configMap)].filter(x, x).size() == 1",
                    "exactly one of featureFlag, configMap must be set",
                )
            ]
        }
    )
    feature_flag: FeatureFlagRef | None = None
    config_map: ConfigMapFlagRef | None = None
    off_variant: Annotated[str, Field(max_length=253)] | None = Field(
        None, description="Variant to force; default: the variant whose value is false, or one named 'off'."
    )

    @model_validator(mode="after")
    def _one_source(self) -> DisableFlagStep:
        _exactly_one(self, ("feature_flag", "config_map"))
        return self


class ScaleUpStep(Model):
    factor: Annotated[float, Field(gt=1, le=10)] = 2.0
    max_replicas: Annotated[int, Field(ge=1, le=10000)]


class RestartStep(Model):
    """Restart the target's Pods as `kubectl rollout restart` does (no settings)."""


# The step kinds, as their fields on MitigationStep are named on the wire; each has its plug-in in
# actions/ (steps.py, a test keeps the two equal). Adding a step: its name here, its settings model
# and its field below.
StepName = Literal["rollback", "disableFlag", "scaleUp", "restart"]
STEP_KINDS: tuple[str, ...] = get_args(StepName)


class MitigationStep(Model):
    """One rung of the escalation ladder: exactly one step kind is set."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "[" + ", ".join(f"has(self.{k})" for k in STEP_KINDS) + "].filter(x, x).size() == 1",
                    f"exactly one of {', '.join(STEP_KINDS)} must be set",
                )
            ]
        }
    )
    rollback: RollbackStep | None = None
    disable_flag: DisableFlagStep | None = None
    scale_up: ScaleUpStep | None = None
    restart: RestartStep | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MitigationStep:
        _exactly_one(self, tuple(_STEP_FIELDS.values()))
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind, field in _STEP_FIELDS.items() if getattr(self, field) is not None)

    @property
    def config(self) -> Model:
        """The settings of the one kind that is set."""
        config: Model = getattr(self, _STEP_FIELDS[self.kind])
        return config


# step name (wire) -> MitigationStep attribute
_STEP_FIELDS = {(f.alias or name): name for name, f in MitigationStep.model_fields.items()}
assert tuple(_STEP_FIELDS) == STEP_KINDS, f"MitigationStep's fields {tuple(_STEP_FIELDS)} are not StepName"


Verdict = Literal["deploy", "traffic", "dependency", "global", "dataQuality", "unknown"]
VERDICTS: tuple[str, ...] = get_args(Verdict)


class VerdictSteps(Model):
    """Which of the ladder's step kinds may run for each verdict; the others are skipped, saying why.
    dataQuality never acts; unknown holds (see `unknown`)."""

    deploy: list[StepName] = Field(["rollback", "disableFlag", "scaleUp", "restart"], max_length=len(STEP_KINDS))
    traffic: list[StepName] = Field(["scaleUp"], max_length=len(STEP_KINDS))
    dependency: list[StepName] = Field(["disableFlag"], max_length=len(STEP_KINDS))
    global_: list[StepName] = Field([], alias="global", max_length=len(STEP_KINDS))


class UnknownHold(Model):
    """What an `unknown` verdict does: hold (nothing changed, people told), then act or escalate."""

    hold: bounded_duration(None, "1h") = Field("2m", description="How long to hold for better evidence.")
    then: Literal["act", "escalate"] = Field(
        "escalate", description="When the hold ends still unknown: act as for a deploy, or escalate to a person."
    )


class TrafficJump(Model):
    """A query for the request rate now divided by its recent baseline, e.g.
    `sum(rate(http_requests_total[1m])) / sum(rate(http_requests_total[30m] offset 1m))`."""

    prometheus: PrometheusQuery
    jump: Annotated[float, Field(gt=1, le=1000)] = Field(3.0, description="A ratio this high or more is a surge.")


class Attribution(Model):
    """Is it the deploy? Before any step, each breach gets a verdict from the evidence."""

    mode: Literal["enforce", "observe", "off"] = Field(
        "enforce", description="enforce: the ladder follows the verdict; observe: record it, act as without it."
    )
    steps: VerdictSteps = VerdictSteps()
    unknown: UnknownHold = UnknownHold()
    traffic: TrafficJump | None = Field(None, description="Without it, a surge is not told apart.")


class RolloutWatch(Model):
    """After each rollout a target is evaluated every `interval` for `window`, besides the regular interval:
    a bad rollout is the moment that matters, so detection waits for Prometheus (and `for`), not the clock."""

    window: bounded_duration(None, "1h") = Field("2m", description="How long after a new revision (0s: off).")
    interval: bounded_duration("500ms", "1m") = Field("1s", description="How often during that window.")


class Mitigation(Model):
    steps: Annotated[list[MitigationStep], Field(max_length=10)] = []
    rollout_watch: RolloutWatch = RolloutWatch()
    verify_for: UpToADay = Field("2m", description="Healthy this long after a step means mitigated.")
    rollout_window: UpToAWeek = Field("1h", description="Only roll back revisions younger than this.")
    gitops: Literal["pause", "ignore", "skip"] = Field(
        "pause",
        description="A target a GitOps reconciler owns (Flux, Argo CD): pause it for that object in the same "
        "write as the step (pause), act and let it be (ignore), or never act on it (skip: the next step is tried).",
    )


class Approval(Model):
    """A person approves each step before it is taken: the Incident waits in phase AwaitingApproval with the
    planned change in its status (`hemostat incident approve|reject`)."""

    mode: Literal["none", "required"] = Field("none", description="required: every step waits for a person.")
    severities: Annotated[list[Severity], Field(max_length=4)] = Field(
        [], description="Only Incidents of these severities wait; empty: all of them."
    )
    timeout: UpToADay = Field("15m", description="No decision by then: the Incident escalates, nothing changed.")


class Guardrails(Model):
    cooldown: UpToADay = Field("10m", description="Minimum time between two actions on one target.")
    max_actions_per_hour: Annotated[int, Field(ge=0, le=100)] = 3
    dry_run: bool = Field(False, description="Record what would be done; change nothing.")
    paused: bool = Field(False, description="Evaluate and record, but take no action.")
    approval: Approval = Approval()


class Webhook(Model):
    secret_ref: SecretKeyRef
    format: Literal["json", "slack"] = "json"


class Cadence(Model):
    """Reminder cadence while an incident is open (defaults from the playbooks)."""

    model_config = ConfigDict(alias_generator=None)
    SEV1: Duration = "15m"
    SEV2: Duration = "30m"
    SEV3: Duration = "1h"
    SEV4: Duration | None = None


class PageReceiver(Model):
    """Where one escalation level's page goes. The Secret key holds the URL: PagerDuty's Events API v2
    (https://events.pagerduty.com/v2/enqueue), Opsgenie's alerts API (https://api.opsgenie.com/v2/alerts;
    its GenieKey goes in --webhook-destinations headers), or any receiver of JSON or Slack messages."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.format != 'pagerduty' || has(self.routingKeyRef)", "pagerduty needs routingKeyRef")
            ]
        }
    )
    secret_ref: SecretKeyRef
    format: Literal["pagerduty", "opsgenie", "json", "slack"] = "pagerduty"
    routing_key_ref: SecretKeyRef | None = Field(None, description="PagerDuty: the integration's routing key.")

    @model_validator(mode="after")
    def _routing_key(self) -> PageReceiver:
        if self.format == "pagerduty" and self.routing_key_ref is None:
            raise ValueError("pagerduty needs routingKeyRef")
        return self


class EscalationLevel(Model):
    after: UpToADay | None = Field(
        None,
        description="Page this level when the Incident is unacknowledged this long after detection "
        "(default, from the playbooks: level 0 at once, 1 at 15m, 2 at 30m, each later one 15m on).",
    )
    receiver: PageReceiver


class Paging(Model):
    """Pages beside the updates: SEV1/SEV2 Incidents page level 0, and each further level while nobody has
    acknowledged (`hemostat incident ack`); an ack is sent as an acknowledge, resolution as a resolve."""

    severities: Annotated[list[Severity], Field(max_length=4)] = ["SEV1", "SEV2"]
    levels: Annotated[list[EscalationLevel], Field(max_length=5)] = []


class Notify(Model):
    webhooks: Annotated[list[Webhook], Field(max_length=8)] = []
    cadence: Cadence = Cadence()
    pages: Paging = Paging()


class TrafficGate(Model):
    """A traffic query (e.g. requests per second) a target must reach before its signals can breach."""

    prometheus: PrometheusQuery
    at_least: Threshold = Field(description="Minimum value of the query; below it (or no data) nothing breaches.")


class Target(Model):
    kind: TargetKind = Field(
        "Deployment",
        description="What the selector picks: Deployments, or Argo Rollouts' Rollouts (argoproj.io/v1alpha1; "
        "the operator must run with --argo-rollouts).",
    )
    selector: LabelSelector


class MitigationPolicySpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.signals.all(s, self.signals.exists_one(t, t.name == s.name))",
                    "signal names must be unique",
                ),
                _cel(
                    "!has(self.severity) || self.severity.all(r, self.signals.exists(s, s.name == r.signal))",
                    "every severity rule must name a signal of this policy",
                ),
            ]
        }
    )
    target: Target
    interval: Interval = Field("30s", description="How often each target is evaluated (1s to 1h).")
    min_traffic: TrafficGate | None = Field(
        None, description="Below this much traffic no signal can breach: a few errors in a few requests are noise."
    )
    signals: Annotated[list[Signal], Field(min_length=1, max_length=16)]
    severity: Annotated[list[SeverityRule], Field(max_length=16)] = []
    default_severity: Severity = "SEV3"
    reopen_within: UpToADay = Field(
        "10m",
        description="A breach this soon after a target's Incident resolved, with no new revision since, "
        "reopens that Incident instead of opening another (0s: always a new one).",
    )
    mitigation: Mitigation = Mitigation()
    attribution: Attribution = Attribution()
    guardrails: Guardrails = Guardrails()
    notify: Notify = Notify()
    consecutive_error_limit: int = Field(
        4,
        ge=1,
        le=1000,
        description="After this many rounds in a row in which a query failed (timeout, unreachable, API error), "
        "people are told once: a Warning Event on the policy and a message to notify.webhooks. Nothing is ever "
        "done on no data.",
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> MitigationPolicySpec:
        names = [s.name for s in self.signals]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"signal names must be unique: {', '.join(dupes)}")
        unknown = sorted({r.signal for r in self.severity} - set(names))
        if unknown:
            raise ValueError(f"severity rules name unknown signals: {', '.join(unknown)}")
        return self


class TargetStatus(Model):
    """Per-Deployment evaluation state; persisted so `for` survives a restart."""

    name: ObjectName
    verdicts: dict[str, str] = Field({}, description="signal -> Healthy|Breaching|NoData|Error")
    breaching_since: dict[str, Timestamp] = Field({}, description="signal -> UTC time the breach began")
    revision: int | None = Field(None, description="The Deployment's current revision.")
    revision_since: Timestamp | None = Field(
        None, description="When that revision became current (first seen, else its ReplicaSet's last rollout change)."
    )
    incident: ObjectName | None = None
    error: Annotated[str, Field(max_length=512)] | None = Field(
        None, description="Why this target could not be evaluated or acted on in the last cycle."
    )
    ignored: Annotated[str, Field(max_length=512)] | None = Field(
        None,
        description="Markers or action-ledger entries on this target's objects that the last cycle did not trust "
        "(unparsable, unknown action, dated in the future) and ignored.",
    )


class MitigationPolicyStatus(Model):
    observed_generation: int | None = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = []
    matched_targets: int = 0
    open_incidents: int = 0
    last_evaluated: Timestamp | None = None
    consecutive_errors: int = Field(0, description="Rounds in a row in which a query failed.")
    queries_per_round: int = Field(
        0, description="Signal queries the last round sent: its cost in the operator's shared query slots."
    )
    targets: Annotated[list[TargetStatus], Field(max_length=MAX_TARGETS_IN_STATUS)] = []
