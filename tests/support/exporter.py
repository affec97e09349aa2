"""A Prometheus exporter with known values, for tests that scrape it with a real Prometheus.

Counters grow linearly with wall-clock time at a set rate, so `rate()` over them is known:

    exporter = MetricsExporter()
    exporter.set_rate("istio_requests_total", {"response_code": "200"}, 98.0)
    exporter.set_histogram("http_duration_ms", {}, 100.0, {25.0: 0.9, 100.0: 0.1})
    with exporter:  # serves http://127.0.0.1:<exporter.port>/metrics
        ...

Rates and histograms may be changed while it serves; counters carry on from their current
value, so a test can, say, raise the error rate in the middle of a rollout.
"""

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from tests.support.net import free_port

_SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class _Counter:
    rate_per_second: float
    value_at_start: float
    started: float

    def value(self, now: float) -> float:
        return self.value_at_start + self.rate_per_second * (now - self.started)


class MetricsExporter:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._counters: dict[_SeriesKey, _Counter] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> str:
        """`host:port` for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    def set_rate(self, name: str, labels: Mapping[str, str], rate_per_second: float) -> None:
        """Make the counter `name{labels}` grow at `rate_per_second` from now on."""
        with self._lock:
            self._set_rate(_key(name, labels), rate_per_second, time.monotonic())

    def set_histogram(
        self,
        name: str,
        labels: Mapping[str, str],
        rate_per_second: float,
        bucket_shares: Mapping[float, float],
    ) -> None:
        """Observe `rate_per_second` values a second into histogram `name`: `bucket_shares`
        maps each finite upper bound `le` to the share of observations in (previous bound, le];
        what the shares leave below 1 lands in the +Inf bucket. Writes `name_bucket` and
        `name_count` (no `name_sum`)."""
        now = time.monotonic()
        cumulative = 0.0
        with self._lock:
            for upper in sorted(bucket_shares):
                cumulative += bucket_shares[upper]
                key = _key(f"{name}_bucket", {**labels, "le": repr(upper)})
                self._set_rate(key, rate_per_second * cumulative, now)
            self._set_rate(_key(f"{name}_bucket", {**labels, "le": "+Inf"}), rate_per_second, now)
            self._set_rate(_key(f"{name}_count", labels), rate_per_second, now)

    def render(self) -> str:
        """The exposition text (all counters read at one instant, so their ratios are exact)."""
        now = time.monotonic()
        with self._lock:
            lines = [
                f"{name}{_format_labels(labels)} {counter.value(now)!r}"
                for (name, labels), counter in sorted(self._counters.items())
            ]
        return "".join(f"{line}\n" for line in lines)

    def start(self) -> None:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> "MetricsExporter":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _set_rate(self, key: _SeriesKey, rate_per_second: float, now: float) -> None:
        current = self._counters.get(key)
        value = current.value(now) if current else 0.0
        self._counters[key] = _Counter(rate_per_second, value, now)


def _key(name: str, labels: Mapping[str, str]) -> _SeriesKey:
    return name, tuple(sorted(labels.items()))


def _format_labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = (
        (name, value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
        for name, value in labels
    )
    return "{" + ",".join(f'{name}="{value}"' for name, value in escaped) + "}"
