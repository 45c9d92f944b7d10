"""Lease takeover rules: judged by the local clock, never by another machine's timestamps."""

from hemostat.leader import Observed, expired, observe


def test_a_lease_nobody_holds_is_free() -> None:
    assert expired(None, now=0.0, duration=15)
    assert expired(Observed("", "t1", seen_at=100.0), now=100.0, duration=15)


def test_a_held_lease_expires_only_after_its_duration_unchanged() -> None:
    seen = Observed("a", "t1", seen_at=100.0)
    assert not expired(seen, now=114.9, duration=15)
    assert expired(seen, now=115.0, duration=15)


def test_a_renewal_restarts_the_local_clock() -> None:
    first = observe(None, "a", "t1", now=100.0)
    assert observe(first, "a", "t1", now=110.0) is first  # unchanged record keeps its first sighting
    renewed = observe(first, "a", "t2", now=110.0)
    assert renewed.seen_at == 110.0
    assert not expired(renewed, now=120.0, duration=15)


def test_a_new_holder_restarts_the_local_clock() -> None:
    first = observe(None, "a", "t1", now=100.0)
    assert observe(first, "b", "t1", now=105.0).seen_at == 105.0
