"""The figures of one bench run, as the Markdown table `make bench` prints and writes."""

import math
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.embedded import SingleRollout
from bench.fleet import FleetResult

NOTES = Path(__file__).with_name("notes.md")
"""What the tables mean and what was decided from them, written by hand."""
FLEET_COLUMNS = (
    "case",
    "workers",
    "wall / minimum",
    "step lateness p50 / p99 / max (s)",
    "start burst drained (s)",
    "worker CPU per step (ms)",
    "worker CPU per rollout (ms)",
    "of which fixed (ms)",
    "peak RSS (MiB)",
    "events per step",
    "bytes per step",
    "events per rollout",
    "bytes per rollout",
    "steps per second",
    "failed",
    "start retries",
)


@dataclass
class Report:
    fleet: list[FleetResult] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """Fleet cases left out (`--max-rollouts`)."""
    floor: list[FleetResult] = field(default_factory=list)
    scaling: list[FleetResult] = field(default_factory=list)
    levers: list[tuple[str, list[FleetResult], list[FleetResult]]] = field(default_factory=list)
    """(lever, runs without it, runs with it), interleaved in that order."""
    detection: list[float] = field(default_factory=list)
    detection_threshold: int = 0
    start: list[float] = field(default_factory=list)
    imports: dict[str, float] = field(default_factory=dict)
    single: SingleRollout | None = None
    long: bool = False
    smoke: bool = False
    when: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    machine: str = field(
        default_factory=lambda: f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    load_at_start: float = field(default_factory=lambda: os.getloadavg()[0])


def _n(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:,.{digits}f}"


def _minimum(result: FleetResult) -> float:
    return result.case.interval * result.case.steps


def fleet_row(result: FleetResult) -> str:
    case = result.case
    cpu_step = _n(result.cpu_per_step_ms, 1) + ("" if result.cpu_per_step_window else " (avg)")
    cells = [
        f"{case.name}, {case.steps} steps",
        str(case.workers),
        _n(result.wall_seconds / _minimum(result), 2),
        " / ".join(
            _n(v, 2) for v in (result.lateness_p50, result.lateness_p99, result.lateness_max)
        ),
        "n/a" if case.floor_calls else _n(result.drain_seconds, 1),
        cpu_step,
        _n(result.cpu_per_rollout_ms),
        _n(result.cpu_fixed_per_rollout_ms) if result.cpu_per_step_window else "n/a",
        _n(result.peak_rss_mib),
        _n(result.events_per_step, 1),
        _n(result.bytes_per_step),
        _n(result.events_per_rollout),
        _n(result.bytes_per_rollout),
        _n(result.steps_per_second, 1),
        str(result.failed),
        str(result.start_retries),
    ]
    return "| " + " | ".join(cells) + " |"


def fleet_table(results: list[FleetResult]) -> list[str]:
    return [
        "| " + " | ".join(FLEET_COLUMNS) + " |",
        "|" + "---|" * len(FLEET_COLUMNS),
        *(fleet_row(result) for result in results),
    ]


def render(report: Report) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"`make bench`, {report.when}, {report.machine}"
        + (" (smoke sizes: not figures to quote)" if report.smoke else "")
        + ".",
        "",
        "The machine is shared and busy (other test runs use its two cores at the same time),",
        "so absolute times move from run to run: quote the ratios and compare rows of one run.",
        "The dev server, the worker processes and the bench itself share the same cores.",
        f"Load average (1 min) when the run began: {report.load_at_start:.1f}; when this was "
        f"written: {os.getloadavg()[0]:.1f}.",
        "",
        "## N concurrent rollouts",
        "",
        "All started at once on the dev server (in memory), one worker process built like",
        "production's (`worker.main.build_worker`) running the real `CanaryWorkflow` against",
        "same-name no-op activities that answer at once (`bench/fakes.py`): orchestration cost",
        "only. Each canary is a Deployment (so every event is also a notification), 10 % steps.",
        "",
        "- *wall / minimum*: time until every rollout ended, over `interval * steps`.",
        "- *step lateness*: when an analysis step's observe call was scheduled, against one",
        "  interval after the rollout's previous call finished.",
        "- *start burst drained*: from the first start request until the last rollout began",
        "  its first analysis interval.",
        "- *worker CPU* (user + system, from /proc, summed over the worker processes): per step",
        "  while every rollout was analysing (`(avg)`: the run was too short for that window,",
        "  whole run / steps, and no fixed part); per rollout: the whole run / rollouts; fixed:",
        "  per rollout minus its steps.",
        "- *events and bytes*: from 10 sampled histories; per step = from one analysis timer",
        "  to the next.",
        "- *start retries*: start requests that timed out (10 s) while the server was busy and",
        "  were sent again, as a CI job would.",
        "",
        *fleet_table(report.fleet),
    ]
    for name in report.left_out:
        lines += ["", f"{name}: left out this time (`--max-rollouts`)."]
    if not report.long and not report.smoke:
        lines += ["", "1,000 rollouts at 60 s: not run this time (`make bench BENCH_ARGS=--long`)."]
    lines += [
        "",
        "## The floor",
        "",
        "What the SDK charges any workflow, under the same load and on the same worker: a",
        "workflow that only waits a durable timer and calls one or two local activities per step",
        "(no input, no result: `bench/floor.py`), then the rollouts. An analysis step that moves",
        "the weight has the shape of two local activities.",
        "",
        *fleet_table(report.floor),
    ]
    if len(report.floor) == 3 and report.floor[1].cpu_per_step_ms > 0:
        _, two, rollouts = report.floor
        lines += [
            "",
            f"CPU per step, CanaryWorkflow / floor with two local activities: "
            f"{_n(rollouts.cpu_per_step_ms / two.cpu_per_step_ms, 2)}.",
        ]
    lines += ["", "## Two worker processes against one server", ""]
    lines += fleet_table(report.scaling)
    if len(report.scaling) == 2:
        one, two = report.scaling
        lines += [
            "",
            f"Throughput (analysis steps per second), 2 workers / 1 worker: "
            f"{_n(two.steps_per_second / one.steps_per_second, 2)}; "
            f"wall time, 2 workers / 1 worker: {_n(two.wall_seconds / one.wall_seconds, 2)}.",
        ]
    lines += [
        "",
        "## Levers",
        "",
        "Each lever off and on under the same load, the runs interleaved (off, on, off, ...):",
        "figures are medians of the runs, ratios (with / without) the median of each pair's.",
        "",
        "| lever | case (without / with) | runs | CPU per step (ms) | ratio | CPU per rollout (ms) "
        "| ratio | step lateness p99 (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lever, offs, ons in report.levers:
        lines.append(lever_row(lever, offs, ons))
    detection = report.detection
    lines += [
        "",
        "## Detection to 100 % primary",
        "",
        f"Failing rollouts (every check fails, threshold {report.detection_threshold}) on the",
        "dev server with the no-op activities: seconds from the end of the threshold-th failed",
        "check to the end of the call that routed 100 % to the primary (so the orchestration's",
        "share; a real router adds its own apply time).",
        "",
        f"- rollouts: {len(detection)}; median {_n(_median(detection), 3)} s, "
        f"max {_n(max(detection, default=math.nan), 3)} s",
    ]
    lines += [
        "",
        "## `coalmine start`",
        "",
        "From process start to return, against the dev server (a new rollout each time).",
        "",
        f"- runs: {len(report.start)}; median {_n(_median(report.start), 2)} s, "
        f"min {_n(min(report.start, default=math.nan), 2)} s",
    ]
    total = report.imports.get("starter.cli", math.nan)
    shares = ", ".join(
        f"`{name}` {_n(seconds / total, 2)}"
        for name, seconds in report.imports.items()
        if name != "starter.cli"
    )
    lines += [
        f"- importing the CLI (`python -X importtime`): {_n(total, 2)} s; share of that "
        f"(cumulative, overlapping): {shares}",
    ]
    single = report.single
    lines += ["", "## Single rollout on the embedded platform", ""]
    if single is not None:
        lines += [
            "Dev server, Prometheus, Traefik, a `coalmine worker` and the demo app under load",
            f"(`demo/`), interval {single.interval:g} s, {single.steps} steps.",
            "",
            f"- wall {_n(single.wall_seconds, 1)} s, minimum {_n(single.minimum_seconds, 1)} s, "
            f"wall / minimum {_n(single.ratio, 2)}, verdict {single.phase.value}",
        ]
    if NOTES.exists():
        lines += ["", NOTES.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def lever_row(lever: str, offs: list[FleetResult], ons: list[FleetResult]) -> str:
    def median_of(
        results: list[FleetResult], figure: Callable[[FleetResult], float], digits: int = 1
    ) -> str:
        return _n(_median([figure(result) for result in results]), digits)

    def ratio(figure: Callable[[FleetResult], float]) -> str:
        return _n(_median([figure(on) / figure(off) for off, on in zip(offs, ons, strict=True)]), 2)

    def step(result: FleetResult) -> float:
        return result.cpu_per_step_ms

    def rollout(result: FleetResult) -> float:
        return result.cpu_per_rollout_ms

    def late(result: FleetResult) -> float:
        return result.lateness_p99

    return (
        f"| {lever} | {offs[0].case.name} / {ons[0].case.name} | {len(offs)} "
        f"| {median_of(offs, step)} / {median_of(ons, step)} | {ratio(step)} "
        f"| {median_of(offs, rollout)} / {median_of(ons, rollout)} | {ratio(rollout)} "
        f"| {median_of(offs, late, 2)} / {median_of(ons, late, 2)} |"
    )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan
