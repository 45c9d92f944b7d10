"""Effect: errors that exist only while a feature flag is on, the flag evaluated like a real app.

A pod annotated `sim.hemostat.dev/flag-errors: "<flag>=<rate>"` and
`sim.hemostat.dev/flag-source: "<configmap>/<key>"` fails an extra <rate> of its requests
while <flag> evaluates truthy. The ConfigMap key is mirrored to a local file (as a kubelet
volume would) and read by the OpenFeature SDK with the flagd provider's file resolver, so
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

ReadConfigMap = Callable[[str, str], Mapping[str, str] | None]  # (namespace, name) -> data


def parse(annotations: Mapping[str, str]) -> tuple[str, float, str, str] | None:
    """(flag, rate, configmap, key) from the annotations, or None when absent or malformed."""
    spec, source = annotations.get(FLAG_ERRORS), annotations.get(FLAG_SOURCE)
    if not spec or not source or "=" not in spec or "/" not in source:
        return None
    flag, _, rate_text = spec.partition("=")
    cm, _, key = source.partition("/")
    try:
        rate = float(rate_text)
    except ValueError:
        return None
    return (flag, rate, cm, key) if 0 <= rate <= 1 and flag and cm and key else None


class FlagEffect:
    def __init__(self, read: ReadConfigMap, workdir: Path, refresh: float = 1.0) -> None:
        self._read, self._dir, self._refresh = read, workdir, refresh
        self._fetched: dict[tuple[str, str, str], float] = {}
        self._domains: set[str] = set()

    def _mirror(self, ns: str, cm: str, key: str) -> str:
        """Keep a local copy of the ConfigMap key; return the OpenFeature domain reading it."""
        domain = f"sim/{ns}/{cm}/{key}"
        path = self._dir / domain.replace("/", "_")
        now = time.monotonic()
        if now - self._fetched.get((ns, cm, key), -1e9) >= self._refresh:
            self._fetched[(ns, cm, key)] = now
            try:
                data = self._read(ns, cm) or {}
            except Exception as exc:  # keep the last copy, as a kubelet would
                log.warning("cannot read ConfigMap %s/%s: %s", ns, cm, exc)
                data = None
            if data is not None:
                text = data.get(key, '{"flags": {}}')
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
            flag, rate, cm, key = parsed
            domain = self._mirror(pod.ref.namespace, cm, key)
            on = api.get_client(domain).get_boolean_value(flag, False)
            if on:
                b = pod.behaviour
                pod = replace(pod, behaviour=replace(b, error_rate=min(1.0, b.error_rate + rate)))
            out.append(pod)
        return out
