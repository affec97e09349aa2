"""A local HTTP server that misbehaves on purpose, for the bounded-read and oddity tests.

Answers GET and POST alike, by the first segment of the path (the rest is ignored, so that a
Prometheus address such as `<url>/drip` works as it is):

    /huge            200 with a 1 GiB body, generated while it is sent, no Content-Length
    /huge-declared   200 with a 1 GiB body, and a Content-Length that says so
    /drip            200, then one body byte every DRIP_SECONDS, for ever
    /redirect-loop   302 to itself
    /html            200 with an HTML page
    /html-error      502 with an HTML page (a proxy's error page)
    /json/NAME       200 with the JSON document `json_bodies[NAME]` (`ODD_ANSWERS` by default)
    /echo...         403 quoting the request's path and query (as some error pages do)

    with HostileServer() as server:
        await call_webhook(f"{server.url}/drip", ...)

Handlers stop sending once the client goes away or the server is closed.
"""

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from activities.errors import MetricsUnavailableError, PermanentError

GIB = 1024**3
CHUNK = b"x" * 65536
DRIP_SECONDS = 0.1
HTML = (
    b"<html><head><title>502 Bad Gateway</title></head>\n<body>\n<h1>Bad Gateway</h1></body></html>"
)


def vector(*values: str) -> dict[str, Any]:
    series = [{"metric": {"pod": f"p{i}"}, "value": [1.7e9, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": series}}


ODD_ANSWERS: dict[str, Any] = {
    "two-series": vector("99.5", "12"),
    "string": {"status": "success", "data": {"resultType": "string", "result": [1.7e9, "up"]}},
    "not-prometheus": {"hello": "world"},
    "malformed-vector": {"status": "success", "data": {"resultType": "vector", "result": [{}]}},
}
"""JSON answers that are not one instant value, by name (served at `/json/<name>`)."""

ODDITIES = [
    ("/redirect-loop", MetricsUnavailableError, "more than 5 redirects"),
    ("/html", MetricsUnavailableError, "the answer is not JSON (text/html)"),
    ("/html-error", MetricsUnavailableError, "status 502: <html><head><title>502 Bad Gateway"),
    ("/huge", MetricsUnavailableError, "response body larger than 4 MiB"),
    ("/huge-declared", MetricsUnavailableError, "response body larger than 4 MiB"),
    ("/drip", MetricsUnavailableError, "timed out after 1s"),
    ("/json/two-series", PermanentError, "query returns 2 series, not one"),
    ("/json/string", PermanentError, "query returns a string, not a number"),
    ("/json/not-prometheus", MetricsUnavailableError, "the answer is not a Prometheus"),
    ("/json/malformed-vector", PermanentError, "query returns a malformed vector"),
]
"""Prometheus addresses on `HostileServer` (a path under its URL), the error a query with a 1 s
deadline gives, and the start of its message after the address (or of the whole message, for
a `PermanentError`)."""


class HostileServer:
    def __init__(self) -> None:
        self.json_bodies: dict[str, Any] = dict(ODD_ANSWERS)
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer()  # until the client gives up, as it should

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.do_GET()

            def _answer(self) -> None:
                segments = self.path.split("?")[0].split("/")
                path = "/" + segments[1]
                if path == "/huge":
                    self._head(200, "application/json")
                    self._stream(GIB)
                elif path == "/huge-declared":
                    self._head(200, "application/json", length=GIB)
                    self._stream(GIB)
                elif path == "/drip":
                    self._head(200, "application/json")
                    while not server._closing.wait(DRIP_SECONDS):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                elif path == "/redirect-loop":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path in ("/html", "/html-error"):
                    self._head(200 if path == "/html" else 502, "text/html", length=len(HTML))
                    self.wfile.write(HTML)
                elif path == "/json":
                    body = json.dumps(server.json_bodies[segments[2]]).encode()
                    self._head(200, "application/json", length=len(body))
                    self.wfile.write(body)
                elif path == "/echo":
                    body = f"no webhook at {self.path}".encode()
                    self._head(403, "text/plain", length=len(body))
                    self.wfile.write(body)
                else:
                    self._head(404, "text/plain", length=0)

            def _head(self, status: int, content_type: str, length: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if length is None:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.flush()

            def _stream(self, size: int) -> None:
                sent = 0
                while sent < size and not server._closing.is_set():
                    self.wfile.write(CHUNK)
                    sent += len(CHUNK)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))

    def __enter__(self) -> "HostileServer":
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
