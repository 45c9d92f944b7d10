"""Types shared by both custom resources: durations, references, conditions.

Every model here is also a piece of the generated CRD schema (see crdgen.py),
so constraints live in one place: the API server enforces them first and the
operator re-checks them when it parses an object.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "hemostat.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Go-style durations limited to the units an SRE writes: 500ms, 30s, 2m, 1h30m.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        description="A duration such as 500ms, 30s, 2m or 1h30m.",
    ),
]
Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
SEVERITIES: tuple[Severity, ...] = ("SEV1", "SEV2", "SEV3", "SEV4")
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
ObjectName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]


def parse_duration(text: str) -> timedelta:
    """Parse a Duration string; raises ValueError with the offending text."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 500ms, 30s, 2m, 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(seconds: float) -> str:
    """Render seconds the way kubectl renders ages: 41s, 3m12s, 2h5m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    h, rem = divmod(s, 3600)
    return f"{h}h{rem // 60}m" if rem // 60 else f"{h}h"


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected when parsing."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False)


class Condition(Model):
    """The metav1.Condition shape, so kubectl and tooling understand it."""

    type: Annotated[str, Field(max_length=64)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=1024)] = ""
    last_transition_time: str
    observed_generation: int | None = None


class LabelSelectorRequirement(Model):
    key: Annotated[str, Field(max_length=317)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: Annotated[list[Annotated[str, Field(max_length=63)]], Field(max_length=64)] = []


class LabelSelector(Model):
    match_labels: dict[str, Annotated[str, Field(max_length=63)]] = {}
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] = []


class SecretKeyRef(Model):
    name: ObjectName
    key: Annotated[str, Field(min_length=1, max_length=253)]
