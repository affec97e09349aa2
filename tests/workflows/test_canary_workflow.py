"""CanaryWorkflow against same-name fake activities on the time-skipping test server."""

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from canary.decision import Routes
from canary.spec import Canary
from canary.status import CanaryStatus, Phase
from tests.workflows.fakes import FakePlatform, canary_spec
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
    env: WorkflowEnvironment, platform: FakePlatform, canary: Canary, image: str = "v2"
) -> WorkflowHandle[CanaryWorkflow, CanaryStatus]:
    return await env.client.start_workflow(
        CanaryWorkflow.run,
        contract.RolloutRequest(canary=canary, image=image),
        id=f"{canary.workflow_id}-{uuid.uuid4()}",
        task_queue=platform.task_queue,
    )


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
