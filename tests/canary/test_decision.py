"""The analysis decision, table-tested for every strategy: no Temporal, no network."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from canary import loader
from canary.decision import (
    Action,
    Decision,
    Routes,
    StepObservation,
    decide,
    failed_check,
    start_analysis,
)
from canary.spec import Canary
from canary.status import (
    MAX_EVENTS,
    CanaryStatus,
    CheckOutcome,
    Event,
    MetricObservation,
    MetricStatus,
    Phase,
    WebhookObservation,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TARGET = "podinfo.test"

BUILTIN_METRICS: list[dict[str, Any]] = [
    {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
    {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"},
]
CANARY = {"stepWeight": 10, "maxWeight": 50}
MATCH = [{"headers": {"x-canary": {"exact": "insider"}}}]


def make_canary(
    analysis: dict[str, Any] | None = None,
    *,
    metrics: list[dict[str, Any]] | None = None,
    webhooks: list[dict[str, Any]] | None = None,
    threshold: int = 5,
) -> Canary:
    """The podinfo Canary with these analysis settings, through the real loader."""
    doc = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1m",
                "threshold": threshold,
                **(analysis if analysis is not None else CANARY),
                "metrics": metrics if metrics is not None else BUILTIN_METRICS,
                "webhooks": webhooks or [],
            },
        },
    }
    return loader.load_canary(yaml.safe_dump(doc)).canary


def observe(
    success: float | None = 99.9,
    duration: float | None = 120.0,
    *,
    webhooks: list[WebhookObservation] | None = None,
    gates: list[WebhookObservation] | None = None,
    errors: dict[str, str] | None = None,
) -> StepObservation:
    errors = errors or {}
    metrics = [
        MetricObservation(name=name, value=value, error=errors.get(name))
        for name, value in (("request-success-rate", success), ("request-duration", duration))
    ]
    return StepObservation(webhooks=webhooks or [], traffic_gates=gates or [], metrics=metrics)


PASSING = observe()


def progressing(canary_weight: int = 0, **changes: Any) -> CanaryStatus:
    status = CanaryStatus(
        phase=Phase.PROGRESSING, canary_weight=canary_weight, primary_weight=100 - canary_weight
    )
    return status.model_copy(update=changes)


def messages_of(status: CanaryStatus) -> list[str]:
    return [event.message for event in status.events]


def new_messages(before: CanaryStatus, decision: Decision) -> list[str]:
    return messages_of(decision.status)[len(before.events) :]


# -- start -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analysis", "routes", "events"),
    [
        pytest.param(
            CANARY,
            Routes(primary_weight=90, canary_weight=10),
            ["Advance podinfo.test canary weight 10"],
            id="canary",
        ),
        pytest.param(
            {"stepWeights": [1, 2, 10, 80]},
            Routes(primary_weight=99, canary_weight=1),
            ["Advance podinfo.test canary weight 1"],
            id="canary-stepWeights",
        ),
        pytest.param(
            {"iterations": 10, "match": MATCH},
            Routes(primary_weight=0, canary_weight=100),
            ["Routing matching requests to podinfo.test"],
            id="ab-testing",
        ),
        pytest.param({"iterations": 10}, None, [], id="blue-green"),
        pytest.param(
            {"iterations": 10, "mirror": True},
            Routes(primary_weight=100, canary_weight=100, mirror=True),
            ["Mirroring 100% of the traffic to podinfo.test"],
            id="blue-green-mirror",
        ),
        pytest.param(
            {"iterations": 10, "mirror": True, "mirrorWeight": 40},
            Routes(primary_weight=100, canary_weight=40, mirror=True),
            ["Mirroring 40% of the traffic to podinfo.test"],
            id="blue-green-mirror-weight",
        ),
    ],
)
def test_start_analysis(analysis: dict[str, Any], routes: Routes | None, events: list[str]) -> None:
    status = CanaryStatus(phase=Phase.INITIALIZED)
    decision = start_analysis(make_canary(analysis), status, NOW)
    assert decision.action == Action.ADVANCE
    assert decision.routes == routes
    assert decision.status.phase == Phase.PROGRESSING
    assert messages_of(decision.status) == ["Starting canary analysis for podinfo.test", *events]
    assert all(event.time == NOW and not event.warning for event in decision.status.events)
    expected = routes or Routes(primary_weight=100, canary_weight=0)
    assert (
        decision.status.primary_weight,
        decision.status.canary_weight,
        decision.status.mirror,
    ) == (expected.primary_weight, expected.canary_weight, expected.mirror)
    assert decision.status.failed_checks == 0


# -- advancing the canary --------------------------------------------------------------------


def test_advance_one_step() -> None:
    status = progressing(10)
    decision = decide(make_canary(), status, PASSING, NOW)
    assert decision.action == Action.ADVANCE
    assert decision.routes == Routes(primary_weight=80, canary_weight=20)
    assert (decision.status.primary_weight, decision.status.canary_weight) == (80, 20)
    assert new_messages(status, decision) == ["Advance podinfo.test canary weight 20"]
    assert decision.status.events[-1].warning is False
    assert decision.status.failed_checks == 0


def run_to_promotion(canary: Canary, limit: int = 20) -> tuple[list[int], int]:
    """Start, then pass every step: the canary weights in order and how many steps it took."""
    decision = start_analysis(canary, CanaryStatus(phase=Phase.INITIALIZED), NOW)
    weights = [decision.status.canary_weight]
    for step in range(1, limit + 1):
        decision = decide(canary, decision.status, PASSING, NOW + timedelta(minutes=step))
        if decision.action == Action.PROMOTE:
            assert decision.routes is None
            return weights, step
        assert decision.action == Action.ADVANCE
        assert decision.routes is not None
        assert decision.routes.primary_weight + decision.routes.canary_weight == 100
        weights.append(decision.routes.canary_weight)
    raise AssertionError(f"no promotion after {limit} steps (weights {weights})")


@pytest.mark.parametrize(
    ("analysis", "weights"),
    [
        pytest.param(CANARY, [10, 20, 30, 40, 50], id="step-10-max-50"),
        pytest.param({"stepWeight": 20, "maxWeight": 50}, [20, 40, 50], id="non-multiple"),
        pytest.param({"stepWeights": [1, 2, 10, 80]}, [1, 2, 10, 80], id="stepWeights"),
        pytest.param({"stepWeight": 50}, [50, 100], id="default-max-100"),
        pytest.param({"stepWeight": 50, "maxWeight": 50}, [50], id="single-step"),
    ],
)
def test_weight_sequence_then_promotion(analysis: dict[str, Any], weights: list[int]) -> None:
    seen, steps = run_to_promotion(make_canary(analysis))
    assert seen == weights
    # one analysis step at each weight, the last one promotes: no extra interval
    assert steps == len(weights)


@pytest.mark.parametrize(
    ("analysis", "weight"),
    [
        pytest.param(CANARY, 50, id="maxWeight"),
        pytest.param({"stepWeights": [1, 2, 10, 80]}, 80, id="last-stepWeight"),
    ],
)
def test_promote_at_max_weight(analysis: dict[str, Any], weight: int) -> None:
    status = progressing(weight, failed_checks=2)
    decision = decide(make_canary(analysis), status, PASSING, NOW)
    assert decision.action == Action.PROMOTE
    assert decision.routes is None
    assert (decision.status.primary_weight, decision.status.canary_weight) == (100 - weight, weight)
    assert decision.status.failed_checks == 2


# -- halting ---------------------------------------------------------------------------------

FAILED_HOOK = WebhookObservation(name="load-test", ok=False, message="status 500")


@pytest.mark.parametrize(
    ("observation", "message", "outcomes"),
    [
        pytest.param(
            observe(success=69.17),
            "Halt podinfo.test advancement success rate 69.17% < 99%",
            [CheckOutcome.FAILED, CheckOutcome.PASSED],
            id="low-success-rate",
        ),
        pytest.param(
            observe(duration=612.5),
            "Halt podinfo.test advancement request duration 612.5ms > 500ms",
            [CheckOutcome.PASSED, CheckOutcome.FAILED],
            id="slow-requests",
        ),
        pytest.param(
            observe(duration=None),
            "Halt advancement no values found for metric request-duration "
            "probably podinfo.test is not receiving traffic",
            [CheckOutcome.PASSED, CheckOutcome.NO_VALUES],
            id="no-values",
        ),
        pytest.param(
            observe(duration=float("nan")),
            "Halt advancement no values found for metric request-duration "
            "probably podinfo.test is not receiving traffic",
            [CheckOutcome.PASSED, CheckOutcome.NO_VALUES],
            id="nan-is-no-values",
        ),
        pytest.param(
            observe(errors={"request-success-rate": "connection refused"}),
            "Halt podinfo.test advancement request-success-rate check failed: connection refused",
            [CheckOutcome.UNAVAILABLE, CheckOutcome.PASSED],
            id="metrics-unavailable",
        ),
        pytest.param(
            StepObservation(metrics=[MetricObservation(name="request-success-rate", value=100)]),
            "Halt podinfo.test advancement request-duration check failed: no observation was made",
            [CheckOutcome.PASSED, CheckOutcome.UNAVAILABLE],
            id="metric-not-observed",
        ),
        pytest.param(
            observe(webhooks=[WebhookObservation(name="smoke", ok=True), FAILED_HOOK]),
            "Halt podinfo.test advancement external check load-test failed status 500",
            [CheckOutcome.PASSED, CheckOutcome.PASSED],
            id="rollout-webhook",
        ),
        pytest.param(
            observe(success=50, duration=900),
            "Halt podinfo.test advancement success rate 50.00% < 99%",
            [CheckOutcome.FAILED, CheckOutcome.FAILED],
            id="first-failed-metric-speaks",
        ),
        pytest.param(
            observe(success=50, webhooks=[FAILED_HOOK]),
            "Halt podinfo.test advancement external check load-test failed status 500",
            [CheckOutcome.FAILED, CheckOutcome.PASSED],
            id="webhook-before-metrics",
        ),
    ],
)
def test_halt(observation: StepObservation, message: str, outcomes: list[CheckOutcome]) -> None:
    status = progressing(20, failed_checks=1)
    decision = decide(make_canary(), status, observation, NOW)
    assert decision.action == Action.HALT
    assert decision.routes is None
    assert decision.status.failed_checks == 2
    assert (decision.status.primary_weight, decision.status.canary_weight) == (80, 20)
    assert new_messages(status, decision) == [message]
    assert decision.status.events[-1].warning is True
    assert decision.status.events[-1].time == NOW
    assert [metric.outcome for metric in decision.status.metrics] == outcomes
    assert decision.status.reason is None


@pytest.mark.parametrize(
    ("success", "duration"),
    [
        pytest.param(99.0, 120.0, id="success-rate-at-min"),
        pytest.param(99.9, 500.0, id="duration-at-max"),
        pytest.param(100.0, 0.0, id="perfect"),
    ],
)
def test_values_on_the_bounds_pass(success: float, duration: float) -> None:
    decision = decide(make_canary(), progressing(10), observe(success, duration), NOW)
    assert decision.action == Action.ADVANCE
    assert [m.outcome for m in decision.status.metrics] == [CheckOutcome.PASSED] * 2


# -- rolling back ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "failed_before", "action"),
    [
        pytest.param(5, 3, Action.HALT, id="threshold-2"),
        pytest.param(5, 4, Action.ROLLBACK, id="threshold-1"),
        pytest.param(2, 0, Action.HALT, id="first-of-two"),
        pytest.param(2, 1, Action.ROLLBACK, id="second-of-two"),
        pytest.param(1, 0, Action.ROLLBACK, id="threshold-1-at-once"),
    ],
)
def test_roll_back_exactly_at_threshold(threshold: int, failed_before: int, action: Action) -> None:
    canary = make_canary(threshold=threshold)
    status = progressing(30, failed_checks=failed_before)
    decision = decide(canary, status, observe(success=69.17), NOW)
    halt = "Halt podinfo.test advancement success rate 69.17% < 99%"
    assert decision.action == action
    assert decision.routes is None
    assert decision.status.failed_checks == failed_before + 1
    if action == Action.ROLLBACK:
        reason = f"Rolling back podinfo.test failed checks threshold reached {threshold}"
        assert decision.status.reason == reason
        assert new_messages(status, decision) == [halt, reason]
        assert all(event.warning for event in decision.status.events)
    else:
        assert decision.status.reason is None
        assert new_messages(status, decision) == [halt]


@pytest.mark.parametrize(
    ("failed_before", "action", "reason"),
    [
        (0, Action.HALT, None),
        (2, Action.ROLLBACK, "Rolling back podinfo.test failed checks threshold reached 3"),
    ],
)
def test_failed_check_outside_analysis(
    failed_before: int, action: Action, reason: str | None
) -> None:
    """A failing pre-rollout hook counts like a failed metric check."""
    canary = make_canary(threshold=3)
    message = "Pre-rollout check acceptance-test failed for podinfo.test status 503"
    status = CanaryStatus(phase=Phase.PROGRESSING, failed_checks=failed_before)
    decision = failed_check(canary, status, message, NOW)
    assert decision.action == action
    assert decision.status.failed_checks == failed_before + 1
    assert decision.status.reason == reason
    assert new_messages(status, decision) == [message] + ([reason] if reason else [])


def test_failed_checks_are_not_reset_by_a_passing_step() -> None:
    canary = make_canary(threshold=3)
    status = progressing(10)
    status = decide(canary, status, observe(success=10), NOW).status
    status = decide(canary, status, PASSING, NOW).status
    assert status.failed_checks == 1
    assert status.canary_weight == 20
    status = decide(canary, status, observe(duration=None), NOW).status
    status = decide(canary, status, PASSING, NOW).status
    assert status.failed_checks == 2
    last = decide(canary, status, observe(success=10), NOW)
    assert last.action == Action.ROLLBACK  # third failure overall, though never in a row


# -- pauses and gates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "observation",
    [PASSING, observe(success=1.0), observe(duration=None)],
    ids=["passing", "failing", "no-values"],
)
def test_paused_waits_and_changes_nothing(observation: StepObservation) -> None:
    status = progressing(20, paused=True, failed_checks=1)
    decision = decide(make_canary(), status, observation, NOW)
    assert decision.action == Action.WAIT
    assert decision.routes is None
    assert decision.status == status


TRAFFIC_GATE = [{"name": "traffic-gate", "type": "confirm-traffic-increase", "url": "http://gate/"}]


def test_traffic_increase_gate_refused_waits() -> None:
    canary = make_canary(webhooks=TRAFFIC_GATE)
    status = progressing(20, failed_checks=1)
    refused = observe(gates=[WebhookObservation(name="traffic-gate", ok=False, message="403")])
    decision = decide(canary, status, refused, NOW)
    assert decision.action == Action.WAIT
    assert decision.routes is None
    assert (decision.status.primary_weight, decision.status.canary_weight) == (80, 20)
    assert decision.status.failed_checks == 1
    assert new_messages(status, decision) == [
        "Halt podinfo.test advancement waiting for traffic increase approval traffic-gate"
    ]
    assert decision.status.events[-1].warning is False


def test_traffic_increase_gate_approved_advances() -> None:
    canary = make_canary(webhooks=TRAFFIC_GATE)
    approved = observe(gates=[WebhookObservation(name="traffic-gate", ok=True)])
    decision = decide(canary, progressing(20), approved, NOW)
    assert decision.action == Action.ADVANCE
    assert decision.routes == Routes(primary_weight=70, canary_weight=30)


def test_traffic_gate_does_not_hold_promotion() -> None:
    """At maxWeight there is no increase left to approve."""
    refused = observe(gates=[WebhookObservation(name="traffic-gate", ok=False)])
    decision = decide(make_canary(webhooks=TRAFFIC_GATE), progressing(50), refused, NOW)
    assert decision.action == Action.PROMOTE


def test_failing_metrics_halt_even_when_the_gate_refuses() -> None:
    refused = observe(success=50, gates=[WebhookObservation(name="traffic-gate", ok=False)])
    decision = decide(make_canary(webhooks=TRAFFIC_GATE), progressing(20), refused, NOW)
    assert decision.action == Action.HALT
    assert decision.status.failed_checks == 1


# -- iterations: A/B testing, blue/green, mirroring ------------------------------------------


@pytest.mark.parametrize(
    ("analysis", "legacy"),
    [
        pytest.param({"iterations": 3, "match": MATCH}, False, id="ab-testing"),
        pytest.param({"iterations": 3}, True, id="blue-green-legacy"),
        pytest.param({"iterations": 3, "mirror": True}, True, id="blue-green-mirror-legacy"),
    ],
)
def test_iterations_then_promotion(analysis: dict[str, Any], legacy: bool) -> None:
    """A/B testing; and blue/green as rollouts started before the safety rules decide it."""
    canary = make_canary(analysis)
    start = start_analysis(canary, CanaryStatus(phase=Phase.INITIALIZED), NOW)
    status = start.status
    weights = (status.primary_weight, status.canary_weight, status.mirror)
    actions: list[Action] = []
    events: list[str] = []
    for step in range(3):
        if step == 1:  # a failed step does not count as an iteration
            halted = decide(canary, status, observe(success=50), NOW, legacy)
            assert halted.action == Action.HALT
            assert halted.status.iteration == status.iteration
            status = halted.status
        decision = decide(canary, status, PASSING, NOW, legacy)
        assert decision.routes is None  # the routes set at the start stay
        assert (
            decision.status.primary_weight,
            decision.status.canary_weight,
            decision.status.mirror,
        ) == weights
        actions.append(decision.action)
        events.append(messages_of(decision.status)[-1])
        status = decision.status
    assert actions == [Action.ADVANCE, Action.ADVANCE, Action.PROMOTE]
    assert events == [f"Advance podinfo.test canary iteration {i}/3" for i in (1, 2, 3)]
    assert status.iteration == 3
    assert status.failed_checks == 1


# -- metric status ---------------------------------------------------------------------------

CUSTOM_METRIC = {"name": "queue-depth", "query": "sum(queue_depth)", "interval": "1m"}


def test_metric_status_is_recorded_for_every_metric() -> None:
    canary = make_canary(metrics=[*BUILTIN_METRICS, CUSTOM_METRIC])
    observation = StepObservation(
        metrics=[
            MetricObservation(name="queue-depth", value=1234.0),
            MetricObservation(name="request-duration", value=None),
            MetricObservation(name="request-success-rate", value=69.17),
        ]
    )
    decision = decide(canary, progressing(10), observation, NOW)
    assert decision.action == Action.HALT
    assert decision.status.metrics == [
        MetricStatus(
            name="request-success-rate",
            value=69.17,
            min=99,
            max=None,
            outcome=CheckOutcome.FAILED,
        ),
        MetricStatus(
            name="request-duration", value=None, min=None, max=500, outcome=CheckOutcome.NO_VALUES
        ),
        MetricStatus(
            name="queue-depth", value=1234.0, min=None, max=None, outcome=CheckOutcome.PASSED
        ),
    ]


def test_metric_status_is_recorded_when_a_webhook_fails() -> None:
    observation = observe(success=99.5, duration=250.0, webhooks=[FAILED_HOOK])
    decision = decide(make_canary(), progressing(10), observation, NOW)
    assert decision.action == Action.HALT
    assert [(m.name, m.value, m.outcome) for m in decision.status.metrics] == [
        ("request-success-rate", 99.5, CheckOutcome.PASSED),
        ("request-duration", 250.0, CheckOutcome.PASSED),
    ]


def test_metric_status_is_replaced_each_step() -> None:
    canary = make_canary()
    first = decide(canary, progressing(10), observe(success=99.1), NOW)
    second = decide(canary, first.status, observe(success=99.7), NOW)
    assert [m.value for m in second.status.metrics] == [99.7, 120.0]


@pytest.mark.parametrize("value", [-1e9, 0.0, 42.0, 1e12])
def test_metric_without_threshold_range_always_passes(value: float) -> None:
    canary = make_canary(metrics=[CUSTOM_METRIC])
    observation = StepObservation(metrics=[MetricObservation(name="queue-depth", value=value)])
    decision = decide(canary, progressing(10), observation, NOW)
    assert decision.action == Action.ADVANCE
    assert decision.status.metrics[0].outcome == CheckOutcome.PASSED


def test_metric_without_threshold_range_still_needs_values() -> None:
    canary = make_canary(metrics=[CUSTOM_METRIC])
    observation = StepObservation(metrics=[MetricObservation(name="queue-depth", value=None)])
    decision = decide(canary, progressing(10), observation, NOW)
    assert decision.action == Action.HALT
    assert decision.status.metrics[0].outcome == CheckOutcome.NO_VALUES


# -- the event log ---------------------------------------------------------------------------


def full_log() -> list[Event]:
    return [
        Event(time=NOW - timedelta(seconds=MAX_EVENTS - i), message=f"old {i}")
        for i in range(MAX_EVENTS)
    ]


@pytest.mark.parametrize(
    ("step", "added"),
    [
        pytest.param(lambda canary, status: decide(canary, status, PASSING, NOW), 1, id="advance"),
        pytest.param(
            lambda canary, status: decide(canary, status, observe(success=1), NOW),
            1,
            id="halt",
        ),
        pytest.param(
            lambda canary, status: decide(
                canary, status.model_copy(update={"failed_checks": 4}), observe(success=1), NOW
            ),
            2,
            id="rollback",
        ),
        pytest.param(lambda canary, status: start_analysis(canary, status, NOW), 2, id="start"),
    ],
)
def test_events_are_capped(step: Any, added: int) -> None:
    assert MAX_EVENTS == 50
    status = progressing(10, events=full_log())
    decision: Decision = step(make_canary(), status)
    events = decision.status.events
    assert len(events) == MAX_EVENTS
    assert events[: MAX_EVENTS - added] == status.events[added:]
    assert all(not event.message.startswith("old") for event in events[-added:])
