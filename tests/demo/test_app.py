"""The demo app (in-process and as `python -m demo.app`) and the bounded load generator."""

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demo import load
from demo.app import DemoServer, ErrorPattern
from tests.support.net import free_port, wait_http_ready
from tests.support.traefik import REPO_ROOT, running_demo_app

Serve = Callable[..., str]
"""serve(version, error_rate=0.0, latency_ms=0.0) -> the base URL of a DemoServer."""


def get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts DemoServers on threads of this process; shuts them all down at teardown."""
    servers: list[tuple[DemoServer, threading.Thread]] = []

    def start(version: str, error_rate: float = 0.0, latency_ms: float = 0.0) -> str:
        server = DemoServer(free_port(), version, error_rate, latency_ms)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def test_answers_its_version(serve: Serve) -> None:
    url = serve("v7")
    assert get(f"{url}/") == (200, {"version": "v7"})
    assert get(f"{url}/healthz") == (200, {"status": "ok", "version": "v7"})
    status, body = get(f"{url}/nope")
    assert status == 404 and body["version"] == "v7"


def test_fails_at_the_error_rate_exactly(serve: Serve) -> None:
    url = serve("v2", error_rate=0.25)
    statuses = [get(f"{url}/")[0] for _ in range(100)]
    assert statuses.count(500) == 25
    assert statuses[:8] == [200, 200, 200, 500, 200, 200, 200, 500]
    # Health checks neither fail nor count.
    assert all(get(f"{url}/healthz")[0] == 200 for _ in range(10))
    assert [get(f"{url}/")[0] for _ in range(4)] == [200, 200, 200, 500]


def test_error_pattern_shares() -> None:
    for rate in (0.0, 0.1, 0.3, 0.5, 1.0):
        pattern = ErrorPattern(rate)
        assert sum(pattern.next_fails() for _ in range(1000)) == round(1000 * rate)
    with pytest.raises(ValueError, match="between 0 and 1"):
        ErrorPattern(1.5)


def test_waits_the_latency_on_pages_not_on_health(serve: Serve) -> None:
    url = serve("v1", latency_ms=150)
    started = time.monotonic()
    assert get(f"{url}/")[0] == 200
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    assert get(f"{url}/healthz")[0] == 200
    assert time.monotonic() - started < 0.15


def test_healthz_answers_even_when_every_page_fails(serve: Serve) -> None:
    url = serve("v1", error_rate=1.0)
    assert get(f"{url}/")[0] == 500
    assert get(f"{url}/healthz")[0] == 200


def test_is_unready_only_on_the_port_it_is_told() -> None:
    port, other = free_port(), free_port()
    servers = [DemoServer(p, "v2", unready_on_port=port) for p in (port, other)]
    threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        assert get(f"http://127.0.0.1:{port}/healthz") == (
            503,
            {"status": "not ready", "version": "v2"},
        )
        assert get(f"http://127.0.0.1:{port}/") == (200, {"version": "v2"})
        assert get(f"http://127.0.0.1:{other}/healthz")[0] == 200
    finally:
        for server, thread in zip(servers, threads, strict=True):
            server.shutdown()
            server.server_close()
            thread.join()


def test_the_command_line_app_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "app.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "demo.app", "--port", str(port), "--version", "v9"],
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/healthz", timeout_seconds=15)
        assert get(f"http://127.0.0.1:{port}/") == (200, {"version": "v9"})
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # One line at start, none per request.
    assert log.read_text().splitlines() == [
        f"demo.app v9 listening on http://127.0.0.1:{port} (error rate 0, latency 0 ms)"
    ]


def test_the_command_line_refuses_bad_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo.app", "--port", "1", "--version", "x", "--error-rate", "2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "between 0 and 1" in result.stderr


# -- load generator --------------------------------------------------------------------------


def test_load_is_bounded_by_count_and_time(serve: Serve) -> None:
    url = serve("v1", error_rate=0.5)
    result = load.generate_load(f"{url}/", rate=200, duration=5, max_requests=40)
    assert result.sent == 40
    assert result.statuses == {200: 20, 500: 20}
    assert result.versions == {"v1": 40}
    assert result.success_rate == 50.0

    started = time.monotonic()
    result = load.generate_load(f"{url}/", rate=20, duration=0.5)
    assert time.monotonic() - started < 1.5
    assert 8 <= result.sent <= 10


def test_load_counts_requests_without_an_answer() -> None:
    result = load.generate_load(
        f"http://127.0.0.1:{free_port()}/", rate=100, duration=1, max_requests=5
    )
    assert result.statuses == {load.CONNECTION_ERROR: 5}
    assert result.success_rate == 0.0
    assert "no answer: 5" in result.summary()


def test_load_only_targets_this_machine() -> None:
    for url in ("http://example.com/", "http://10.0.0.1:8080/", "ftp://127.0.0.1/"):
        with pytest.raises(ValueError, match="only"):
            load.generate_load(url, rate=1, duration=1)
    with pytest.raises(ValueError, match="rate"):
        load.generate_load("http://localhost:1/", rate=10_000, duration=1)
    with pytest.raises(ValueError, match="duration"):
        load.BackgroundLoad("http://localhost:1/", rate=1, duration=10_000)


def test_background_load_stops_early(serve: Serve) -> None:
    url = serve("v2")
    started = time.monotonic()
    with load.BackgroundLoad(f"{url}/", rate=50, duration=60) as background:
        time.sleep(0.5)
    assert time.monotonic() - started < 2.0
    assert 10 <= background.result.sent <= 40
    assert background.result.versions == {"v2": background.result.sent}


def test_load_command_line_prints_a_summary(tmp_path: Path) -> None:
    with running_demo_app("v5", error_rate=0.2, log_path=tmp_path / "app.log") as app:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "demo.load",
                f"--url={app.url}/",
                "--rate=50",
                "--duration=2",
                "--max-requests=10",
                "--header=X-Demo: yes",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert "10 requests" in result.stdout
    assert "success 80.0%" in result.stdout
    assert "v5: 10" in result.stdout
