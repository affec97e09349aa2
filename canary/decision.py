"""The analysis decision: (spec, status, observations) -> (next status, action, routes).

Pure and deterministic: the workflow feeds it what the activities observed and carries out
the action it returns. Every strategy (canary, A/B testing, blue/green, mirroring) goes
through these functions, so each is table-tested without Temporal.
"""

import math
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from canary import messages
from canary.spec import Canary, Metric, Strategy
from canary.status import (
    CanaryStatus,
    CheckOutcome,
    Event,
    EventKind,
    MetricObservation,
    MetricStatus,
    Phase,
    WebhookObservation,
)


class Action(StrEnum):
    WAIT = "wait"
    """Nothing changes and no check failed (paused, or a traffic increase not approved)."""
    ADVANCE = "advance"
    HALT = "halt"
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    RESTART = "restart"
    """A new revision: all traffic back to the primary, failed checks reset, analysis again."""


class Routes(BaseModel):
    """Absolute weights for the router; `mirror` copies canary_weight % of traffic instead."""

    primary_weight: int
    canary_weight: int
    mirror: bool = False


ALL_TO_PRIMARY = Routes(primary_weight=100, canary_weight=0)
ALL_TO_CANARY = Routes(primary_weight=0, canary_weight=100)


class StepObservation(BaseModel):
    """What one analysis step saw: rollout webhooks, traffic-increase gates, metrics."""

    webhooks: list[WebhookObservation] = Field(default_factory=list)
    traffic_gates: list[WebhookObservation] = Field(default_factory=list)
    metrics: list[MetricObservation] = Field(default_factory=list)
    canary_ready: bool = True
    canary_readiness: str = ""
    """Why the canary is not ready, as the target says."""
    canary_revision: str | None = None
    """The revision the canary runs now; None when it was not read, which counts as unchanged
    (observations recorded before the target was read with every step)."""
    rollback_gates: list[WebhookObservation] = Field(default_factory=list)
    """`rollback` hooks: a 2xx asks for a rollback now (Flagger's manual rollback gate)."""


class Decision(BaseModel):
    action: Action
    status: CanaryStatus
    routes: Routes | None = None
    """Routes to set now; None leaves them as they are."""


def start_analysis(
    canary: Canary, status: CanaryStatus, now: datetime, legacy: bool = False
) -> Decision:
    """The first step: send the canary its first traffic (no analysis: it has none yet).

    `legacy` keeps the rules rollouts started before SAFE_ROLLOUT were decided by: a canary
    with `mirror: true` gets no mirrored first step, and blue/green promotes without an
    interval of all the traffic on the canary."""
    target = canary.target
    events = [Event(time=now, message=messages.starting(target), kind=EventKind.STARTED)]
    routes, event = _first_routes(canary, now, legacy)
    if event is not None:
        events.append(event)
    next_status = _with_routes(status, routes).model_copy(update={"phase": Phase.PROGRESSING})
    return Decision(action=Action.ADVANCE, status=next_status.with_events(*events), routes=routes)


def _first_routes(
    canary: Canary, now: datetime, legacy: bool = False
) -> tuple[Routes | None, Event | None]:
    """The routes that start the strategy's analysis, and the event that announces them."""
    target = canary.target
    analysis = canary.spec.analysis
    strategy = analysis.strategy
    if strategy == Strategy.CANARY and analysis.mirror and not legacy:
        weight = analysis.mirror_weight or 100
        message = messages.routing_mirror(target, weight)
        return Routes(primary_weight=100, canary_weight=weight, mirror=True), Event(
            time=now, message=message
        )
    if strategy == Strategy.CANARY:
        weight = analysis.weights[0]
        message = messages.advance_weight(target, weight)
        return (
            Routes(primary_weight=100 - weight, canary_weight=weight),
            Event(time=now, message=message, kind=EventKind.ADVANCED),
        )
    if strategy == Strategy.AB_TESTING:
        return ALL_TO_CANARY, Event(time=now, message=messages.routing_match(target))
    if strategy == Strategy.BLUE_GREEN_MIRROR:
        weight = analysis.mirror_weight or 100
        message = messages.routing_mirror(target, weight)
        return Routes(primary_weight=100, canary_weight=weight, mirror=True), Event(
            time=now, message=message
        )
    return None, None


def restart_analysis(
    canary: Canary, status: CanaryStatus, revision: str, now: datetime
) -> Decision:
    """A new revision of the canary: all traffic to the primary, checks reset, start over."""
    message = messages.new_revision_restart(canary.target)
    status = status.model_copy(
        update={
            "revision": revision,
            "failed_checks": 0,
            "iteration": 0,
            "metrics": [],
            "canary_unready_since": None,
            "phase": Phase.PROGRESSING,
        }
    )
    event = Event(time=now, message=message, kind=EventKind.STARTED)
    return Decision(
        action=Action.RESTART,
        status=_with_routes(status, ALL_TO_PRIMARY).with_events(event),
        routes=ALL_TO_PRIMARY,
    )


def decide(
    canary: Canary,
    status: CanaryStatus,
    observation: StepObservation,
    now: datetime,
    legacy: bool = False,
) -> Decision:
    """Judge one analysis step and say what to do next (`legacy`: see `start_analysis`).

    A manual rollback, the canary's revision and its readiness come before everything, pause
    included: a new revision restarts the analysis, and a canary that is not ready loses its
    traffic at once.
    """
    checked = _check_canary(canary, status, observation, now)
    if isinstance(checked, Decision):
        return checked
    status = checked
    if status.paused:
        return Decision(action=Action.WAIT, status=status)
    target = canary.target
    routes, event = _first_routes(canary, now, legacy)
    if routes is not None and not _routed_to_canary(status):
        # The canary lost its traffic while it was not ready: its metrics saw no traffic, so
        # judge nothing now and give it back the first step's share.
        status = _with_routes(status, routes)
        return Decision(
            action=Action.ADVANCE,
            status=status.with_events(event) if event is not None else status,
            routes=routes,
        )
    metric_statuses, failure, muted = _evaluate(canary, observation)
    status = status.model_copy(update={"metrics": metric_statuses})
    if failure is not None:
        return failed_check(canary, status, failure, now, alert=not muted)
    analysis = canary.spec.analysis
    if analysis.strategy == Strategy.CANARY:
        current = 0 if status.mirror else status.canary_weight
        later = [weight for weight in analysis.weights if weight > current]
        if not later:
            return Decision(action=Action.PROMOTE, status=status)
        refused = next((gate for gate in observation.traffic_gates if not gate.ok), None)
        if refused is not None:
            message = messages.waiting_for_traffic_approval(target, refused.name)
            return Decision(
                action=Action.WAIT,
                status=status.with_events(Event(time=now, message=message, kind=EventKind.WAITING)),
            )
        routes = Routes(primary_weight=100 - later[0], canary_weight=later[0])
        message = messages.advance_weight(target, later[0])
        event = Event(time=now, message=message, kind=EventKind.ADVANCED)
        return Decision(
            action=Action.ADVANCE,
            status=_with_routes(status, routes).with_events(event),
            routes=routes,
        )
    iterations = analysis.iterations or 0
    if not legacy and analysis.strategy != Strategy.AB_TESTING and status.iteration >= iterations:
        if (status.canary_weight, status.mirror) == (100, False):
            return Decision(action=Action.PROMOTE, status=status)
        message = messages.routing_all_to_canary(target)
        return Decision(
            action=Action.ADVANCE,
            status=_with_routes(status, ALL_TO_CANARY).with_events(
                Event(time=now, message=message)
            ),
            routes=ALL_TO_CANARY,
        )
    iteration = status.iteration + 1
    message = messages.advance_iteration(target, iteration, iterations)
    event = Event(time=now, message=message, kind=EventKind.ADVANCED)
    status = status.model_copy(update={"iteration": iteration}).with_events(event)
    if iteration < iterations:
        return Decision(action=Action.ADVANCE, status=status)
    if legacy or analysis.strategy == Strategy.AB_TESTING:
        return Decision(action=Action.PROMOTE, status=status)
    # Blue/green: one more analysed interval with all the traffic on the canary first.
    routed = Event(time=now, message=messages.routing_all_to_canary(target))
    return Decision(
        action=Action.ADVANCE,
        status=_with_routes(status, ALL_TO_CANARY).with_events(routed),
        routes=ALL_TO_CANARY,
    )


def judge(
    canary: Canary, status: CanaryStatus, observation: StepObservation, now: datetime
) -> Decision:
    """A step that must not advance (waiting for promotion approval): the same checks as
    `decide`, but the best it answers is WAIT."""
    checked = _check_canary(canary, status, observation, now)
    if isinstance(checked, Decision):
        return checked
    if checked.paused:
        return Decision(action=Action.WAIT, status=checked)
    metric_statuses, failure, muted = _evaluate(canary, observation)
    status = checked.model_copy(update={"metrics": metric_statuses})
    if failure is not None:
        return failed_check(canary, status, failure, now, alert=not muted)
    return Decision(action=Action.WAIT, status=status)


def promotion_step(
    canary: Canary, status: CanaryStatus, observation: StepObservation, now: datetime
) -> Decision:
    """One step of `stepWeightPromotion`: the primary runs the new version and is ready; after
    an analysed interval, move `stepWeightPromotion` more percent of the traffic to it.

    The canary is checked as in `decide` (a rollback hook, a new revision, readiness) and the
    metrics are judged (a failure is a failed check, a rollback at the threshold). PROMOTE
    when the primary gets all the traffic: the promotion is done. A canary that lost its
    share while it was not ready saw no traffic to judge: the primary has it all, so done."""
    checked = _check_canary(canary, status, observation, now)
    if isinstance(checked, Decision):
        return checked
    status = checked
    if status.paused:
        return Decision(action=Action.WAIT, status=status)
    if not _routed_to_canary(status):
        return Decision(action=Action.PROMOTE, status=status, routes=ALL_TO_PRIMARY)
    metric_statuses, failure, muted = _evaluate(canary, observation)
    status = status.model_copy(update={"metrics": metric_statuses})
    if failure is not None:
        return failed_check(canary, status, failure, now, alert=not muted)
    step = canary.spec.analysis.step_weight_promotion or 100
    primary = min(100, status.primary_weight + step)
    routes = Routes(primary_weight=primary, canary_weight=100 - primary)
    if primary == 100:
        message = messages.routing_all_to_primary(canary.target)
        event = Event(time=now, message=message)
    else:
        message = messages.advance_primary_weight(canary.target, primary)
        event = Event(time=now, message=message, kind=EventKind.ADVANCED)
    return Decision(
        action=Action.PROMOTE if primary == 100 else Action.ADVANCE,
        status=_with_routes(status, routes).with_events(event),
        routes=routes,
    )


def manual_rollback(canary: Canary, status: CanaryStatus, hook: str, now: datetime) -> Decision:
    reason = messages.rolling_back_hook(canary.target, hook)
    event = Event(time=now, message=reason, warning=True, kind=EventKind.ROLLED_BACK)
    status = status.model_copy(update={"reason": reason}).with_events(event)
    return Decision(action=Action.ROLLBACK, status=status)


def _check_canary(
    canary: Canary, status: CanaryStatus, observation: StepObservation, now: datetime
) -> Decision | CanaryStatus:
    """A decision when a rollback hook, a new revision or an unready canary settles the step;
    else the status to judge on."""
    asked = next((gate for gate in observation.rollback_gates if gate.ok), None)
    if asked is not None:
        return manual_rollback(canary, status, asked.name, now)
    revision = observation.canary_revision
    if revision is not None and status.revision is not None and revision != status.revision:
        return restart_analysis(canary, status, revision, now)
    if not observation.canary_ready:
        return _canary_not_ready(canary, status, observation.canary_readiness, now)
    return status.model_copy(update={"canary_unready_since": None})


def failed_check(
    canary: Canary, status: CanaryStatus, message: str, now: datetime, alert: bool = True
) -> Decision:
    """Count one failed check; roll back once the count reaches the threshold. Without
    `alert` the halt is no alert (a hook with `muteAlert`); a rollback always is."""
    failed = status.failed_checks + 1
    status = status.model_copy(update={"failed_checks": failed})
    kind = EventKind.HALTED if alert else None
    events = [Event(time=now, message=message, warning=True, kind=kind)]
    if failed < canary.spec.analysis.threshold:
        return Decision(action=Action.HALT, status=status.with_events(*events))
    reason = messages.rolling_back_threshold(canary.target, failed)
    events.append(Event(time=now, message=reason, warning=True, kind=EventKind.ROLLED_BACK))
    status = status.model_copy(update={"reason": reason}).with_events(*events)
    return Decision(action=Action.ROLLBACK, status=status)


def _canary_not_ready(canary: Canary, status: CanaryStatus, detail: str, now: datetime) -> Decision:
    """Traffic back to the primary at once; a failed check; past the deadline, a rollback."""
    target = canary.target
    since = status.canary_unready_since or now
    routes = None if not _routed_to_canary(status) else ALL_TO_PRIMARY
    status = _with_routes(status, routes).model_copy(update={"canary_unready_since": since})
    deadline = canary.spec.progress_deadline_seconds
    if (now - since).total_seconds() >= deadline:
        reason = messages.rolling_back_deadline(target, detail)
        event = Event(time=now, message=reason, warning=True, kind=EventKind.ROLLED_BACK)
        status = status.model_copy(update={"reason": reason}).with_events(event)
        return Decision(action=Action.ROLLBACK, status=status, routes=routes)
    decision = failed_check(canary, status, messages.halt_canary_not_ready(target, detail), now)
    return decision.model_copy(update={"routes": routes})


def _routed_to_canary(status: CanaryStatus) -> bool:
    return status.canary_weight > 0


def _with_routes(status: CanaryStatus, routes: Routes | None) -> CanaryStatus:
    if routes is None:
        return status
    return status.model_copy(
        update={
            "primary_weight": routes.primary_weight,
            "canary_weight": routes.canary_weight,
            "mirror": routes.mirror,
        }
    )


def _evaluate(
    canary: Canary, observation: StepObservation
) -> tuple[list[MetricStatus], str | None, bool]:
    """Each metric's status, the message of the first failed check (webhooks first), and
    whether it is a hook whose failures are muted (`muteAlert`)."""
    target = canary.target
    muted_hooks = {hook.name for hook in canary.spec.analysis.webhooks if hook.mute_alert}
    failed_hook = next((hook for hook in observation.webhooks if not hook.ok), None)
    failure = None
    muted = False
    if failed_hook is not None:
        failure = messages.halt_webhook(target, failed_hook.name, failed_hook.message)
        muted = failed_hook.name in muted_hooks
    observed = {metric.name: metric for metric in observation.metrics}
    statuses = []
    for metric in canary.spec.analysis.metrics:
        seen = observed.get(metric.name) or MetricObservation(
            name=metric.name, error="no observation was made"
        )
        outcome, message = _judge(target, metric, seen)
        bounds = metric.threshold_range
        statuses.append(
            MetricStatus(
                name=metric.name,
                value=seen.value,
                min=bounds.min if bounds else None,
                max=bounds.max if bounds else None,
                outcome=outcome,
            )
        )
        if failure is None and message is not None:
            failure = message
    return statuses, failure, muted


def _judge(target: str, metric: Metric, seen: MetricObservation) -> tuple[CheckOutcome, str | None]:
    if seen.error is not None:
        return CheckOutcome.UNAVAILABLE, messages.halt_metrics_unavailable(
            target, metric.name, seen.error
        )
    if seen.value is None or math.isnan(seen.value):
        return CheckOutcome.NO_VALUES, messages.halt_no_values(target, metric.name)
    bounds = metric.threshold_range
    if bounds is None:
        return CheckOutcome.PASSED, None
    too_low = bounds.min is not None and seen.value < bounds.min
    too_high = bounds.max is not None and seen.value > bounds.max
    if too_low or too_high:
        return CheckOutcome.FAILED, messages.halt_metric(target, metric, seen.value)
    return CheckOutcome.PASSED, None
