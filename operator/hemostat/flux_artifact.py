"""What a Flux source's artifact holds: the files a Kustomization applies, to tell whether Git still names
the image Hemostat rolled back (`hemostat incident resolve --resume-gitops`).

The artifact is the tarball source-controller serves at `status.artifact.url`, usually reachable only
inside the cluster: a download that fails is `Unreadable`, and the caller says so instead of guessing.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile

import httpx

MAX_BYTES = 50 * 1024 * 1024  # an artifact larger than this is not read (a repository of manifests is far smaller)
MAX_FILE = 1024 * 1024
MANIFESTS = (".yaml", ".yml", ".json")


class Unreadable(Exception):
    """The artifact could not be downloaded or unpacked; the message says why in one line."""


def read(url: str, path: str, timeout: float = 10.0) -> dict[str, str]:
    """The manifest files under `path` in the artifact at `url`: name -> text."""
    try:
        with httpx.stream("GET", url, timeout=timeout, trust_env=False) as response:
            response.raise_for_status()
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk  # in place: no copy of what came before
                if len(data) > MAX_BYTES:
                    raise Unreadable(f"the artifact is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    except httpx.HTTPError as exc:
        raise Unreadable(f"{httpx.URL(url).host}: {type(exc).__name__} {exc}".strip()) from None
    root = posixpath.normpath(path.strip() or ".").lstrip("/")
    files = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                name = posixpath.normpath(member.name)
                inside = root == "." or name == root or name.startswith(root + "/")
                if member.isfile() and inside and name.endswith(MANIFESTS) and member.size <= MAX_FILE:
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        files[name] = extracted.read().decode("utf-8", "replace")
    except (tarfile.TarError, OSError) as exc:
        raise Unreadable(f"not a tarball: {exc}") from None
    return files


def naming(files: dict[str, str], image: str) -> list[str]:
    """The files that name one of `image` (comma-separated, as an Incident records a pod's images), as a
    whole reference: `web:v2` is not found in `web:v2.1` or `other-web:v2`."""
    wanted = [re.compile(rf"(?<![\w./:@-]){re.escape(i.strip())}(?![\w./:@-])") for i in image.split(",") if i.strip()]
    return sorted(name for name, text in files.items() if any(w.search(text) for w in wanted))
