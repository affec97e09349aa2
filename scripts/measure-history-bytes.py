"""History bytes of a rollout with a large spec, per analysis step and per gate interval.

Run from the repository root: `.venv/bin/python scripts/measure-history-bytes.py`. It runs one
canary rollout (5 analysis steps, then 10 intervals waiting at a confirm-promotion gate) on the
time-skipping server against the fake platform, with a spec of about 0.6 MB (a large annotation,
as `kubectl apply` leaves one, and rollout webhooks with large metadata), and prints the size of
the history: in all, what the activity inputs take, and the mean per interval.
"""

import asyncio
import shutil
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from canary import contract  # noqa: E402
from canary.spec import Canary  # noqa: E402
from starter.verdict import final_status  # noqa: E402
from tests.workflows.fakes import FakePlatform, canary_spec  # noqa: E402
from tests.workflows.record_histories import Approval, hook, run_ids  # noqa: E402
from workflows.canary_workflow import CanaryWorkflow  # noqa: E402

GATE_INTERVALS = 10


def large_spec() -> Canary:
    hooks = [
        {**hook(f"smoke-{n}", "rollout"), "metadata": {"script": "x" * 20_000}} for n in range(15)
    ]
    spec = canary_spec(webhooks=[*hooks, hook("approve", "confirm-promotion")])
    annotations = {"kubectl.kubernetes.io/last-applied-configuration": "y" * 300_000}
    return spec.model_copy(
        update={"metadata": spec.metadata.model_copy(update={"annotations": annotations})}
    )


async def main() -> None:
    server = shutil.which("temporal-test-server")
    assert server, "temporal-test-server not on PATH"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server, data_converter=pydantic_data_converter
    )
    canary = large_spec()
    platform = FakePlatform(webhook_ok=Approval(approve=GATE_INTERVALS))
    try:
        async with Worker(
            env.client,
            task_queue=platform.task_queue,
            workflows=[CanaryWorkflow],
            activities=platform.activities(),
        ):
            handle = await env.client.start_workflow(
                CanaryWorkflow.run,
                contract.RolloutRequest(canary=canary, image="v2"),
                id=f"measure-{uuid.uuid4()}",
                task_queue=platform.task_queue,
            )
            result = await final_status(handle)
            runs = await run_ids(env.client, handle.id, handle.first_execution_run_id or "")
            events = []
            for run_id in runs:
                run = env.client.get_workflow_handle(handle.id, run_id=run_id)
                events.extend((await run.fetch_history()).events)
    finally:
        await env.shutdown()
    total = sum(event.ByteSize() for event in events)
    inputs = sum(
        event.ByteSize()
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )
    timers = sum(event.event_type == EventType.EVENT_TYPE_TIMER_STARTED for event in events)
    spec_bytes = len(canary.model_dump_json(by_alias=True))
    print(f"rollout: {result.phase}, {result.reason}")
    print(f"spec: {spec_bytes / 1e6:.2f} MB; {len(runs)} runs, {len(events)} events")
    print(f"history: {total / 1e6:.2f} MB, of which activity inputs {inputs / 1e6:.2f} MB")
    print(f"per interval ({timers}): {total / max(timers, 1) / 1e3:.1f} kB")


if __name__ == "__main__":
    asyncio.run(main())
