"""Signals: reading a metric "now", as a VALUE, NO_DATA or ERROR reading.

A Prometheus outage is never a healthy or a breaching reading: it is an ERROR reading.
Providers live in their own modules (`hemostat.signals.prometheus`) and are imported
explicitly, so the pure decision code can use these types without pulling in httpx.
"""

from .base import (
    TEMPLATE_VARIABLES,
    ErrorType,
    Reading,
    ReadingKind,
    SignalProvider,
    TemplateError,
    render_query,
    template_variables,
)

__all__ = [
    "TEMPLATE_VARIABLES",
    "ErrorType",
    "Reading",
    "ReadingKind",
    "SignalProvider",
    "TemplateError",
    "render_query",
    "template_variables",
]
