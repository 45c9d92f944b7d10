"""Other policies' targets as attribution's peers: each policy's cycle publishes its targets (when their revision
became current, how far each breaching signal is past its bound) and reads those its namespace's other policies
published, so a shared outage is seen across policies, not only within one.

In memory, per replica: every policy publishes each round, so a new leader knows its namespaces within one
round. A signal counts across policies by its name ("error-rate" here and there); a policy sharing no signal
name with another tells it nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from ..decide.attribution import Peer

FRESH = timedelta(seconds=60)  # a policy's targets older than this are left out (a deleted or stuck policy)
MAX_NEIGHBOURS = 200  # an even sample is enough for the shares and medians the fleet clue takes


class Neighbourhood:
    def __init__(self) -> None:
        # namespace -> policy -> (published at, its signal names, its targets)
        self.published: dict[str, dict[str, tuple[datetime, frozenset[str], tuple[Peer, ...]]]] = {}

    def publish(
        self, namespace: str, policy: str, signals: Iterable[str], peers: Sequence[Peer], now: datetime
    ) -> None:
        here = self.published.setdefault(namespace, {})
        here[policy] = (now, frozenset(signals), tuple(peers))
        for name in [n for n, (at, _, _) in here.items() if now - at > FRESH]:
            del here[name]

    def around(self, namespace: str, policy: str, signals: Iterable[str], now: datetime) -> tuple[Peer, ...]:
        """The targets of the namespace's other policies that share a signal name with `signals` (those signals
        only), each Deployment once, an even sample of at most MAX_NEIGHBOURS."""
        mine = frozenset(signals)
        found = [
            (peers, mine & theirs, theirs <= mine)
            for name, (at, theirs, peers) in sorted(self.published.get(namespace, {}).items())
            if name != policy and mine & theirs and now - at <= FRESH
        ]
        step = max(1, -(-sum(len(peers) for peers, _, _ in found) // MAX_NEIGHBOURS))  # ceil: every step-th
        seen: set[str] = set()
        out = []
        for peers, shared, whole in found:
            for peer in peers[::step]:
                if peer.name not in seen:
                    seen.add(peer.name)
                    theirs = {k: v for k, v in peer.overshoot.items() if k in shared}
                    out.append(peer if whole else Peer(peer.name, peer.since, theirs))
        return tuple(out)
