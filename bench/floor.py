"""The floor: a workflow that only waits a durable timer and calls one local activity per step.

Hosted by the same worker as the rollouts (sandbox, passthrough, data converter), its worker CPU
per step is what the SDK charges any workflow for a timer and a local activity; what
`CanaryWorkflow` costs above it per step is coalmine's own (its decision, its status, its other
local activities and the payloads they carry).
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


@workflow.defn(name=FLOOR_WORKFLOW)
class FloorWorkflow:
    @workflow.run
    async def run(self, request: FloorRequest) -> int:
        interval = timedelta(seconds=request.interval_seconds)
        for _ in range(request.steps):
            await workflow.sleep(interval)
            # Named like the rollouts' step call, so the bench measures both the same way.
            await workflow.execute_local_activity(
                contract.OBSERVE, start_to_close_timeout=STEP_TIMEOUT
            )
        return request.steps
