"""A server process for a test: started, awaited until it answers, stopped by its own pid."""

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.net import wait_http_ready

STOP_TIMEOUT_SECONDS = 10.0


@contextlib.contextmanager
def serving_process(
    name: str,
    argv: list[str],
    log_path: Path,
    ready_url: str,
    *,
    timeout_seconds: float = 30.0,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` (output to `log_path`) until the block exits, also when it fails; inside the
    block `ready_url` answers 2xx. Fails fast, quoting the log, if the process exits first."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(name, process, ready_url, log_path, timeout_seconds)
        yield process
    finally:
        # Popen signals its own pid only, and not at all once the process has been reaped.
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    url: str,
    log_path: Path,
    timeout_seconds: float,
) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with status {process.returncode}; {_log_tail(log_path)}"
            )
        with contextlib.suppress(TimeoutError):
            wait_http_ready(url, timeout_seconds=0.5, interval_seconds=0.05)
            return
    raise RuntimeError(
        f"{name} not ready at {url} after {timeout_seconds:g}s; {_log_tail(log_path)}"
    )


def _log_tail(log_path: Path) -> str:
    return f"its log ends with:\n{log_path.read_text(errors='replace')[-2000:]}"
