"""Ports and readiness polling for tests that run real servers on 127.0.0.1."""

import socket
import time
import urllib.error
import urllib.request


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ready(url: str, timeout_seconds: float = 30.0, interval_seconds: float = 0.1) -> None:
    """Poll `url` with GET until it answers 2xx; TimeoutError (with the last failure) if it
    does not within `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    last_failure = "no attempt"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=interval_seconds + 1.0):
                return
        except urllib.error.HTTPError as error:
            last_failure = f"status {error.code}"
        except OSError as error:
            last_failure = str(error)
        time.sleep(interval_seconds)
    raise TimeoutError(f"{url} not ready after {timeout_seconds:g}s: {last_failure}")
