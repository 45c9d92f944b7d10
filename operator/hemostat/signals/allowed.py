"""Which URLs a tenant may make the operator call (pure).

Policy authors choose signals[].prometheus.url and their webhooks' URLs; an operator admin chooses
which of those the operator really calls (`hemostat run --allowed-prometheus-url`,
`--allowed-webhook-url`).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import SplitResult, unquote, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def _parts(url: str, query: bool = False) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of a plain http(s) URL (with a query only if `query`); None for anything else."""
    try:
        u: SplitResult = urlsplit(url.strip())
        port = u.port or DEFAULT_PORTS.get(u.scheme.lower(), 0)
    except ValueError:
        return None
    if u.scheme.lower() not in DEFAULT_PORTS or not u.hostname or "@" in u.netloc or u.fragment:
        return None
    if u.query and not query:
        return None
    path = unquote(u.path).rstrip("/")
    if any(seg in (".", "..") for seg in path.split("/")):
        return None
    return u.scheme.lower(), u.hostname.lower(), port, path


def url_allowed(url: str, allowed: Sequence[str], query: bool = False) -> bool:
    """Pure: same scheme, host and port as an allowed URL, and its path at or under that URL's path.

    No userinfo, query or fragment, no dot segments: `http://prom:9090@evil/` and
    `http://prom:9090/api/../x` are refused, and `/api` allows `/api/v1` but not `/apiary`. With `query`,
    `url` may carry a query (webhook URLs often hold their token there); it is not compared.
    """
    want = _parts(url, query)
    if want is None:
        return False
    for entry in allowed:
        base = _parts(entry)
        if base is None or base[:3] != want[:3]:
            continue
        if want[3] == base[3] or want[3].startswith(base[3] + "/"):
            return True
    return False
