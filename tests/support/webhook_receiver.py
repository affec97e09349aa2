"""A local HTTP server that records the webhook calls it receives."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SLOW_SECONDS = 2.0


class Receiver:
    """Answers by path: /ok 200, /accepted 202, /fail 500 with a long body, /slow 200 late,
    /fail-twice 503 to its first two calls and 200 after, /fail-while-promoting 500 to calls in
    phase Promoting and 200 to the others."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.content_types: list[str | None] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                payload = json.loads(self.rfile.read(length))
                receiver.bodies.append(payload)
                receiver.content_types.append(self.headers["Content-Type"])
                receiver.paths.append(self.path)
                if self.path == "/slow":
                    time.sleep(SLOW_SECONDS)
                if self.path == "/fail-twice":
                    failed = sum(1 for path in receiver.paths if path == "/fail-twice") <= 2
                    self.path = "/fail" if failed else "/ok"
                status, body = {
                    "/ok": (200, b"thanks"),
                    "/accepted": (202, b""),
                    "/fail": (500, b"load test failed: " + b"x" * 300),
                    "/slow": (200, b"late"),
                    "/fail-while-promoting": (
                        (500, b"fails while promoting")
                        if payload.get("phase") == "Promoting"
                        else (200, b"")
                    ),
                }[self.path]
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except BrokenPipeError:
                    pass  # the caller gave up waiting (the /slow timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join()
