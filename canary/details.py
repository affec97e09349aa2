"""The rollout at a glance, in Markdown, for the Web UI's current details."""

from canary.spec import Canary
from canary.status import CanaryStatus


def status_markdown(canary: Canary, status: CanaryStatus) -> str:
    analysis = canary.spec.analysis
    paused = " (paused)" if status.paused else ""
    progress = (
        f"iteration {status.iteration}/{analysis.iterations}"
        if analysis.iterations
        else f"canary weight {status.canary_weight}% of {analysis.weights[-1]}%"
    )
    lines = [
        f"**{canary.target}** {status.phase}{paused}: {progress}, "
        f"failed checks {status.failed_checks}/{analysis.threshold}",
        "",
        "| route | weight |",
        "|---|---|",
        f"| primary | {status.primary_weight}% |",
        f"| canary | {status.canary_weight}%{' (mirrored)' if status.mirror else ''} |",
    ]
    if status.metrics:
        lines += ["", "| metric | last value | threshold | check |", "|---|---|---|---|"]
        for metric in status.metrics:
            value = "no values" if metric.value is None else f"{metric.value:.2f}"
            bounds = bounds_text(metric.min, metric.max) or "-"
            lines.append(f"| {metric.name} | {value} | {bounds} | {metric.outcome} |")
    if status.reason:
        lines += ["", f"Reason: {status.reason}"]
    return "\n".join(lines)


def bounds_text(low: float | None, high: float | None) -> str:
    """`>= 99`, `<= 500`, both joined by `and`, or empty when there is no bound."""
    parts = [f">= {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else ""]
    return " and ".join(part for part in parts if part)
