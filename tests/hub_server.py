"""A local stand-in for the Hugging Face Hub: fixture model repositories behind the Hub's HTTP API.

It answers what ``huggingface_hub`` calls for ``snapshot_download`` / ``hf_hub_download`` (standard library,
one background thread):

* ``GET /api/models/{repo}/revision/{revision}``: ``id``, ``sha`` (the commit) and ``siblings``;
* ``GET /api/models/{repo}/tree/{revision}``: the file listing (``type``, ``path``, ``size``, git ``oid``, and an
  ``lfs`` entry with the SHA-256 for large files), as the Hub lists it;
* ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``: small files directly with ``ETag`` (git blob id),
  ``X-Repo-Commit`` and ``Content-Length``; LFS files as the Hub does, a 302 to a content URL on another origin
  (its CDN) with ``X-Linked-Etag`` (the SHA-256) and ``X-Linked-Size``; the content URL honours ``Range``;
* unknown repositories, revisions and files: 404 with the Hub's ``X-Error-Code`` (``RepoNotFound``,
  ``RevisionNotFound``, ``EntryNotFound``).

Each :meth:`LocalHub.commit` creates a commit (id: SHA-1 of its content) and moves the branch to it; ``tags``
name it too. ``requests`` records ``(method, path)`` of every request. Usage::

    with LocalHub() as hub:
        sha = hub.commit("org/model", {"config.json": b"{}", "model.safetensors": blob}, tags=["v1"])
        os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

#: files stored with git LFS on the Hub (weights); everything else is a plain git blob
LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt")


@dataclass(frozen=True)
class HubFile:
    data: bytes

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class LocalHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, HubFile]]] = {}  # repo -> commit -> path -> file
        self.refs: dict[str, dict[str, str]] = {}  # repo -> branch or tag -> commit
        self.blobs: dict[str, bytes] = {}  # sha256 -> content (the LFS "CDN")
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        # the API and a second origin for LFS content, as the Hub redirects to its CDN (not followed on a HEAD)
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class()) for _ in range(2)]
        self._threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in self._servers]
        for server in self._servers:
            server.daemon_threads = True

    @property
    def url(self) -> str:
        return self._origin(self._servers[0])

    @property
    def content_url(self) -> str:
        return self._origin(self._servers[1])

    @staticmethod
    def _origin(server: ThreadingHTTPServer) -> str:
        host, port = server.server_address[:2]
        return f"http://{host}:{port}"

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main", tags: tuple[str, ...] = ()) -> str:
        """Add a commit holding exactly ``files`` to ``repo_id``; move ``branch`` and ``tags`` to it."""
        content = {path: HubFile(data) for path, data in files.items()}
        listing = json.dumps(sorted((path, f.git_oid) for path, f in content.items())).encode()
        sha = hashlib.sha1(repo_id.encode() + listing + str(len(self.repos.get(repo_id, {}))).encode()).hexdigest()
        with self._lock:
            self.repos.setdefault(repo_id, {})[sha] = content
            for ref in (branch, *tags):
                self.refs.setdefault(repo_id, {})[ref] = sha
            self.blobs.update({f.sha256: f.data for path, f in content.items() if path.endswith(LFS_SUFFIXES)})
        return sha

    def resolve(self, repo_id: str, revision: str) -> str | None:
        commits = self.repos.get(repo_id, {})
        return revision if revision in commits else self.refs.get(repo_id, {}).get(revision)

    def __enter__(self) -> LocalHub:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server, thread in zip(self._servers, self._threads):
            server.shutdown()
            server.server_close()
            thread.join()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._dispatch(body=False)

            def do_GET(self) -> None:
                self._dispatch(body=True)

            def _dispatch(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                with hub._lock:
                    hub.requests.append((self.command, path))
                if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/(.+)", path):
                    self._revision(match[1], match[2], body)
                elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
                    self._tree(match[1], match[2], body)
                elif match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    self._resolve(match[1], match[2], match[3], body)
                elif match := re.fullmatch(r"/lfs/([0-9a-f]{64})", path):
                    self._blob(match[1], body)
                else:
                    self._error(HTTPStatus.NOT_FOUND, None, body)

            def _commit(self, repo_id: str, revision: str, body: bool) -> str | None:
                if repo_id not in hub.repos:
                    self._error(HTTPStatus.NOT_FOUND, "RepoNotFound", body)
                    return None
                sha = hub.resolve(repo_id, revision)
                if sha is None:
                    self._error(HTTPStatus.NOT_FOUND, "RevisionNotFound", body)
                return sha

            def _revision(self, repo_id: str, revision: str, body: bool) -> None:
                sha = self._commit(repo_id, revision, body)
                if sha is not None:
                    files = hub.repos[repo_id][sha]
                    self._json(
                        {
                            "id": repo_id,
                            "modelId": repo_id,
                            "sha": sha,
                            "private": False,
                            "siblings": [{"rfilename": path} for path in sorted(files)],
                        },
                        body,
                    )

            def _tree(self, repo_id: str, revision: str, body: bool) -> None:
                sha = self._commit(repo_id, revision, body)
                if sha is None:
                    return
                entries = []
                for path, file in sorted(hub.repos[repo_id][sha].items()):
                    entry = {"type": "file", "oid": file.git_oid, "size": len(file.data), "path": path}
                    if path.endswith(LFS_SUFFIXES):
                        entry["lfs"] = {"oid": file.sha256, "size": len(file.data), "pointerSize": 134}
                    entries.append(entry)
                self._json(entries, body)

            def _resolve(self, repo_id: str, revision: str, filename: str, body: bool) -> None:
                sha = self._commit(repo_id, revision, body)
                if sha is None:
                    return
                file = hub.repos[repo_id][sha].get(filename)
                if file is None:
                    self._error(HTTPStatus.NOT_FOUND, "EntryNotFound", body, {"X-Repo-Commit": sha})
                    return
                if filename.endswith(LFS_SUFFIXES):  # the Hub redirects LFS files to their content URL
                    self.send_response(HTTPStatus.FOUND)
                    for key, value in {
                        "Location": f"{hub.content_url}/lfs/{file.sha256}",
                        "X-Repo-Commit": sha,
                        "X-Linked-Etag": f'"{file.sha256}"',
                        "X-Linked-Size": str(len(file.data)),
                        "ETag": f'"{file.git_oid}"',
                        "Content-Length": "0",
                    }.items():
                        self.send_header(key, value)
                    self.end_headers()
                    return
                self._send(file.data, body, {"ETag": f'"{file.git_oid}"', "X-Repo-Commit": sha})

            def _blob(self, sha256: str, body: bool) -> None:
                data = hub.blobs.get(sha256)
                if data is None:
                    self._error(HTTPStatus.NOT_FOUND, None, body)
                    return
                start = 0
                if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
                    start = int(match[1])
                self._send(
                    data[start:],
                    body,
                    {"ETag": f'"{sha256}"'},
                    HTTPStatus.PARTIAL_CONTENT if start else HTTPStatus.OK,
                    {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {},
                )

            def _json(self, obj: object, body: bool) -> None:
                self._send(json.dumps(obj).encode(), body, {"Content-Type": "application/json"})

            def _error(self, status: HTTPStatus, code: str | None, body: bool, headers: dict | None = None) -> None:
                extra = {"X-Error-Code": code, "X-Error-Message": code} if code else {}
                self._send(
                    json.dumps({"error": code or status.phrase}).encode(),
                    body,
                    {"Content-Type": "application/json", **extra, **(headers or {})},
                    status,
                )

            def _send(
                self,
                data: bytes,
                body: bool,
                headers: dict,
                status: HTTPStatus = HTTPStatus.OK,
                more: dict | None = None,
            ) -> None:
                self.send_response(status)
                for key, value in {**headers, **(more or {}), "Content-Length": str(len(data))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler
