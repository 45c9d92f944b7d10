"""Outbound requests under control: which Prometheus URLs a policy may use (pure)."""

from __future__ import annotations

import pytest
import yaml
from test_bad_input import EXAMPLE

from hemostat.cycle.snapshot import Settings, parse_spec
from hemostat.signals.allowed import url_allowed

ALLOWED = ["http://prometheus.monitoring:9090", "https://thanos.example/api/prom/"]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://prometheus.monitoring:9090", True),
        ("http://prometheus.monitoring:9090/", True),
        ("http://PROMETHEUS.monitoring:9090", True),  # host names are case-insensitive
        ("https://thanos.example/api/prom", True),
        ("https://thanos.example/api/prom/tenant-a", True),
        ("https://thanos.example:443/api/prom", True),  # the scheme's default port
        ("http://prometheus.monitoring:9091", False),  # another port
        ("https://prometheus.monitoring:9090", False),  # another scheme
        ("http://thanos.example/api/prom", False),  # a downgrade to plain http
        ("https://thanos.example/api/prometheus", False),  # /api/prom is not a prefix of a segment
        ("https://thanos.example/api", False),  # above the allowed path
        ("https://thanos.example/api/prom/../../admin", False),  # dot segments
        ("https://thanos.example/api/prom/%2e%2e/admin", False),  # encoded dot segments
        ("http://prometheus.monitoring:9090@169.254.169.254/", False),  # userinfo trick
        ("http://169.254.169.254/latest/meta-data", False),
        ("http://prometheus.monitoring:9090/?x=1", False),  # no query
        ("file:///etc/passwd", False),
        ("prometheus.monitoring:9090", False),
        ("", False),
    ],
)
def test_only_allowed_prometheus_urls(url: str, ok: bool) -> None:
    assert url_allowed(url, ALLOWED) is ok


def test_a_signal_url_outside_the_allow_list_makes_the_policy_invalid_with_the_reason() -> None:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["spec"]["signals"][0]["prometheus"]["url"] = "http://169.254.169.254/latest"
    own = "http://prometheus.monitoring:9090"
    settings = Settings(own, allowed_prometheus_urls=(own,))
    spec, invalid = parse_spec(body, settings)
    assert spec is None
    assert invalid == (
        "spec.signals[0].prometheus.url http://169.254.169.254/latest is not allowed: this operator queries only "
        "http://prometheus.monitoring:9090 (an admin adds URLs with --allowed-prometheus-url, "
        "chart value prometheusAllowedUrls)"
    )
    body["spec"]["signals"][0]["prometheus"]["url"] = "http://prometheus.monitoring:9090/"
    spec, invalid = parse_spec(body, settings)
    assert spec is not None and invalid is None
