"""CanaryWorkflow against same-name fake activities on the time-skipping test server."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from canary.decision import Routes
from canary.spec import Canary
from canary.status import CanaryStatus, Phase
from starter.verdict import final_status
from tests.workflows.fakes import FakePlatform, canary_spec, failing
from workflows.canary_workflow import CanaryWorkflow

INTERVAL = 60.0


@asynccontextmanager
async def running_worker(env: WorkflowEnvironment, platform: FakePlatform) -> AsyncIterator[None]:
    async with Worker(
        env.client,
        task_queue=platform.task_queue,
        workflows=[CanaryWorkflow],
        activities=platform.activities(),
        workflow_failure_exception_types=[Exception],
    ):
        yield


async def start(
    env: WorkflowEnvironment, platform: FakePlatform, canary: Canary, image: str | None = "v2"
) -> WorkflowHandle[CanaryWorkflow, CanaryStatus]:
    return await env.client.start_workflow(
        CanaryWorkflow.run,
        contract.RolloutRequest(canary=canary, image=image),
        id=f"{canary.workflow_id}-{uuid.uuid4()}",
        task_queue=platform.task_queue,
    )


BETWEEN_TIMERS = INTERVAL / 2
"""Added to a skip of whole intervals before a signal or update: one that reaches the
time-skipping server as a timer fires can leave that server unable to take the workflow task
("invalid history builder state for action"), and the rollout hangs."""


async def wait_for(
    env: WorkflowEnvironment,
    handle: WorkflowHandle[CanaryWorkflow, CanaryStatus],
    predicate: Callable[[CanaryStatus], bool],
    limit: int = 40,
) -> CanaryStatus:
    """Skip time half an interval at a time until the status matches."""
    for _ in range(limit):
        status = await handle.query(CanaryWorkflow.status)
        if predicate(status):
            return status
        await env.sleep(INTERVAL / 2)
    raise AssertionError(f"status never matched; last: {status}")


def weights(routes: list[Routes]) -> list[tuple[int, int]]:
    return [(r.primary_weight, r.canary_weight) for r in routes]


def messages(status: CanaryStatus) -> list[str]:
    return [event.message for event in status.events]


HEALTHY_ROUTES = [(100, 0), (90, 10), (80, 20), (70, 30), (60, 40), (50, 50), (100, 0)]


async def test_healthy_rollout_advances_every_step_then_promotes(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == HEALTHY_ROUTES
    assert platform.images == ["v2"]
    assert platform.scales == [2, 0]
    assert platform.promotions == 1
    assert platform.observed_weights == [10, 20, 30, 40, 50]
    assert result.failed_checks == 0
    assert (result.primary_weight, result.canary_weight) == (100, 0)
    text = messages(result)
    advances = [m for m in text if m.startswith("Advance")]
    assert advances == [f"Advance podinfo.test canary weight {w}" for w in (10, 20, 30, 40, 50)]
    assert text[-1] == "Promotion completed! Scaling down podinfo.test"
    kinds = [(n.kind.value, n.severity.value) for n in platform.notifications]
    assert kinds == [("started", "info")] + [("advanced", "info")] * 5 + [("promoted", "info")]


async def test_failing_canary_rolls_back_after_exactly_threshold_failed_checks(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(metrics=failing)
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec(threshold=3))
        result = await final_status(handle)
    assert result.phase == Phase.FAILED
    assert result.failed_checks == 3
    assert platform.observed_weights == [10, 10, 10]
    assert weights(platform.routes) == [(100, 0), (90, 10), (100, 0)]
    assert platform.scales == [2, 0]
    assert platform.promotions == 0
    assert result.reason == "Rolling back podinfo.test failed checks threshold reached 3"
    halts = [m for m in messages(result) if m.startswith("Halt")]
    assert halts == ["Halt podinfo.test advancement success rate 61.50% < 99%"] * 3
    assert messages(result)[-1] == "Canary failed! Scaling down podinfo.test"
    kinds = [n.kind.value for n in platform.notifications]
    assert kinds == ["started", "advanced", "halted", "halted", "halted", "rolled-back"]
    assert platform.notifications[-1].severity == "error"
    assert platform.notifications[-1].message == result.reason


async def test_pause_holds_over_several_intervals_and_resume_continues(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 20)
        await handle.signal(CanaryWorkflow.pause, contract.ControlRequest(reason="checking logs"))
        observed_before = len(platform.observed_weights)
        await time_skipping_env.sleep(BETWEEN_TIMERS + INTERVAL * 5)
        paused = await handle.query(CanaryWorkflow.status)
        assert paused.paused
        assert paused.canary_weight == 20
        assert len(platform.observed_weights) == observed_before
        await handle.signal(CanaryWorkflow.resume, contract.ControlRequest())
        result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == HEALTHY_ROUTES
    assert "Canary analysis of podinfo.test paused: checking logs" in messages(result)
    assert "Canary analysis of podinfo.test resumed" in messages(result)


async def test_promote_skips_the_remaining_steps(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 20)
        answer = await handle.execute_update(
            CanaryWorkflow.promote, contract.ControlRequest(reason="looks good")
        )
        result = await handle.result()
    assert "looks good" in answer
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == [(100, 0), (90, 10), (80, 20), (100, 0)]
    assert platform.promotions == 1


async def test_abort_rolls_back_now_with_the_reason(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 20)
        await handle.execute_update(
            CanaryWorkflow.abort, contract.ControlRequest(reason="bad release notes")
        )
        result = await final_status(handle)
    assert result.phase == Phase.FAILED
    assert result.reason == "Rolling back podinfo.test manual abort: bad release notes"
    assert platform.notifications[-1].message == result.reason
    assert weights(platform.routes) == [(100, 0), (90, 10), (80, 20), (100, 0)]
    assert platform.scales == [2, 0]


async def test_confirm_rollout_gate_holds_refuses_promote_and_can_be_aborted(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(webhook_ok=lambda name: False)
    gate = {"name": "approval", "type": "confirm-rollout", "url": "http://gate.test/"}
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec(webhooks=[gate]))
        await wait_for(time_skipping_env, handle, lambda s: s.phase == Phase.WAITING)
        await time_skipping_env.sleep(BETWEEN_TIMERS + INTERVAL * 3)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(CanaryWorkflow.promote, contract.ControlRequest())
        await handle.execute_update(CanaryWorkflow.abort, contract.ControlRequest(reason="no"))
        result = await final_status(handle)
    assert "is Waiting, not Progressing" in str(refused.value.cause)
    assert platform.webhook_calls.count("approval") >= 4
    assert platform.scales == [0]
    assert result.phase == Phase.FAILED
    assert "Halt podinfo.test advancement waiting for approval approval" in messages(result)


async def test_canary_not_ready_by_the_progress_deadline_rolls_back(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(canary_ready=False)
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        result = await final_status(handle)
    assert result.phase == Phase.FAILED
    assert result.reason == (
        "Rolling back podinfo.test progress deadline exceeded 0 of 2 replicas ready"
    )
    assert weights(platform.routes) == [(100, 0)]
    assert platform.scales == [2, 0]
    assert platform.observed_weights == []


async def test_a_new_worker_continues_from_the_same_weight(
    dev_server_env: WorkflowEnvironment,
) -> None:
    """On the real dev server: the first worker stops mid-rollout, a second one finishes it."""
    platform = FakePlatform()
    canary = canary_spec(interval="1s")
    async with running_worker(dev_server_env, platform):
        handle = await start(dev_server_env, platform, canary)
        for _ in range(100):
            if (await handle.query(CanaryWorkflow.status)).canary_weight >= 30:
                break
            await asyncio.sleep(0.1)
    routes_before = len(platform.routes)
    async with running_worker(dev_server_env, platform):
        result = await handle.result()
    assert routes_before >= 4
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == HEALTHY_ROUTES
    assert platform.observed_weights == [10, 20, 30, 40, 50]
    assert platform.images == ["v2"]


async def test_a_weight_that_cannot_be_set_rolls_back(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(routes_fail_at=30)
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        result = await final_status(handle)
    assert result.phase == Phase.FAILED
    assert result.reason == (
        "Rolling back podinfo.test set_routes failed: router config is not writable"
    )
    assert weights(platform.routes) == [(100, 0), (90, 10), (80, 20), (100, 0)]
    assert platform.scales == [2, 0]


async def test_no_new_revision_ends_at_once_without_touching_the_canary(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec(), image=None)
        result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert messages(result)[-1] == (
        "No new revision of podinfo.test: canary and primary run the same template"
    )
    assert platform.scales == []
    assert weights(platform.routes) == [(100, 0)]
    assert platform.notifications == []


async def test_a_paused_rollout_still_pulls_traffic_from_a_canary_that_stops_being_ready(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 20)
        await handle.signal(CanaryWorkflow.pause, contract.ControlRequest(reason="lunch"))
        await wait_for(time_skipping_env, handle, lambda s: s.paused)
        observed = len(platform.observed_weights)
        await time_skipping_env.sleep(INTERVAL * 2)
        assert platform.canary_checks >= 1
        assert weights(platform.routes)[-1] == (80, 20)
        platform.canary_ready = False
        status = await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 0)
        assert status.paused
        assert weights(platform.routes)[-1] == (100, 0)
        assert len(platform.observed_weights) == observed, "no analysis step while paused"
        await handle.execute_update(CanaryWorkflow.abort, contract.ControlRequest(reason="done"))
        await final_status(handle)
    assert any("canary not ready" in message for message in messages(status))
