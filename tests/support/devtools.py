"""Headless Chromium driven over the DevTools protocol on a pipe, for pages a test must click.

`--remote-debugging-pipe` makes Chromium read commands from its fd 3 and write replies and
events to its fd 4, each a JSON object ended by a NUL byte: no port, no websocket library.
Blocking calls: run them in a thread from async tests.
"""

import base64
import contextlib
import itertools
import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.2
REPLY_TIMEOUT_SECONDS = 60


class DevToolsError(Exception):
    """Chromium answered a command with an error, died, or a page never got ready."""


class Browser:
    """One headless Chromium with one page; `close()` kills it and its children."""

    def __init__(self, chromium: Path, flags: tuple[str, ...], profile: Path) -> None:
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        argv = [str(chromium), *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
        # bash copies the two pipe ends onto the fds Chromium expects (3 and 4)
        launch = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        self._process = subprocess.Popen(
            ["bash", "-c", launch, *argv, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_browser, from_browser),
            start_new_session=True,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._ids = itertools.count(1)
        self._buffer = b""
        self._session: str | None = None
        try:
            page = self.call("Target.createTarget", url="about:blank")["targetId"]
            attached = self.call("Target.attachToTarget", targetId=page, flatten=True)
            self._session = attached["sessionId"]
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command (to the page once attached) and return its result."""
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") != number:
                continue  # an event, or the reply to an earlier command
            if "error" in reply:
                raise DevToolsError(f"{method}: {reply['error'].get('message')}")
            result: dict[str, Any] = reply.get("result", {})
            return result

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_seconds: float, what: str) -> Any:
        """Evaluate `expression` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise DevToolsError(f"{what}: not there after {timeout_seconds}s")
            time.sleep(POLL_SECONDS)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        for fd in (self._commands, self._replies):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self._replies], [], [], max(remaining, 0))
            if not readable:
                raise DevToolsError(f"chromium did not answer in {REPLY_TIMEOUT_SECONDS}s")
            chunk = os.read(self._replies, 65536)
            if not chunk:
                raise DevToolsError(f"chromium exited ({self._process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed
