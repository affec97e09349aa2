"""`coalmine history`: the rollout's story, read back from Temporal's event history.

The end-to-end test steers a rollout with the CLI (as different identities) on the real dev
server, then reads the story back; the others feed hand-made history events to the parser.
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import (
    HistoryEvent,
    MarkerRecordedEventAttributes,
    WorkflowExecutionSignaledEventAttributes,
)
from temporalio.api.sdk.v1 import UserMetadata
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from canary import contract
from canary.decision import StepObservation
from canary.status import MetricObservation
from starter import history
from starter.verdict import final_status
from tests.starter import test_cli
from tests.starter.test_cli import coalmine, spec_file, wait_for
from tests.workflows import test_continue_as_new as continue_as_new
from tests.workflows.fakes import FakePlatform, canary_spec, failing
from tests.workflows.record_histories import run_ids
from tests.workflows.test_canary_workflow import running_worker, start

platform = test_cli.platform
address = test_cli.address


async def test_history_tells_who_did_what_and_what_each_step_saw(
    platform: FakePlatform,
    address: str,
    dev_server_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    client = dev_server_env.client
    # 19 steps of 2s: the rollout cannot end before the promote below reaches it
    path = spec_file(tmp_path, "storied", interval="2s", stepWeight=5, maxWeight=95)
    started = await coalmine(
        "--identity", "ci-bot", "start", "-f", str(path), "--image", "v2", "--json", address=address
    )
    assert started.code == 0, started.err
    run_id = json.loads(started.out)["run_id"]
    watcher = asyncio.create_task(coalmine("watch", "storied", "-n", "test", address=address))

    await wait_for(client, "storied", lambda status: status.canary_weight >= 20)
    paused = await coalmine(
        "pause", "storied", "-n", "test", "--reason", "lunch", "--identity", "alice", "--json",
        address=address,
    )  # fmt: skip
    assert json.loads(paused.out) == {"ok": True, "message": "pause requested for storied.test"}
    weight = (await wait_for(client, "storied", lambda status: status.paused)).canary_weight
    resumed = await coalmine(
        "--identity", "bob", "resume", "storied", "-n", "test", "--json", address=address
    )
    assert json.loads(resumed.out) == {"ok": True, "message": "resume requested for storied.test"}
    await wait_for(client, "storied", lambda status: status.canary_weight > weight)
    promoted = await coalmine(
        "promote", "storied", "-n", "test", "--reason", "ship it", "--identity", "carol", "--json",
        address=address,
    )  # fmt: skip
    assert promoted.code == 0, promoted.err
    assert json.loads(promoted.out) == {
        "ok": True,
        "message": "Promotion of storied.test requested: skipping the remaining analysis: ship it",
    }

    watched = await watcher
    assert watched.code == 0, watched.err
    assert "Canary analysis of storied.test paused: lunch" in watched.out
    assert watched.out.splitlines()[-1] == "storied.test: Succeeded"

    story, table = await asyncio.gather(
        coalmine("history", "storied", "-n", "test", "--run-id", run_id, "--json", address=address),
        coalmine("history", "storied", "-n", "test", address=address),
    )
    assert story.code == 0, story.err
    entries = json.loads(story.out)
    times = [datetime.fromisoformat(entry["time"]) for entry in entries]
    assert times == sorted(times)
    controls = [
        (entry["kind"], entry["by"], entry["reason"])
        for entry in entries
        if entry["kind"] not in ("event", "analysis", "end")
    ]
    assert controls == [
        ("start", "ci-bot", None),
        ("pause", "alice", "lunch"),
        ("resume", "bob", ""),
        ("promote", "carol", "ship it"),
    ]
    kinds = [entry["kind"] for entry in entries]
    pause, resume = kinds.index("pause"), kinds.index("resume")
    assert entries[pause + 1]["message"] == "Canary analysis of storied.test paused: lunch"
    steps = [entry for entry in entries if entry["kind"] == "analysis"]
    assert kinds.index("analysis") < pause, "a step before the pause"
    assert "analysis" in kinds[resume:], "a step after the resume"
    assert [step["step"] for step in steps] == [f"{n}/19" for n in range(1, len(steps) + 1)]
    for step in steps:
        values = {metric["name"]: metric["value"] for metric in step["metrics"]}
        assert values == {"request-success-rate": 99.9, "request-duration": 120.0}
        assert {metric["outcome"] for metric in step["metrics"]} == {"passed"}
    assert entries[-1]["kind"] == "end" and entries[-1]["message"] == "ended Succeeded"

    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].startswith(
        f"History of storied.test (workflow canary-test.storied, run {run_id})"
    )
    assert lines[1].split() == ["TIME", "KIND", "BY", "WHAT"]
    rows = [line.split(maxsplit=3)[1:] for line in lines[2:]]
    assert ["pause", "alice", "pause requested: lunch"] in rows
    assert ["promote", "carol", "promote requested: ship it"] in rows
    assert ["start", "ci-bot", "rollout of storied.test started with image v2"] in rows
    analysis = [line for line in lines if line.split()[1] == "analysis"]
    assert len(analysis) == len(steps)
    assert analysis[0].endswith(
        "step 1/19: request-success-rate 99.90 (>= 99) passed; "
        "request-duration 120.00 (<= 500) passed"
    )


# -- the parser, on hand-made events ------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CONVERTER = pydantic_data_converter


def payloads(*values: object) -> Payloads:
    return Payloads(payloads=CONVERTER.payload_converter.to_payloads(list(values)))


def event(kind: "EventType.ValueType", seconds: float) -> HistoryEvent:
    stamp = Timestamp()
    stamp.FromDatetime(T0 + timedelta(seconds=seconds))
    return HistoryEvent(event_type=kind, event_time=stamp)


def marker(
    seconds: float, activity_type: str, result: object = None, failure: Failure | None = None
) -> HistoryEvent:
    """A local activity's marker as sdk-core records it: `data` (JSON) and `result`."""
    details = {"data": payloads({"seq": 1, "activity_type": activity_type})}
    if result is not None:
        details["result"] = payloads(result)
    recorded = event(EventType.EVENT_TYPE_MARKER_RECORDED, seconds)
    recorded.marker_recorded_event_attributes.CopyFrom(
        MarkerRecordedEventAttributes(
            marker_name=history.LOCAL_ACTIVITY_MARKER, details=details, failure=failure
        )
    )
    summary = payloads("analysis 3/5: webhooks and metrics").payloads[0]
    recorded.user_metadata.CopyFrom(UserMetadata(summary=summary))
    return recorded


def signaled(seconds: float, name: str, identity: str) -> HistoryEvent:
    signal = event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, seconds)
    signal.workflow_execution_signaled_event_attributes.CopyFrom(
        WorkflowExecutionSignaledEventAttributes(signal_name=name, identity=identity)
    )
    return signal


async def test_observations_are_dated_by_their_workflow_task_and_judged_against_the_spec() -> None:
    request = contract.RolloutRequest(canary=canary_spec(), image="v2")
    observation = StepObservation(
        metrics=[
            MetricObservation(name="request-success-rate", value=98.5),
            MetricObservation(name="request-duration", value=None),
        ]
    )
    events = [
        event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 10),
        marker(10.2, contract.SET_ROUTES),
        marker(10.3, contract.OBSERVE, observation),
        event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 20),
        marker(
            20.4,
            contract.OBSERVE,
            failure=Failure(message="prometheus unreachable"),
        ),
    ]
    entries, final = await history.story_entries(events, request, CONVERTER)
    assert final is None
    assert [(entry.time, entry.kind, entry.step) for entry in entries] == [
        (T0 + timedelta(seconds=10), history.EntryKind.ANALYSIS, "3/5"),
        (T0 + timedelta(seconds=20), history.EntryKind.ANALYSIS, "3/5"),
    ]
    judged, failed = entries
    assert judged.warning
    assert [(metric.value, metric.outcome) for metric in judged.metrics] == [
        (98.5, "failed"),
        (None, "no-values"),
    ]
    assert judged.message == (
        "step 3/5: request-success-rate 98.50 (>= 99) failed; "
        "request-duration no value (<= 500) no-values"
    )
    assert failed.warning
    assert failed.message == "step 3/5: observing failed: prometheus unreachable"


async def test_other_signals_are_named_and_controls_without_input_have_no_reason() -> None:
    request = contract.RolloutRequest(canary=canary_spec())
    events = [signaled(1, "poke", "tester"), signaled(2, "pause", "")]
    entries, _ = await history.story_entries(events, request, CONVERTER)
    assert [(entry.kind, entry.by, entry.message, entry.reason) for entry in entries] == [
        (history.EntryKind.SIGNAL, "tester", "signal poke", None),
        (history.EntryKind.PAUSE, None, "pause requested (no reason given)", ""),
    ]


async def test_promote_and_abort_signals_are_controls_like_the_updates() -> None:
    request = contract.RolloutRequest(canary=canary_spec())
    events = [signaled(1, "promote", "web-ui"), signaled(2, "abort", "temporal-cli")]
    entries, _ = await history.story_entries(events, request, CONVERTER)
    assert [(entry.kind, entry.by, entry.message) for entry in entries] == [
        (history.EntryKind.PROMOTE, "web-ui", "promote requested (no reason given)"),
        (history.EntryKind.ABORT, "temporal-cli", "abort requested (no reason given)"),
    ]


async def test_a_failed_rollout_tells_its_end_from_the_failure_as_older_runs_from_the_result(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Today a Failed rollout fails its workflow (status in the failure's details); a rollout
    that ended before that change completed with a Failed status. Both read the same."""
    platform = FakePlatform(metrics=failing)
    async with running_worker(time_skipping_env, platform):
        handle = await start(time_skipping_env, platform, canary_spec(threshold=2))
        status = await final_status(handle)
        failed_run = list((await handle.fetch_history()).events)
    stored = Path(__file__).parents[1] / "workflows" / "histories" / "failed_rollout.json"
    completed_run = list(WorkflowHistory.from_json("stored", stored.read_text()).events)
    assert failed_run[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    assert completed_run[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    request = contract.RolloutRequest(canary=canary_spec(threshold=2), image="v2")
    for events, threshold in ((failed_run, 2), (completed_run, 3)):
        entries, final = await history.story_entries(events, request, CONVERTER)
        assert final is not None
        assert final.phase == "Failed"
        reason = f"Rolling back podinfo.test failed checks threshold reached {threshold}"
        assert final.reason == reason
        assert entries[-1].kind == history.EntryKind.ENDED
        assert entries[-1].message == f"ended Failed: {reason}"
        assert entries[-1].warning
    assert status.reason == "Rolling back podinfo.test failed checks threshold reached 2"


async def test_a_rollout_that_continued_as_new_tells_every_run(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    canary = canary_spec(maxWeight=90, stepWeight=2)
    async with continue_as_new.worker(time_skipping_env, platform):
        handle = await continue_as_new.start(time_skipping_env, platform, canary)
        await handle.result()
        latest = time_skipping_env.client.get_workflow_handle(handle.id)
        description = await latest.describe()
        story = await history.read_story(time_skipping_env.client, latest, description.run_id)
    runs = await run_ids(time_skipping_env.client, handle.id, handle.result_run_id or "")
    assert len(runs) >= 3
    kinds = [entry.kind for entry in story.entries]
    assert kinds.count(history.EntryKind.STARTED) == 1
    assert kinds[0] == history.EntryKind.STARTED
    continued = [entry.message for entry in story.entries if "continued as new" in entry.message]
    assert continued == [f"continued as new run {run}" for run in runs[1:]]
    steps = [entry for entry in story.entries if entry.kind == history.EntryKind.ANALYSIS]
    assert len(steps) == len(platform.observed_weights) == 45, "every run's steps are told"
    assert story.status is not None
    assert story.status.phase == "Succeeded"
