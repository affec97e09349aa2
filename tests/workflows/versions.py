"""Other versions of `CanaryWorkflow`, registered under the same name, for tests of how a
rollout moves between versions of the code: a smaller continue-as-new threshold, a change
guarded by a patch and the same change unguarded, and a bug in the decision code."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from canary import contract
    from canary.decision import StepObservation
    from canary.status import CanaryStatus
    from workflows.canary_workflow import CanaryWorkflow

TEST_CHANGE = "test-change"
QUICK_HAND_OVER_EVENTS = 120
"""Small enough that a rollout of a few steps continues as new several times."""


@workflow.defn(name="CanaryWorkflow")
class QuickHandOver(CanaryWorkflow):
    """Continues as new after about 120 events instead of thousands."""

    continue_as_new_at_events = QUICK_HAND_OVER_EVENTS

    @workflow.run
    async def run(self, request: contract.RolloutRequest) -> CanaryStatus:
        return await super().run(request)


CHANGE_FROM_WEIGHT = 30


@workflow.defn(name="CanaryWorkflow")
class GuardedChange(CanaryWorkflow):
    """Version N+1: an extra timer before each observation from weight 30 on, guarded by a
    patch. (A patch id reads the same for the whole run: where it is first reached while
    replaying, False for good; so the change sits where an upgraded rollout reaches it live.)"""

    @workflow.run
    async def run(self, request: contract.RolloutRequest) -> CanaryStatus:
        return await super().run(request)

    async def _observe(self, summary: str, canary_only: bool = False) -> StepObservation:
        if self._status.canary_weight >= CHANGE_FROM_WEIGHT and workflow.patched(TEST_CHANGE):
            await workflow.sleep(timedelta(seconds=1), summary="the new version's extra timer")
        return await super()._observe(summary, canary_only)


@workflow.defn(name="CanaryWorkflow")
class UnguardedChange(CanaryWorkflow):
    """The same change as `GuardedChange` without its guard."""

    @workflow.run
    async def run(self, request: contract.RolloutRequest) -> CanaryStatus:
        return await super().run(request)

    async def _observe(self, summary: str, canary_only: bool = False) -> StepObservation:
        if self._status.canary_weight >= CHANGE_FROM_WEIGHT:
            await workflow.sleep(timedelta(seconds=1), summary="the new version's extra timer")
        return await super()._observe(summary, canary_only)


@workflow.defn(name="CanaryWorkflow")
class BuggyDecision(CanaryWorkflow):
    """A bug in the decision code: the third observation of a rollout raises KeyError."""

    @workflow.run
    async def run(self, request: contract.RolloutRequest) -> CanaryStatus:
        self._observed = 0
        return await super().run(request)

    async def _observe(self, summary: str, canary_only: bool = False) -> StepObservation:
        observation = await super()._observe(summary, canary_only)
        self._observed += 1
        if self._observed < 3:
            return observation
        by_name = {metric.name: metric for metric in observation.metrics}
        return observation.model_copy(update={"metrics": [by_name["request-errors"]]})
