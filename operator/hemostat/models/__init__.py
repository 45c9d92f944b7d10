"""pydantic models of the Hemostat custom resources (the single source of the CRD schemas)."""

from .common import API_VERSION, GROUP, VERSION, Condition, parse_duration
from .incident import IncidentSpec, IncidentStatus
from .policy import MitigationPolicySpec, MitigationPolicyStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "IncidentSpec",
    "IncidentStatus",
    "MitigationPolicySpec",
    "MitigationPolicyStatus",
    "parse_duration",
]
