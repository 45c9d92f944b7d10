"""TLS and auth for Prometheus and webhooks, against a local HTTPS server that requires each of them:
a server certificate from a private CA, a client certificate (mTLS), a bearer token and a header."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hemostat.errors import UserError
from hemostat.notify import deliver
from hemostat.outbound import ClientAuth, client_auth
from hemostat.signals.base import ReadingKind
from hemostat.signals.prometheus import PrometheusProvider

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]}}


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl."""
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test-ca", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        openssl(
            *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"),
            *("-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext"),
            cwd=d,
        )
    return d


@dataclass
class Server:
    url: str
    token: list[str]  # the token the server accepts now
    seen: list[str] = field(default_factory=list)  # Authorization headers received


@pytest.fixture
def server(pki: Path) -> Iterator[Server]:
    state = Server("", ["t1"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.seen.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != f"Bearer {state.token[0]}":
                return self._send(401, {"status": "error", "errorType": "unauthorized", "error": "bad token"})
            if self.headers.get("X-Scope-OrgID") != "team-a":
                return self._send(403, {"status": "error", "errorType": "forbidden", "error": "no tenant"})
            self._send(200, VECTOR if self.path == "/api/v1/query" else {"ok": True})

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"https://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def full(pki: Path, token: Path) -> ClientAuth:
    return ClientAuth(
        pki / "ca.crt", pki / "client.crt", pki / "client.key", token, headers={"X-Scope-OrgID": "team-a"}
    )


def query(auth: ClientAuth, url: str):
    async def run():
        async with auth.client() as client:
            return await PrometheusProvider(url, client).read("up")

    return asyncio.run(run())


def test_prometheus_with_ca_client_certificate_token_and_header(server: Server, pki: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t1\n")
    reading = query(full(pki, token), server.url)
    assert (reading.kind, reading.value) == (ReadingKind.VALUE, 0.25)
    # a rotated token (a projected ServiceAccount token, a renewed secret) is used at once
    token.write_text("t2\n")
    server.token[0] = "t2"
    assert query(full(pki, token), server.url).value == 0.25
    assert server.seen == ["Bearer t1", "Bearer t2"]


@pytest.mark.parametrize(
    ("drop", "error_type", "fragment"),
    [
        ("ca", "unreachable", "CERTIFICATE_VERIFY_FAILED"),  # the server is not trusted
        ("cert", "unreachable", "cannot reach"),  # the server refuses the handshake
        ("token", "api", "HTTP 401 unauthorized"),
        ("header", "api", "HTTP 403 forbidden"),
    ],
)
def test_prometheus_without_each_requirement_is_an_error(
    server: Server, pki: Path, tmp_path: Path, drop: str, error_type: str, fragment: str
) -> None:
    token = tmp_path / "token"
    token.write_text("t1")
    auth = full(pki, token)
    auth = {
        "ca": ClientAuth(None, auth.cert_file, auth.key_file, token, auth.headers),
        "cert": ClientAuth(auth.ca_file, None, None, token, auth.headers),
        "token": ClientAuth(auth.ca_file, auth.cert_file, auth.key_file, None, auth.headers),
        "header": ClientAuth(auth.ca_file, auth.cert_file, auth.key_file, token, {}),
    }[drop]
    reading = query(auth, server.url)
    assert (reading.kind, reading.error_type) == (ReadingKind.ERROR, error_type)
    assert fragment in reading.detail, reading.detail


def test_webhooks_with_the_same_kinds_of_credentials(server: Server, pki: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t1")

    def post(auth: ClientAuth) -> str | None:
        async def run() -> str | None:
            async with auth.client() as client:
                return await deliver(client, [(f"{server.url}/hooks/T0/SECRET", {"text": "hi"})])

        return asyncio.run(run())

    assert post(full(pki, token)) is None
    no_header = full(pki, token)
    assert post(ClientAuth(no_header.ca_file, no_header.cert_file, no_header.key_file, token)) == (
        "127.0.0.1 answered HTTP 403"
    )


def test_bad_settings_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--prometheus-ca-file /nope: no such file"):
        client_auth("prometheus", "/nope", None, None, None, [])
    with pytest.raises(UserError, match="--webhook-header 'X-Scope-OrgID team-a': use 'Name: value'"):
        client_auth("webhook", None, None, None, None, ["X-Scope-OrgID team-a"])
    key = tmp_path / "k"
    key.write_text("x")
    with pytest.raises(UserError, match="--prometheus-key-file needs --prometheus-cert-file"):
        client_auth("prometheus", None, None, str(key), None, [])
    with pytest.raises(UserError, match="cannot load"):
        client_auth("prometheus", str(key), None, None, None, [])  # not a PEM bundle
