"""Does Git still name the rolled-back image? The Flux artifact's files, read as source-controller serves them
(a tarball over HTTP, here from a loopback server)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from loopback import Quiet, serving

from hemostat import flux_artifact

WEB = "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - image: {}\n"


def tarball(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def serve() -> Iterator[Any]:
    with ExitStack() as servers:

        def start(body: bytes, status: int = 200) -> str:
            class Handler(Quiet):
                def do_GET(self) -> None:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            return servers.enter_context(serving(Handler)) + "/gitrepository/shop/shop/abc.tar.gz"

        yield start


def test_the_files_under_the_kustomizations_path_are_read_and_the_image_found(serve: Any) -> None:
    url = serve(
        tarball(
            {
                "deploy/web.yaml": WEB.format("registry.local/web:v2"),
                "deploy/README.md": "registry.local/web:v2 was bad",  # not a manifest
                "other/web.yaml": WEB.format("registry.local/web:v2"),  # not under the path
            }
        )
    )
    files = flux_artifact.read(url, "./deploy")
    assert sorted(files) == ["deploy/web.yaml"]
    assert flux_artifact.naming(files, "registry.local/web:v2") == ["deploy/web.yaml"]


@pytest.mark.parametrize(
    ("in_git", "found"),
    [
        ("registry.local/web:v2", True),
        ('"registry.local/web:v2"', True),
        ("registry.local/web:v2.1", False),  # another tag
        ("registry.local/other-web:v2", False),
        ("mirror.registry.local/web:v2", False),
        ("registry.local/web:v2@sha256:abc", False),  # pinned by digest: another reference
        ("registry.local/web:v1", False),
    ],
)
def test_an_image_is_found_only_as_a_whole_reference(in_git: str, found: bool) -> None:
    files = {"deploy/web.yaml": WEB.format(in_git)}
    assert flux_artifact.naming(files, "registry.local/web:v2") == (["deploy/web.yaml"] if found else [])
    assert flux_artifact.naming(files, "sidecar:v1, registry.local/web:v2") == (["deploy/web.yaml"] if found else [])


def test_an_artifact_that_cannot_be_read_says_why(serve: Any) -> None:
    with pytest.raises(flux_artifact.Unreadable, match=r"127\.0\.0\.1: HTTPStatusError"):
        flux_artifact.read(serve(b"gone", status=404), "./")
    with pytest.raises(flux_artifact.Unreadable, match="not a tarball"):
        flux_artifact.read(serve(b"<html>"), "./")
    with pytest.raises(flux_artifact.Unreadable, match="ConnectError"):
        flux_artifact.read("http://127.0.0.1:1/a.tar.gz", "./")
