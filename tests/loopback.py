"""One fake OpenAI-compatible endpoint on 127.0.0.1 for the tests of the endpoint model, its retry rules and
the judge: each test gives the function that answers a POST, the server does the HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (path, request headers, request body) -> (status, JSON answer, extra response headers)
Respond = Callable[[str, dict[str, str], bytes], tuple[int, object, dict[str, str]]]


@contextmanager
def json_server(respond: Respond) -> Iterator[str]:
    """Serve `respond` on a free loopback port in a thread; yield the base URL (ending in /v1)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, answer, headers = respond(self.path, dict(self.headers), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
