"""A user's gcloud login for the tests: the OAuth token endpoint GDAL refreshes tokens at."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USER_REFRESH_TOKEN = "1//refresh-token-of-the-user"


class TokenEndpoint:
    """Google's OAuth token endpoint as GDAL talks to it: a form POST, a JSON token.

    ``posts`` holds every request's form fields; ``url`` is what ``GOA2_AUTH_URL_TOKEN`` names.
    """

    def __init__(self) -> None:
        posts: list[dict[str, list[str]]] = []
        self.posts = posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                posts.append(urllib.parse.parse_qs(body))
                payload = json.dumps({"access_token": "ya29.test", "expires_in": 3600,
                                      "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
