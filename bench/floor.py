"""The floor: a workflow that only waits a durable timer and calls local activities per step.

Hosted by the same worker as the rollouts (sandbox, passthrough, data converter), its worker CPU
per step is what the SDK charges any workflow for a timer and `calls` local activities (no
input, no result). An analysis step that moves the weight has the shape of two (the observation,
then the new weight): what `CanaryWorkflow` costs above that floor is coalmine's own (its
decision, its status and the payloads its calls carry).
"""

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from canary import contract

FLOOR_WORKFLOW = "FloorWorkflow"
STEP_TIMEOUT = timedelta(seconds=30)


class FloorRequest(BaseModel):
    steps: int
    interval_seconds: float
    calls: int = 1
    """Local activities per step, one after the other."""


@workflow.defn(name=FLOOR_WORKFLOW)
class FloorWorkflow:
    @workflow.run
    async def run(self, request: FloorRequest) -> int:
        interval = timedelta(seconds=request.interval_seconds)
        for _ in range(request.steps):
            await workflow.sleep(interval)
            # Named like a rollout's step calls, so the bench measures both the same way.
            for name in [contract.OBSERVE, *[contract.SET_ROUTES] * (request.calls - 1)]:
                await workflow.execute_local_activity(name, start_to_close_timeout=STEP_TIMEOUT)
        return request.steps
