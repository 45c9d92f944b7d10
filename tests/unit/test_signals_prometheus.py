"""PrometheusProvider against a real local HTTP server serving canned Prometheus API answers."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from hemostat.signals import Reading, ReadingKind
from hemostat.signals.prometheus import PrometheusProvider


@dataclass
class Canned:
    status: int = 200
    body: str | bytes = ""
    content_type: str = "application/json"
    delay: float = 0.0


def success(result_type: str, result: Any, **extra: Any) -> Canned:
    return Canned(
        body=json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}, **extra})
    )


def vector(*samples: tuple[dict[str, str], str]) -> Canned:
    return success("vector", [{"metric": m, "value": [1700000000.123, v]} for m, v in samples])


@dataclass
class FakePrometheus:
    url: str
    responses: dict[str, Canned] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    ready_status: int = 200
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    fake = FakePrometheus(url=f"http://127.0.0.1:{server.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            # Prometheus takes the same parameters form-encoded in a POST body.
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            self.do_GET(form)

        def do_GET(self, form: dict[str, list[str]] | None = None) -> None:
            parts = urlsplit(self.path)
            params = {**parse_qs(parts.query), **(form or {})}
            fake.requests.append((parts.path, params))
            if parts.path.endswith("/-/ready"):
                canned = Canned(status=fake.ready_status, body="ready", content_type="text/plain")
            elif parts.path.endswith("/api/v1/query"):
                canned = fake.responses.get(params.get("query", [""])[0], Canned(status=404, body="no canned"))
            else:
                canned = Canned(status=404, body="404 page not found", content_type="text/plain")
            if canned.delay:
                # Released at teardown so no handler thread outlives the test.
                fake.release.wait(canned.delay)
            body = canned.body.encode() if isinstance(canned.body, str) else canned.body
            try:
                self.send_response(canned.status)
                self.send_header("Content-Type", canned.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up first (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    # A short poll interval keeps shutdown() (and so each test) fast.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def read(base_url: str, query: str, timeout: float = 5.0) -> Reading:
    async def go() -> Reading:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await PrometheusProvider(base_url, client, timeout=timeout).read(query)

    return asyncio.run(go())


def ready(base_url: str) -> bool:
    async def go() -> bool:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await PrometheusProvider(base_url, client).ready()

    return asyncio.run(go())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0123", 0.0123), ("42", 42.0), ("-3.5", -3.5), ("+Inf", math.inf), ("-Inf", -math.inf)],
)
def test_one_sample_is_a_value(prom: FakePrometheus, text: str, expected: float) -> None:
    prom.responses["q"] = vector(({"job": "api"}, text))
    reading = read(prom.url, "q")
    assert reading == Reading(ReadingKind.VALUE, value=expected, query="q")


def test_scalar_is_a_value(prom: FakePrometheus) -> None:
    prom.responses["scalar(1)"] = success("scalar", [1700000000, "1.5"])
    reading = read(prom.url, "scalar(1)")
    assert (reading.kind, reading.value, reading.error_type) == (ReadingKind.VALUE, 1.5, None)


def test_nan_is_no_data(prom: FakePrometheus) -> None:
    prom.responses["q"] = vector(({}, "NaN"))
    reading = read(prom.url, "q")
    assert (reading.kind, reading.value, reading.detail) == (ReadingKind.NO_DATA, None, "NaN")


def test_nan_scalar_is_no_data(prom: FakePrometheus) -> None:
    prom.responses["q"] = success("scalar", [1700000000, "NaN"])
    assert read(prom.url, "q").kind is ReadingKind.NO_DATA


def test_empty_vector_is_no_data(prom: FakePrometheus) -> None:
    prom.responses["q"] = vector()
    reading = read(prom.url, "q")
    assert reading == Reading(ReadingKind.NO_DATA, detail="empty result", query="q")


def test_warnings_are_kept(prom: FakePrometheus) -> None:
    prom.responses["v"] = success(
        "vector", [{"metric": {}, "value": [1, "2"]}], warnings=["partial response: store x down"]
    )
    prom.responses["e"] = success("vector", [], warnings=["partial response"])
    value, empty = read(prom.url, "v"), read(prom.url, "e")
    assert (value.kind, value.value) == (ReadingKind.VALUE, 2.0)
    assert "partial response: store x down" in value.detail
    assert empty.kind is ReadingKind.NO_DATA
    assert "empty result" in empty.detail
    assert "partial response" in empty.detail


def test_several_series_are_ambiguous_and_their_labels_stay_in_prometheus(prom: FakePrometheus) -> None:
    """The reading goes into the policy's status, which its author reads: in a shared Prometheus the
    labels of whatever series a query matched (other teams' pods, tenants, paths) must not reach it."""
    secret = [({"__name__": "up", "tenant": f"other-team-{i}", "pod": f"p{i}"}, "1") for i in range(5)]
    prom.responses["q"] = vector(*secret)
    reading = read(prom.url, "q")
    assert (reading.kind, reading.value, reading.error_type) == (ReadingKind.ERROR, None, "ambiguous")
    assert "5 series" in reading.detail
    assert "sum(" in reading.detail
    for leaked in ("other-team", "tenant", "p0", "up{"):
        assert leaked not in reading.detail, reading.detail


def test_two_series_are_ambiguous(prom: FakePrometheus) -> None:
    prom.responses["q"] = vector(({"code": "500"}, "1"), ({"code": "503"}, "2"))
    reading = read(prom.url, "q")
    assert reading.error_type == "ambiguous"
    assert "2 series" in reading.detail
    assert "more" not in reading.detail


@pytest.mark.parametrize(
    ("result_type", "result"),
    [("matrix", [{"metric": {}, "values": [[1, "1"], [2, "2"]]}]), ("string", [1, "hello"])],
)
def test_matrix_and_string_are_bad_responses(prom: FakePrometheus, result_type: str, result: Any) -> None:
    prom.responses["q"] = success(result_type, result)
    reading = read(prom.url, "q")
    assert (reading.kind, reading.error_type) == (ReadingKind.ERROR, "bad_response")
    assert result_type in reading.detail
    assert "vector or scalar" in reading.detail


@pytest.mark.parametrize(
    ("status", "error_type", "error"),
    [
        (422, "execution", "vector cannot contain metrics with the same labelset"),
        (400, "bad_data", 'invalid parameter "query": 1:5: parse error: unexpected "}"'),
        (503, "timeout", "query timed out in expression evaluation"),
    ],
)
def test_api_errors(prom: FakePrometheus, status: int, error_type: str, error: str) -> None:
    prom.responses["q"] = Canned(
        status=status, body=json.dumps({"status": "error", "errorType": error_type, "error": error})
    )
    reading = read(prom.url, "q")
    assert (reading.kind, reading.value, reading.error_type) == (ReadingKind.ERROR, None, "api")
    assert reading.detail == f"HTTP {status} {error_type}: {error}"
    assert reading.query == "q"


def test_plain_text_503_is_an_http_error_whose_body_is_never_shown(prom: FakePrometheus) -> None:
    # whatever answers could be anything (a metadata service): its body never reaches a status
    prom.responses["q"] = Canned(status=503, body="secret-ish answer", content_type="text/plain")
    reading = read(prom.url, "q")
    assert (reading.kind, reading.error_type) == (ReadingKind.ERROR, "http")
    assert reading.detail == "HTTP 503 (not a Prometheus API answer; body not shown)"


def test_a_200_that_is_not_json_is_a_bad_response_whose_body_is_never_shown(prom: FakePrometheus) -> None:
    prom.responses["q"] = Canned(body="ami-id\ninstance-id\n", content_type="text/plain")
    reading = read(prom.url, "q")
    assert reading.detail == "response is not a JSON object (body not shown)"


def test_json_without_error_status_on_500_is_an_http_error(prom: FakePrometheus) -> None:
    prom.responses["q"] = Canned(status=500, body='{"message": "upstream exploded"}')
    reading = read(prom.url, "q")
    assert (reading.kind, reading.error_type) == (ReadingKind.ERROR, "http")
    assert "HTTP 500" in reading.detail


@pytest.mark.parametrize(
    "body",
    [
        "<html>not prometheus</html>",
        "",
        "[1, 2]",
        '{"status": "success"}',
        '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}',
        '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 3]}]}}',
        '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "x"]}]}}',
        '{"status": "success", "data": {"resultType": "scalar", "result": "1"}}',
        '{"status": "success", "data": {"resultType": "vector", "result": {}}}',
    ],
)
def test_unusable_200_bodies_are_bad_responses(prom: FakePrometheus, body: str) -> None:
    prom.responses["q"] = Canned(body=body)
    reading = read(prom.url, "q")
    assert (reading.kind, reading.value, reading.error_type) == (ReadingKind.ERROR, None, "bad_response")
    assert reading.detail


def test_slow_response_is_a_timeout(prom: FakePrometheus) -> None:
    prom.responses["slow"] = Canned(body=vector(({}, "1")).body, delay=5.0)
    reading = read(prom.url, "slow", timeout=0.3)
    assert (reading.kind, reading.value, reading.error_type) == (ReadingKind.ERROR, None, "timeout")
    assert reading.detail == "timeout after 0.3s"
    assert prom.requests[0][1]["timeout"] == ["300ms"]


def test_unreachable_port() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    reading = read(url, "up")
    assert (reading.kind, reading.value, reading.error_type) == (ReadingKind.ERROR, None, "unreachable")
    assert url in reading.detail
    assert reading.query == "up"


def test_invalid_url_is_unreachable() -> None:
    reading = read("http://exa mple:99999", "up")
    assert (reading.kind, reading.error_type) == (ReadingKind.ERROR, "unreachable")


def test_request_carries_query_and_timeout(prom: FakePrometheus) -> None:
    query = 'sum(rate(http_requests_total{code=~"5..",ns="a b&c"}[5m]))'
    prom.responses[query] = vector(({}, "1"))
    assert read(prom.url, query).value == 1.0
    path, params = prom.requests[-1]
    assert path == "/api/v1/query"
    assert params == {"query": [query], "timeout": ["5s"]}


@pytest.mark.parametrize("suffix", ["/prometheus", "/prometheus/"])
def test_base_url_with_path_prefix(prom: FakePrometheus, suffix: str) -> None:
    prom.responses["q"] = vector(({}, "7"))
    assert read(prom.url + suffix, "q").value == 7.0
    assert prom.requests[-1][0] == "/prometheus/api/v1/query"


def test_base_url_with_trailing_slash(prom: FakePrometheus) -> None:
    prom.responses["q"] = vector(({}, "7"))
    assert read(prom.url + "/", "q").value == 7.0
    assert prom.requests[-1][0] == "/api/v1/query"


def test_ready(prom: FakePrometheus) -> None:
    assert ready(prom.url) is True
    assert prom.requests[-1][0] == "/-/ready"


def test_not_ready(prom: FakePrometheus) -> None:
    prom.ready_status = 503
    assert ready(prom.url) is False


def test_ready_with_path_prefix(prom: FakePrometheus) -> None:
    assert ready(prom.url + "/prom/") is True
    assert prom.requests[-1][0] == "/prom/-/ready"


def test_ready_unreachable() -> None:
    assert ready(f"http://127.0.0.1:{free_port()}") is False


def test_reading_invariants() -> None:
    with pytest.raises(ValueError):
        Reading(ReadingKind.VALUE)
    with pytest.raises(ValueError):
        Reading(ReadingKind.NO_DATA, value=1.0)
    with pytest.raises(ValueError):
        Reading(ReadingKind.ERROR, detail="x")
    with pytest.raises(ValueError):
        Reading(ReadingKind.VALUE, value=1.0, error_type="http")
    assert Reading.error("timeout", "t", query="q") == Reading(
        ReadingKind.ERROR, detail="t", error_type="timeout", query="q"
    )


def read_all(base_url: str, query: str) -> Any:
    async def go() -> Any:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await PrometheusProvider(base_url, client).read_all(query)

    return asyncio.run(go())


def test_a_batched_query_returns_every_series_with_its_labels(prom: FakePrometheus) -> None:
    prom.responses["batch"] = vector(
        ({"namespace": "shop", "deployment": "cart"}, "0.5"),
        ({"namespace": "shop", "deployment": "web"}, "NaN"),
    )
    got = read_all(prom.url, "batch")
    assert [(dict(s.labels), s.reading.kind, s.reading.value) for s in got] == [
        ({"namespace": "shop", "deployment": "cart"}, ReadingKind.VALUE, 0.5),
        ({"namespace": "shop", "deployment": "web"}, ReadingKind.NO_DATA, None),
    ]
    (_, params), *_ = prom.requests
    assert params["query"] == ["batch"]


def test_a_failed_batched_query_is_one_error(prom: FakePrometheus) -> None:
    prom.responses["bad"] = Canned(
        status=422, body=json.dumps({"status": "error", "errorType": "execution", "error": "x"})
    )
    got = read_all(prom.url, "bad")
    assert isinstance(got, Reading) and got.kind is ReadingKind.ERROR and got.error_type == "api"


def test_a_batched_query_that_returns_a_scalar_is_an_error(prom: FakePrometheus) -> None:
    prom.responses["scalar"] = success("scalar", [1700000000, "1"])
    got = read_all(prom.url, "scalar")
    assert isinstance(got, Reading) and got.error_type == "bad_response"


def test_a_tls_alert_after_the_handshake_is_unreachable() -> None:
    # TLS 1.3: a server that wants a client certificate says so on the first read, and httpcore
    # lets that ssl.SSLError through unwrapped (seen against a real server in test_outbound_tls).
    def refuse(request: httpx.Request) -> httpx.Response:
        raise ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required")

    async def run() -> tuple[Reading, bool]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
            provider = PrometheusProvider("https://prometheus.example", client)
            return await provider.read("up"), await provider.ready()

    reading, ready = asyncio.run(run())
    assert (reading.kind, reading.error_type) == (ReadingKind.ERROR, "unreachable")
    assert "certificate required" in reading.detail
    assert ready is False
