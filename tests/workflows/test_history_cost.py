"""What a rollout records (fewer-round-trips): history events are what a worker and a server
spend per rollout and per step (time-skipping server, which has no coalmine search attributes:
with them, a step that moves the weight records one update of CanaryWeight more)."""

import itertools

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.testing import WorkflowEnvironment

from canary import contract
from canary.status import CanaryStatus, Phase
from starter.verdict import final_status
from tests.workflows.fakes import FakePlatform, canary_spec
from tests.workflows.test_canary_workflow import HEALTHY_ROUTES, running_worker, start, weights


def local_activity(event: HistoryEvent) -> str | None:
    """The activity type of a local activity marker, else None."""
    if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
        return None
    marker = event.marker_recorded_event_attributes
    if "data" not in marker.details:
        return None
    data = marker.details["data"].payloads[0].data
    for name in (contract.SET_ROUTES_AND_NOTIFY, contract.SET_ROUTES, contract.OBSERVE):
        if f'"activity_type":"{name}"'.encode() in data.replace(b" ", b""):
            return name
    return "other"


def timer_indexes(events: list[HistoryEvent]) -> list[int]:
    """Where each analysis interval's timer starts in the history."""
    return [
        index
        for index, event in enumerate(events)
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]


async def healthy_rollout(
    env: WorkflowEnvironment,
) -> tuple[FakePlatform, CanaryStatus, list[HistoryEvent]]:
    """A healthy 5-step rollout to its end: the platform it ran on, its result, its history."""
    platform = FakePlatform()
    async with running_worker(env, platform):
        handle = await start(env, platform, canary_spec())
        result = await handle.result()
        events = list((await handle.fetch_history()).events)
    return platform, result, events


async def test_a_rollout_reaches_its_first_interval_in_one_workflow_task(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform, result, events = await healthy_rollout(time_skipping_env)
    first_timer = timer_indexes(events)[0]
    tasks = [
        event
        for event in events[:first_timer]
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    assert result.phase == Phase.SUCCEEDED
    assert weights(platform.routes) == HEALTHY_ROUTES
    assert len(tasks) == 1
    scheduled = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    assert not [event for event in events if event.event_type == scheduled]


async def test_a_step_that_moves_the_weight_records_seven_events(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Its timer (2), one workflow task (3), the observation and the new weight with the
    step's notifications (a local activity marker each)."""
    platform, _, events = await healthy_rollout(time_skipping_env)
    timers = timer_indexes(events)
    assert len(timers) == 5
    assert [later - earlier for earlier, later in itertools.pairwise(timers)] == [7] * 4
    for earlier, later in itertools.pairwise(timers):
        step = [local_activity(event) for event in events[earlier:later]]
        assert [name for name in step if name] == [
            contract.OBSERVE,
            contract.SET_ROUTES_AND_NOTIFY,
        ]
    sent = [note.message for note in platform.notifications]
    assert sent.count("Advance podinfo.test canary weight 20") == 1


async def test_notifications_wait_for_the_next_wait_when_the_routes_cannot_be_set(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform(routes_fail_at=30)
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec())
        result = await final_status(handle)
    sent = [note.message for note in platform.notifications]
    assert result.phase == Phase.FAILED
    assert sent.count("Advance podinfo.test canary weight 30") == 1
    assert sent.index("Advance podinfo.test canary weight 30") < sent.index(
        "Rolling back podinfo.test set_routes failed: router config is not writable"
    )
