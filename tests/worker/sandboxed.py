"""Workflows for tests/worker/test_sandbox.py (a module the sandbox imports again: no side
effects)."""

from datetime import datetime, timedelta

from temporalio import activity, workflow

CALL_TIMEOUT = timedelta(seconds=10)


@activity.defn
async def double(value: int) -> int:
    return value * 2


@workflow.defn
class Doubles:
    """A local activity, a timer and an activity: payloads of every kind of command."""

    @workflow.run
    async def run(self, value: int) -> int:
        local = await workflow.execute_local_activity(
            double, value, start_to_close_timeout=CALL_TIMEOUT
        )
        await workflow.sleep(timedelta(seconds=1))
        return await workflow.execute_activity(double, local, start_to_close_timeout=CALL_TIMEOUT)


@workflow.defn
class ReadsTheClock:
    @workflow.run
    async def run(self) -> str:
        return datetime.now().isoformat()  # not deterministic: the sandbox refuses it
