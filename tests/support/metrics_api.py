"""A local HTTP(S) server standing in for a metrics product's query API (Datadog, New Relic,
Graphite, a Prometheus behind authentication): it records every request and answers each with
what the test's `answer` function returns, in that product's documented format.

    def answer(request: SeenRequest) -> tuple[int, Any]:
        return 200, {"series": [...]}

    with MetricsApi(answer) as api:
        await DatadogMetrics(api.url, client, access=...).query_value("avg:x{*}")
        assert api.requests[0].headers["dd-api-key"] == "..."

`tls_files` (see `self_signed_certificate`) serves HTTPS with a certificate nobody trusts.
"""

import json
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class SeenRequest:
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    """Header names lower-cased."""

    def param(self, name: str) -> str:
        [value] = self.params[name]
        return value


Answer = Callable[[SeenRequest], tuple[int, Any]]


class MetricsApi:
    def __init__(self, answer: Answer, tls_files: tuple[Path, Path] | None = None) -> None:
        self.requests: list[SeenRequest] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                seen = SeenRequest(
                    path=url.path,
                    params=urllib.parse.parse_qs(url.query, keep_blank_values=True),
                    headers={name.lower(): value for name, value in self.headers.items()},
                )
                api.requests.append(seen)
                status, document = answer(seen)
                body = document if isinstance(document, bytes) else json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if tls_files is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls_files)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))

    def __enter__(self) -> "MetricsApi":
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (made with `openssl`)."""
    certificate, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return certificate, key
