"""Event messages in Flagger's wording; `target` is always `name.namespace`."""

import math
from collections.abc import Sequence

from canary.spec import Metric


def _number(value: float) -> str:
    """`99`, `69.17`, `612.5`; below 1, two significant digits (`0.015`, `0.0012`)."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == int(value):
        return f"{int(value)}"
    digits = 2
    if abs(value) < 1:
        digits = max(2, 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def _beside(value: float, bound: float, text: str) -> str:
    """`text` for `value`, unless it reads as the very bound the value broke
    (98.999 < 99 must not print as `99.00% < 99%`): then every digit the value has."""
    rounded_onto_bound = float(text) in (bound, float(_number(bound)))
    return repr(value) if value != bound and rounded_onto_bound else text


def starting(target: str) -> str:
    return f"Starting canary analysis for {target}"


def new_revision(target: str) -> str:
    return f"New revision detected! Scaling up {target}"


def new_revision_restart(target: str) -> str:
    return f"New revision detected! Restarting analysis for {target}"


def superseded(target: str, old: str | None, new: str) -> str:
    return f"Rollout of {target} to {old or 'the current image'} superseded by {new}"


def halt_canary_not_ready(target: str, detail: str) -> str:
    return f"Halt {target} advancement canary not ready: {detail}"


def promotion_failed(target: str, detail: str, serving: str) -> str:
    return f"Promotion of {target} failed: {detail}; {serving}"


def canary_serves(target: str, version: str) -> str:
    return f"the canary {target} ({version}) serves all traffic"


def nothing_ready(target: str) -> str:
    return f"neither the primary nor the canary of {target} is ready: traffic left as it was"


def initialization_done(target: str) -> str:
    return f"Initialization done! {target}"


def nothing_to_roll_out(target: str) -> str:
    return f"No new revision of {target}: canary and primary run the same template"


def advance_weight(target: str, weight: int) -> str:
    return f"Advance {target} canary weight {weight}"


def advance_iteration(target: str, iteration: int, iterations: int) -> str:
    return f"Advance {target} canary iteration {iteration}/{iterations}"


def routing_mirror(target: str, weight: int) -> str:
    return f"Mirroring {weight}% of the traffic to {target}"


def routing_match(target: str) -> str:
    return f"Routing matching requests to {target}"


def halt_metric(target: str, metric: Metric, value: float) -> str:
    bounds = metric.threshold_range
    assert bounds is not None
    if bounds.min is not None and value < bounds.min:
        unit = "%" if metric.name == "request-success-rate" else ""
        # Flagger prints the value with two decimals (`61.50% < 99%`)
        shown = f"{value:.2f}" if math.isfinite(value) and abs(value) >= 1 else _number(value)
        comparison = f"{_beside(value, bounds.min, shown)}{unit} < {_number(bounds.min)}{unit}"
    else:
        upper = bounds.max if bounds.max is not None else value
        unit = "ms" if metric.name == "request-duration" else ""
        shown = _beside(value, upper, _number(value))
        comparison = f"{shown}{unit} > {_number(upper)}{unit}"
    label = {"request-success-rate": "success rate", "request-duration": "request duration"}
    return f"Halt {target} advancement {label.get(metric.name, metric.name)} {comparison}"


def halt_no_values(target: str, metric: str) -> str:
    return (
        f"Halt advancement no values found for metric {metric} "
        f"probably {target} is not receiving traffic"
    )


def halt_metrics_unavailable(target: str, metric: str, error: str) -> str:
    return f"Halt {target} advancement {metric} check failed: {error}"


def halt_webhook(target: str, webhook: str, detail: str) -> str:
    return f"Halt {target} advancement external check {webhook} failed {detail}".rstrip()


def pre_rollout_failed(target: str, webhook: str, detail: str) -> str:
    return f"Pre-rollout check {webhook} failed for {target} {detail}".rstrip()


def waiting_for_approval(target: str, webhook: str) -> str:
    return f"Halt {target} advancement waiting for approval {webhook}"


def waiting_for_traffic_approval(target: str, webhook: str) -> str:
    return f"Halt {target} advancement waiting for traffic increase approval {webhook}"


def waiting_for_promotion_approval(target: str, webhook: str) -> str:
    return f"Halt {target} advancement waiting for promotion approval {webhook}"


def rolling_back_threshold(target: str, failed_checks: int) -> str:
    return f"Rolling back {target} failed checks threshold reached {failed_checks}"


def rolling_back_deadline(target: str, detail: str) -> str:
    return f"Rolling back {target} progress deadline exceeded {detail}"


def rolling_back_abort(target: str, reason: str) -> str:
    return f"Rolling back {target} manual abort: {reason}"


def rolling_back_error(target: str, error: str) -> str:
    return f"Rolling back {target} {error}"


def rolling_back_hook(target: str, webhook: str) -> str:
    return f"Rolling back {target} manual rollback requested by {webhook}"


def routing_all_to_canary(target: str) -> str:
    return f"Routing all traffic to canary {target}"


def canary_failed(target: str) -> str:
    return f"Canary failed! Scaling down {target}"


def promotion_requested(target: str) -> str:
    return f"Promotion of {target} requested: skipping the remaining analysis"


def copying_template(target: str, primary: str) -> str:
    return f"Copying {target} template spec to {primary}"


def routing_all_to_primary(target: str) -> str:
    return f"Routing all traffic to primary of {target}"


def advance_primary_weight(target: str, weight: int) -> str:
    return f"Advance {target} primary weight {weight}"


def restoring_primary(target: str, primary: str) -> str:
    return f"Restoring {primary} to its template from before the rollout of {target}"


def primary_not_restored(target: str, detail: str, serving: str) -> str:
    return f"Rollback of {target} incomplete: {detail}; {serving}"


def primary_serves(target: str) -> str:
    return f"the primary of {target} serves all traffic"


def traffic_unchanged(target: str) -> str:
    return f"the traffic of {target} stays as it was"


def promotion_completed(target: str) -> str:
    return f"Promotion completed! Scaling down {target}"


def paused(target: str) -> str:
    return f"Canary analysis of {target} paused"


def resumed(target: str) -> str:
    return f"Canary analysis of {target} resumed"


def hook_failed(kind: str, webhook: str, detail: str) -> str:
    return f"{kind} hook {webhook} failed {detail}".rstrip()


def signal_refused(target: str, signal: str, why: str) -> str:
    return f"Signal {signal} for {target} refused: {why}"


def unknown_signal(target: str, signal: str, known: Sequence[str]) -> str:
    return f"Unknown signal {signal!r} for {target} ignored; known signals: {', '.join(known)}"


def promote_refused_phase(target: str, phase: str) -> str:
    return f"{target} is {phase}, not Progressing: only a rollout under analysis can be promoted"


def being_rolled_back(target: str) -> str:
    return f"{target} is being rolled back"


def too_late_to_abort(target: str, phase: str) -> str:
    return f"{target} is {phase}: too late to abort"


def already_rolling_back(target: str) -> str:
    return f"{target} is already being rolled back"


def already_paused(target: str) -> str:
    return f"the analysis of {target} is already paused"


def not_paused(target: str) -> str:
    return f"the analysis of {target} is not paused"


def rollout_ended(target: str, phase: str) -> str:
    return f"the rollout of {target} has ended ({phase})"
