"""Types shared by both custom resources: durations, references, conditions.

Every model here is also a piece of the generated CRD schema (see crdgen.py),
so constraints live in one place: the API server enforces them first and the
operator re-checks them when it parses an object.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "hemostat.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Go-style durations limited to the units an SRE writes: 500ms, 30s, 2m, 1h30m. Each unit at
# most once, largest first, six digits at most: no value can overflow Go's (and CEL's) duration,
# so the API server can always evaluate a bound rule on it.
_NUM = r"[0-9]{1,6}(\.[0-9]{1,6})?"
DURATION_PATTERN = rf"^({_NUM}h)?({_NUM}m)?({_NUM}s)?({_NUM}ms)?$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_DOC = "A duration such as 500ms, 30s, 2m or 1h30m."

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, min_length=2, max_length=32, description=_DURATION_DOC)]
Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
SEVERITIES: tuple[Severity, ...] = ("SEV1", "SEV2", "SEV3", "SEV4")
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
ObjectName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]


def parse_duration(text: str) -> timedelta:
    """Parse a Duration string; raises ValueError with the offending text."""
    if len(text) < 2 or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 500ms, 30s, 2m, 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def bounded_duration(low: str | None, high: str) -> Any:
    """A Duration the API server (CEL) and the parser (pydantic) both keep within [low, high]."""
    lo, hi = (parse_duration(low) if low else None), parse_duration(high)
    rules = [{"rule": f"duration(self) <= duration('{high}')", "message": f"must be at most {high}"}]
    if low:
        rules.append({"rule": f"duration(self) >= duration('{low}')", "message": f"must be at least {low}"})

    def check(text: str) -> str:
        value = parse_duration(text)
        if value > hi:
            raise ValueError(f"must be at most {high}")
        if lo is not None and value < lo:
            raise ValueError(f"must be at least {low}")
        return text

    return Annotated[
        str,
        Field(
            pattern=DURATION_PATTERN,
            min_length=2,
            max_length=32,
            description=_DURATION_DOC,
            json_schema_extra={"x-kubernetes-validations": rules},
        ),
        AfterValidator(check),
    ]


def _is_timestamp(text: str) -> str:
    if not _parses(text):
        raise ValueError(f"not a UTC timestamp like 2026-11-23T14:03:00Z: {text!r}")
    return text


@functools.lru_cache(maxsize=65536)  # every status read re-validates the same timestamps
def _parses(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


# Status times the operator writes and reads back. Checked when parsed, not in the schema, so a
# status another writer spoiled is reported on that one target instead of refused on every write.
Timestamp = Annotated[str, AfterValidator(_is_timestamp)]


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


# Label syntax as Kubernetes validates it (apimachinery validation.IsQualifiedName / IsValidLabelValue).
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME}$"
LabelValue = Annotated[str, Field(pattern=rf"^({_NAME})?$", max_length=63)]
LabelKey = Annotated[str, Field(pattern=LABEL_KEY, max_length=317)]
_SET_OPERATORS = ("In", "NotIn")


class LabelSelectorRequirement(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
                    "message": "values must be non-empty for In and NotIn",
                },
                {
                    "rule": "self.operator in ['In', 'NotIn'] || !has(self.values) || size(self.values) == 0",
                    "message": "values must be empty for Exists and DoesNotExist",
                },
            ]
        }
    )
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: Annotated[list[LabelValue], Field(max_length=64)] = []

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        if self.operator in _SET_OPERATORS and not self.values:
            raise ValueError("values must be non-empty for In and NotIn")
        if self.operator not in _SET_OPERATORS and self.values:
            raise ValueError("values must be empty for Exists and DoesNotExist")
        return self


class LabelSelector(Model):
    """A metav1.LabelSelector, validated as Kubernetes validates one on a Deployment."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.matchLabels) || "
                    f"self.matchLabels.all(k, size(k) <= 317 && k.matches(r'{LABEL_KEY}'))",
                    "message": "matchLabels keys must be label keys ([prefix/]name)",
                }
            ]
        }
    )
    match_labels: Annotated[dict[str, LabelValue], Field(max_length=32)] = {}
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] = []

    @model_validator(mode="after")
    def _keys(self) -> LabelSelector:
        bad = [k for k in self.match_labels if len(k) > 317 or not re.fullmatch(LABEL_KEY, k)]
        if bad:
            raise ValueError(f"matchLabels keys must be label keys ([prefix/]name): {', '.join(sorted(bad))}")
        return self


class SecretKeyRef(Model):
    name: ObjectName
    key: Annotated[str, Field(min_length=1, max_length=253)]
