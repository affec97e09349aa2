"""The text the CLI shows: progress bar, the live screen, JSON lines, the history table."""

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from canary.status import CanaryStatus, CheckOutcome, Event, MetricStatus, Phase
from starter import render, watch
from starter.history import Entry, EntryKind
from tests.workflows.fakes import canary_spec

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FULL, EMPTY = "\u2588", "\u2591"


def running(**update: object) -> CanaryStatus:
    return CanaryStatus(phase=Phase.PROGRESSING).model_copy(update=update)


def events(count: int) -> list[Event]:
    return [
        Event(time=T0 + timedelta(seconds=i), message=f"event {i}", warning=i % 5 == 4)
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("fraction", "bar"),
    [
        (0.0, f"[{EMPTY * 10}]   0%"),
        (0.5, f"[{FULL * 5}{EMPTY * 5}]  50%"),
        (1.0, f"[{FULL * 10}] 100%"),
        (1.7, f"[{FULL * 10}] 100%"),
    ],
    ids=["0%", "50%", "100%", "clamped"],
)
def test_progress_bar(fraction: float, bar: str) -> None:
    assert render.progress_bar(fraction, width=10) == bar


def test_progress_bar_without_unicode() -> None:
    assert render.progress_bar(0.5, width=4, ascii_only=True) == "[##--]  50%"


@pytest.mark.parametrize(
    ("status", "fraction", "label"),
    [
        (running(canary_weight=0), 0.0, "canary weight 0% of 50%"),
        (running(canary_weight=25), 0.5, "canary weight 25% of 50%"),
        (running(canary_weight=50), 1.0, "canary weight 50% of 50%"),
        (running(canary_weight=20, paused=True), 0.4, "canary weight 20% of 50% (paused)"),
        (CanaryStatus(phase=Phase.PROMOTING, canary_weight=50), 1.0, "promoting"),
        (CanaryStatus(phase=Phase.SUCCEEDED, canary_weight=0), 1.0, "promoted"),
        (CanaryStatus(phase=Phase.FAILED, canary_weight=0), 0.0, "rolled back"),
    ],
    ids=["0%", "50%", "100%", "paused", "promoting", "succeeded", "failed"],
)
def test_progress_of_a_canary_is_its_weight_toward_max_weight(
    status: CanaryStatus, fraction: float, label: str
) -> None:
    assert render.progress(canary_spec(), status) == (fraction, label)


def test_progress_of_iterations_for_ab_testing_and_blue_green() -> None:
    blue_green = canary_spec(stepWeight=None, iterations=4)
    assert render.progress(blue_green, running(iteration=2)) == (0.5, "iteration 2/4")
    ab = canary_spec(stepWeight=None, iterations=4, match=[{"headers": {"x": {"exact": "1"}}}])
    assert render.progress(ab, running(iteration=4, paused=True)) == (
        1.0,
        "iteration 4/4 (paused)",
    )


def test_progress_of_step_weights_ends_at_the_last_one() -> None:
    canary = canary_spec(stepWeight=None, stepWeights=[1, 5, 20, 80])
    assert render.progress(canary, running(canary_weight=20)) == (0.25, "canary weight 20% of 80%")


def test_live_frame_shows_phase_progress_checks_metrics_and_the_last_events() -> None:
    status = running(
        canary_weight=20,
        primary_weight=80,
        failed_checks=1,
        paused=True,
        image="v2",
        metrics=[
            MetricStatus(
                name="request-success-rate", value=99.9, min=99, outcome=CheckOutcome.PASSED
            ),
            MetricStatus(name="request-duration", value=None, max=500, outcome="no-values"),
        ],
        events=events(12),
    )
    lines = render.live_frame(canary_spec(), status, width=100)
    assert lines[0] == "podinfo.test  Progressing  PAUSED  image v2"
    assert lines[1] == f"[{FULL * 12}{EMPTY * 18}]  40%  canary weight 20% of 50% (paused)"
    assert lines[2] == "failed checks 1/3"
    assert lines[3] == "metrics"
    assert lines[4].split() == ["request-success-rate", "99.90", ">=", "99", "passed"]
    assert lines[5].split() == ["request-duration", "no", "value", "<=", "500", "no-values"]
    assert lines[6] == "events"
    shown = lines[7:]
    assert [line.split()[-1] for line in shown] == [str(i) for i in range(4, 12)]
    assert shown[0] == "  12:00:04 ! event 4"
    assert not any("\x1b" in line for line in lines)


def test_live_frame_clips_lines_to_the_width_and_colors_on_request() -> None:
    status = running(events=[Event(time=T0, message="x" * 200, warning=True)])
    plain = render.live_frame(canary_spec(), status, width=40)
    assert max(len(line) for line in plain) == 40
    assert plain[-1].endswith("\u2026")
    colored = render.live_frame(canary_spec(), status, width=40, color=True)
    assert colored[-1].startswith("\x1b[33m") and colored[-1].endswith("\x1b[0m")


def test_live_frame_of_a_failed_rollout_says_why() -> None:
    status = CanaryStatus(phase=Phase.FAILED, failed_checks=3, reason="Rolling back podinfo.test")
    lines = render.live_frame(canary_spec(), status, max_events=0)
    assert "reason: Rolling back podinfo.test" in lines
    assert lines[1].endswith("0%  rolled back")


def test_live_view_redraws_in_place_only_when_something_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "40")
    stream = io.StringIO()
    view = watch.Live(canary_spec(), stream, color=False)
    first = running(canary_weight=10, events=events(2))
    view.show(first)
    drawn = stream.getvalue()
    assert drawn.startswith("\x1b[?25l\x1b[J")
    height = drawn.count("\n")
    view.show(first)
    assert stream.getvalue() == drawn
    view.show(running(canary_weight=20, events=events(3)))
    assert stream.getvalue()[len(drawn) :].startswith(f"\x1b[{height}F\x1b[J")
    view.finish(CanaryStatus(phase=Phase.SUCCEEDED, events=events(3)))
    assert stream.getvalue().endswith("\x1b[?25h")
    assert "100%  promoted" in stream.getvalue()


def test_live_view_keeps_to_the_terminal_height(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "8")
    stream = io.StringIO()
    watch.Live(canary_spec(), stream, color=False).show(running(events=events(20)))
    assert stream.getvalue().count("\n") <= 7


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_view_follows_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    canary = canary_spec()
    assert isinstance(watch.choose_view(canary, False, io.StringIO()), watch.Lines)
    assert isinstance(watch.choose_view(canary, True, Terminal()), watch.JsonLines)
    assert isinstance(watch.choose_view(canary, False, Terminal()), watch.Live)
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(watch.choose_view(canary, False, Terminal()), watch.Lines)


def test_plain_and_json_views_show_each_event_once() -> None:
    plain, lines = io.StringIO(), io.StringIO()
    for view in (watch.Lines(plain), watch.JsonLines(lines)):
        view.show(running(events=events(2)))
        view.show(running(events=events(3)))
        view.finish(CanaryStatus(phase=Phase.SUCCEEDED, events=events(3)))
    assert plain.getvalue().splitlines() == [
        "12:00:00   event 0",
        "12:00:01   event 1",
        "12:00:02   event 2",
    ]
    parsed = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [item["type"] for item in parsed] == ["event", "event", "event", "status"]
    assert [item["message"] for item in parsed[:3]] == ["event 0", "event 1", "event 2"]
    assert parsed[-1]["phase"] == "Succeeded"


def test_history_table_is_one_chronological_table() -> None:
    entries = [
        Entry(time=T0, kind=EntryKind.STARTED, by="ci", message="rollout started"),
        Entry(time=T0 + timedelta(seconds=61), kind=EntryKind.PAUSE, by="alice", message="lunch"),
        Entry(time=T0 + timedelta(seconds=62), kind=EntryKind.EVENT, message="Halt", warning=True),
    ]
    table = render.history_table("History of podinfo.test", entries).splitlines()
    assert table[0] == "History of podinfo.test"
    assert table[1].split() == ["TIME", "KIND", "BY", "WHAT"]
    assert table[2] == "12:00:00  start  ci     rollout started"
    assert table[3] == "12:01:01  pause  alice  lunch"
    assert table[4] == "12:01:02  event         ! Halt"


def test_history_table_shows_dates_when_the_rollout_spans_days() -> None:
    entries = [
        Entry(time=T0, kind=EntryKind.STARTED, message="started"),
        Entry(time=T0 + timedelta(days=1), kind=EntryKind.ENDED, message="ended Succeeded"),
    ]
    table = render.history_table("title", entries).splitlines()
    assert table[2].startswith("2026-03-01 12:00:00  start")
    assert table[3].startswith("2026-03-02 12:00:00  end")
