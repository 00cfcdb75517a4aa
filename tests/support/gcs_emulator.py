"""Start gcp-storage-emulator as its command does, with a server that serves clients side by side.

The emulator's own server (``http.server.HTTPServer``) handles one connection at a time from a
listen queue of five. One client that connects and then waits (a stalled request, a
connection opened for later) holds every other client of the session in the queue, and a
burst of connections beyond the queue is refused at the TCP level, which the client only
retries after its SYN back-off: seconds to minutes of a test waiting on nothing. Real Cloud
Storage serves each connection independently, so tests must not depend on that queue.

Here the emulator runs unchanged, except that its server takes each connection in a thread
(with a deep listen queue and a socket timeout that drops a connection silent for
:data:`IDLE_SECONDS`), while the emulator's request handling itself stays one request at a
time (:data:`_serial`): its in-memory store was written for one thread.

Usage, the same arguments as ``gcp-storage-emulator``:
``python tests/support/gcs_emulator.py start --host 127.0.0.1 --port PORT --in-memory``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from http import server as http_server

from gcp_storage_emulator import server as emulator
from gcp_storage_emulator.__main__ import main

#: seconds a connection may stay silent (no request sent, no answer read) before it is dropped
IDLE_SECONDS = 30
_serial = threading.Lock()


class ConcurrentServer(http_server.ThreadingHTTPServer):
    """One (daemon) thread per connection, a listen queue that a burst does not fill."""

    request_queue_size = 128


def _one_at_a_time(method: Callable[[http_server.BaseHTTPRequestHandler], None]
                   ) -> Callable[[http_server.BaseHTTPRequestHandler], None]:
    """``method`` under the lock; the request line and headers were read before it, so a
    client that sends nothing waits in its own thread without holding the lock."""
    def handle(self: http_server.BaseHTTPRequestHandler) -> None:
        with _serial:
            method(self)

    return handle


def patch_emulator() -> None:
    """Make the emulator's server concurrent, as the module's docstring says."""
    handler = emulator.RequestHandler
    for name in ("do_GET", "do_POST", "do_PUT", "do_PATCH", "do_DELETE"):
        setattr(handler, name, _one_at_a_time(getattr(handler, name)))
    handler.timeout = IDLE_SECONDS
    emulator.server.HTTPServer = ConcurrentServer  # type: ignore[misc]


if __name__ == "__main__":
    patch_emulator()
    sys.exit(main(sys.argv[1:]))
