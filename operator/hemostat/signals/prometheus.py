"""Instant queries against the Prometheus HTTP API (`/api/v1/query`).

Invariant: a Prometheus outage is never a healthy or a breaching reading: it is an
ERROR reading. `read` maps every transport, HTTP, API and response-shape problem to an
ERROR with an `error_type`, and keeps NO_DATA for a query that ran and found nothing.
"""

from __future__ import annotations

import json
import math
import ssl
from typing import Any

import httpx

from .base import Reading, Series


class PrometheusProvider:
    def __init__(self, base_url: str, client: httpx.AsyncClient, timeout: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self._client = client
        self._timeout = timeout
        # Give Prometheus time to report its own timeout (a precise API error) before we give up.
        self._client_timeout = timeout + min(1.0, timeout / 2)

    async def read(self, query: str) -> Reading:
        return await self._answer(query, _from_data)

    async def read_all(self, query: str) -> list[Series] | Reading:
        """Every series of the answer (a batched signal); an ERROR reading when the query failed."""
        return await self._answer(query, _all_series)

    async def _answer(self, query: str, parse: Any) -> Any:
        """Run the query; transport, HTTP, API and shape problems come back as ERROR readings."""
        response = await self._query(query)
        if isinstance(response, Reading):
            return response
        body = _checked(response, query)
        if isinstance(body, Reading):
            return body
        try:
            return parse(body, query)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            return Reading.error("bad_response", f"unexpected response shape: {exc!r}", query=query)

    async def _query(self, query: str) -> httpx.Response | Reading:
        # POST: a batched query naming thousands of Deployments is longer than a URL may be.
        url = f"{self._base}/api/v1/query"
        form = {"query": query, "timeout": _prometheus_duration(self._timeout)}
        try:
            return await self._client.post(url, data=form, timeout=self._client_timeout)
        except httpx.TimeoutException:
            return Reading.error("timeout", f"timeout after {self._timeout}s", query=query)
        except httpx.TransportError as exc:
            return Reading.error("unreachable", f"cannot reach {url}: {_describe(exc)}", query=query)
        except httpx.InvalidURL as exc:
            return Reading.error("unreachable", f"invalid Prometheus URL {url!r}: {exc}", query=query)
        except ssl.SSLError as exc:  # TLS 1.3 alerts after the handshake reach us unwrapped
            return Reading.error("unreachable", f"cannot reach {url}: {_describe(exc)}", query=query)

    async def ready(self) -> bool:
        try:
            response = await self._client.get(f"{self._base}/-/ready", timeout=self._client_timeout)
        except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError):
            return False
        return response.status_code == 200


def _prometheus_duration(seconds: float) -> str:
    # Prometheus rejects fractional units such as "0.3s"; whole milliseconds always parse.
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _checked(response: httpx.Response, query: str) -> dict[str, Any] | Reading:
    """The decoded body of a successful answer, or the ERROR reading that explains the failure."""
    code = response.status_code
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("status") == "error":
        # Prometheus explains failures (bad PromQL, query timeout, overload) in the body.
        detail = f"HTTP {code} {body.get('errorType', 'unknown')}: {body.get('error', '')}"
        return Reading.error("api", detail, query=query)
    # Any other body is never shown: whatever answered may not be a Prometheus at all.
    if not response.is_success:
        return Reading.error("http", f"HTTP {code} (not a Prometheus API answer; body not shown)", query=query)
    if not isinstance(body, dict):
        return Reading.error("bad_response", "response is not a JSON object (body not shown)", query=query)
    return body


def _all_series(body: dict[str, Any], query: str) -> list[Series] | Reading:
    if body.get("status") != "success":
        raise ValueError(f"status {body.get('status')!r}")
    data = body["data"]
    if data["resultType"] != "vector":
        detail = f"batched query returned a {data['resultType']}, expected a vector with one series per Deployment"
        return Reading.error("bad_response", detail, query=query)
    notes = _notes(body)
    out = []
    for sample in data["result"]:
        if "value" not in sample:
            raise ValueError("sample has no float value (native histogram?)")
        out.append(Series(dict(sample.get("metric") or {}), _from_sample(sample["value"], notes, query)))
    return out


def _from_data(body: dict[str, Any], query: str) -> Reading:
    if body.get("status") != "success":
        raise ValueError(f"status {body.get('status')!r}")
    data = body["data"]
    result_type = data["resultType"]
    notes = _notes(body)
    if result_type == "scalar":
        return _from_sample(data["result"], notes, query)
    if result_type != "vector":
        detail = f"instant query returned a {result_type}, expected a vector or scalar"
        return Reading.error("bad_response", detail, query=query)
    samples = data["result"]
    if not isinstance(samples, list):
        raise TypeError("vector result is not a list")
    if not samples:
        return Reading.no_data(_join("empty result", notes), query=query)
    if len(samples) > 1:
        return Reading.error("ambiguous", _ambiguous(samples), query=query)
    if "value" not in samples[0]:
        # Native histogram samples carry "histogram" instead of a float "value".
        raise ValueError("sample has no float value (native histogram?)")
    return _from_sample(samples[0]["value"], notes, query)


def _from_sample(sample: list[Any], notes: str, query: str) -> Reading:
    _timestamp, text = sample
    if not isinstance(text, str):
        raise TypeError(f"sample value {text!r} is not a string")
    value = float(text)  # accepts "NaN", "+Inf" and "-Inf" as Prometheus spells them
    if math.isnan(value):
        return Reading.no_data(_join("NaN", notes), query=query)
    return Reading.value_of(value, detail=notes, query=query)


def _ambiguous(samples: list[Any]) -> str:
    # How many, never which: the detail reaches the policy's status, and in a shared Prometheus the
    # matched series' labels may be other tenants' (the author can run the query where they may).
    return f"query returned {len(samples)} series, expected one; aggregate it, e.g. with sum(...)"


def _notes(body: dict[str, Any]) -> str:
    # Warnings (e.g. partial data from a failed store) qualify the number; keep them visible.
    parts = [f"{key}: {'; '.join(map(str, body[key]))}" for key in ("warnings", "infos") if body.get(key)]
    return "; ".join(parts)


def _join(first: str, notes: str) -> str:
    return f"{first}; {notes}" if notes else first
