"""The decision's safety rules, table-tested: a canary that is not ready loses its traffic at
once, a new revision restarts the analysis, and neither waits for a pause or a metric."""

from datetime import timedelta
from typing import Any

import pytest

from canary.decision import (
    ALL_TO_PRIMARY,
    Action,
    Routes,
    StepObservation,
    decide,
    judge,
    start_analysis,
)
from canary.status import CanaryStatus, EventKind, Phase, WebhookObservation
from tests.canary.test_decision import (
    CANARY,
    MATCH,
    NOW,
    PASSING,
    make_canary,
    messages_of,
    new_messages,
    observe,
    progressing,
)

NOT_READY = StepObservation(canary_ready=False, canary_readiness="1 of 2 replicas ready")
STRATEGIES = [
    pytest.param(CANARY, 30, id="canary"),
    pytest.param({"iterations": 5, "match": MATCH}, 100, id="ab-testing"),
    pytest.param({"iterations": 5, "mirror": True}, 100, id="blue-green-mirror"),
]


def routed(status: CanaryStatus) -> tuple[int, int, bool]:
    return status.primary_weight, status.canary_weight, status.mirror


@pytest.mark.parametrize(("analysis", "weight"), STRATEGIES)
def test_a_canary_that_is_not_ready_loses_its_traffic_and_fails_a_check(
    analysis: dict[str, Any], weight: int
) -> None:
    status = progressing(weight, revision="r1", mirror="mirror" in analysis)
    decision = decide(make_canary(analysis, threshold=3), status, NOT_READY, NOW)
    assert decision.action == Action.HALT
    assert decision.routes == ALL_TO_PRIMARY
    assert routed(decision.status) == (100, 0, False)
    assert decision.status.failed_checks == 1
    assert decision.status.canary_unready_since == NOW
    assert new_messages(status, decision) == [
        "Halt podinfo.test advancement canary not ready: 1 of 2 replicas ready"
    ]
    assert decision.status.events[-1].kind == EventKind.HALTED


def test_a_canary_without_traffic_that_is_not_ready_gets_no_route_change() -> None:
    status = progressing(0, revision="r1", canary_unready_since=NOW)
    decision = decide(make_canary(threshold=3), status, NOT_READY, NOW + timedelta(minutes=1))
    assert decision.action == Action.HALT
    assert decision.routes is None
    assert decision.status.canary_unready_since == NOW


@pytest.mark.parametrize(
    ("threshold", "failed_before", "minutes_unready", "action"),
    [
        pytest.param(3, 0, 0, Action.HALT, id="first-time"),
        pytest.param(3, 2, 1, Action.ROLLBACK, id="threshold-reached"),
        pytest.param(10, 1, 9, Action.HALT, id="before-the-deadline"),
        pytest.param(10, 1, 10, Action.ROLLBACK, id="deadline-reached"),
    ],
)
def test_not_ready_rolls_back_at_the_threshold_or_past_the_progress_deadline(
    threshold: int, failed_before: int, minutes_unready: int, action: Action
) -> None:
    canary = make_canary(threshold=threshold)
    assert canary.spec.progress_deadline_seconds == 600
    since = NOW - timedelta(minutes=minutes_unready)
    status = progressing(20, revision="r1", failed_checks=failed_before)
    if minutes_unready:
        status = status.model_copy(update={"canary_unready_since": since})
    decision = decide(canary, status, NOT_READY, NOW)
    assert decision.action == action
    assert decision.routes == ALL_TO_PRIMARY
    if action == Action.ROLLBACK:
        assert decision.status.reason is not None
        assert decision.status.reason.startswith("Rolling back podinfo.test")
        assert decision.status.events[-1].kind == EventKind.ROLLED_BACK


def test_a_paused_rollout_still_pulls_traffic_from_a_canary_that_is_not_ready() -> None:
    status = progressing(20, revision="r1", paused=True)
    decision = decide(make_canary(), status, NOT_READY, NOW)
    assert decision.routes == ALL_TO_PRIMARY
    assert decision.action == Action.HALT


@pytest.mark.parametrize(("analysis", "weight"), STRATEGIES)
def test_a_canary_ready_again_gets_its_first_share_back_without_a_judgement(
    analysis: dict[str, Any], weight: int
) -> None:
    """Its metrics saw no traffic while it had none: nothing to judge on this step."""
    canary = make_canary(analysis)
    status = progressing(0, revision="r1", canary_unready_since=NOW, failed_checks=1)
    decision = decide(canary, status, observe(success=None, duration=None), NOW)
    assert decision.action == Action.ADVANCE
    assert decision.routes is not None
    assert decision.routes.canary_weight == (10 if analysis == CANARY else weight)
    assert decision.status.canary_unready_since is None
    assert decision.status.failed_checks == 1


def test_blue_green_has_no_traffic_to_give_back_and_is_judged_as_usual() -> None:
    canary = make_canary({"iterations": 5})
    status = progressing(0, revision="r1", canary_unready_since=NOW)
    decision = decide(canary, status, PASSING, NOW)
    assert decision.action == Action.ADVANCE
    assert decision.routes is None
    assert decision.status.iteration == 1


@pytest.mark.parametrize("paused", [False, True])
@pytest.mark.parametrize("ready", [True, False])
def test_a_new_revision_restarts_the_analysis(paused: bool, ready: bool) -> None:
    status = progressing(40, revision="r1", failed_checks=2, iteration=3, paused=paused)
    seen = observe(success=12.0).model_copy(update={"canary_revision": "r2", "canary_ready": ready})
    decision = decide(make_canary(), status, seen, NOW)
    assert decision.action == Action.RESTART
    assert decision.routes == ALL_TO_PRIMARY
    assert routed(decision.status) == (100, 0, False)
    assert decision.status.revision == "r2"
    assert (decision.status.failed_checks, decision.status.iteration) == (0, 0)
    assert decision.status.phase == Phase.PROGRESSING
    assert new_messages(status, decision) == [
        "New revision detected! Restarting analysis for podinfo.test"
    ]


@pytest.mark.parametrize(
    ("known", "seen"),
    [pytest.param("r1", None, id="not-read"), pytest.param("r1", "r1", id="same")],
)
def test_the_same_or_an_unread_revision_goes_on(known: str, seen: str | None) -> None:
    status = progressing(10, revision=known)
    decision = decide(
        make_canary(), status, PASSING.model_copy(update={"canary_revision": seen}), NOW
    )
    assert decision.action == Action.ADVANCE
    assert decision.routes == Routes(primary_weight=80, canary_weight=20)


@pytest.mark.parametrize("mirror", [False, True])
def test_blue_green_gives_the_canary_all_traffic_for_one_analysed_interval_first(
    mirror: bool,
) -> None:
    canary = make_canary({"iterations": 2, "mirror": mirror})
    status = progressing(100 if mirror else 0, mirror=mirror, revision="r1")
    steps = []
    for _ in range(4):
        decision = decide(canary, status, PASSING, NOW)
        steps.append((decision.action, decision.routes, new_messages(status, decision)))
        status = decision.status
    assert steps == [
        (Action.ADVANCE, None, ["Advance podinfo.test canary iteration 1/2"]),
        (
            Action.ADVANCE,
            Routes(primary_weight=0, canary_weight=100),
            [
                "Advance podinfo.test canary iteration 2/2",
                "Routing all traffic to canary podinfo.test",
            ],
        ),
        (Action.PROMOTE, None, []),
        (Action.PROMOTE, None, []),
    ]


def test_a_failure_with_all_traffic_on_the_canary_still_halts_before_promotion() -> None:
    canary = make_canary({"iterations": 1}, threshold=2)
    status = progressing(100, iteration=1, revision="r1")
    decision = decide(canary, status, observe(success=40), NOW)
    assert decision.action == Action.HALT


def test_a_canary_with_mirror_starts_with_one_mirrored_step_then_shifts_weights() -> None:
    canary = make_canary({"stepWeight": 25, "maxWeight": 50, "mirror": True, "mirrorWeight": 30})
    start = start_analysis(canary, CanaryStatus(phase=Phase.INITIALIZED, revision="r1"), NOW)
    assert start.routes == Routes(primary_weight=100, canary_weight=30, mirror=True)
    assert messages_of(start.status)[-1] == "Mirroring 30% of the traffic to podinfo.test"
    weights = []
    status = start.status
    for _ in range(3):
        decision = decide(canary, status, PASSING, NOW)
        weights.append((decision.action, decision.routes))
        status = decision.status
    assert weights == [
        (Action.ADVANCE, Routes(primary_weight=75, canary_weight=25)),
        (Action.ADVANCE, Routes(primary_weight=50, canary_weight=50)),
        (Action.PROMOTE, None),
    ]
    legacy = start_analysis(canary, CanaryStatus(phase=Phase.INITIALIZED), NOW, legacy=True)
    assert legacy.routes == Routes(primary_weight=75, canary_weight=25)


def test_judging_while_waiting_for_promotion_never_advances_but_can_fail() -> None:
    canary = make_canary(threshold=2)
    status = progressing(50, revision="r1")
    passing = judge(canary, status, PASSING, NOW)
    assert (passing.action, passing.routes) == (Action.WAIT, None)
    assert [metric.value for metric in passing.status.metrics] == [99.9, 120.0]
    halted = judge(canary, status, observe(success=50), NOW)
    assert halted.action == Action.HALT
    rolled_back = judge(canary, halted.status, observe(success=50), NOW)
    assert rolled_back.action == Action.ROLLBACK
    restarted = judge(canary, status, PASSING.model_copy(update={"canary_revision": "r2"}), NOW)
    assert restarted.action == Action.RESTART


@pytest.mark.parametrize("paused", [False, True])
def test_a_rollback_hook_that_answers_2xx_rolls_back_now(paused: bool) -> None:
    status = progressing(30, revision="r1", paused=paused)
    gates = [
        WebhookObservation(name="keep", ok=False, message="status 403"),
        WebhookObservation(name="stop-it", ok=True, message="status 200"),
    ]
    seen = PASSING.model_copy(update={"rollback_gates": gates})
    for decision in (
        decide(make_canary(), status, seen, NOW),
        judge(make_canary(), status, seen, NOW),
    ):
        assert decision.action == Action.ROLLBACK
        assert decision.status.reason == (
            "Rolling back podinfo.test manual rollback requested by stop-it"
        )
        assert decision.status.events[-1].kind == EventKind.ROLLED_BACK
    refused = PASSING.model_copy(update={"rollback_gates": gates[:1]})
    assert decide(make_canary(), status, refused, NOW).action != Action.ROLLBACK


@pytest.mark.parametrize(("muted", "kind"), [(True, None), (False, EventKind.HALTED)])
def test_a_muted_hook_halts_without_an_alert(muted: bool, kind: EventKind | None) -> None:
    hooks: list[dict[str, Any]] = [
        {"name": "load", "type": "rollout", "url": "http://load/", "muteAlert": muted}
    ]
    canary = make_canary(webhooks=hooks, threshold=2)
    failing_hook = [WebhookObservation(name="load", ok=False, message="status 500")]
    halted = decide(canary, progressing(10), observe(webhooks=failing_hook), NOW)
    assert halted.action == Action.HALT
    assert halted.status.events[-1].kind == kind
    rolled_back = decide(canary, halted.status, observe(webhooks=failing_hook), NOW)
    assert rolled_back.action == Action.ROLLBACK
    assert rolled_back.status.events[-1].kind == EventKind.ROLLED_BACK


def test_webhook_retries_and_disable_tls_load_with_flaggers_names() -> None:
    hooks: list[dict[str, Any]] = [
        {"name": "a", "url": "https://a/", "retries": 2, "disableTLS": True, "timeout": "5s"},
        {"name": "b", "url": "https://b/"},
    ]
    first, second = make_canary(webhooks=hooks).spec.analysis.webhooks
    assert (first.retries, first.disable_tls, first.longest_seconds) == (2, True, 18.0)
    assert (second.retries, second.disable_tls) == (0, False)
    assert first.model_dump(by_alias=True)["disableTLS"] is True
