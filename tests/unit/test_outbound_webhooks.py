"""Webhook URLs come from tenants' Secrets: the operator's webhook credentials go only to the
destinations an operator admin bound them to, and only allowed URLs are called at all.

Real HTTP on loopback: what each server received is what a tenant's host would receive."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import Quiet, serving

from hemostat import notify
from hemostat.errors import UserError
from hemostat.outbound import ClientAuth, Webhooks, client_auth, load_destinations


class Capture:
    """What a loopback HTTP server received: the headers of every POST."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.url = ""

    def handler(self) -> type[Quiet]:
        seen = self.seen

        class Handler(Quiet):
            def do_POST(self) -> None:
                seen.append(dict(self.headers))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()

        return Handler


@pytest.fixture
def servers() -> Iterator[tuple[Capture, Capture]]:
    ours, theirs = Capture(), Capture()
    with serving(ours.handler()) as ours.url, serving(theirs.handler()) as theirs.url:
        yield ours, theirs


def credentials(tmp_path: Path) -> Any:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    return client_auth("webhook", None, None, None, str(token), ["X-Api-Key: k"])


def send(webhooks: Webhooks, *urls: str) -> str | None:
    async def go() -> str | None:
        try:
            return await notify.deliver(webhooks, [(u, {"text": "x"}) for u in urls])
        finally:
            await webhooks.aclose()

    return asyncio.run(go())


def test_the_operators_webhook_credentials_reach_only_their_destination(
    servers: tuple[Capture, Capture], tmp_path: Path
) -> None:
    ours, theirs = servers
    webhooks = Webhooks(credentials(tmp_path), credentials_for=(ours.url + "/hooks",))
    assert send(webhooks, ours.url + "/hooks/sev1", theirs.url + "/steal") is None
    (got,) = ours.seen
    assert got["Authorization"] == "Bearer s3cret" and got["X-Api-Key"] == "k"
    (tenant,) = theirs.seen  # a tenant's own host is still called, as the tenant asked, but bare
    assert "Authorization" not in tenant and "X-Api-Key" not in tenant


def test_a_webhook_outside_the_allow_list_is_never_called_and_the_error_says_why(
    servers: tuple[Capture, Capture], tmp_path: Path
) -> None:
    ours, theirs = servers
    webhooks = Webhooks(credentials(tmp_path), credentials_for=(ours.url,), allowed=(ours.url,))
    error = send(webhooks, ours.url + "/a", theirs.url + "/b")
    assert theirs.seen == [] and len(ours.seen) == 1
    assert error == "127.0.0.1: this operator does not call that URL (not under --allowed-webhook-url)"


def test_credentials_without_a_destination_are_refused_at_startup(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="need --webhook-auth-url: the operator's credentials go only to a destination"):
        Webhooks.check(credentials(tmp_path), credentials_for=(), allowed=())
    Webhooks.check(
        client_auth("webhook", None, None, None, None, []), credentials_for=(), allowed=()
    )  # nothing to bind
    with pytest.raises(UserError, match=re.escape("--allowed-webhook-url 'hooks.example': use an http")):
        Webhooks.check(credentials(tmp_path), credentials_for=("https://hooks.example",), allowed=("hooks.example",))


def test_each_destination_gets_its_own_credentials_and_only_its_own(
    servers: tuple[Capture, Capture], tmp_path: Path
) -> None:
    ours, theirs = servers  # two receivers, say PagerDuty and Slack, each with its own token
    for name, token in (("pager", "p-token"), ("chat", "c-token")):
        (tmp_path / name).write_text(token)
    config = tmp_path / "destinations.yaml"
    config.write_text(
        f"- url: {ours.url}/pager\n  bearerTokenFile: {tmp_path / 'pager'}\n"
        f"- url: {theirs.url}/chat\n  bearerTokenFile: {tmp_path / 'chat'}\n  headers: {{X-Team: sre}}\n"
    )
    webhooks = Webhooks(ClientAuth(), destinations=load_destinations(str(config)))
    assert send(webhooks, ours.url + "/pager/sev1", theirs.url + "/chat/room", ours.url + "/other") is None
    (pager, bare) = ours.seen
    (chat,) = theirs.seen
    assert pager["Authorization"] == "Bearer p-token" and "X-Team" not in pager
    assert chat["Authorization"] == "Bearer c-token" and chat["X-Team"] == "sre"
    assert "Authorization" not in bare  # under no destination: no credentials at all


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("- url: https://hooks.example/\n  bearerTokenFile: /nope\n", "entry 1 (https://hooks.example/): "),
        ("- url: hooks.example\n", "entry 1: url 'hooks.example': use an http(s) URL"),
        ("- {url: 'https://a.example/', token: x}\n", "entry 1: token: Extra inputs are not permitted"),
        ("url: https://a.example/\n", "a list of destinations"),
        ("- url: [\n", "not YAML"),
    ],
)
def test_a_bad_destinations_file_is_one_clear_error_at_startup(tmp_path: Path, text: str, error: str) -> None:
    config = tmp_path / "destinations.yaml"
    config.write_text(text)
    with pytest.raises(UserError, match=re.escape(f"--webhook-destinations {config}: ") + ".*" + re.escape(error)):
        load_destinations(str(config))
