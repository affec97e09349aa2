"""Text for people: spec summaries, status views and event lines."""

import json
from collections.abc import Sequence
from typing import Any

from canary.details import bounds_text
from canary.durations import format_duration
from canary.spec import Canary, Strategy, ThresholdRange
from canary.status import CanaryStatus, CheckOutcome, Event, MetricStatus, Phase
from starter.history import Entry as HistoryEntry


def summary(canary: Canary, default_provider: bool = False) -> str:
    """`default_provider`: the spec names no provider and got `--mesh-provider`'s."""
    spec = canary.spec
    provider = spec.provider or "the worker's default (--mesh-provider)"
    if default_provider:
        provider += " (the default, --mesh-provider)"
    analysis = spec.analysis
    lines = [
        f"Canary {canary.target} ({canary.metadata.name} in {canary.metadata.namespace}) is valid",
        f"  target:    {spec.target_ref.kind} {spec.target_ref.name}"
        f" (primary {spec.target_ref.name}-primary)",
        f"  provider:  {provider}",
        f"  strategy:  {_strategy(canary)}",
        f"  interval:  {format_duration(analysis.interval)}, "
        f"rollback after {analysis.threshold} failed checks, "
        f"progress deadline {spec.progress_deadline_seconds}s",
    ]
    for metric in analysis.metrics:
        lines.append(
            f"  metric:    {metric.name} {_bounds(metric.threshold_range)} "
            f"over {format_duration(metric.interval)}"
        )
    for hook in analysis.webhooks:
        lines.append(f"  webhook:   {hook.name} ({hook.type}) {hook.url}")
    return "\n".join(lines)


def _strategy(canary: Canary) -> str:
    analysis = canary.spec.analysis
    strategy = analysis.strategy
    if strategy == Strategy.CANARY:
        weights = ", ".join(str(weight) for weight in analysis.weights)
        return f"canary, weights {weights} then promotion"
    return f"{strategy}, {analysis.iterations} iterations then promotion"


def _bounds(bounds: ThresholdRange | MetricStatus | None) -> str:
    if bounds is None:
        return "(recorded, no threshold)"
    return bounds_text(bounds.min, bounds.max) or "(recorded, no threshold)"


def event(item: Event) -> str:
    marker = "!" if item.warning else " "
    return f"{item.time:%H:%M:%S} {marker} {item.message}"


def status(current: CanaryStatus) -> str:
    paused = " (paused)" if current.paused else ""
    lines = [
        f"phase:         {current.phase}{paused}",
        f"weights:       primary {current.primary_weight}% canary {current.canary_weight}%"
        + (" (mirrored)" if current.mirror else ""),
        f"failed checks: {current.failed_checks}",
        f"iteration:     {current.iteration}",
    ]
    if current.image:
        lines.append(f"image:         {current.image}")
    if current.reason:
        lines.append(f"reason:        {current.reason}")
    if current.metrics:
        lines.append("metrics:")
        lines += [f"  {_metric_line(metric)}" for metric in current.metrics]
    if current.events:
        lines.append("events:")
        lines += [f"  {event(item)}" for item in current.events[-10:]]
    return "\n".join(lines)


def _metric_line(metric: MetricStatus) -> str:
    value = "no value" if metric.value is None else f"{metric.value:.2f}"
    return f"{metric.name}: {value} {_bounds(metric)} [{metric.outcome}]"


def verdict(target: str, final: CanaryStatus) -> str:
    if final.phase == Phase.SUCCEEDED:
        return f"{target}: Succeeded"
    return f"{target}: {final.phase}: {final.reason or 'no reason recorded'}"


def spec_markdown(canary: Canary) -> str:
    """The spec as Markdown, for the Web UI's static details."""
    body = canary.model_dump_json(by_alias=True, indent=2, exclude_defaults=True)
    return f"**{canary.target}** ({_strategy(canary)})\n\n```json\n{body}\n```"


def rollout_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no rollouts found"
    header = ("TARGET", "PHASE", "WEIGHT", "FAILED", "STARTED", "DURATION")
    lines = [
        (
            str(row["target"]),
            str(row["phase"]),
            "-" if row["weight"] is None else f"{row['weight']}%",
            "-" if row["failed_checks"] is None else str(row["failed_checks"]),
            str(row["started"]),
            format_duration(row["duration_seconds"]) or "0s",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    )


# -- the live view (`coalmine watch` and `start --wait` on a terminal) --------------------------

LIVE_EVENTS = 8
BAR_WIDTH = 30
_RESET = "\x1b[0m"
_STYLES = {"bold": "\x1b[1m", "green": "\x1b[32m", "red": "\x1b[31m", "yellow": "\x1b[33m"}


def progress(canary: Canary, current: CanaryStatus) -> tuple[float, str]:
    """How far the rollout has come (0 to 1) and in what terms: weight, iterations or verdict."""
    analysis = canary.spec.analysis
    paused = " (paused)" if current.paused else ""
    if current.phase in (Phase.PROMOTING, Phase.FINALISING, Phase.SUCCEEDED):
        return 1.0, "promoted" if current.phase == Phase.SUCCEEDED else "promoting"
    if current.phase == Phase.FAILED:
        return 0.0, "rolled back"
    if analysis.strategy == Strategy.CANARY:
        top = analysis.weights[-1] if analysis.weights else 100
        fraction = current.canary_weight / top if top else 1.0
        label = f"canary weight {current.canary_weight}% of {top}%"
    else:
        total = analysis.iterations or 1
        fraction = current.iteration / total
        label = f"iteration {current.iteration}/{analysis.iterations or 0}"
    return min(max(fraction, 0.0), 1.0), label + paused


def progress_bar(fraction: float, width: int = BAR_WIDTH, ascii_only: bool = False) -> str:
    """`[█████░░░░░]  50%`: `width` cells between brackets, then the percentage."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    full, empty = ("#", "-") if ascii_only else ("\u2588", "\u2591")
    return f"[{full * filled}{empty * (width - filled)}] {round(fraction * 100):>3}%"


def live_frame(
    canary: Canary,
    current: CanaryStatus,
    *,
    width: int = 100,
    max_events: int = LIVE_EVENTS,
    color: bool = False,
    ascii_only: bool = False,
) -> list[str]:
    """One screen of the live view, each line at most `width` characters (before colors)."""
    analysis = canary.spec.analysis
    fraction, label = progress(canary, current)
    phase_style = {Phase.SUCCEEDED: "green", Phase.FAILED: "red"}.get(current.phase, "bold")
    lines: list[tuple[str, str | None]] = [
        (
            f"{canary.target}  {current.phase}{'  PAUSED' if current.paused else ''}"
            + (f"  image {current.image}" if current.image else ""),
            "yellow" if current.paused else phase_style,
        ),
        (f"{progress_bar(fraction, ascii_only=ascii_only)}  {label}", None),
        (
            f"failed checks {current.failed_checks}/{analysis.threshold}",
            "yellow" if current.failed_checks else None,
        ),
    ]
    if current.reason and current.phase.final:
        lines.append(
            (f"reason: {current.reason}", "red" if current.phase == Phase.FAILED else None)
        )
    if current.metrics:
        rows = [
            (
                metric.name,
                "no value" if metric.value is None else f"{metric.value:.2f}",
                bounds_text(metric.min, metric.max) or "-",
                str(metric.outcome),
            )
            for metric in current.metrics
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines.append(("metrics", "bold"))
        for metric, row in zip(current.metrics, rows, strict=True):
            text = (
                f"  {row[0].ljust(widths[0])}  {row[1].rjust(widths[1])}  "
                f"{row[2].ljust(widths[2])}  {row[3]}"
            )
            lines.append((text, "green" if metric.outcome == CheckOutcome.PASSED else "red"))
    shown = current.events[-max_events:] if max_events > 0 else []
    if shown:
        lines.append(("events", "bold"))
        lines += [(f"  {event(item)}", "yellow" if item.warning else None) for item in shown]
    return [_styled(_clip(text, width), style if color else None) for text, style in lines]


def _clip(text: str, width: int) -> str:
    if width <= 0 or len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "\u2026"


def _styled(text: str, style: str | None) -> str:
    return f"{_STYLES[style]}{text}{_RESET}" if style else text


def event_json(item: Event) -> str:
    """One event as a line of JSON (`coalmine watch --json`)."""
    return json.dumps({"type": "event", **item.model_dump(mode="json")})


def status_json_line(current: CanaryStatus) -> str:
    """The final status as a line of JSON (`coalmine watch --json`)."""
    return json.dumps({"type": "status", **current.model_dump(mode="json")})


# -- the history (`coalmine history`) -----------------------------------------------------------


def history_table(title: str, entries: Sequence[HistoryEntry]) -> str:
    """The story as one chronological table: TIME, KIND, BY, WHAT (`!` marks a warning)."""
    days = {entry.time.date() for entry in entries}
    clock = "%H:%M:%S" if len(days) <= 1 else "%Y-%m-%d %H:%M:%S"
    header = ("TIME", "KIND", "BY", "WHAT")
    rows = [
        (
            f"{entry.time:{clock}}",
            str(entry.kind),
            entry.by or "",
            ("! " if entry.warning else "") + entry.message,
        )
        for entry in entries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in [header, *rows]
    ]
    return "\n".join([title, *lines])
