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
MAX_NEIGHBOURS = 1000  # a fair sample is enough for the shares and medians the fleet clue takes


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
        only), each Deployment once, a sample of at most MAX_NEIGHBOURS."""
        mine, seen, out = frozenset(signals), set(), []
        for name, (at, theirs, peers) in sorted(self.published.get(namespace, {}).items()):
            shared = mine & theirs
            if name == policy or not shared or now - at > FRESH:
                continue
            for peer in peers:
                if peer.name not in seen:
                    seen.add(peer.name)
                    out.append(Peer(peer.name, peer.since, {k: v for k, v in peer.overshoot.items() if k in shared}))
        step = -(-len(out) // MAX_NEIGHBOURS)  # ceil: every step-th, an even sample
        return tuple(out[::step]) if step > 1 else tuple(out)
