"""A bug in the workflow code (here a KeyError in the decision code, `BuggyDecision`) rolls the
release back and ends it Failed with the error, on the time-skipping server."""

import uuid

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from canary.status import Phase
from starter.verdict import final_status
from tests.workflows.fakes import FakePlatform, canary_spec
from tests.workflows.test_canary_workflow import weights
from tests.workflows.versions import BuggyDecision
from workflows.canary_workflow import CanaryWorkflow


async def test_a_workflow_error_rolls_back_and_ends_failed_with_the_error(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    canary = canary_spec()
    async with Worker(
        time_skipping_env.client,
        task_queue=platform.task_queue,
        workflows=[BuggyDecision],
        activities=platform.activities(),
    ):
        handle = await time_skipping_env.client.start_workflow(
            CanaryWorkflow.run,
            contract.RolloutRequest(canary=canary, image="v2"),
            id=f"{canary.workflow_id}-{uuid.uuid4()}",
            task_queue=platform.task_queue,
        )
        result = await final_status(handle)
    assert result.phase == Phase.FAILED
    assert result.reason == (
        "Rolling back podinfo.test unexpected workflow error KeyError: 'request-errors'"
    )
    assert weights(platform.routes) == [(100, 0), (90, 10), (80, 20), (70, 30), (100, 0)]
    assert platform.scales == [2, 0]
    assert platform.promotions == 0
    assert (result.primary_weight, result.canary_weight) == (100, 0)
