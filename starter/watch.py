"""Following a rollout until its verdict: one loop, three ways of showing it.

`follow()` polls the status query (and waits on the workflow's verdict) and hands each status to
a view: `Lines` prints each new event once (logs, CI), `JsonLines` prints each new event and
then the final status as one JSON object per line, `Live` redraws a small screen in place on a
terminal (ANSI cursor movement, no dependency).
"""

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol, TextIO

from temporalio.client import (
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError

from canary.spec import Canary
from canary.status import CanaryStatus, Event
from starter import render, verdict
from workflows.canary_workflow import CanaryWorkflow

POLL_SECONDS = 1.0
QUERY_TIMEOUT = timedelta(seconds=10)
_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"
_CLEAR_BELOW = "\x1b[J"


class View(Protocol):
    def show(self, status: CanaryStatus) -> None:
        """A status while the rollout runs (the same one may come again)."""

    def finish(self, status: CanaryStatus | None) -> None:
        """The final status; None when following stopped without one (an error, Ctrl-C)."""


class _NewEvents:
    """Remembers which events were shown, so each is shown once."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def __call__(self, status: CanaryStatus) -> list[Event]:
        new = []
        for item in status.events:
            key = (item.time.isoformat(), item.message)
            if key not in self._seen:
                self._seen.add(key)
                new.append(item)
        return new


class Lines:
    """Each new event once, as a line (what `start --wait` prints in CI)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._new = _NewEvents()

    def show(self, status: CanaryStatus) -> None:
        for item in self._new(status):
            self._print(self._line(item))

    def finish(self, status: CanaryStatus | None) -> None:
        if status is not None:
            self.show(status)

    def _line(self, item: Event) -> str:
        return render.event(item)

    def _print(self, line: str) -> None:
        print(line, file=self._stream or sys.stdout, flush=True)


class JsonLines(Lines):
    """Each new event as a JSON object on its own line, then the final status."""

    def finish(self, status: CanaryStatus | None) -> None:
        super().finish(status)
        if status is not None:
            self._print(render.status_json_line(status))

    def _line(self, item: Event) -> str:
        return render.event_json(item)


class Live:
    """A screen redrawn in place: progress, phase, failed checks, metrics, last events."""

    def __init__(self, canary: Canary, stream: TextIO | None = None, color: bool = True) -> None:
        self._canary = canary
        self._stream = stream or sys.stdout
        self._color = color
        self._ascii = "utf" not in (getattr(self._stream, "encoding", "") or "").lower()
        self._drawn: list[str] = []

    def show(self, status: CanaryStatus) -> None:
        size = shutil.get_terminal_size((100, 24))
        width, rows = max(size.columns - 1, 20), max(size.lines - 1, 6)
        base = len(self._frame(status, width, 0))
        events = max(0, min(render.LIVE_EVENTS, rows - base - 1))
        lines = self._frame(status, width, events)[:rows]
        if lines == self._drawn:
            return
        up = f"\x1b[{len(self._drawn)}F" if self._drawn else _HIDE_CURSOR
        self._stream.write(up + _CLEAR_BELOW + "".join(line + "\n" for line in lines))
        self._stream.flush()
        self._drawn = lines

    def finish(self, status: CanaryStatus | None) -> None:
        if status is not None:
            self.show(status)
        self._stream.write(_SHOW_CURSOR)
        self._stream.flush()

    def _frame(self, status: CanaryStatus, width: int, events: int) -> list[str]:
        return render.live_frame(
            self._canary,
            status,
            width=width,
            max_events=events,
            color=self._color,
            ascii_only=self._ascii,
        )


def choose_view(canary: Canary, json_lines: bool, stream: TextIO | None = None) -> View:
    """JSON lines if asked; the live screen on a terminal; plain lines otherwise."""
    out = stream or sys.stdout
    if json_lines:
        return JsonLines(out)
    if out.isatty() and os.environ.get("TERM", "") != "dumb":
        return Live(canary, out, color="NO_COLOR" not in os.environ)
    return Lines(out)


async def follow(
    handle: WorkflowHandle[Any, CanaryStatus],
    view: View | None = None,
    until: Callable[[CanaryStatus], bool] | None = None,
) -> CanaryStatus:
    """Show the rollout until it ends, or until a status meets `until`; return that status.

    A status query that fails (no worker for a moment) is skipped; the workflow's verdict
    decides when following ends. Raises what `verdict.final_status()` raises for a run that
    ended without a verdict (terminated, cancelled, timed out)."""
    view = view or Lines()
    result: asyncio.Future[CanaryStatus] = asyncio.ensure_future(verdict.final_status(handle))
    final: CanaryStatus | None = None
    try:
        while not result.done():
            with contextlib.suppress(
                RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError
            ):
                status = await handle.query(CanaryWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
                view.show(status)
                if until is not None and until(status):
                    final = status
                    return final
            await asyncio.wait([result], timeout=POLL_SECONDS)
        final = result.result()
        return final
    finally:
        result.cancel()
        view.finish(final)
