"""Evaluate a flag the way applications do: OpenFeature SDK + flagd provider on flagd JSON.

Used to confirm a kill switch: the flag must now resolve to its off variant. Evaluation
never raises (an error is a reason, not an exception), so callers check `reason`.

The flagd provider's FILE resolver wants a path. The document is handed to it as an
in-memory file (memfd, read through /proc/self/fd), so evaluation needs no writable
filesystem (the chart's pod has a read-only root and no /tmp), and the file outlives the
provider's watcher thread, which would otherwise log an ERROR for a vanished file after a
successful evaluation.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType

_LOCK = threading.Lock()  # the OpenFeature API is process-global
_DOMAIN = "hemostat-verify"


@dataclass(frozen=True)
class Evaluation:
    value: object
    variant: str | None
    reason: str
    error: str | None

    def describe(self) -> str:
        if self.error:
            return f"error {self.error}"
        return f"variant {self.variant} ({self.reason})"


def evaluate(flagd_json: str, flag: str, context: dict[str, object] | None = None) -> Evaluation:
    """Blocking: evaluate `flag` in `flagd_json` with an evaluation context."""
    from openfeature.evaluation_context import EvaluationContext

    with _LOCK, _in_memory(flagd_json) as path:
        provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=path)
        api.set_provider_and_wait(provider, domain=_DOMAIN)
        client = api.get_client(_DOMAIN)
        method, default = _typed(client, _variant_values(flagd_json, flag))
        try:
            details = method(flag, default, EvaluationContext(attributes=context or {}))
        finally:
            provider.shutdown()
            _join_watcher(provider)
    error = details.error_code.value if details.error_code else None
    return Evaluation(details.value, details.variant, str(details.reason), error)


@contextmanager
def _in_memory(text: str) -> Iterator[str]:
    fd = os.memfd_create("hemostat-flags.json")
    try:
        os.write(fd, text.encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _join_watcher(provider: FlagdProvider) -> None:
    """Wait for the FILE resolver's polling thread to notice shutdown (it sleeps one deadline)."""
    thread = getattr(getattr(getattr(provider, "resolver", None), "connector", None), "thread", None)
    if isinstance(thread, threading.Thread):
        thread.join(timeout=5)


def _variant_values(flagd_json: str, flag: str) -> list[object]:
    try:
        return list(json.loads(flagd_json)["flags"][flag]["variants"].values())
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def _typed(client: Any, values: list[object]) -> tuple[Any, object]:
    """The typed SDK call matching the flag's variant values (flagd checks the type)."""
    if values and all(isinstance(v, bool) for v in values):
        return client.get_boolean_details, False
    if values and all(isinstance(v, str) for v in values):
        return client.get_string_details, ""
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return client.get_integer_details, 0
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return client.get_float_details, 0.0
    return client.get_object_details, {}
