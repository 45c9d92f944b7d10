"""Lease takeover rules: judged by the local clock, never by another machine's timestamps."""

import socket
import threading
from collections.abc import Iterator

import pytest
from kubernetes import client

from hemostat.leader import LeaderElector, Observed, expired, observe


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


# --- a hung Lease call (#20) ---------------------------------------------------------------------


@pytest.fixture
def half_open_api() -> Iterator[str]:
    """An 'API server' on loopback that accepts connections and never answers: a half-open connection."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def elector_for(url: str, renew: float = 0.5) -> LeaderElector:
    configuration = client.Configuration()
    configuration.host = url
    return LeaderElector(client.ApiClient(configuration), "ns", "lease", "me", duration=3 * renew, renew=renew)


def test_a_lease_call_that_never_answers_ends_within_its_timeout(half_open_api: str) -> None:
    elector = elector_for(half_open_api)
    errors: list[BaseException] = []

    def one_round() -> None:
        try:
            elector._round()
        except Exception as exc:
            errors.append(exc)

    round_ = threading.Thread(target=one_round, daemon=True)
    round_.start()
    round_.join(timeout=5)
    assert not round_.is_alive(), "the Lease call hung past 5 s: it has no timeout"
    assert errors, "a call nobody answered cannot have succeeded"


def test_election_that_finishes_no_round_fails_liveness() -> None:
    from hemostat.leader import election_stalled

    assert election_stalled(last_round=100.0, now=114.9, renew=5.0) is None
    assert election_stalled(last_round=100.0, now=116.0, renew=5.0) == (
        "leader election has not finished a round for 16s (3 renew periods of 5s): a Lease call hangs"
    )
