"""Control from any Temporal client, and the verdict as Temporal sees it (time-skipping server).

promote and abort are signals as well as updates, with the same checks; a refused or unknown
signal leaves a warning event (a signal has no reply); every control takes no input, `null` or
`{}`; a Failed rollout fails its workflow with the final status in the failure's details.
"""

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from canary import contract
from canary.status import CanaryStatus, Phase
from starter.verdict import final_status
from tests.workflows.fakes import FakePlatform, canary_spec, failing
from tests.workflows.test_canary_workflow import (
    messages,
    running_worker,
    start,
    wait_for,
    weights,
)
from workflows.canary_workflow import FAILED_ENDS_AS_FAILURE, CanaryWorkflow

QUERY_ATTEMPTS = 5

UNKNOWN = "Unknown signal 'promtoe' for podinfo.test ignored; known signals: " + (
    "pause, resume, promote, abort"
)


def warnings(status: CanaryStatus) -> list[str]:
    return [event.message for event in status.events if event.warning]


async def test_promote_signal_promotes_a_rollout_under_analysis(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 20)
        await handle.signal("promote", contract.ControlRequest(reason="looks good"))
        result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == [(100, 0), (90, 10), (80, 20), (100, 0)]
    assert platform.promotions == 1
    assert (
        "Promotion of podinfo.test requested: skipping the remaining analysis: looks good"
        in messages(result)
    )


async def test_abort_signal_rolls_back_with_the_reason(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 20)
        await handle.signal("abort", contract.ControlRequest(reason="bad release notes"))
        result = await final_status(handle)
    assert result.phase == Phase.FAILED
    assert result.reason == "Rolling back podinfo.test manual abort: bad release notes"
    assert weights(platform.routes) == [(100, 0), (90, 10), (80, 20), (100, 0)]
    assert platform.scales == [2, 0]


async def test_refused_signals_record_why_and_change_nothing(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """At a confirm-rollout gate (phase Waiting): promote is refused as the update would be;
    a second pause and a resume of a running analysis are refused; abort is accepted once."""
    platform = FakePlatform(webhook_ok=lambda name: False)
    gate = {"name": "approval", "type": "confirm-rollout", "url": "http://gate.test/"}
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec(webhooks=[gate]))
        await wait_for(time_skipping_env, handle, lambda s: s.phase == Phase.WAITING)
        await handle.signal("promote", contract.ControlRequest(reason="now"))
        await handle.signal("resume")
        await handle.signal("pause")
        await handle.signal("pause")
        refused = await wait_for(time_skipping_env, handle, lambda s: len(warnings(s)) == 3)
        assert refused.phase == Phase.WAITING
        assert refused.paused
        await handle.signal("resume")
        await handle.signal("abort", contract.ControlRequest(reason="no"))
        await handle.signal("abort", contract.ControlRequest(reason="twice"))
        result = await final_status(handle)
    assert warnings(refused) == [
        "Signal promote for podinfo.test refused: podinfo.test is Waiting, not Progressing: "
        "only a rollout under analysis can be promoted",
        "Signal resume for podinfo.test refused: the analysis of podinfo.test is not paused",
        "Signal pause for podinfo.test refused: the analysis of podinfo.test is already paused",
    ]
    assert result.phase == Phase.FAILED
    assert result.reason == "Rolling back podinfo.test manual abort: no"
    assert (
        "Signal abort for podinfo.test refused: podinfo.test is already being rolled back"
        in messages(result)
    )
    assert platform.promotions == 0


async def test_promote_signal_at_the_promotion_gate_is_refused_as_the_update_is(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    gate = {"name": "approval", "type": "confirm-promotion", "url": "http://gate.test/"}
    platform.webhook_ok = lambda name: False
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec(webhooks=[gate]))
        await wait_for(time_skipping_env, handle, lambda s: s.phase == Phase.WAITING_PROMOTION)
        await handle.signal("promote")
        waiting = await wait_for(time_skipping_env, handle, lambda s: bool(warnings(s)))
        platform.webhook_ok = lambda name: True
        result = await handle.result()
    assert warnings(waiting) == [
        "Signal promote for podinfo.test refused: podinfo.test is WaitingPromotion, "
        "not Progressing: only a rollout under analysis can be promoted"
    ]
    assert result.phase == Phase.SUCCEEDED


async def test_an_unknown_signal_is_a_warning_naming_the_known_ones(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 10)
        await handle.signal("promtoe", {"reason": "typo"})
        status = await wait_for(time_skipping_env, handle, lambda s: bool(warnings(s)))
        result = await handle.result()
    assert warnings(status) == [UNKNOWN]
    assert result.phase == Phase.SUCCEEDED
    assert platform.promotions == 1


@pytest.mark.parametrize(
    "arguments", [(), (None,), ({},)], ids=["no input", "null", "empty object"]
)
async def test_every_control_takes_an_empty_or_missing_input(
    time_skipping_env: WorkflowEnvironment, arguments: tuple[object, ...]
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 10)
        await handle.signal("pause", *arguments)
        paused = await wait_for(time_skipping_env, handle, lambda s: s.paused)
        await handle.signal("resume", *arguments)
        await wait_for(time_skipping_env, handle, lambda s: not s.paused)
        answer = await handle.execute_update("promote", *arguments, result_type=str)
        promoted = await handle.result()

        aborted = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, aborted, lambda s: s.canary_weight == 10)
        rollback = await aborted.execute_update("abort", *arguments, result_type=str)
        by_update = await final_status(aborted)

        signalled = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, signalled, lambda s: s.canary_weight == 10)
        await signalled.signal("abort", *arguments)
        by_signal = await final_status(signalled)
    assert paused.paused
    assert "Canary analysis of podinfo.test paused" in messages(paused)
    assert answer == "Promotion of podinfo.test requested: skipping the remaining analysis"
    assert promoted.phase == Phase.SUCCEEDED
    assert rollback == "Rolling back podinfo.test manual abort: no reason given"
    for status in (by_update, by_signal):
        assert status.phase == Phase.FAILED
        assert status.reason == rollback
        assert warnings(status) == [rollback, "Canary failed! Scaling down podinfo.test"]


async def test_a_failed_rollout_fails_its_workflow_with_the_status_in_the_details(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(metrics=failing)
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec(threshold=2))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        queried = await handle.query(CanaryWorkflow.status)
    error = failed.value.cause
    assert isinstance(error, ApplicationError)
    assert error.type == contract.ROLLOUT_FAILED
    assert error.non_retryable
    assert error.message == "Rolling back podinfo.test failed checks threshold reached 2"
    status = CanaryStatus.model_validate(error.details[0])
    assert status.phase == Phase.FAILED
    assert status.reason == error.message
    assert messages(status)[-1] == "Canary failed! Scaling down podinfo.test"
    assert queried == status, "the status query answers after the failure"
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
    events = [event async for event in handle.fetch_history_events()]
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    markers = [
        event.marker_recorded_event_attributes.SerializeToString()
        for event in events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert any(FAILED_ENDS_AS_FAILURE.encode() in marker for marker in markers), "patched"
    # A fresh worker (nothing cached) answers the query by replaying the failed run. The server
    # gives a query a few seconds: on a busy machine the worker may not poll yet, so ask again.
    async with running_worker(time_skipping_env, FakePlatform(task_queue=platform.task_queue)):
        for attempt in range(QUERY_ATTEMPTS):
            try:
                replayed = await handle.query(CanaryWorkflow.status)
                break
            except RPCError:
                if attempt == QUERY_ATTEMPTS - 1:
                    raise
        assert replayed == status


async def test_a_succeeded_rollout_still_completes_with_its_status(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        result = await handle.result()
    assert result.phase == Phase.SUCCEEDED
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_signal_and_update_definitions_carry_descriptions_for_the_web_ui(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The Web UI's "Send a Signal" dialog lists the signals this query returns."""
    platform = FakePlatform()
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        await wait_for(time_skipping_env, handle, lambda s: s.canary_weight == 10)
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        await handle.signal("abort")
        await final_status(handle)
    definition = metadata.definition
    signals = {item.name: item.description for item in definition.signal_definitions}
    updates = {item.name: item.description for item in definition.update_definitions}
    assert set(signals) == {"", "pause", "resume", "promote", "abort"}
    assert set(updates) == {"promote", "abort", "supersede"}
    assert all(signals.values()) and all(updates.values())
    assert signals["promote"] == updates["promote"]
    assert "ignored with a warning" in signals[""]
