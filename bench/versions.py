"""`CanaryWorkflow` as rollouts started before a change run it, registered under the same
name, so that the bench measures what the change saves (`python -m bench.worker --before
CHANGE`). Imported as the workflow module is, so both pay the same sandbox costs."""

from temporalio import workflow

from canary import contract
from canary.status import CanaryStatus
from workflows.canary_workflow import FEWER_ROUND_TRIPS, CanaryWorkflow


@workflow.defn(name="CanaryWorkflow")
class BeforeFewerRoundTrips(CanaryWorkflow):
    """Every call to the target an activity, every notification a local activity of its own."""

    takes_fewer_round_trips = False

    @workflow.run
    async def run(self, request: contract.RolloutRequest) -> CanaryStatus:
        return await super().run(request)


BEFORE = {FEWER_ROUND_TRIPS: BeforeFewerRoundTrips}
"""The versions by the patch id they leave out."""
