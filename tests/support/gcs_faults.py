"""A real HTTP proxy in front of the Cloud Storage emulator that answers chosen requests 503.

Nothing of the client is replaced: the google-cloud-storage client sends real requests to this
proxy (its ``api_endpoint``), which forwards them to the gcp-storage-emulator and records every
one, except those matching a fault rule, which get the status the rule names instead. A test
then sees exactly how many requests the service received, which is what tells one retry loop
from two nested ones.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class _Rule:
    method: str
    pattern: re.Pattern[str]
    times: int
    status: int


class FaultyGcs:
    """The emulator at ``upstream`` (``http://host:port``) behind a fault-injecting proxy.

    Use as a context manager; :meth:`client` is a storage client talking through the proxy.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultyGcs:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method: str, pattern: str, times: int, status: int = 503) -> None:
        """Answer the next ``times`` ``method`` requests whose path matches ``pattern``."""
        with self._lock:
            self._rules.append(_Rule(method, re.compile(pattern), times, status))

    def statuses(self, method: str, pattern: str) -> list[int]:
        """What the ``method`` requests whose path matches ``pattern`` were answered, in order."""
        regex = re.compile(pattern)
        return [status for m, path, status in self.requests if m == method and regex.search(path)]

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="isamap-test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def _fault(self, method: str, path: str) -> int | None:
        with self._lock:
            for rule in self._rules:
                if rule.times and rule.method == method and rule.pattern.search(path):
                    rule.times -= 1
                    return rule.status
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = proxy._fault(self.command, self.path)
                if status is not None:
                    payload = (b'{"error": {"code": %d, "message": "injected"}}' % status)
                    # recorded before the answer leaves: a client that has its answer must
                    # find it in ``requests`` (recording after the write raced the test)
                    proxy._record(self.command, self.path, status)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                proxy._record(self.command, self.path, answer.status)
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler
