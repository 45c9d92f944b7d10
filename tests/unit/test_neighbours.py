"""Other policies' targets as attribution's peers: what a policy's cycle reads of its namespace's other
policies, and a shared outage seen across policies instead of blamed on one policy's fresh rollout."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from test_attribution_rules import LADDER, decided, fleet_snapshot, target
from test_cycle_plan import NOW, policy

from hemostat.cycle.neighbours import FRESH, MAX_NEIGHBOURS, Neighbourhood
from hemostat.decide.attribution import Peer

HOUR_AGO = NOW - timedelta(hours=1)


def test_a_policy_reads_the_other_policies_targets_on_the_signals_they_share() -> None:
    hood = Neighbourhood()
    hood.publish("shop", "front", ["err"], [Peer("web", NOW, {"err": 6.0})], NOW)
    hood.publish("shop", "back", ["err", "lat"], [Peer("cart", HOUR_AGO, {"err": 6.0, "lat": 2.0})], NOW)
    hood.publish("shop", "jobs", ["queue"], [Peer("batch", HOUR_AGO, {"queue": 9.0})], NOW)  # no signal shared
    hood.publish("shop", "twice", ["err"], [Peer("cart", HOUR_AGO, {})], NOW)  # cart again: counted once
    hood.publish("other", "back", ["err"], [Peer("db", HOUR_AGO, {"err": 6.0})], NOW)  # another namespace
    assert hood.around("shop", "front", ["err"], NOW) == (Peer("cart", HOUR_AGO, {"err": 6.0}),)
    assert hood.around("shop", "front", ["err"], NOW + FRESH + timedelta(seconds=1)) == ()  # nobody published since


def test_a_large_neighbourhood_is_an_even_sample() -> None:
    hood = Neighbourhood()
    peers = [Peer(f"d{i:05}", HOUR_AGO, {"err": 6.0} if i % 2 else {}) for i in range(2500)]
    hood.publish("shop", "back", ["err"], peers, NOW)
    sample = hood.around("shop", "front", ["err"], NOW)
    assert len(sample) <= MAX_NEIGHBOURS
    breaching = sum(1 for p in sample if p.overshoot)
    assert abs(breaching / len(sample) - 0.5) < 0.01  # the share the fleet clue takes is kept


def test_a_shared_outage_across_policies_is_not_blamed_on_one_policys_fresh_rollout() -> None:
    # web has a policy of its own and rolled out a minute ago; cart, api and auth are another policy's
    spec = policy(steps=LADDER)
    alone = fleet_snapshot(target("web", 0.3, revision=2), spec=spec)
    before = decided(alone)
    assert before.status.attribution.verdict == "deploy" and before.change is not None  # no peer: as before
    others = tuple(Peer(n, HOUR_AGO, {"err": 6.0}) for n in ("cart", "api", "auth"))
    web = decided(replace(alone, neighbours=others))
    assert web.status.attribution.verdict == "global" and web.change is None
    assert "3 of 3 untouched peers breach too" in web.status.attribution.reason
