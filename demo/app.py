"""A versioned demo HTTP app: `python -m demo.app --port 8081 --version v1`.

    GET /         200 {"version": "v1"}; with --error-rate R a share R of the answers are 500s,
                  with --latency-ms L every answer waits L ms first
    GET /healthz  200 {"status": "ok", "version": "v1"}, always at once; with --unready-on-port P
                  503 when it listens on port P (a version that never gets ready there)

Errors follow a fixed pattern, not chance: request n fails when floor(n * R) goes up, so over
any run of requests the share of failures is R to within one request (R = 0.25 fails every
fourth). It listens on 127.0.0.1 only, logs nothing per request, and exits 0 on SIGTERM.
"""

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class ErrorPattern:
    """Says which requests fail: the n-th (from 1) when floor(n * rate) > floor((n - 1) * rate)."""

    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"error rate must be between 0 and 1 (got {rate:g})")
        self.rate = rate
        self._count = 0
        self._lock = threading.Lock()

    def next_fails(self) -> bool:
        with self._lock:
            self._count += 1
            n = self._count
        return math.floor(n * self.rate + 1e-9) > math.floor((n - 1) * self.rate + 1e-9)


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    """socketserver's default backlog of 5 refuses connections (Traefik answers 502) as soon
    as a busy machine is slow to accept them under load."""

    def __init__(
        self,
        port: int,
        version: str,
        error_rate: float = 0.0,
        latency_ms: float = 0.0,
        unready_on_port: int | None = None,
    ) -> None:
        if latency_ms < 0:
            raise ValueError(f"latency must not be negative (got {latency_ms:g} ms)")
        self.version = version
        self.ready = port != unready_on_port
        self.errors = ErrorPattern(error_rate)
        self.latency_seconds = latency_ms / 1000.0
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm holds the
    # body back until the client's delayed ACK (about 40 ms on every keep-alive answer).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            if self.server.ready:
                self._answer(200, {"status": "ok", "version": self.server.version})
            else:
                self._answer(503, {"status": "not ready", "version": self.server.version})
        elif path == "/":
            if self.server.latency_seconds:
                time.sleep(self.server.latency_seconds)
            if self.server.errors.next_fails():
                self._answer(500, {"version": self.server.version, "error": "injected failure"})
            else:
                self._answer(200, {"version": self.server.version})
        else:
            self._answer(404, {"version": self.server.version, "error": f"no page {path}"})

    def _answer(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: no line per request."""


def serve(server: DemoServer) -> None:
    """Serve until SIGTERM or SIGINT (from the main thread), then close the socket."""

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.app", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--version", required=True, help="the version this app answers with")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 500s, 0 to 1")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every GET /")
    parser.add_argument(
        "--unready-on-port", type=int, help="answer /healthz with 503 when listening on this port"
    )
    args = parser.parse_args(argv)
    try:
        server = DemoServer(
            args.port, args.version, args.error_rate, args.latency_ms, args.unready_on_port
        )
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        print(f"demo.app: cannot listen on 127.0.0.1:{args.port}: {error}", file=sys.stderr)
        return 1
    print(
        f"demo.app {args.version} listening on http://127.0.0.1:{args.port}"
        f" (error rate {args.error_rate:g}, latency {args.latency_ms:g} ms)",
        file=sys.stderr,
        flush=True,
    )
    serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
