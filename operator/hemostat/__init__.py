"""Hemostat: a Kubernetes operator that stops the bleeding during an incident."""

__version__ = "0.1.0"
