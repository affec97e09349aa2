"""A rollout's final status, however its workflow ended.

A Succeeded rollout completes its workflow with the status as the result. A Failed one fails it
with a `RolloutFailed` application error whose details hold the status, so Temporal shows it red
and counts it as failed; rollouts that ended before that change completed with a Failed status.
"""

from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowContinuedAsNewError, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from canary import contract
from canary.status import CanaryStatus


async def final_status(handle: WorkflowHandle[Any, CanaryStatus]) -> CanaryStatus:
    """Wait for the rollout's verdict. Raises `WorkflowFailureError` for a run that ended
    without one (terminated, cancelled, timed out, failed otherwise)."""
    try:
        return await handle.result()
    except WorkflowFailureError as error:
        status = failed_status(error)
        if status is None:
            raise
        return status


async def recorded_verdict(
    handle: WorkflowHandle[Any, CanaryStatus], rpc_timeout: timedelta
) -> CanaryStatus | None:
    """The verdict a closed run recorded, read from its last event with no worker involved;
    None when it ended without one (terminated, cancelled, continued as new...)."""
    try:
        return await handle.result(follow_runs=False, rpc_timeout=rpc_timeout)
    except WorkflowFailureError as error:
        return failed_status(error)
    except WorkflowContinuedAsNewError:
        return None


def failed_status(error: WorkflowFailureError) -> CanaryStatus | None:
    """The status a Failed rollout ended with; None when the workflow failed for another reason."""
    cause = error.cause
    if not isinstance(cause, ApplicationError) or cause.type != contract.ROLLOUT_FAILED:
        return None
    if not cause.details:
        return None
    return CanaryStatus.model_validate(cause.details[0])
