"""What reading a signal "now" can give: a value type every floor above reads (signals, decisions).

A Prometheus outage is never a healthy or a breaching reading: it is an ERROR reading. A query
that ran but had nothing to say (empty vector, NaN) is NO_DATA, which the policy's `onNoData`
interprets; only VALUE carries a number.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ErrorType = Literal["timeout", "unreachable", "http", "api", "bad_response", "ambiguous"]


class ReadingKind(enum.StrEnum):
    VALUE = "Value"  # one finite-or-infinite number was read
    NO_DATA = "NoData"  # the query ran fine but gave nothing usable: empty vector, or NaN
    ERROR = "Error"  # the query could not be answered: timeout, unreachable, HTTP/API error, bad response


@dataclass(frozen=True)
class Reading:
    kind: ReadingKind
    value: float | None = None
    detail: str = ""
    error_type: ErrorType | None = None
    query: str = ""

    def __post_init__(self) -> None:
        # A malformed Reading would be misread by the decision logic (e.g. an ERROR
        # with a value taken as healthy), so refuse to build one.
        if (self.kind is ReadingKind.VALUE) != (self.value is not None):
            raise ValueError("value is required for, and only for, VALUE readings")
        if (self.kind is ReadingKind.ERROR) != (self.error_type is not None):
            raise ValueError("error_type is required for, and only for, ERROR readings")

    @classmethod
    def value_of(cls, value: float, *, detail: str = "", query: str = "") -> Reading:
        return cls(ReadingKind.VALUE, value=value, detail=detail, query=query)

    @classmethod
    def no_data(cls, detail: str, *, query: str = "") -> Reading:
        return cls(ReadingKind.NO_DATA, detail=detail, query=query)

    @classmethod
    def error(cls, error_type: ErrorType, detail: str, *, query: str = "") -> Reading:
        return cls(ReadingKind.ERROR, detail=detail, error_type=error_type, query=query)


@dataclass(frozen=True)
class Series:
    """One series of a batched answer: its labels and what it read."""

    labels: Mapping[str, str]
    reading: Reading
