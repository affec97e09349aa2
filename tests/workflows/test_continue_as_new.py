"""Long rollouts continue as new with their status and go on at the same wait (time-skipping
server). `QuickHandOver` continues after about ten intervals, so that the quick cases cross
several runs; the two long cases run on the real threshold."""

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from canary.spec import Canary
from canary.status import CanaryStatus, Phase
from starter.verdict import final_status
from tests.workflows.fakes import FakePlatform, canary_spec
from tests.workflows.record_histories import Approval, hook, run_ids
from tests.workflows.test_canary_workflow import HEALTHY_ROUTES, messages, weights
from tests.workflows.versions import QUICK_HAND_OVER_EVENTS, QuickHandOver
from workflows.canary_workflow import CanaryWorkflow

HISTORY_EVENTS_MAX = 10_000
BLUE_GREEN_ROUTES = [(100, 0), (0, 100), (100, 0)]


@asynccontextmanager
async def worker(
    env: WorkflowEnvironment, platform: FakePlatform, workflow: type = QuickHandOver
) -> AsyncIterator[None]:
    async with Worker(
        env.client,
        task_queue=platform.task_queue,
        workflows=[workflow],
        activities=platform.activities(),
        workflow_failure_exception_types=[Exception],
    ):
        yield


async def start(
    env: WorkflowEnvironment, platform: FakePlatform, canary: Canary
) -> WorkflowHandle[CanaryWorkflow, CanaryStatus]:
    return await env.client.start_workflow(
        CanaryWorkflow.run,
        contract.RolloutRequest(canary=canary, image="v2"),
        id=f"{canary.workflow_id}-{uuid.uuid4()}",
        task_queue=platform.task_queue,
    )


async def run_lengths(client: Client, workflow_id: str, first_run_id: str) -> list[int]:
    """The number of history events of each run of the rollout, first to last."""
    lengths = []
    for run_id in await run_ids(client, workflow_id, first_run_id):
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
    return lengths


def approved_at(call: int) -> Approval:
    """The confirm-promotion hook `approve` answers 2xx from its `call`-th call on."""
    return Approval(approve=call - 1)


def gated(**analysis: object) -> Canary:
    return canary_spec(
        webhooks=[hook("approve", "confirm-promotion")],
        **analysis,
    )


async def test_a_gate_wait_crosses_runs_and_promotes_once_approved(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(webhook_ok=approved_at(40))
    async with worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, gated())
        result = await handle.result()
        lengths = await run_lengths(time_skipping_env.client, handle.id, handle.result_run_id or "")
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == HEALTHY_ROUTES
    assert platform.scales == [2, 0], "the canary was scaled up once, down once"
    assert platform.promotions == 1
    assert platform.webhook_calls.count("approve") == 40
    assert len(lengths) >= 3
    assert max(lengths) < QUICK_HAND_OVER_EVENTS + 40
    waiting = [m for m in messages(result) if "waiting for promotion approval" in m]
    assert len(waiting) == 1, messages(result)


async def test_status_follows_the_latest_run(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform(webhook_ok=approved_at(1000))
    async with worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, gated())
        first_run = handle.result_run_id
        await time_skipping_env.sleep(60 * 30 + 30)  # between two timers, before the abort
        latest = time_skipping_env.client.get_workflow_handle_for(CanaryWorkflow.run, handle.id)
        status = await latest.query(CanaryWorkflow.status)
        description = await latest.describe()
        await latest.execute_update(CanaryWorkflow.abort, contract.ControlRequest(reason="enough"))
        result = await final_status(latest)
    assert description.run_id != first_run
    assert status.phase == Phase.WAITING_PROMOTION
    assert (status.primary_weight, status.canary_weight) == (50, 50)
    assert result.phase == Phase.FAILED
    assert weights(platform.routes)[-1] == (100, 0)
    assert platform.scales == [2, 0]


async def test_an_analysis_goes_on_at_the_same_step_in_the_next_run(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    canary = canary_spec(maxWeight=90, stepWeight=2)
    async with worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary)
        result = await handle.result()
        lengths = await run_lengths(time_skipping_env.client, handle.id, handle.result_run_id or "")
    assert result.phase == Phase.SUCCEEDED
    expected = [(100, 0), *[(100 - w, w) for w in range(2, 91, 2)], (100, 0)]
    assert weights(platform.routes) == expected
    assert platform.observed_weights == list(range(2, 91, 2)), "each step observed once"
    assert platform.scales == [2, 0]
    assert len(lengths) >= 3


@pytest.mark.long
async def test_two_weeks_at_a_confirm_promotion_gate_at_1m(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    intervals = 14 * 24 * 60
    platform = FakePlatform(webhook_ok=approved_at(intervals))
    async with worker(time_skipping_env, platform, CanaryWorkflow):
        handle = await start(time_skipping_env, platform, gated())
        result = await handle.result()
        lengths = await run_lengths(time_skipping_env.client, handle.id, handle.result_run_id or "")
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == HEALTHY_ROUTES
    assert platform.scales == [2, 0]
    assert platform.webhook_calls.count("approve") == intervals
    assert sum(lengths) > intervals * 7, "every interval is in some run's history"
    assert len(lengths) > 10
    assert max(lengths) < HISTORY_EVENTS_MAX


def blue_green(iterations: int) -> Canary:
    return canary_spec(iterations=iterations, maxWeight=None, stepWeight=None)


async def test_a_blue_green_analysis_crosses_runs(time_skipping_env: WorkflowEnvironment) -> None:
    platform = FakePlatform()
    async with worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, blue_green(40))
        result = await handle.result()
        lengths = await run_lengths(time_skipping_env.client, handle.id, handle.result_run_id or "")
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == BLUE_GREEN_ROUTES
    assert len(platform.observed_weights) == 40 + 1
    assert platform.scales == [2, 0]
    assert len(lengths) >= 2


@pytest.mark.long
async def test_ten_thousand_blue_green_iterations(time_skipping_env: WorkflowEnvironment) -> None:
    iterations = 10_000
    platform = FakePlatform()
    async with worker(time_skipping_env, platform, CanaryWorkflow):
        handle = await start(time_skipping_env, platform, blue_green(iterations))
        result = await handle.result()
        lengths = await run_lengths(time_skipping_env.client, handle.id, handle.result_run_id or "")
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == BLUE_GREEN_ROUTES
    assert len(platform.observed_weights) == iterations + 1
    assert platform.scales == [2, 0]
    assert len(lengths) > 3
    assert max(lengths) < HISTORY_EVENTS_MAX


async def test_an_interval_at_a_gate_costs_seven_events(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The timer (2), one workflow task (3), the hooks and the analysis (a marker each)."""
    platform = FakePlatform(webhook_ok=approved_at(11))
    async with worker(time_skipping_env, platform, CanaryWorkflow):
        handle = await start(time_skipping_env, platform, gated())
        result = await handle.result()
        history = await handle.fetch_history()
    gate_timers = [
        index
        for index, event in enumerate(history.events)
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        and event.user_metadata.summary.data == b'"waiting for confirm-promotion"'
    ]
    assert result.phase == Phase.SUCCEEDED
    assert len(gate_timers) == 10
    gaps = [later - earlier for earlier, later in itertools.pairwise(gate_timers)]
    assert gaps[1:] == [7] * 8, gaps
