"""A rollout's story, read back from Temporal's event history.

The history holds everything that happened to a rollout: who started it and with what, what
each analysis step observed (the result of the `observe` local activity, stored in its marker),
who paused, resumed, promoted or aborted it and why (signals and accepted updates carry the
caller's identity and input), and how it ended. The status events (Flagger's messages) come
from the final status (the result of a completed run, the details of a Failed rollout's
failure), or from the status query while it runs.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.converter import DataConverter
from temporalio.service import RPCError

from canary import contract
from canary.decision import StepObservation, judge
from canary.details import bounds_text
from canary.spec import Canary
from canary.status import CanaryStatus, CheckOutcome, MetricStatus, Phase, WebhookObservation
from worker.connection import RPC_TIMEOUT
from workflows import canary_workflow
from workflows.canary_workflow import CONTROL_SIGNALS, CanaryWorkflow

LOCAL_ACTIVITY_MARKER = "core_local_activity"
"""The marker sdk-core records for a local activity: `data` (JSON with `activity_type`,
`seq`, `complete_time`...) and `result` (the activity's result payload)."""
CONTROL_UPDATES = (canary_workflow.PROMOTE, canary_workflow.ABORT)
STATUS_QUERY_TIMEOUT = timedelta(seconds=5)
MAX_RUNS = 1000
"""Runs of one rollout read back for its history; a run continues as new after about 10,000
events, so this is years of one-minute intervals."""


class NotARollout(Exception):
    """The workflow is not a coalmine rollout (or its input cannot be read)."""


class EntryKind(StrEnum):
    STARTED = "start"
    EVENT = "event"
    ANALYSIS = "analysis"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ABORT = "abort"
    SIGNAL = "signal"
    UPDATE = "update"
    ENDED = "end"


class Entry(BaseModel):
    """One line of the story."""

    time: datetime
    kind: EntryKind
    message: str
    by: str | None = None
    """The identity of the client that did it (start, controls, termination)."""
    warning: bool = False
    reason: str | None = None
    """A control's reason, as given."""
    step: str | None = None
    """An analysis step's position, e.g. `2/5`."""
    metrics: list[MetricStatus] = Field(default_factory=list)
    webhooks: list[WebhookObservation] = Field(default_factory=list)


@dataclass
class Story:
    canary: Canary
    workflow_id: str
    run_id: str
    entries: list[Entry]
    status: CanaryStatus | None
    """The final status, or the current one; None when the query could not be answered."""
    status_error: str | None = None


async def rollout_request(
    handle: WorkflowHandle[Any, Any], converter: DataConverter
) -> contract.RolloutRequest:
    """The rollout's input (spec and image), from the first event of its history."""
    async for event in handle.fetch_history_events(page_size=1, rpc_timeout=RPC_TIMEOUT):
        return await _started_request(event, converter)
    raise NotARollout(f"workflow {handle.id} has no history")


async def _started_request(
    event: HistoryEvent, converter: DataConverter
) -> contract.RolloutRequest:
    attributes = event.workflow_execution_started_event_attributes
    if attributes.workflow_type.name != CanaryWorkflow.__name__:
        raise NotARollout(f"workflow type {attributes.workflow_type.name!r} is not a rollout")
    try:
        [request] = await converter.decode(attributes.input.payloads, [contract.RolloutRequest])
    except Exception as error:
        raise NotARollout(f"cannot read the rollout's input: {error}") from None
    assert isinstance(request, contract.RolloutRequest)
    return request


async def read_story(client: Client, handle: WorkflowHandle[Any, Any], run_id: str) -> Story:
    """Fetch the run's whole history, and those of the runs it continued (a long rollout
    continues as new), and tell them in order."""
    converter = client.data_converter
    events = await _rollout_events(client, handle)
    request = await _started_request(events[0], converter)
    entries, final = await story_entries(events, request, converter)
    status, status_error = final, None
    if status is None:
        try:
            status = await handle.query(CanaryWorkflow.status, rpc_timeout=STATUS_QUERY_TIMEOUT)
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
            status_error = str(error) or type(error).__name__
    if status is not None:
        entries += status_entries(status)
    ordered = sorted(enumerate(entries), key=lambda item: (item[1].time, _rank(item[1]), item[0]))
    return Story(
        canary=request.canary,
        workflow_id=handle.id,
        run_id=run_id,
        entries=[entry for _, entry in ordered],
        status=status,
        status_error=status_error,
    )


async def _rollout_events(client: Client, handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    """The events of `handle`'s run, preceded by those of every run it continued, oldest
    first (at most `MAX_RUNS` runs)."""
    runs: list[list[HistoryEvent]] = []
    run: WorkflowHandle[Any, Any] = handle
    while len(runs) < MAX_RUNS:
        events = list((await run.fetch_history(rpc_timeout=RPC_TIMEOUT)).events)
        if not events:
            raise NotARollout(f"workflow {handle.id} has no history")
        runs.insert(0, events)
        started = events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            break
        run = client.get_workflow_handle(handle.id, run_id=started.continued_execution_run_id)
    return [event for events in runs for event in events]


def _rank(entry: Entry) -> int:
    """At the same instant: what came in (controls, observations), then what the workflow
    said about it, then the end."""
    if entry.kind == EntryKind.ENDED:
        return 2
    return 1 if entry.kind == EntryKind.EVENT else 0


def status_entries(status: CanaryStatus) -> list[Entry]:
    return [
        Entry(time=item.time, kind=EntryKind.EVENT, message=item.message, warning=item.warning)
        for item in status.events
    ]


async def story_entries(
    events: list[HistoryEvent], request: contract.RolloutRequest, converter: DataConverter
) -> tuple[list[Entry], CanaryStatus | None]:
    """Entries for the start, the analysis steps, the controls and the end; and the final
    status when the run completed.

    What the workflow did inside a workflow task (an observation it recorded, an update it
    accepted) is dated by the task's start, which is also the `workflow.now()` its status
    events carry; signals are dated when they arrived."""
    canary = request.canary
    entries: list[Entry] = []
    final: CanaryStatus | None = None
    task_time: datetime | None = None
    steps = 0
    for event in events:
        when = _time(event)
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task_time = when
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attributes = event.workflow_execution_started_event_attributes
            if attributes.continued_execution_run_id:
                continue  # the previous run's end says it continued
            image = f"image {request.image}" if request.image else "the current image"
            entries.append(
                Entry(
                    time=when,
                    kind=EntryKind.STARTED,
                    by=attributes.identity or None,
                    message=f"rollout of {canary.target} started with {image}",
                )
            )
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            step = await _observation(event, canary, converter, task_time or when, steps + 1)
            if step is not None:
                steps += 1
                entries.append(step)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signaled = event.workflow_execution_signaled_event_attributes
            entries.append(
                await _control(
                    signaled.signal_name,
                    signaled.input,
                    signaled.identity,
                    when,
                    CONTROL_SIGNALS,
                    EntryKind.SIGNAL,
                    converter,
                )
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            accepted = event.workflow_execution_update_accepted_event_attributes.accepted_request
            entries.append(
                await _control(
                    accepted.input.name,
                    accepted.input.args,
                    accepted.meta.identity,
                    task_time or when,
                    CONTROL_UPDATES,
                    EntryKind.UPDATE,
                    converter,
                )
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            result = event.workflow_execution_completed_event_attributes.result
            [final] = await converter.decode(result.payloads, [CanaryStatus])
            assert isinstance(final, CanaryStatus)
            entries.append(_verdict(final, when))
        elif (failed := await _failed_status(event, converter)) is not None:
            final = failed
            entries.append(_verdict(final, when))
        else:
            ended = _ended(event)
            if ended is not None:
                entries.append(ended)
    return entries, final


async def _observation(
    event: HistoryEvent, canary: Canary, converter: DataConverter, when: datetime, number: int
) -> Entry | None:
    """The entry of an `observe` local activity marker; None for other markers."""
    marker = event.marker_recorded_event_attributes
    if marker.marker_name != LOCAL_ACTIVITY_MARKER or "data" not in marker.details:
        return None
    [data] = await converter.decode(marker.details["data"].payloads)
    if not isinstance(data, dict) or data.get("activity_type") != contract.OBSERVE:
        return None
    label = await _step_label(event, converter)
    step = label or str(number)
    if marker.HasField("failure") or "result" not in marker.details:
        message = marker.failure.message or "no result recorded"
        return Entry(
            time=when,
            kind=EntryKind.ANALYSIS,
            step=step,
            warning=True,
            message=f"step {step}: observing failed: {message}",
        )
    try:
        [observation] = await converter.decode(marker.details["result"].payloads, [StepObservation])
    except Exception as error:  # a history written by another version of the activity
        message = f"step {step}: observation not readable: {error}"
        return Entry(time=when, kind=EntryKind.ANALYSIS, step=step, warning=True, message=message)
    assert isinstance(observation, StepObservation)
    checked_only = not (observation.metrics or observation.webhooks or observation.traffic_gates)
    if label is None and checked_only and observation.canary_ready:
        return None  # a paused rollout's readiness check that found nothing wrong
    if not observation.canary_ready:
        message = f"step {step}: canary not ready: {observation.canary_readiness}"
        return Entry(time=when, kind=EntryKind.ANALYSIS, step=step, warning=True, message=message)
    # the same pure judgement the workflow made, for each metric's outcome
    metrics = judge(canary, CanaryStatus(), observation, when).status.metrics
    parts = [_metric_text(metric) for metric in metrics]
    parts += [
        f"webhook {hook.name} {'passed' if hook.ok else 'failed: ' + hook.message}"
        for hook in observation.webhooks
    ]
    return Entry(
        time=when,
        kind=EntryKind.ANALYSIS,
        step=step,
        message=f"step {step}: " + ("; ".join(parts) or "nothing to check"),
        warning=any(metric.outcome != CheckOutcome.PASSED for metric in metrics)
        or any(not hook.ok for hook in observation.webhooks),
        metrics=metrics,
        webhooks=observation.webhooks,
    )


def _metric_text(metric: MetricStatus) -> str:
    value = "no value" if metric.value is None else f"{metric.value:.2f}"
    bounds = bounds_text(metric.min, metric.max)
    return f"{metric.name} {value}" + (f" ({bounds})" if bounds else "") + f" {metric.outcome}"


async def _step_label(event: HistoryEvent, converter: DataConverter) -> str | None:
    """`2/5` from the activity's summary `analysis 2/5: webhooks and metrics`."""
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return None
    try:
        [summary] = await converter.decode([event.user_metadata.summary], [str])
    except Exception:
        return None
    if not isinstance(summary, str) or not summary.startswith("analysis "):
        return None
    return summary.removeprefix("analysis ").split(":", 1)[0].strip() or None


async def _control(
    name: str,
    arguments: Payloads,
    identity: str,
    when: datetime,
    known: tuple[str, ...],
    other: EntryKind,
    converter: DataConverter,
) -> Entry:
    if name not in known:
        return Entry(time=when, kind=other, by=identity or None, message=f"{other} {name}")
    reason = await _reason(list(arguments.payloads), converter)
    return Entry(
        time=when,
        kind=EntryKind(name),
        by=identity or None,
        reason=reason,
        message=f"{name} requested" + (f": {reason}" if reason else " (no reason given)"),
    )


async def _reason(payloads: list[Payload], converter: DataConverter) -> str:
    if not payloads:
        return ""
    try:
        [request] = await converter.decode(payloads[:1], [contract.ControlRequest])
    except Exception:
        return ""
    return request.reason if isinstance(request, contract.ControlRequest) else ""


def _verdict(final: CanaryStatus, when: datetime) -> Entry:
    verdict = final.phase if final.reason is None else f"{final.phase}: {final.reason}"
    return Entry(
        time=when,
        kind=EntryKind.ENDED,
        message=f"ended {verdict}",
        warning=final.phase != Phase.SUCCEEDED,
    )


async def _failed_status(event: HistoryEvent, converter: DataConverter) -> CanaryStatus | None:
    """The final status of a Failed rollout, from its `RolloutFailed` failure's details."""
    if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        return None
    failure = event.workflow_execution_failed_event_attributes.failure
    info = failure.application_failure_info
    if not failure.HasField("application_failure_info") or info.type != contract.ROLLOUT_FAILED:
        return None
    if not info.details.payloads:
        return None
    [final] = await converter.decode(info.details.payloads[:1], [CanaryStatus])
    assert isinstance(final, CanaryStatus)
    return final


def _ended(event: HistoryEvent) -> Entry | None:
    """How a run ended when it did not complete: failed, terminated, cancelled, timed out."""
    when = _time(event)
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        terminated = event.workflow_execution_terminated_event_attributes
        reason = f": {terminated.reason}" if terminated.reason else ""
        by = terminated.identity or None
        return Entry(
            time=when, kind=EntryKind.ENDED, by=by, warning=True, message="terminated" + reason
        )
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        return Entry(time=when, kind=EntryKind.ENDED, warning=True, message="cancelled")
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure = event.workflow_execution_failed_event_attributes.failure
        message = f"failed: {failure.message}"
        return Entry(time=when, kind=EntryKind.ENDED, warning=True, message=message)
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return Entry(time=when, kind=EntryKind.ENDED, warning=True, message="timed out")
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        attributes = event.workflow_execution_continued_as_new_event_attributes
        message = f"continued as new run {attributes.new_execution_run_id}"
        return Entry(time=when, kind=EntryKind.ENDED, message=message)
    return None


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)
