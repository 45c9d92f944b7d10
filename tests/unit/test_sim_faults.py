"""Faults outside the Deployments: they hit every revision, survive a rollback, and are declared over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from test_sim_app import Pods, requests_total, scrape

from hemostat.sim import faults as f
from hemostat.sim.app import App, Options
from hemostat.sim.behaviour import CAPACITY_RPS, ERROR_RATE, RPS, ObservedPod, PodRef, resolve

OLD = PodRef("shop", "web", "h1", "web-h1-a")
NEW = PodRef("shop", "web", "h2", "web-h2-a")  # a revision created after the fault began
CART = PodRef("shop", "cart", "c1", "cart-c1-a")
ELSEWHERE = PodRef("other", "web", "o1", "web-o1-a")


def faults(*declared: dict[str, Any]) -> f.Faults:
    held = f.Faults()
    held.replace(f.parse({"faults": list(declared)}))
    return held


def behaviour_of(effect: f.Faults, *pods: ObservedPod) -> dict[str, Any]:
    ready, _ = resolve(pods, [effect])
    return {p.ref.name: p.behaviour for p in ready}


def test_a_dependency_outage_hits_every_revision_of_the_named_deployments_only() -> None:
    outage = faults({"kind": "dependency", "namespace": "shop", "deployments": ["web"], "errorRate": 0.3})
    seen = behaviour_of(
        outage, ObservedPod(OLD), ObservedPod(NEW, {ERROR_RATE: "0.5"}), ObservedPod(CART), ObservedPod(ELSEWHERE)
    )
    assert seen["web-h1-a"].error_rate == pytest.approx(0.3)
    assert seen["web-h2-a"].error_rate == pytest.approx(1 - 0.5 * 0.7), "its own errors and the dependency's"
    assert seen["cart-c1-a"].error_rate == 0.0
    assert seen["web-o1-a"].error_rate == 0.0, "another namespace is not hit"


def test_a_fault_without_deployments_hits_the_whole_namespace() -> None:
    outage = faults({"kind": "dependency", "namespace": "shop", "errorRate": 1.0, "latencyMs": 100})
    seen = behaviour_of(outage, ObservedPod(OLD), ObservedPod(CART), ObservedPod(ELSEWHERE))
    assert seen["cart-c1-a"].error_rate == 1.0 and seen["cart-c1-a"].latency_ms == 120.0
    assert seen["web-o1-a"].error_rate == 0.0


def test_a_surge_multiplies_requests_and_past_capacity_the_excess_fails_and_slows() -> None:
    surge = faults({"kind": "surge", "namespace": "shop", "factor": 5})
    seen = behaviour_of(surge, ObservedPod(OLD, {RPS: "10"}), ObservedPod(CART, {RPS: "10", CAPACITY_RPS: "25"}))
    assert seen["web-h1-a"].rps == 50.0 and seen["web-h1-a"].error_rate == 0.0
    capped = seen["cart-c1-a"]
    assert capped.rps == 50.0
    assert capped.error_rate == pytest.approx(0.5), "25 of 50 requests cannot be served"
    assert capped.latency_ms == pytest.approx(20.0 * (1 + 10 * 1.0))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"faults": [{"kind": "meteor", "namespace": "shop"}]}, "faults[0].kind: expected one of"),
        ({"faults": [{"kind": "surge"}]}, "faults[0].namespace"),
        ({"faults": [{"kind": "dependency", "namespace": "s", "errorRate": 2}]}, "errorRate: 2 is outside [0, 1]"),
        ({"faults": [{"kind": "surge", "namespace": "s", "deployments": "web"}]}, "deployments: expected a list"),
        ([], 'expected {"faults": [...]}'),
    ],
)
def test_a_bad_fault_is_refused_naming_the_field(body: Any, says: str) -> None:
    with pytest.raises(f.FaultError, match=None) as err:
        f.parse(body)
    assert says in str(err.value)


def put(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_faults_are_declared_over_http_and_data_faults_act_on_the_exposition() -> None:
    app = App(Pods([ObservedPod(OLD), ObservedPod(CART)]), Options(tick=3600, resync=3600))
    server = app.start()
    try:
        app.simulator.refresh()
        app.simulator.tick(1.0)
        base = server.url.rsplit("/", 1)[0] + "/faults"
        status, said = put(base, b'{"faults": [{"kind": "scrapeGap", "namespace": "shop", "deployments": ["web"]}]}')
        assert status == 200 and said["faults"][0]["kind"] == "scrapeGap"
        app.simulator.tick(1.0)
        samples = scrape(server.url)
        assert requests_total(samples, CART, "200") == pytest.approx(20.0)
        with pytest.raises(KeyError):
            requests_total(samples, OLD, "200")  # the gap: web's series are gone from the scrape

        status, said = put(
            base, b'{"faults": [{"kind": "counterReset", "namespace": "shop", "deployments": ["cart"]}]}'
        )
        assert status == 200 and said["faults"] == [], "a reset happens once and is not kept"
        app.simulator.tick(1.0)
        samples = scrape(server.url)
        assert requests_total(samples, CART, "200") == pytest.approx(10.0), "counting again from zero"
        assert requests_total(samples, OLD, "200") == pytest.approx(30.0), "the gap ended, its counter kept"

        status, said = put(base, b'{"faults": [{"kind": "dependency"}]}')
        assert status == 400 and "faults[0].namespace" in said["error"]
        status, said = put(base, b"not json")
        assert status == 400 and said["error"]
    finally:
        app.stop()
