"""stepWeightPromotion's decision, table-tested: after each analysed interval another step of
the traffic goes back to the primary (which runs the new version and is ready); a failed check
counts, and rolls back at the threshold, as during the analysis."""

from datetime import timedelta
from typing import Any

import pytest

from canary.decision import (
    ALL_TO_PRIMARY,
    Action,
    Routes,
    StepObservation,
    promotion_step,
)
from canary.spec import Canary
from canary.status import CanaryStatus, CheckOutcome, EventKind, Phase, WebhookObservation
from tests.canary.test_decision import (
    CANARY,
    NOW,
    PASSING,
    make_canary,
    new_messages,
    observe,
)

NOT_READY = StepObservation(canary_ready=False, canary_readiness="1 of 2 replicas ready")


def stepped(step: int = 20, threshold: int = 3, **analysis: Any) -> Canary:
    return make_canary({**CANARY, "stepWeightPromotion": step, **analysis}, threshold=threshold)


def promoting(primary_weight: int, **changes: Any) -> CanaryStatus:
    status = CanaryStatus(
        phase=Phase.PROMOTING,
        primary_weight=primary_weight,
        canary_weight=100 - primary_weight,
        revision="r1",
    )
    return status.model_copy(update=changes)


@pytest.mark.parametrize(
    ("step", "primary_before", "primary_after", "action", "message"),
    [
        pytest.param(
            20, 50, 70, Action.ADVANCE, "Advance podinfo.test primary weight 70", id="from-half"
        ),
        pytest.param(
            25, 0, 25, Action.ADVANCE, "Advance podinfo.test primary weight 25", id="from-zero"
        ),
        pytest.param(
            20,
            80,
            100,
            Action.PROMOTE,
            "Routing all traffic to primary of podinfo.test",
            id="last-step",
        ),
        pytest.param(
            30,
            90,
            100,
            Action.PROMOTE,
            "Routing all traffic to primary of podinfo.test",
            id="capped-at-100",
        ),
        pytest.param(
            100,
            0,
            100,
            Action.PROMOTE,
            "Routing all traffic to primary of podinfo.test",
            id="one-step",
        ),
    ],
)
def test_a_passing_step_moves_another_step_to_the_primary(
    step: int, primary_before: int, primary_after: int, action: Action, message: str
) -> None:
    status = promoting(primary_before)
    decision = promotion_step(stepped(step), status, PASSING, NOW)
    routes = Routes(primary_weight=primary_after, canary_weight=100 - primary_after)
    assert decision.action == action
    assert decision.routes == routes
    assert (decision.status.primary_weight, decision.status.canary_weight) == (
        primary_after,
        100 - primary_after,
    )
    assert new_messages(status, decision) == [message]
    assert decision.status.phase == Phase.PROMOTING
    assert [metric.outcome for metric in decision.status.metrics] == [CheckOutcome.PASSED] * 2


def test_the_steps_end_with_all_traffic_on_the_primary() -> None:
    canary = stepped(30)
    status = promoting(40)
    seen = []
    while True:
        decision = promotion_step(canary, status, PASSING, NOW)
        assert decision.routes is not None
        seen.append((decision.action, decision.routes.primary_weight))
        status = decision.status
        if decision.action != Action.ADVANCE:
            break
    assert seen == [(Action.ADVANCE, 70), (Action.PROMOTE, 100)]
    assert decision.routes == ALL_TO_PRIMARY


@pytest.mark.parametrize(
    ("observation", "message"),
    [
        pytest.param(
            observe(success=61.5),
            "Halt podinfo.test advancement success rate 61.50% < 99%",
            id="metric-out-of-range",
        ),
        pytest.param(
            observe(duration=None),
            "Halt advancement no values found for metric request-duration "
            "probably podinfo.test is not receiving traffic",
            id="no-values",
        ),
        pytest.param(
            observe(webhooks=[WebhookObservation(name="load", ok=False, message="status 500")]),
            "Halt podinfo.test advancement external check load failed status 500",
            id="rollout-hook",
        ),
    ],
)
def test_a_failed_check_holds_the_traffic_and_counts(
    observation: StepObservation, message: str
) -> None:
    status = promoting(60, failed_checks=1)
    decision = promotion_step(stepped(threshold=3), status, observation, NOW)
    assert decision.action == Action.HALT
    assert decision.routes is None
    assert decision.status.failed_checks == 2
    assert (decision.status.primary_weight, decision.status.canary_weight) == (60, 40)
    assert new_messages(status, decision) == [message]
    assert decision.status.events[-1].kind == EventKind.HALTED


def test_a_failed_check_at_the_threshold_rolls_back() -> None:
    status = promoting(60, failed_checks=2)
    decision = promotion_step(stepped(threshold=3), status, observe(success=61.5), NOW)
    assert decision.action == Action.ROLLBACK
    assert decision.routes is None
    assert decision.status.failed_checks == 3
    assert decision.status.reason == "Rolling back podinfo.test failed checks threshold reached 3"
    assert decision.status.events[-1].kind == EventKind.ROLLED_BACK


def test_a_rollback_hook_that_answers_2xx_rolls_back_at_once() -> None:
    status = promoting(60)
    asked = StepObservation(rollback_gates=[WebhookObservation(name="stop", ok=True)])
    decision = promotion_step(stepped(threshold=3), status, asked, NOW)
    assert decision.action == Action.ROLLBACK
    assert decision.status.failed_checks == 0
    assert decision.status.reason == "Rolling back podinfo.test manual rollback requested by stop"


def test_a_canary_that_is_not_ready_loses_its_share_to_the_primary() -> None:
    status = promoting(60)
    decision = promotion_step(stepped(threshold=3), status, NOT_READY, NOW)
    assert decision.action == Action.HALT
    assert decision.routes == ALL_TO_PRIMARY
    assert decision.status.failed_checks == 1
    assert decision.status.canary_unready_since == NOW


def test_a_canary_not_ready_past_the_progress_deadline_rolls_back() -> None:
    canary = stepped(threshold=10)
    deadline = canary.spec.progress_deadline_seconds
    status = promoting(100, canary_unready_since=NOW)
    decision = promotion_step(canary, status, NOT_READY, NOW + timedelta(seconds=deadline))
    assert decision.action == Action.ROLLBACK
    assert decision.status.reason == (
        "Rolling back podinfo.test progress deadline exceeded 1 of 2 replicas ready"
    )


def test_a_new_revision_restarts_the_analysis() -> None:
    status = promoting(60)
    changed = PASSING.model_copy(update={"canary_revision": "r2"})
    decision = promotion_step(stepped(), status, changed, NOW)
    assert decision.action == Action.RESTART
    assert decision.routes == ALL_TO_PRIMARY
    assert decision.status.revision == "r2"
    assert decision.status.phase == Phase.PROGRESSING


def test_a_pause_holds_the_traffic_without_judging() -> None:
    status = promoting(60, paused=True)
    decision = promotion_step(stepped(), status, observe(success=61.5), NOW)
    assert decision.action == Action.WAIT
    assert decision.routes is None
    assert decision.status.failed_checks == 0


def test_a_canary_that_lost_its_share_ends_the_promotion_unjudged() -> None:
    """Its metrics saw no traffic, and the primary, ready, already has all of it."""
    status = promoting(100, failed_checks=1, canary_unready_since=NOW)
    decision = promotion_step(stepped(), status, observe(success=None), NOW)
    assert decision.action == Action.PROMOTE
    assert decision.routes == ALL_TO_PRIMARY
    assert decision.status.failed_checks == 1
    assert decision.status.canary_unready_since is None
