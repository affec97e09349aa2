"""`make bench` at smoke size: it runs and reports every figure (nothing here is about speed),
and the arithmetic its figures come from."""

import math
import signal
import subprocess
import sys
from pathlib import Path

from bench.fleet import burst_drained, percentile, step_lateness
from bench.report import FLEET_COLUMNS
from canary import contract

REPO = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_SECONDS = 900

FIGURES = (
    *FLEET_COLUMNS,
    "## N concurrent rollouts",
    "## The floor",
    "CPU per step, CanaryWorkflow / floor with two local activities:",
    "## Two worker processes against one server",
    "Throughput (analysis steps per second), 2 workers / 1 worker:",
    "## Levers",
    "sandbox passthrough of canary and yaml",
    "sandbox entered at less cost (worker.sandbox)",
    "fewer round trips (patch fewer-round-trips)",
    "## Detection to 100 % primary",
    "## `coalmine start`",
    "importing the CLI",
    "## Single rollout on the embedded platform",
    "wall / minimum",
)


def call(workflow_id: str, name: str, scheduled: float, finished: float) -> dict[str, object]:
    return {
        "workflow_id": workflow_id,
        "name": name,
        "scheduled": scheduled,
        "started": scheduled,
        "finished": finished,
        "canary_weight": None,
    }


def test_a_step_is_late_by_what_passed_beyond_one_interval_after_the_previous_call() -> None:
    calls = [
        call("a", contract.SET_ROUTES, 0.0, 1.0),
        call("a", contract.OBSERVE, 11.5, 11.6),
        call("a", contract.NOTIFY, 11.7, 12.0),
        call("a", contract.OBSERVE, 22.0, 22.1),
        call("b", contract.READINESS, 0.0, 2.0),
        call("b", contract.OBSERVE, 11.0, 11.1),
    ]

    assert sorted(step_lateness(calls, 10)) == [0.0, 0.0, 0.5]


def test_the_burst_is_drained_when_the_last_rollout_ends_its_last_call_before_analysing() -> None:
    calls = [
        call("a", contract.INITIALIZE, 0.0, 0.5),
        call("a", contract.NOTIFY, 0.6, 0.7),
        call("a", contract.OBSERVE, 10.7, 10.8),
        call("b", contract.INITIALIZE, 0.0, 3.0),
        call("b", contract.SET_ROUTES, 3.1, 3.2),
        call("b", contract.OBSERVE, 13.2, 13.3),
        call("b", contract.SET_ROUTES, 13.4, 13.5),
    ]

    assert burst_drained(calls) == 3.2


def test_percentiles_pick_from_the_sorted_values() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 0.5) == 51.0
    assert percentile(values, 0.99) == 99.0
    assert math.isnan(percentile([], 0.5))


def test_the_smoke_run_prints_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    state = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out), "--state-dir", str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed, _ = process.communicate(timeout=SMOKE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the bench stops what it started
        printed, _ = process.communicate()
        raise AssertionError(f"the smoke bench did not finish:\n{printed}") from None

    assert process.returncode == 0, printed
    written = out.read_text()
    for figure in FIGURES:
        assert figure in written, f"{figure!r} missing from BENCHMARKS.md"
        assert figure in printed, f"{figure!r} missing from the printed table"
    assert "nan" not in written, written
    assert "verdict Succeeded" in written
    fleet_rows = [line for line in written.splitlines() if line.startswith("| 5 @ 1s")]
    assert len(fleet_rows) == 6, written  # the fleet case, the floor's three, two scaling
    assert all(row.split("|")[-3].strip() == "0" for row in fleet_rows), written  # none failed
