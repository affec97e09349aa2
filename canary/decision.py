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


class Routes(BaseModel):
    """Absolute weights for the router; `mirror` copies canary_weight % of traffic instead."""

    primary_weight: int
    canary_weight: int
    mirror: bool = False


ALL_TO_PRIMARY = Routes(primary_weight=100, canary_weight=0)


class StepObservation(BaseModel):
    """What one analysis step saw: rollout webhooks, traffic-increase gates, metrics."""

    webhooks: list[WebhookObservation] = Field(default_factory=list)
    traffic_gates: list[WebhookObservation] = Field(default_factory=list)
    metrics: list[MetricObservation] = Field(default_factory=list)


class Decision(BaseModel):
    action: Action
    status: CanaryStatus
    routes: Routes | None = None
    """Routes to set now; None leaves them as they are."""


def start_analysis(canary: Canary, status: CanaryStatus, now: datetime) -> Decision:
    """The first step: send the canary its first traffic (no analysis: it has none yet)."""
    target = canary.target
    analysis = canary.spec.analysis
    events = [Event(time=now, message=messages.starting(target), kind=EventKind.STARTED)]
    strategy = analysis.strategy
    routes: Routes | None = None
    if strategy == Strategy.CANARY:
        weight = analysis.weights[0]
        routes = Routes(primary_weight=100 - weight, canary_weight=weight)
        message = messages.advance_weight(target, weight)
        events.append(Event(time=now, message=message, kind=EventKind.ADVANCED))
    elif strategy == Strategy.AB_TESTING:
        routes = Routes(primary_weight=0, canary_weight=100)
        events.append(Event(time=now, message=messages.routing_match(target)))
    elif strategy == Strategy.BLUE_GREEN_MIRROR:
        weight = analysis.mirror_weight or 100
        routes = Routes(primary_weight=100, canary_weight=weight, mirror=True)
        events.append(Event(time=now, message=messages.routing_mirror(target, weight)))
    next_status = _with_routes(status, routes).model_copy(update={"phase": Phase.PROGRESSING})
    return Decision(action=Action.ADVANCE, status=next_status.with_events(*events), routes=routes)


def decide(
    canary: Canary, status: CanaryStatus, observation: StepObservation, now: datetime
) -> Decision:
    """Judge one analysis step and say what to do next."""
    if status.paused:
        return Decision(action=Action.WAIT, status=status)
    target = canary.target
    metric_statuses, failure = _evaluate(canary, observation)
    status = status.model_copy(update={"metrics": metric_statuses})
    if failure is not None:
        return failed_check(canary, status, failure, now)
    analysis = canary.spec.analysis
    if analysis.strategy == Strategy.CANARY:
        later = [weight for weight in analysis.weights if weight > status.canary_weight]
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
    iteration = status.iteration + 1
    message = messages.advance_iteration(target, iteration, iterations)
    event = Event(time=now, message=message, kind=EventKind.ADVANCED)
    status = status.model_copy(update={"iteration": iteration}).with_events(event)
    action = Action.PROMOTE if iteration >= iterations else Action.ADVANCE
    return Decision(action=action, status=status)


def failed_check(canary: Canary, status: CanaryStatus, message: str, now: datetime) -> Decision:
    """Count one failed check; roll back once the count reaches the threshold."""
    failed = status.failed_checks + 1
    status = status.model_copy(update={"failed_checks": failed})
    events = [Event(time=now, message=message, warning=True, kind=EventKind.HALTED)]
    if failed < canary.spec.analysis.threshold:
        return Decision(action=Action.HALT, status=status.with_events(*events))
    reason = messages.rolling_back_threshold(canary.target, failed)
    events.append(Event(time=now, message=reason, warning=True, kind=EventKind.ROLLED_BACK))
    status = status.model_copy(update={"reason": reason}).with_events(*events)
    return Decision(action=Action.ROLLBACK, status=status)


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
) -> tuple[list[MetricStatus], str | None]:
    """Each metric's status, and the message of the first failed check (webhooks first)."""
    target = canary.target
    failure = next(
        (
            messages.halt_webhook(target, hook.name, hook.message)
            for hook in observation.webhooks
            if not hook.ok
        ),
        None,
    )
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
    return statuses, failure


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
