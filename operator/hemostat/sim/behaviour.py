"""Pure model of the simulated traffic: no I/O, no clock, no randomness.

Two separate steps, so new effects can be added without touching the arithmetic:

1. "What does this pod do now?"  `resolve()` turns observed pods (identity +
   annotations) into `ReadyPod`s carrying a `Behaviour`, then lets a chain of
   `Effect`s rewrite the whole set (a feature flag that raises the error rate,
   latency that grows when offered load exceeds capacity, ...).
2. "Turn behaviour into numbers."  `accrue()` converts each ready pod's
   behaviour and an elapsed time into exact counter/histogram increments,
   carrying the fractional request remainder per pod between ticks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

ANNOTATION_PREFIX = "sim.hemostat.dev/"
ERROR_RATE = ANNOTATION_PREFIX + "error-rate"
LATENCY_MS = ANNOTATION_PREFIX + "latency-ms"
RPS = ANNOTATION_PREFIX + "rps"

# Tolerance for float accumulation: 0.1 + 0.2 + ... must yield whole requests
# when the exact sum is a whole number, not one fewer.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Behaviour:
    """How one pod serves traffic: all values finite and >= 0, error_rate <= 1."""

    error_rate: float = 0.0
    latency_ms: float = 20.0
    rps: float = 10.0


DEFAULT = Behaviour()


@dataclass(frozen=True)
class PodRef:
    """Identity of a pod plus the labels of the series it contributes to."""

    namespace: str
    deployment: str
    pod_template_hash: str
    name: str

    @property
    def key(self) -> tuple[str, str]:
        """Pod identity: a name is unique within its namespace."""
        return (self.namespace, self.name)


@dataclass(frozen=True)
class ObservedPod:
    """A Ready pod as the cluster reports it; behaviour not yet interpreted."""

    ref: PodRef
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)
    ready_at: float | None = None  # when the pod became Ready (epoch seconds), if the cluster says


@dataclass(frozen=True)
class ReadyPod:
    """A Ready pod together with the behaviour it exhibits right now."""

    ref: PodRef
    behaviour: Behaviour
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)
    ready_at: float | None = None


# An effect rewrites the behaviour of the whole ready set at once, so it can
# look across pods (e.g. total offered load of a Deployment vs. its capacity).
Effect = Callable[[Sequence[ReadyPod]], Sequence[ReadyPod]]


@dataclass
class PodTraffic:
    """Per-pod accumulator between ticks: 0 <= observation_carry < 1."""

    observation_carry: float = 0.0


@dataclass(frozen=True)
class Increment:
    """What one tick adds for one pod: ok + error requests, `observations` latency samples."""

    ref: PodRef
    ok: float
    error: float
    observations: int
    latency_seconds: float


def _parse_one(
    annotations: Mapping[str, str], key: str, default: float, upper: float | None
) -> tuple[float, str | None]:
    raw = annotations.get(key)
    if raw is None:
        return default, None
    try:
        value = float(raw.strip())
    except (ValueError, AttributeError):
        return default, f"{key}={raw!r} is not a number; using default {default:g}"
    bound = f"[0, {upper:g}]" if upper is not None else ">= 0"
    if not math.isfinite(value) or value < 0 or (upper is not None and value > upper):
        return default, f"{key}={raw!r} is out of range {bound}; using default {default:g}"
    return value, None


def parse_behaviour(annotations: Mapping[str, str]) -> tuple[Behaviour, list[str]]:
    """Read a Behaviour from pod annotations; bad values fall back to defaults with a warning each."""
    error_rate, w1 = _parse_one(annotations, ERROR_RATE, DEFAULT.error_rate, 1.0)
    latency_ms, w2 = _parse_one(annotations, LATENCY_MS, DEFAULT.latency_ms, None)
    rps, w3 = _parse_one(annotations, RPS, DEFAULT.rps, None)
    warnings = [w for w in (w1, w2, w3) if w is not None]
    return Behaviour(error_rate=error_rate, latency_ms=latency_ms, rps=rps), warnings


def resolve(
    observed: Iterable[ObservedPod], effects: Sequence[Effect] = ()
) -> tuple[list[ReadyPod], list[tuple[PodRef, str]]]:
    """Behaviour of every observed pod now: annotations first, then each effect in order.

    Returns the ready pods and the parse warnings, each tagged with its pod.
    """
    pods: list[ReadyPod] = []
    warnings: list[tuple[PodRef, str]] = []
    for pod in observed:
        behaviour, problems = parse_behaviour(pod.annotations)
        pods.append(ReadyPod(pod.ref, behaviour, pod.annotations, pod.ready_at))
        warnings.extend((pod.ref, p) for p in problems)
    current: Sequence[ReadyPod] = pods
    for effect in effects:
        current = effect(current)
    return list(current), warnings


def accrue(
    state: Mapping[tuple[str, str], PodTraffic], pods: Iterable[ReadyPod], dt: float
) -> tuple[dict[tuple[str, str], PodTraffic], list[Increment]]:
    """Increments for `dt` seconds of traffic from exactly the given ready pods.

    Each pod serves rps*dt requests, error_rate of them failing; the histogram
    gets the whole number of requests accrued so far, the remainder carries.
    The returned state holds only the given pods, so a pod that leaves the
    ready set stops accruing and its sub-request remainder is dropped.
    `state` is not modified.
    """
    if dt < 0:
        raise ValueError(f"dt must be >= 0, got {dt}")
    new_state: dict[tuple[str, str], PodTraffic] = {}
    increments: list[Increment] = []
    for pod in pods:
        b = pod.behaviour
        requests = b.rps * dt
        error = requests * b.error_rate
        total = state.get(pod.ref.key, PodTraffic()).observation_carry + requests
        whole = math.floor(total + _EPSILON)
        new_state[pod.ref.key] = PodTraffic(observation_carry=max(0.0, total - whole))
        increments.append(
            Increment(
                ref=pod.ref,
                ok=requests - error,
                error=error,
                observations=whole,
                latency_seconds=b.latency_ms / 1000.0,
            )
        )
    return new_state, increments


FAILS_AFTER_S = ANNOTATION_PREFIX + "fails-after-s"


def leak(pods: Sequence[ReadyPod], now: float) -> Sequence[ReadyPod]:
    """Effect (bound to a clock by the caller): a pod annotated `fails-after-s` serves without errors
    for that many seconds after it became Ready, then with its error rate: a slow leak, which no
    canary of a few seconds sees."""
    out = []
    for pod in pods:
        after = positive(pod.annotations, FAILS_AFTER_S)
        if after is not None and (pod.ready_at is None or now - pod.ready_at < after):
            pod = replace(pod, behaviour=replace(pod.behaviour, error_rate=0.0))
        out.append(pod)
    return out


LOAD_RPS = ANNOTATION_PREFIX + "load-rps"
CAPACITY_RPS = ANNOTATION_PREFIX + "capacity-rps"
OVERLOAD_SLOWDOWN = 10.0  # latency multiplier per 100 % of overload


def positive(annotations: Mapping[str, str], key: str) -> float | None:
    try:
        value = float(annotations.get(key, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def capacity(pods: Sequence[ReadyPod]) -> Sequence[ReadyPod]:
    """Effect: a Deployment's offered load (`load-rps`) is shared by its Ready pods; a pod
    serving more than its `capacity-rps` slows down in proportion to the overload, so
    adding pods (scaling up) really brings latency back."""
    counts: dict[tuple[str, str], int] = {}
    for pod in pods:
        key = (pod.ref.namespace, pod.ref.deployment)
        counts[key] = counts.get(key, 0) + 1
    out = []
    for pod in pods:
        load = positive(pod.annotations, LOAD_RPS)
        if load is None:
            out.append(pod)
            continue
        share = load / counts[(pod.ref.namespace, pod.ref.deployment)]
        b = pod.behaviour
        cap = positive(pod.annotations, CAPACITY_RPS)
        overload = max(0.0, share / cap - 1.0) if cap else 0.0
        latency = b.latency_ms * (1.0 + OVERLOAD_SLOWDOWN * overload)
        out.append(ReadyPod(pod.ref, Behaviour(b.error_rate, latency, share), pod.annotations))
    return out
