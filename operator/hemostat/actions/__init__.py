"""Mitigation actions. Each: plan (pure, from facts), apply (idempotent), verify."""
