"""The facade's worker threads share kept-alive connections: as many kept as there are workers.

The official client keeps 5 connections per CPU by default; with more workers than that, every
burst of calls opens connections it then discards (and urllib3 warns "Connection pool is full"
once per discarded connection: thousands of lines an hour under 100 policies).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from hemostat.kube import Kube


class SlowApiServer(ThreadingHTTPServer):
    """Answers every GET with a ConfigMap after a short wait (so calls overlap); counts connections."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.lock = threading.Lock()

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API server

    def do_GET(self) -> None:
        time.sleep(0.2)
        name = self.path.rsplit("/", 1)[-1]
        body = json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[SlowApiServer]:
    server = SlowApiServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    saved = client.Configuration.get_default_copy()
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{server.server_address[1]}"
    client.Configuration.set_default(cfg)  # what kopf's login does with the real kubeconfig
    try:
        yield server
    finally:
        client.Configuration.set_default(saved)
        server.shutdown()
        server.server_close()


def test_bursts_of_calls_reuse_one_connection_per_worker(
    api_server: SlowApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    workers = (os.cpu_count() or 1) * 5 + 4  # more than the client's default pool, on any machine
    kube = Kube(workers=workers)

    async def burst() -> list[dict | None]:
        return await asyncio.gather(*(kube.get_configmap("shop", f"flags-{i}") for i in range(workers)))

    with caplog.at_level(logging.WARNING, logger="urllib3"):
        first = asyncio.run(burst())
        second = asyncio.run(burst())
    assert [d["metadata"]["name"] for d in first + second if d] == [f"flags-{i}" for i in range(workers)] * 2
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert api_server.connections <= workers  # the second burst opened none
