"""Effect: errors that exist only while a feature flag is on, the flag evaluated like a real app.

A pod annotated `sim.hemostat.dev/flag-errors: "<flag>=<rate>"` and
`sim.hemostat.dev/flag-source: "<configmap>/<key>"` (or `"featureflag:<name>"`, an OpenFeature
Operator FeatureFlag) fails an extra <rate> of its requests while <flag> evaluates truthy.
The flag source is mirrored to a local flagd JSON file (as a kubelet volume or flagd's
Kubernetes sync would) and read by the OpenFeature SDK with the flagd provider's file resolver, so
turning the flag off in the ConfigMap really ends the errors, with flagd's semantics
(targeting, defaultVariant) deciding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType

from .behaviour import ANNOTATION_PREFIX, ReadyPod

FLAG_ERRORS = ANNOTATION_PREFIX + "flag-errors"
FLAG_SOURCE = ANNOTATION_PREFIX + "flag-source"
log = logging.getLogger("hemostat.sim.flags")

ReadSource = Callable[[str, str], str | None]  # (namespace, flag-source) -> flagd JSON, None if absent


def parse(annotations: Mapping[str, str]) -> tuple[str, float, str] | None:
    """(flag, rate, source) from the annotations, or None when absent or malformed."""
    spec, source = annotations.get(FLAG_ERRORS), annotations.get(FLAG_SOURCE)
    if not spec or not source or "=" not in spec:
        return None
    if not (source.startswith("featureflag:") or "/" in source):
        return None
    flag, _, rate_text = spec.partition("=")
    try:
        rate = float(rate_text)
    except ValueError:
        return None
    return (flag, rate, source) if 0 <= rate <= 1 and flag else None


class FlagEffect:
    def __init__(self, read: ReadSource, workdir: Path, refresh: float = 1.0) -> None:
        self._read, self._dir, self._refresh = read, workdir, refresh
        self._fetched: dict[tuple[str, str], float] = {}
        self._domains: set[str] = set()

    def _mirror(self, ns: str, source: str) -> str:
        """Keep a local copy of the flag source; return the OpenFeature domain reading it."""
        domain = f"sim/{ns}/{source}"
        path = self._dir / "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in domain)
        now = time.monotonic()
        if now - self._fetched.get((ns, source), -1e9) >= self._refresh:
            self._fetched[(ns, source)] = now
            try:
                text = self._read(ns, source)
            except Exception as exc:  # keep the last copy, as a kubelet would
                log.warning("cannot read flag source %s in %s: %s", source, ns, exc)
            else:
                text = text if text is not None else '{"flags": {}}'
                if not path.exists() or path.read_text() != text:
                    path.write_text(text)
        if domain not in self._domains:
            if not path.exists():
                path.write_text('{"flags": {}}')
            provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path))
            api.set_provider_and_wait(provider, domain=domain)
            self._domains.add(domain)
        return domain

    def __call__(self, pods: Sequence[ReadyPod]) -> Sequence[ReadyPod]:
        out = []
        for pod in pods:
            parsed = parse(pod.annotations)
            if parsed is None:
                out.append(pod)
                continue
            flag, rate, source = parsed
            domain = self._mirror(pod.ref.namespace, source)
            on = api.get_client(domain).get_boolean_value(flag, False)
            if on:
                b = pod.behaviour
                pod = replace(pod, behaviour=replace(b, error_rate=min(1.0, b.error_rate + rate)))
            out.append(pod)
        return out
