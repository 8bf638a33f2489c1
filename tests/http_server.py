"""A local HTTP server for download tests (standard library, one background thread).

It serves a directory with byte ranges (``Range: bytes=N-`` or ``N-M`` -> 206, past the end -> 416) and
directory listings, and misbehaves on demand:

* ``server.fail[path] = [500, 503]`` answers the next requests for ``path`` with those statuses, in order;
* ``server.cut[path] = n`` announces the full length but sends only ``n`` bytes of the next response for
  ``path`` and drops the connection (an interrupted transfer).

``server.requests`` records ``(path, Range header or None)`` for every request. Usage::

    with LocalHTTPServer(tmp_path) as server:
        url = server.url("genome.fa.gz")
"""

from __future__ import annotations

import re
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LocalHTTPServer:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.fail: dict[str, list[int]] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def __enter__(self) -> "LocalHTTPServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _handler_class(self) -> type[SimpleHTTPRequestHandler]:
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(server.root), **kwargs)

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append((path, self.headers.get("Range")))
                    failures = server.fail.get(path)
                    status = failures.pop(0) if failures else None
                    cut = server.cut.pop(path, None)
                if status is not None:
                    self.send_error(status)
                    return
                file = Path(self.translate_path(path))
                if file.is_dir():
                    super().do_GET()
                    return
                if not file.is_file():
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                data = file.read_bytes()
                start, end = 0, len(data)
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                if match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    end = min(len(data), int(match.group(2)) + 1) if match.group(2) else len(data)
                    self.send_response(HTTPStatus.PARTIAL_CONTENT)
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                else:
                    self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(end - start))
                self.end_headers()
                body = data[start:end]
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler
