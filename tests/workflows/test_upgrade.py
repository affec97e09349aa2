"""A rollout started on version N of the workflow finishes on version N+1 after a change
guarded by `workflow.patched`; the same change without the guard fails the replay of the
history version N wrote (time-skipping server)."""

import json
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from canary.status import Phase
from tests.workflows.fakes import FakePlatform, canary_spec
from tests.workflows.test_canary_workflow import HEALTHY_ROUTES, start, wait_for, weights
from tests.workflows.versions import TEST_CHANGE, GuardedChange, UnguardedChange
from workflows.canary_workflow import CanaryWorkflow

HEALTHY_ROLLOUT = Path(__file__).parent / "histories" / "healthy_rollout.json"
"""A stored history of version N that observes the canary at weight 30 and more."""


async def replay_failure(history: WorkflowHistory, workflow: type) -> Exception | None:
    replayer = Replayer(workflows=[workflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


def patches(history: WorkflowHistory) -> set[str]:
    """The ids of the patches the history recorded."""
    return {
        json.loads(event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)[
            "id"
        ]
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and event.marker_recorded_event_attributes.marker_name == "core_patch"
    }


def extra_timers(history: WorkflowHistory) -> int:
    return sum(
        event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        and event.user_metadata.summary.data == b'"the new version\'s extra timer"'
        for event in history.events
    )


async def test_a_rollout_started_on_version_n_finishes_on_version_n_plus_1(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env = time_skipping_env
    version_n = FakePlatform()
    async with Worker(
        env.client,
        task_queue=version_n.task_queue,
        workflows=[CanaryWorkflow],
        activities=version_n.activities(),
        max_cached_workflows=0,
    ):
        handle = await start(env, version_n, canary_spec())
        await wait_for(env, handle, lambda status: status.canary_weight == 20)
    version_n_plus_1 = FakePlatform(
        task_queue=version_n.task_queue,
        routes=list(version_n.routes),
        canary_revision=version_n.canary_revision,
    )
    async with Worker(
        env.client,
        task_queue=version_n.task_queue,
        workflows=[GuardedChange],
        activities=version_n_plus_1.activities(),
    ):
        result = await handle.result()
    history = await handle.fetch_history()

    assert result.phase == Phase.SUCCEEDED
    assert weights(version_n.routes) == [(100, 0), (90, 10), (80, 20)]
    assert weights(version_n_plus_1.routes) == HEALTHY_ROUTES
    assert version_n_plus_1.observed_weights == [20, 30, 40, 50]
    assert version_n_plus_1.promotions == 1
    assert TEST_CHANGE in patches(history)
    assert extra_timers(history) == 3, "the change runs from weight 30 on"
    assert await replay_failure(history, GuardedChange) is None
    assert await replay_failure(history, CanaryWorkflow) is not None, "version N cannot run it"


async def test_the_guarded_change_replays_a_stored_history_and_the_unguarded_one_fails() -> None:
    history = WorkflowHistory.from_json("canary-test-healthy_rollout", HEALTHY_ROLLOUT.read_text())
    assert await replay_failure(history, GuardedChange) is None
    failure = await replay_failure(history, UnguardedChange)
    assert failure is not None
    assert "nondetermin" in str(failure).lower(), failure
