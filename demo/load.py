"""A bounded load generator for the demo: `python -m demo.load --url URL --rate 20 --duration 30`.

It sends GET requests at a steady rate to a URL on this machine only (127.0.0.1, localhost or
::1; any other host is refused), stops after `duration` seconds or `max_requests` requests,
whichever comes first, and counts the answers by status and by the `version` of JSON bodies
(what `demo.app` answers). From code:

    result = generate_load("http://127.0.0.1:8080/", rate=50, duration=5)
    with BackgroundLoad("http://127.0.0.1:8080/", rate=20, duration=60) as load:
        ...  # runs in a thread; leaving the block stops it
    load.result.statuses[500]
"""

import argparse
import json
import math
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_RATE = 1000.0
"""Requests a second, at most."""
MAX_DURATION = 3600.0
"""Seconds, at most."""
CONNECTION_ERROR = 0
"""The status counted for a request that got no HTTP answer."""


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    """HTTP status -> count; CONNECTION_ERROR (0) for requests without an answer."""
    versions: Counter[str] = field(default_factory=Counter)
    """`version` of JSON answers -> count (any status)."""
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def answered(self) -> int:
        return self.sent - self.statuses[CONNECTION_ERROR]

    @property
    def success_rate(self) -> float | None:
        """Percent of requests answered with a status below 500 (None before any request)."""
        if not self.sent:
            return None
        failed = sum(
            count
            for status, count in self.statuses.items()
            if status >= 500 or status == CONNECTION_ERROR
        )
        return 100.0 * (self.sent - failed) / self.sent

    def record(self, status: int, version: str | None) -> None:
        with self._lock:
            self.sent += 1
            self.statuses[status] += 1
            if version is not None:
                self.versions[version] += 1

    def summary(self) -> str:
        statuses = ", ".join(
            f"{'no answer' if status == CONNECTION_ERROR else status}: {count}"
            for status, count in sorted(self.statuses.items())
        )
        versions = ", ".join(
            f"{version}: {count}" for version, count in sorted(self.versions.items())
        )
        rate = self.success_rate
        success = "n/a" if rate is None else f"{rate:.1f}%"
        return (
            f"{self.sent} requests in {self.seconds:.1f}s; success {success}; "
            f"statuses {{{statuses}}}; versions {{{versions}}}"
        )


def check_url(url: str) -> str:
    """The URL when it is http(s) to this machine; ValueError otherwise."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"only http(s) URLs are allowed (got {url!r})")
    if parsed.hostname not in LOCAL_HOSTS:
        raise ValueError(
            f"only this machine is a load target ({', '.join(sorted(LOCAL_HOSTS))}); "
            f"got host {parsed.hostname!r}"
        )
    return url


def check_limits(url: str, rate: float, duration: float, concurrency: int = 1) -> None:
    """ValueError unless the URL is local and rate, duration and concurrency are in bounds."""
    check_url(url)
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be above 0 and at most {MAX_RATE:g} (got {rate:g})")
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be above 0 and at most {MAX_DURATION:g}s")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1 (got {concurrency})")


def generate_load(
    url: str,
    rate: float = 20.0,
    duration: float = 30.0,
    *,
    max_requests: int | None = None,
    timeout: float = 2.0,
    concurrency: int = 8,
    headers: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    result: LoadResult | None = None,
) -> LoadResult:
    """Send GET `url` `rate` times a second for `duration` seconds (or `max_requests`, or until
    `stop` is set) with at most `concurrency` requests in flight; blocks until done. `headers`
    go with every request (e.g. `Host` to pick a Traefik router)."""
    check_limits(url, rate, duration, concurrency)
    total = math.ceil(rate * duration)
    if max_requests is not None:
        total = min(total, max(max_requests, 0))
    result = result if result is not None else LoadResult()
    stop = stop or threading.Event()
    in_flight = threading.BoundedSemaphore(concurrency)
    request_headers = dict(headers or {})

    def send() -> None:
        try:
            status, version = _get(url, timeout, request_headers)
            result.record(status, version)
        finally:
            in_flight.release()

    started = time.monotonic()
    deadline = started + duration
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="demo-load") as pool:
        for index in range(total):
            due = started + index / rate
            if stop.wait(max(0.0, due - time.monotonic())) or time.monotonic() >= deadline:
                break
            # A slow target lowers the rate instead of piling up requests.
            if not _acquire(in_flight, stop, deadline):
                break
            pool.submit(send)
    result.seconds = time.monotonic() - started
    return result


class BackgroundLoad:
    """`generate_load` on a daemon thread; `stop()` (or leaving the `with`) ends it early."""

    def __init__(
        self,
        url: str,
        rate: float = 20.0,
        duration: float = 30.0,
        *,
        max_requests: int | None = None,
        timeout: float = 2.0,
        concurrency: int = 8,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        check_limits(url, rate, duration, concurrency)
        self.result = LoadResult()
        self._stop = threading.Event()
        self._error: BaseException | None = None

        def run() -> None:
            try:
                generate_load(
                    url,
                    rate,
                    duration,
                    max_requests=max_requests,
                    timeout=timeout,
                    concurrency=concurrency,
                    headers=headers,
                    stop=self._stop,
                    result=self.result,
                )
            except BaseException as error:
                self._error = error

        self._thread = threading.Thread(target=run, name="demo-load", daemon=True)

    def start(self) -> "BackgroundLoad":
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> LoadResult:
        self._stop.set()
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> LoadResult:
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.result

    def __enter__(self) -> "BackgroundLoad":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _acquire(semaphore: threading.BoundedSemaphore, stop: threading.Event, deadline: float) -> bool:
    while not semaphore.acquire(timeout=0.05):
        if stop.is_set() or time.monotonic() >= deadline:
            return False
    return True


def _get(url: str, timeout: float, headers: Mapping[str, str]) -> tuple[int, str | None]:
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _version(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, _version(error.read())
    except OSError:
        return CONNECTION_ERROR, None


def _version(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return str(version) if version is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.load", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="http URL on 127.0.0.1 / localhost")
    parser.add_argument("--rate", type=float, default=20.0, help="requests a second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    parser.add_argument(
        "--header", action="append", default=[], help="'Name: value', sent with every request"
    )
    args = parser.parse_args(argv)
    headers: dict[str, str] = {}
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            parser.error(f"--header must be 'Name: value' (got {header!r})")
        headers[name.strip()] = value.strip()
    try:
        result = generate_load(
            args.url,
            args.rate,
            args.duration,
            max_requests=args.max_requests,
            timeout=args.timeout,
            headers=headers,
        )
    except ValueError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        return 130
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
