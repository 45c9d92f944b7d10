"""What reading a signal "now" can give, and how a signal's query template is rendered.

Invariant: a Prometheus outage is never a healthy or a breaching reading: it is an
ERROR reading. A query that ran but had nothing to say (empty vector, NaN) is NO_DATA,
which the policy's `onNoData` interprets; only VALUE carries a number.

Query templates use `{{ name }}` placeholders (spaces inside the braces optional).
The operator passes these variables:

- namespace: namespace of the watched Deployment (and of the policy)
- deployment: name of the watched Deployment
- policy: name of the MitigationPolicy
- signal: name of the signal within the policy

Any other placeholder makes the policy invalid (`Valid=False`), so a query can never
silently render an empty value and read NoData forever.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from ..reading import ErrorType, Reading, ReadingKind, Series

__all__ = ["ErrorType", "Reading", "ReadingKind", "Series", "SignalProvider"]

TEMPLATE_VARIABLES: frozenset[str] = frozenset({"namespace", "deployment", "policy", "signal"})
# A batched query runs once for all targets: no single deployment, but a regex of all of them.
BATCH_VARIABLES: frozenset[str] = frozenset({"namespace", "deployments", "policy", "signal"})

# Only `{{ name }}` with a valid name is a placeholder; any other brace, such as a
# PromQL label matcher `{job="x"}`, is plain text and must reach Prometheus as written.
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


class SignalProvider(Protocol):
    async def read(self, query: str) -> Reading:
        """Read `query` now; I/O problems come back as ERROR readings, never as exceptions."""
        ...

    async def read_all(self, query: str) -> list[Series] | Reading:
        """Read every series of `query` now; an ERROR reading when the query failed as a whole."""
        ...


def targets_regex(names: list[str]) -> str:
    """A regex matching exactly these names, escaped for a PromQL double-quoted string.

    Deployment names need no escaping but dots: `\\.` in PromQL is the regex `\\.`. No names
    gives a regex that matches nothing."""
    return "|".join(n.replace(".", "\\\\.") for n in sorted(names)) or "$^"


def split(
    answer: list[Series] | Reading,
    targets: list[str],
    namespace: str,
    deployment_label: str,
    namespace_label: str | None,
    query: str,
) -> dict[str, Reading]:
    """Pure: a batched answer as one reading per target, keeping the four verdicts honest.

    A failed query, or a series that cannot be attributed (no Deployment label), is an ERROR for
    every target: nothing is known. Two series for one target are an ERROR for that target. A
    target without a series is NO_DATA. Series of Deployments outside the round are ignored.
    """
    if isinstance(answer, Reading):
        return dict.fromkeys(targets, answer)
    labels = [x for x in (namespace_label, deployment_label) if x]
    unlabelled = [s for s in answer if any(x not in s.labels for x in labels)]
    if unlabelled:
        missing = next(x for x in labels if x not in unlabelled[0].labels)
        error = Reading.error(
            "ambiguous",
            f"batched query returned {len(unlabelled)} series without the label {missing!r}; "
            f"group it by ({', '.join(labels)})",
            query=query,
        )
        return dict.fromkeys(targets, error)
    wanted = set(targets)
    found: dict[str, list[Reading]] = {}
    for s in answer:
        if namespace_label and s.labels[namespace_label] != namespace:
            continue
        name = s.labels[deployment_label]
        if name in wanted:
            found.setdefault(name, []).append(s.reading)
    out = {}
    for name in targets:
        readings = found.get(name, [])
        if not readings:
            out[name] = Reading.no_data(
                f"no series with {deployment_label}={name!r} in the batched answer", query=query
            )
        elif len(readings) > 1:
            detail = f"batched query returned {len(readings)} series for {deployment_label}={name!r}, expected one"
            out[name] = Reading.error("ambiguous", detail, query=query)
        else:
            out[name] = readings[0]
    return out


class TemplateError(ValueError):
    """A query template refers to a placeholder that has no value."""


def template_variables(template: str) -> set[str]:
    """Names of all `{{ name }}` placeholders in `template`."""
    return {m.group(1) for m in _PLACEHOLDER.finditer(template)}


def render_query(template: str, variables: Mapping[str, str]) -> str:
    """Substitute every `{{ name }}` in `template` with `variables[name]`, verbatim."""
    unknown = template_variables(template) - variables.keys()
    if unknown:
        names = ", ".join(f"{{{{ {n} }}}}" for n in sorted(unknown))
        known = ", ".join(sorted(variables)) or "(none)"
        plural = "s" if len(unknown) > 1 else ""
        raise TemplateError(f"unknown placeholder{plural} {names} in query; known placeholders: {known}")
    # A function replacement, so backslashes in values are not read as group references.
    return _PLACEHOLDER.sub(lambda m: variables[m.group(1)], template)


def split_by_revision(
    answer: list[Series] | Reading,
    targets: list[str],
    namespace: str,
    revision_label: str,
    batch: tuple[str, str | None] | None,
    query: str,
) -> dict[str, dict[str, Reading]] | Reading:
    """Pure: a per-revision answer as target -> pod-template-hash -> reading.

    `batch` is (deployment label, namespace label) when one answer holds every target, None when
    it is one target's. A failed query, or a series that cannot be told apart (no revision label,
    no Deployment label), comes back as one ERROR reading: the contrast is unavailable, never guessed.
    """
    if isinstance(answer, Reading):
        return answer
    deployment_label, namespace_label = batch if batch else (None, None)
    labels = [x for x in (namespace_label, deployment_label, revision_label) if x]
    for s in answer:
        missing = next((x for x in labels if x not in s.labels), None)
        if missing:
            by = ", ".join(labels)
            detail = f"series without the label {missing!r}: it cannot be split by revision; group it by ({by})"
            return Reading.error("ambiguous", detail, query=query)
    out: dict[str, dict[str, Reading]] = {t: {} for t in targets}
    for s in answer:
        if namespace_label and s.labels[namespace_label] != namespace:
            continue
        target = s.labels[deployment_label] if deployment_label else targets[0]
        if target in out:
            out[target][s.labels[revision_label]] = s.reading
    return out
