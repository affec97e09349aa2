"""Records the histories that test_replay.py replays: `python -m tests.workflows.record_histories`.

Only histories not stored yet are recorded: a stored history stands for rollouts already
running in production, which every later version of the workflow must still replay.
"""

import asyncio
import shutil
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from starter.verdict import final_status
from tests.workflows.fakes import FakePlatform, canary_spec, failing
from workflows.canary_workflow import CanaryWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def record() -> None:
    server = shutil.which("temporal-test-server")
    assert server, "temporal-test-server not on PATH"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server, data_converter=pydantic_data_converter
    )
    try:
        for name, platform in (
            ("healthy_rollout", FakePlatform()),
            ("failed_rollout", FakePlatform(metrics=failing)),
            ("failed_rollout_fails_workflow", FakePlatform(metrics=failing)),
        ):
            path = HISTORIES / f"{name}.json"
            if path.exists():
                continue
            async with Worker(
                env.client,
                task_queue=platform.task_queue,
                workflows=[CanaryWorkflow],
                activities=platform.activities(),
            ):
                handle = await env.client.start_workflow(
                    CanaryWorkflow.run,
                    contract.RolloutRequest(canary=canary_spec(), image="v2"),
                    id=f"canary-test-{name}",
                    task_queue=platform.task_queue,
                )
                await final_status(handle)
                history = await handle.fetch_history()
            path.write_text(history.to_json())
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
