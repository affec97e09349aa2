"""Records the histories that test_replay.py replays: `python -m tests.workflows.record_histories`.

Only histories not stored yet are recorded: a stored history stands for rollouts already
running in production, which every later version of the workflow must still replay. To cover a
new path, add a `Case` here, run the module once and add the new names to `EXPECTED` in
test_replay.py. Rollouts run on the time-skipping server against the fake platforms.
"""

import asyncio
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from canary.spec import Canary
from canary.status import CanaryStatus
from starter.verdict import final_status
from tests.workflows.fakes import FakePlatform, canary_spec, failing
from tests.workflows.versions import BuggyDecision, QuickHandOver
from tests.workflows.world import Script, ScriptedPlatform
from workflows.canary_workflow import CanaryWorkflow

HISTORIES = Path(__file__).parent / "histories"
INTERVAL = 60.0

Handle = WorkflowHandle[CanaryWorkflow, CanaryStatus]
Drive = Callable[[WorkflowEnvironment, Handle], Awaitable[None]]
"""What a case does to the rollout while it runs (signals, updates), before its verdict."""


class Approval:
    """Webhook answers: each hook named in `refusals` answers non-2xx that many times first."""

    def __init__(self, **refusals: int) -> None:
        self.refusals = dict(refusals)

    def __call__(self, name: str) -> bool:
        left = self.refusals.get(name, 0)
        self.refusals[name] = left - 1
        return left <= 0


def hook(name: str, kind: str) -> dict[str, str]:
    return {"name": name, "type": kind, "url": f"http://hooks.test/{name}"}


async def until(env: WorkflowEnvironment, handle: Handle, weight: int) -> None:
    """Skip time half an interval at a time until the canary has `weight`."""
    for _ in range(40):
        if (await handle.query(CanaryWorkflow.status)).canary_weight == weight:
            return
        await env.sleep(INTERVAL / 2)
    raise AssertionError(f"the canary never reached weight {weight}")


async def pause_and_resume(env: WorkflowEnvironment, handle: Handle) -> None:
    await until(env, handle, 20)
    await handle.signal(CanaryWorkflow.pause, contract.ControlRequest(reason="lunch"))
    await env.sleep(INTERVAL * 3)
    await handle.signal(CanaryWorkflow.resume, contract.ControlRequest())


async def promote(env: WorkflowEnvironment, handle: Handle) -> None:
    await until(env, handle, 20)
    await handle.execute_update(CanaryWorkflow.promote, contract.ControlRequest(reason="ok"))


async def abort(env: WorkflowEnvironment, handle: Handle) -> None:
    await until(env, handle, 20)
    await handle.execute_update(CanaryWorkflow.abort, contract.ControlRequest(reason="no"))


async def supersede(env: WorkflowEnvironment, handle: Handle) -> None:
    await until(env, handle, 20)
    await handle.execute_update(CanaryWorkflow.supersede, contract.SupersedeRequest(image="v3"))


@dataclass(frozen=True)
class Case:
    name: str
    canary: Canary = field(default_factory=canary_spec)
    fake: Callable[[], FakePlatform] | None = FakePlatform
    script: Script | None = None
    """Run against the ScriptedPlatform with this script instead of a FakePlatform."""
    drive: Drive | None = None
    workflow: type = CanaryWorkflow
    """The workflow class the history was recorded with, and replays against."""
    runs: int = 1
    """How many runs to store (continue-as-new): `name`, then `name_run2` and so on."""

    @property
    def names(self) -> list[str]:
        return [self.name] + [f"{self.name}_run{n}" for n in range(2, self.runs + 1)]


def _blue_green(**analysis: object) -> Canary:
    return canary_spec(iterations=3, maxWeight=None, stepWeight=None, **analysis)


GATES = [
    hook("rollout-gate", "confirm-rollout"),
    hook("pre-rollout-check", "pre-rollout"),
    hook("traffic-gate", "confirm-traffic-increase"),
    hook("promotion-gate", "confirm-promotion"),
]

CASES = [
    Case("healthy_rollout"),
    Case("failed_rollout", fake=lambda: FakePlatform(metrics=failing)),
    Case("failed_rollout_fails_workflow", fake=lambda: FakePlatform(metrics=failing)),
    Case("canary_promoted"),
    Case("canary_rolled_back_at_threshold", fake=lambda: FakePlatform(metrics=failing)),
    Case(
        "ab_testing_promoted",
        canary=canary_spec(
            iterations=3,
            maxWeight=None,
            stepWeight=None,
            match=[{"headers": {"x-canary": {"exact": "insider"}}}],
        ),
    ),
    Case("blue_green_promoted", canary=_blue_green()),
    Case("blue_green_mirror_promoted", canary=_blue_green(mirror=True)),
    Case("paused_and_resumed", drive=pause_and_resume),
    Case("paused_with_canary_checks_and_resumed", drive=pause_and_resume),
    Case("step_weight_promotion", canary=canary_spec(stepWeightPromotion=40)),
    Case("promoted_early", drive=promote),
    Case("aborted", drive=abort),
    Case("superseded", drive=supersede),
    Case(
        "gates_wait_then_open",
        canary=canary_spec(webhooks=GATES),
        fake=lambda: FakePlatform(
            webhook_ok=Approval(
                **{
                    "rollout-gate": 2,
                    "pre-rollout-check": 1,
                    "traffic-gate": 2,
                    "promotion-gate": 2,
                }
            )
        ),
    ),
    Case(
        "gates_call_their_hooks_as_local_activities",
        canary=canary_spec(webhooks=GATES),
        fake=lambda: FakePlatform(
            webhook_ok=Approval(**{"rollout-gate": 2, "traffic-gate": 2, "promotion-gate": 3})
        ),
    ),
    Case("promotion_failed_primary_never_ready", script=Script(primary_never_ready=True)),
    Case("new_revision_restarts_analysis", script=Script(new_revision_at=frozenset({1}))),
    Case(
        "continue_as_new_at_confirm_promotion",
        canary=canary_spec(webhooks=[hook("promotion-gate", "confirm-promotion")]),
        fake=lambda: FakePlatform(webhook_ok=Approval(**{"promotion-gate": 15})),
        workflow=QuickHandOver,
        runs=2,
    ),
    Case(
        "continue_as_new_in_analysis",
        canary=canary_spec(maxWeight=60, stepWeight=3),
        workflow=QuickHandOver,
        runs=2,
    ),
    Case("workflow_error_rolled_back", workflow=BuggyDecision),
    # fewer-round-trips
    Case("healthy_rollout_with_fewer_round_trips"),
    Case("failed_rollout_with_fewer_round_trips", fake=lambda: FakePlatform(metrics=failing)),
    Case("promotion_failed_with_fewer_round_trips", script=Script(primary_never_ready=True)),
    Case(
        "gates_with_fewer_round_trips",
        canary=canary_spec(webhooks=GATES),
        fake=lambda: FakePlatform(
            webhook_ok=Approval(**{"rollout-gate": 2, "traffic-gate": 2, "promotion-gate": 3})
        ),
    ),
]


async def run_ids(client: Client, workflow_id: str, first: str) -> list[str]:
    """The run ids of a rollout, first to last, following continue-as-new."""
    ids = [first]
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=ids[-1]).fetch_history()
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return ids
        ids.append(last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id)


async def record_case(env: WorkflowEnvironment, case: Case) -> None:
    workflow_id = f"canary-test-{case.name}"
    task_queue = f"record-{uuid.uuid4()}"
    if case.script is not None:
        scripted = ScriptedPlatform()
        scripted.add(workflow_id, case.script, case.canary.spec.target_ref.kind)
        activities = scripted.activities()
    else:
        assert case.fake is not None
        activities = case.fake().activities()
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[case.workflow],
        activities=activities,
    ):
        handle: Handle = await env.client.start_workflow(
            CanaryWorkflow.run,
            contract.RolloutRequest(canary=case.canary, image="v2"),
            id=workflow_id,
            task_queue=task_queue,
        )
        if case.drive is not None:
            await case.drive(env, handle)
        await final_status(handle)
        runs = await run_ids(env.client, workflow_id, handle.first_execution_run_id or "")
    assert len(runs) >= case.runs, f"{case.name}: {len(runs)} runs, {case.runs} wanted"
    for name, run_id in zip(case.names, runs, strict=False):
        history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        path = HISTORIES / f"{name}.json"
        if not path.exists():
            path.write_text(history.to_json())
            print(f"recorded {path.name} ({len(history.events)} events)")


async def record() -> None:
    server = shutil.which("temporal-test-server")
    assert server, "temporal-test-server not on PATH"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server, data_converter=pydantic_data_converter
    )
    try:
        for case in CASES:
            if all((HISTORIES / f"{name}.json").exists() for name in case.names):
                continue
            await record_case(env, case)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
