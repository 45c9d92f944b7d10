#!/usr/bin/env python3
"""A read-only smart-HTTP git server on 127.0.0.1 for the bare repositories under a root.

    hack/gitserver.py ROOT [--port N]     (N = 0, the default: any free port)

Prints `serving ROOT at http://127.0.0.1:PORT` once it listens; a repository ROOT/app.git is
then cloned from http://127.0.0.1:PORT/app.git. Only fetches: GET /<repo>/info/refs
?service=git-upload-pack and POST /<repo>/git-upload-pack, each answered by
`git upload-pack --stateless-rpc`, as git http-backend does. Python's `http.server --cgi` with
git http-backend does not serve Flux's clones (it drops to `nobody` when run as root, and its
request-body handling does not suit go-git), hence these lines. Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import subprocess
import sys
import threading
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROUTE = re.compile(r"^/(?P<repo>[^?]+?)/(?P<endpoint>info/refs|git-upload-pack)$")
MAX_BODY = 64 << 20  # a fetch request lists wants and haves; nothing near this


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return b"%04x" % (len(data) + 4) + data


class GitHandler(BaseHTTPRequestHandler):
    server: GitServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        repo = self._repo(url.path, "info/refs")
        if repo is None:
            return
        if parse_qs(url.query).get("service") != ["git-upload-pack"]:
            # no dumb protocol and no pushes (git-receive-pack)
            self._error(HTTPStatus.FORBIDDEN, "only service=git-upload-pack is served")
            return
        out = self._upload_pack(repo, "--advertise-refs", b"")
        if out is None:
            return
        if "version=2" not in self.headers.get("Git-Protocol", ""):
            # protocol v0/v1 (go-git's): the smart-HTTP service header, then the advertisement
            out = pkt_line("# service=git-upload-pack\n") + b"0000" + out
        self._reply("application/x-git-upload-pack-advertisement", out)

    def do_POST(self) -> None:
        repo = self._repo(urlsplit(self.path).path, "git-upload-pack")
        if repo is None:
            return
        try:
            body = self._body()
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        out = self._upload_pack(repo, None, body)
        if out is not None:
            self._reply("application/x-git-upload-pack-result", out)

    def _repo(self, path: str, endpoint: str) -> Path | None:
        match = ROUTE.match(path)
        if not match or match["endpoint"] != endpoint:
            self._error(HTTPStatus.NOT_FOUND, f"not a git smart-HTTP fetch URL: {path}")
            return None
        root = self.server.root
        repo = (root / match["repo"]).resolve()
        if not repo.is_relative_to(root) or not (repo / "HEAD").is_file() or not (repo / "objects").is_dir():
            self._error(HTTPStatus.NOT_FOUND, f"no repository {match['repo']} under {root}")
            return None
        return repo

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                size += length
                if size > MAX_BODY:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(length))
                self.rfile.readline(1024)  # the CRLF after each chunk
            body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("request body too large")
            body = self.rfile.read(length)
        encoding = self.headers.get("Content-Encoding", "").lower()
        try:
            if encoding in ("gzip", "x-gzip"):  # git (the CLI) gzips large requests
                return gzip.decompress(body)
            if encoding == "deflate":
                return zlib.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"bad {encoding} request body: {exc}") from exc
        if encoding not in ("", "identity"):
            raise ValueError(f"unsupported Content-Encoding: {encoding}")
        return body

    def _upload_pack(self, repo: Path, flag: str | None, body: bytes) -> bytes | None:
        env = {**os.environ, "GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
        args = ["git", "upload-pack", "--stateless-rpc", *([flag] if flag else []), str(repo)]
        proc = subprocess.run(args, input=body, capture_output=True, env=env, timeout=120)
        if proc.returncode != 0:
            self.log_message("%s: exit %d: %s", " ".join(args), proc.returncode, proc.stderr.decode(errors="replace"))
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "git upload-pack failed")
            return None
        return proc.stdout

    def _reply(self, content_type: str, data: bytes) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, max-age=0, must-revalidate")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str) -> None:
        data = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")
        sys.stderr.flush()


class GitServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root.resolve()
        super().__init__(("127.0.0.1", port), GitHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def serve_in_thread(root: Path, port: int = 0) -> GitServer:
    """For a test in the same process: the server answers from a daemon thread; .shutdown() stops it."""
    server = GitServer(root, port)
    threading.Thread(target=server.serve_forever, name="gitserver", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="directory holding the bare repositories")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args()
    if not args.root.is_dir():
        parser.error(f"{args.root} is not a directory")
    server = GitServer(args.root, args.port)
    print(f"serving {server.root} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
