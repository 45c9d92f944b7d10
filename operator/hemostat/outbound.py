"""Requests the operator sends out (Prometheus, webhooks): where to, and with which credentials.

Policy authors choose signals[].prometheus.url and their webhooks' URLs (in their own Secrets), so
the operator calls only URLs an operator admin allowed (`signals.allowed.url_allowed`, pure). TLS
and auth (`ClientAuth`) are applied by httpx itself: a CA bundle, a client certificate, a bearer
token read from a file on every request (so rotated, projected tokens just work) and extra headers.
Webhook credentials are bound to the destinations an admin names (`Webhooks`), each destination
with its own (`load_destinations`): a tenant who points a webhook at their own host gets the payload,
never a token, and one receiver never gets another's.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from .errors import UserError
from .signals.allowed import url_allowed


class BearerTokenFile(httpx.Auth):
    """`Authorization: Bearer <token>`, the token read from its file for every request."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.path.read_text().strip()}"
        yield request


@dataclass(frozen=True)
class ClientAuth:
    """TLS and credentials for one kind of destination; empty means plain httpx defaults."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    bearer_token_file: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def verify(self) -> ssl.SSLContext | bool:
        """The TLS context (or httpx's default); raises ssl.SSLError/OSError for unusable files."""
        if self.ca_file is None and self.cert_file is None:
            return True
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context

    @property
    def credentials(self) -> bool:
        """Whether it carries anything that proves who we are (more than which servers we trust)."""
        return bool(self.cert_file or self.bearer_token_file or self.headers)

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        """An httpx client that carries these settings on every request."""
        auth = BearerTokenFile(self.bearer_token_file) if self.bearer_token_file else None
        return httpx.AsyncClient(verify=self.verify(), auth=auth, headers=self.headers, trust_env=False, **kwargs)


def client_auth(
    what: str,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    bearer_token_file: str | None,
    headers: Sequence[str],
    flag: Callable[[str], str] | None = None,
) -> ClientAuth:
    """ClientAuth from command-line values; a missing file or a malformed header is a UserError naming
    the setting as `flag` spells it (default: --<what>-<setting>)."""
    flag = flag or (lambda setting: f"--{what}-{setting}")
    files = {"ca-file": ca_file, "cert-file": cert_file, "key-file": key_file, "bearer-token-file": bearer_token_file}
    for setting, value in files.items():
        if value is not None and not Path(value).is_file():
            raise UserError(f"{flag(setting)} {value}: no such file")
    if key_file and not cert_file:
        raise UserError(f"{flag('key-file')} needs {flag('cert-file')}")
    parsed = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise UserError(f"{flag('header')} {header!r}: use 'Name: value', e.g. 'X-Scope-OrgID: team-a'")
        parsed[name.strip()] = value.strip()
    auth = ClientAuth(
        *(Path(v) if v else None for v in (ca_file, cert_file, key_file, bearer_token_file)), headers=parsed
    )
    try:
        auth.verify()  # unreadable PEM is a mistake to report now, not a crash at startup
    except (ssl.SSLError, OSError) as exc:
        said = " / ".join(flag(s) for s in ("ca-file", "cert-file", "key-file"))
        raise UserError(f"{said}: cannot load: {exc}") from None
    return auth


class Destination(BaseModel):
    """One webhook receiver and the credentials only it gets (an entry of --webhook-destinations)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    url: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    bearer_token_file: str | None = None
    headers: dict[str, str] = {}


def load_destinations(path: str) -> list[tuple[str, ClientAuth]]:
    """The --webhook-destinations file: a YAML list of {url, caFile, certFile, keyFile, bearerTokenFile,
    headers}; anything wrong with it is one UserError naming the file and the entry."""
    where = f"--webhook-destinations {path}"
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UserError(f"{where}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(loaded, list):
        raise UserError(f"{where}: expected a list of destinations (- url: ..., bearerTokenFile: ...)")
    out = []
    for number, entry in enumerate(loaded, start=1):
        try:
            d = Destination.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(x) for x in first["loc"]) or "entry"
            raise UserError(f"{where}: entry {number}: {field}: {first['msg']}") from None
        check_urls(f"{where}: entry {number}: url", [d.url])
        headers = [f"{k}: {v}" for k, v in d.headers.items()]

        def flag(setting: str, number: int = number, url: str = d.url) -> str:
            return f"{where}: entry {number} ({url}): {to_camel(setting.replace('-', '_'))}"

        files = (d.ca_file, d.cert_file, d.key_file, d.bearer_token_file)
        out.append((d.url, client_auth("webhook", *files, headers, flag)))
    return out


def check_urls(flag: str, urls: Sequence[str]) -> None:
    """Each URL an admin allows (or binds credentials to) is a plain http(s) URL; else a UserError."""
    for url in urls:
        if not url_allowed(url, [url]):
            raise UserError(f"{flag} {url!r}: use an http(s) URL without user, query or fragment")


NOT_ALLOWED = "this operator does not call that URL (not under --allowed-webhook-url)"


class Webhooks:
    """Where webhook deliveries go, and with what: the operator-wide credentials (`auth`) only to URLs
    under `credentials_for`, each of `destinations`' own only to URLs under its URL (the longest match
    wins), any other URL a bare client (the same CA trust; no token, header or client certificate);
    with `allowed`, only URLs under it are called at all."""

    def __init__(
        self,
        auth: ClientAuth,
        credentials_for: Sequence[str] = (),
        allowed: Sequence[str] = (),
        destinations: Sequence[tuple[str, ClientAuth]] = (),
    ) -> None:
        self.allowed = tuple(allowed)
        shared = auth.client()
        self.bound = [(url, shared) for url in credentials_for] + [(url, a.client()) for url, a in destinations]
        self.bound.sort(key=lambda pair: len(pair[0]), reverse=True)
        self.clients = [shared, *(c for _, c in self.bound if c is not shared)]
        self.bare = ClientAuth(ca_file=auth.ca_file).client()

    @staticmethod
    def check(auth: ClientAuth, credentials_for: Sequence[str], allowed: Sequence[str]) -> None:
        """The command line's settings; credentials without a destination are a UserError."""
        if auth.credentials and not credentials_for:
            raise UserError(
                "--webhook-cert-file, --webhook-bearer-token-file and --webhook-header need --webhook-auth-url: "
                "the operator's credentials go only to a destination you name, never to whatever URL a tenant's "
                "Secret holds"
            )
        check_urls("--webhook-auth-url", credentials_for)
        check_urls("--allowed-webhook-url", allowed)

    def client_for(self, url: str) -> httpx.AsyncClient | str:
        """The client to post to `url` with, or why it is not called."""
        if self.allowed and not url_allowed(url, self.allowed, query=True):
            return NOT_ALLOWED
        return next((client for prefix, client in self.bound if url_allowed(url, [prefix], query=True)), self.bare)

    async def aclose(self) -> None:
        for client in (*self.clients, self.bare):
            await client.aclose()
