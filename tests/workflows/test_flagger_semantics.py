"""Where Flagger users rely on its semantics: webhook kinds, gates, skipAnalysis, blue/green
and mirroring, on the time-skipping server with same-name fake activities (and the real
`notify` activity against a local receiver for `event` hooks)."""

from collections.abc import Callable
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.alerts import AlertProviders
from activities.notify import NotifyActivities
from canary.status import CanaryStatus, MetricObservation, Phase
from starter.verdict import final_status
from tests.support.webhook_receiver import Receiver, receiver_fixture  # noqa: F401
from tests.workflows.fakes import FakePlatform, canary_spec, failing, healthy
from tests.workflows.test_canary_workflow import (
    messages,
    running_worker,
    start,
    weights,
)
from workflows.canary_workflow import CanaryWorkflow


def hook(name: str, kind: str, url: str = "http://hooks.invalid/") -> dict[str, Any]:
    return {"name": name, "type": kind, "url": url}


async def verdict(
    env: WorkflowEnvironment, platform: FakePlatform, **analysis: object
) -> CanaryStatus:
    async with running_worker(env, platform):
        handle = await start(env, platform, canary_spec(**analysis))
        return await final_status(handle)


def answers(*oks: bool) -> Callable[[str], bool]:
    """A hook that answers `oks` in turn, then 2xx."""
    calls: list[bool] = list(oks)
    return lambda name: calls.pop(0) if calls else True


async def test_post_rollout_hooks_get_the_verdict_as_their_phase(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    for metrics, phase in ((healthy, "Succeeded"), (failing, "Failed")):
        platform = FakePlatform(metrics=metrics)
        status = await verdict(
            time_skipping_env, platform, webhooks=[hook("notify-ci", "post-rollout")]
        )
        assert status.phase == phase
        assert platform.hook_phases == [("notify-ci", phase)]


async def test_a_rollback_hook_is_a_manual_gate_polled_each_step_and_not_called_after(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(webhook_ok=answers(False, False, True))
    status = await verdict(time_skipping_env, platform, webhooks=[hook("stop", "rollback")])
    assert status.phase == Phase.FAILED
    assert status.reason == "Rolling back podinfo.test manual rollback requested by stop"
    assert platform.webhook_calls == ["stop"] * 3
    assert weights(platform.routes) == [(100, 0), (90, 10), (80, 20), (70, 30), (100, 0)]


async def test_a_rollback_hook_rolls_back_while_waiting_for_promotion_approval(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    refusals = {"approve": [False] * 10, "stop": [False] * 7}

    def answer(name: str) -> bool:
        pending = refusals[name]
        return pending.pop(0) if pending else True

    platform = FakePlatform(webhook_ok=answer)
    status = await verdict(
        time_skipping_env,
        platform,
        webhooks=[hook("approve", "confirm-promotion"), hook("stop", "rollback")],
    )
    assert status.phase == Phase.FAILED
    assert status.reason == "Rolling back podinfo.test manual rollback requested by stop"
    assert platform.promotions == 0


async def test_the_analysis_goes_on_while_waiting_for_promotion_approval(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The metrics turn bad after the last step: the wait for approval ends in a rollback."""
    steps: list[int] = []

    def metrics(weight: int) -> list[MetricObservation]:
        steps.append(weight)
        return healthy(weight) if len(steps) <= 5 else failing(weight)

    platform = FakePlatform(metrics=metrics, webhook_ok=lambda name: False)
    status = await verdict(
        time_skipping_env, platform, threshold=2, webhooks=[hook("approve", "confirm-promotion")]
    )
    assert status.phase == Phase.FAILED
    assert status.reason == "Rolling back podinfo.test failed checks threshold reached 2"
    assert "Halt podinfo.test advancement waiting for promotion approval approve" in messages(
        status
    )
    assert platform.promotions == 0


async def test_skip_analysis_skips_pre_rollout_hooks_and_the_promotion_gate(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(webhook_ok=lambda name: False)
    async with running_worker(time_skipping_env, platform):
        canary = canary_spec(
            webhooks=[hook("smoke", "pre-rollout"), hook("approve", "confirm-promotion")]
        )
        spec = canary.spec.model_copy(update={"skip_analysis": True})
        handle = await start(time_skipping_env, platform, canary.model_copy(update={"spec": spec}))
        status = await handle.result()
    assert status.phase == Phase.SUCCEEDED
    assert platform.webhook_calls == []
    assert platform.promotions == 1


async def test_confirm_traffic_increase_also_gates_the_first_weight(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(webhook_ok=answers(False, False))
    status = await verdict(
        time_skipping_env, platform, webhooks=[hook("more", "confirm-traffic-increase")]
    )
    assert status.phase == Phase.SUCCEEDED
    first_weight = messages(status).index("Advance podinfo.test canary weight 10")
    waiting = "Halt podinfo.test advancement waiting for traffic increase approval more"
    assert messages(status).index(waiting) < first_weight
    assert platform.webhook_calls[:3] == ["more"] * 3


async def test_blue_green_routes_everything_to_the_canary_for_an_interval_before_promotion(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    status = await verdict(
        time_skipping_env, platform, iterations=2, stepWeight=None, maxWeight=None
    )
    assert status.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == [(100, 0), (0, 100), (100, 0)]
    assert platform.observed_weights == [0, 0, 100]


async def test_a_mirrored_canary_starts_with_one_mirrored_step(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    status = await verdict(time_skipping_env, platform, mirror=True, mirrorWeight=20)
    assert status.phase == Phase.SUCCEEDED
    assert [(r.canary_weight, r.mirror) for r in platform.routes] == [
        (0, False),
        (20, True),
        *[(weight, False) for weight in (10, 20, 30, 40, 50)],
        (0, False),
    ]


async def test_event_hooks_receive_every_event_with_flaggers_payload(
    time_skipping_env: WorkflowEnvironment, receiver: Receiver
) -> None:
    notify = NotifyActivities(AlertProviders(), None)
    platform = FakePlatform(task_queue=f"events-{id(receiver)}", deliver=notify.notify)
    async with Worker(
        time_skipping_env.client,
        task_queue=platform.task_queue,
        workflows=[CanaryWorkflow],
        activities=platform.activities(),
    ):
        handle = await start(
            time_skipping_env,
            platform,
            canary_spec(webhooks=[hook("events", "event", f"{receiver.url}/ok")]),
        )
        status = await handle.result()
    assert status.phase == Phase.SUCCEEDED
    sent = [body["metadata"]["eventMessage"] for body in receiver.bodies]
    assert sent == messages(status)
    assert {body["metadata"]["eventType"] for body in receiver.bodies} == {"Normal"}
    first = receiver.bodies[0]
    assert (first["name"], first["namespace"]) == ("podinfo", "test")
    assert receiver.bodies[-1]["phase"] == "Succeeded"
