"""Text for people: spec summaries, status views and event lines."""

from typing import Any

from canary.details import bounds_text
from canary.durations import format_duration
from canary.spec import Canary, Strategy, ThresholdRange
from canary.status import CanaryStatus, Event, MetricStatus, Phase


def summary(canary: Canary) -> str:
    spec = canary.spec
    analysis = spec.analysis
    lines = [
        f"Canary {canary.target} ({canary.metadata.name} in {canary.metadata.namespace}) is valid",
        f"  target:    {spec.target_ref.kind} {spec.target_ref.name}"
        f" (primary {spec.target_ref.name}-primary)",
        f"  provider:  {spec.provider}",
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
