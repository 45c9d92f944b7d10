"""Leader election on a coordination.k8s.io Lease, so that of N replicas exactly one acts.

The rules are client-go's: a holder renews every `renew` seconds; another replica may
take the Lease only after it has seen the same record unchanged for `duration` seconds
by its OWN clock (no trust in other machines' clocks); a leader that could not renew
for `deadline` seconds stops acting before anyone else may start. Takeover and renewal
use the Lease's resourceVersion, so two replicas can never both win a round.

Every Lease call has a timeout (one renew period): a half-open connection must not stop
the election for good. Liveness fails when no round has finished for three renew periods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("hemostat.leader")


@dataclass(frozen=True)
class Observed:
    holder: str
    renew_time: str
    seen_at: float  # local monotonic time this exact record was first seen


def expired(observed: Observed | None, now: float, duration: float) -> bool:
    """Pure: may another replica take the Lease?"""
    return observed is None or not observed.holder or now - observed.seen_at >= duration


def observe(previous: Observed | None, holder: str, renew_time: str, now: float) -> Observed:
    """Pure: keep the first-seen time while the record does not change."""
    if previous and previous.holder == holder and previous.renew_time == renew_time:
        return previous
    return Observed(holder, renew_time, now)


def election_stalled(last_round: float, now: float, renew: float) -> str | None:
    """Pure: why the election looks stuck, or None (a round ends, won, lost or failed, every renew period)."""
    if now - last_round > 3 * renew:
        return (
            f"leader election has not finished a round for {now - last_round:.0f}s "
            f"(3 renew periods of {renew:g}s): a Lease call hangs"
        )
    return None


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 5.0,
        deadline: float = 10.0,
    ) -> None:
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew, self.deadline = duration, renew, deadline
        self._observed: Observed | None = None
        self._last_renewed: float | None = None
        self.timeout = (renew, renew)  # connect, read: each Lease call ends within a renew period
        self.last_round = time.monotonic()  # when a round last finished, whatever its outcome
        self.acquired_at: float | None = None  # when this replica last became the leader

    def stalled(self, now: float) -> str | None:
        return election_stalled(self.last_round, now, self.renew)

    @property
    def is_leader(self) -> bool:
        return self._last_renewed is not None and time.monotonic() - self._last_renewed < self.deadline

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            was = self.is_leader
            try:
                await asyncio.to_thread(self._round)
            except ApiException as exc:
                log.warning("lease %s/%s: %s %s", self.namespace, self.name, exc.status, exc.reason)
            except Exception as exc:  # the API being away must not end the elector
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            self.last_round = time.monotonic()
            if self.is_leader and not was:
                self.acquired_at = self.last_round
            if self.is_leader != was:
                log.info(
                    "%s %s leadership (lease %s/%s)",
                    self.identity,
                    "acquired" if self.is_leader else "lost",
                    self.namespace,
                    self.name,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.renew)

    def _body(self, transitions: int, acquire: str | None, rv: str | None) -> client.V1Lease:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv:
            meta["resourceVersion"] = rv
        return client.V1Lease.from_dict(
            {
                "metadata": meta,
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": int(self.duration),
                    "acquireTime": acquire or now,
                    "renewTime": now,
                    "leaseTransitions": transitions,
                },
            }
        )

    def _round(self) -> None:
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease(self.namespace, self._body(0, None, None), _request_timeout=self.timeout)
            self._last_renewed = time.monotonic()
            return
        spec = lease.spec
        holder = spec.holder_identity or ""
        renew_time = str(spec.renew_time or "")
        now = time.monotonic()
        self._observed = observe(self._observed, holder, renew_time, now)
        transitions = spec.lease_transitions or 0
        rv = lease.metadata.resource_version
        if holder == self.identity:
            acquire = spec.acquire_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if spec.acquire_time else None
            body = self._body(transitions, acquire, rv)
            self.coord.replace_namespaced_lease(self.name, self.namespace, body, _request_timeout=self.timeout)
            self._last_renewed = now
        elif expired(self._observed, now, self.duration):
            body = self._body(transitions + 1, None, rv)
            self.coord.replace_namespaced_lease(self.name, self.namespace, body, _request_timeout=self.timeout)
            self._last_renewed = now
        else:
            self._last_renewed = None

    def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over at once."""
        if not self.is_leader:
            return
        self._last_renewed = None
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = ""
                self.coord.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self.timeout)
        except Exception as exc:  # shutting down: a standby takes over after the lease duration instead
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
